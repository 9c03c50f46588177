"""The app's persistent settings (QSettings, organisation "EchoQuality", application "Studio").

Always an INI file, so tests can point ``QSettings.setPath(IniFormat, UserScope, tmp)`` at a
temporary folder and leave the user's settings alone.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

from PySide6.QtCore import QSettings

ORGANISATION = "EchoQuality"
APPLICATION = "Studio"
MAX_RECENT = 8


def app_settings() -> QSettings:
    """The settings store (user scope, INI format)."""
    return QSettings(QSettings.Format.IniFormat, QSettings.Scope.UserScope, ORGANISATION,
                     APPLICATION)


def rater() -> str:
    """The stored rater name ('' if not asked yet)."""
    return str(app_settings().value("rater", "") or "")


def set_rater(name: str) -> None:
    app_settings().setValue("rater", name.strip())


def recent_projects() -> list[str]:
    """Recently opened dataset folders, newest first, existing ones only."""
    value = app_settings().value("recent_projects", []) or []
    if isinstance(value, str):
        value = [value]
    return [p for p in value if Path(p).is_dir()]


def add_recent_project(root: Path) -> None:
    items = [str(root)] + [p for p in recent_projects() if p != str(root)]
    app_settings().setValue("recent_projects", items[:MAX_RECENT])


def _project_key(root: Path) -> str:
    return "projects/" + hashlib.sha1(str(root).encode()).hexdigest()[:12]


def project_value(root: Path, name: str, default: object = None) -> object:
    """A per-project setting (e.g. the label scale)."""
    return app_settings().value(f"{_project_key(root)}/{name}", default)


def set_project_value(root: Path, name: str, value: object) -> None:
    app_settings().setValue(f"{_project_key(root)}/{name}", value)


def show_model_score() -> bool:
    """Whether the model's score is shown while labelling (default yes; hide it to avoid bias)."""
    value = app_settings().value("show_model_score", True)
    return value not in (False, "false", "0", 0)


def set_show_model_score(on: bool) -> None:
    app_settings().setValue("show_model_score", bool(on))


def default_rater() -> str:
    """The OS user name: the rater's name until they give another."""
    import getpass

    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "rater"


def autoplay() -> bool:
    """Whether a clip starts playing (looped) when it opens, as on echo review stations."""
    return app_settings().value("autoplay", True) not in (False, "false", "0", 0)


def set_autoplay(on: bool) -> None:
    app_settings().setValue("autoplay", bool(on))


def train_speed(kind: str) -> str | None:
    """The training speed measured on this computer for ``kind`` of run (device, layers, …),
    as ``StepSpeed.to_text`` wrote it; None before any measurement."""
    value = app_settings().value(f"train_speed/{kind}", None)
    return None if value is None else str(value)


def set_train_speed(kind: str, text: str) -> None:
    app_settings().setValue(f"train_speed/{kind}", text)
