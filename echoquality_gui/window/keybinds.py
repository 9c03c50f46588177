"""Every keyboard shortcut of the app, as data: one registry drives the key handling, the
button captions and the cheat-sheet dialog (napari-deeplabcut's pattern).

Keys are Qt key-sequence strings ("Space", "Ctrl+Z", "1"); several keys for one action are
separated by "; " (Qt's ``QKeySequence.listFromString`` format). Group "Review" acts on the
Review tab only.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace

from echoquality_core.labels.store import FIVE_POINT_SCORES, ISSUE_TAGS, UNREADABLE


@dataclass(frozen=True)
class Keybind:
    """One shortcut: ``action`` is the id the window connects a handler to."""

    key: str
    action: str
    help: str
    group: str
    scale: str | None = None  # "binary" / "five_point": only active with that label scale

    @property
    def keys(self) -> list[str]:
        """Every key of the action, the main one first."""
        return self.key.split("; ")


# The core's issue tags on letter keys (tag -> key); "unreadable" marks a clip that cannot be
# decoded.
ISSUE_KEYS: dict[str, str] = dict(zip((*ISSUE_TAGS, UNREADABLE), "OSIDPX", strict=True))

# The core's five-point scale on the number keys: key -> score.
FIVE_POINT: dict[str, float] = {str(i): s for i, s in enumerate(FIVE_POINT_SCORES, start=1)}

KEYBINDS: tuple[Keybind, ...] = (
    Keybind("1", "label_good", "Label good (score 1) and go to the next unlabelled clip",
            "Label", "binary"),
    Keybind("0", "label_poor", "Label poor (score 0) and go to the next unlabelled clip",
            "Label", "binary"),
    *(
        Keybind(key, f"label_{key}", f"Label {score:g} on the five-point scale", "Label",
                "five_point")
        for key, score in FIVE_POINT.items()
    ),
    *(
        Keybind(key, f"issue_{tag}", f"Toggle issue tag '{tag.replace('_', ' ')}'", "Label")
        for tag, key in ISSUE_KEYS.items()
    ),
    Keybind("Ctrl+Return; Ctrl+Enter", "save_label",
            "Save the label with the current tags, stay on this clip", "Label"),
    Keybind("N", "next_unlabelled", "Go to the next unlabelled clip", "Label"),
    Keybind("U", "next_uncertain", "Go to the unlabelled clip the model is least sure about "
            "(score closest to the threshold)", "Label"),
    Keybind("Ctrl+Z", "undo", "Undo the last label change (written to the CSV)", "Label"),
    Keybind("Ctrl+Shift+Z", "redo", "Redo the label change (written to the CSV)", "Label"),
    Keybind("Space", "play_pause", "Play / pause", "Player"),
    Keybind("Left", "step_back", "Previous frame", "Player"),
    Keybind("Right", "step_forward", "Next frame", "Player"),
    Keybind("Home", "first_frame", "First frame", "Player"),
    Keybind("End", "last_frame", "Last frame", "Player"),
    Keybind("[", "slower", "Slower playback", "Player"),
    Keybind("]", "faster", "Faster playback", "Player"),
    Keybind("L", "toggle_loop", "Loop on / off", "Player"),
    Keybind("R", "reset_levels", "Reset brightness / contrast", "Player"),
    Keybind("F", "fit_view", "Fit the clip to the player (Ctrl+wheel zooms, drag pans, the "
            "wheel steps frames)", "Player"),
    Keybind("M", "toggle_model_input", "Show the model input (masked, cropped 112x112) beside "
            "the clip", "Player"),
    Keybind("Down", "next_clip", "Next clip in the list", "Clips"),
    Keybind("Up", "previous_clip", "Previous clip in the list", "Clips"),
    Keybind("G", "toggle_gradcam", "Show / hide the GradCAM heat map (the label keys relabel "
            "the clip on this tab)", "Review"),
    Keybind("C", "confirm_label", "Confirm the label: the model is wrong, mark the clip "
            "reviewed", "Review"),
    Keybind("Ctrl+O", "open_folder", "Open a dataset folder", "File"),
    Keybind("?", "show_keys", "This list of shortcuts", "Help"),
)


_user_keys: dict[str, str] = {}  # action -> the user's keys (Preferences), over the defaults


def set_user_keys(keys: Mapping[str, str]) -> None:
    """The user's own keys (action -> key string); actions not given keep their default."""
    _user_keys.clear()
    _user_keys.update({a: k for a, k in keys.items() if any(b.action == a for b in KEYBINDS)})


def keybinds() -> tuple[Keybind, ...]:
    """The registry with the user's keys in place of the defaults."""
    return tuple(replace(b, key=_user_keys[b.action]) if b.action in _user_keys else b
                 for b in KEYBINDS)


def keybind(action: str) -> Keybind:
    """The registry entry for ``action`` (KeyError names the unknown action)."""
    for bind in keybinds():
        if bind.action == action:
            return bind
    raise KeyError(f"no keybind for action {action!r}")


def issue_key(tag: str) -> str | None:
    """The key that toggles ``tag``, or None for a tag without a key."""
    return ISSUE_KEYS.get(tag)


def groups() -> dict[str, list[Keybind]]:
    """Keybinds by group, in registry order (for the cheat-sheet)."""
    out: dict[str, list[Keybind]] = {}
    for bind in keybinds():
        out.setdefault(bind.group, []).append(bind)
    return out
