"""The app's stylesheet and hand-drawn SVG icons."""
from __future__ import annotations

from functools import cache
from importlib.resources import files
from pathlib import Path

from PySide6.QtGui import QIcon

HERE = Path(str(files("echoquality_resources")))


@cache
def icon(name: str) -> QIcon:
    """The icon ``resources/icons/<name>.svg`` (FileNotFoundError names a missing one)."""
    path = HERE / "icons" / f"{name}.svg"
    if not path.is_file():
        raise FileNotFoundError(f"no icon {name!r} at {path}")
    return QIcon(str(path))


def stylesheet() -> str:
    """The dark theme (style.qss)."""
    text = (HERE / "style.qss").read_text(encoding="utf-8")
    return text.replace("@ICONS@", (HERE / "icons").as_posix())  # url() needs a full path
