"""Every user action of the window as one small function ``(window) -> None``, keyed by the
keybind registry's action ids (SLEAP's command objects, as plain functions): the shortcuts,
the menus and the buttons all run the same code. Widgets keep only showing and forwarding.

A label command asks first (the rater's name, once) and then does the change through the
session; player commands act on the player of the tab in front (Label or Review). Commands see
the window only through :class:`CommandContext` (SLEAP's ``CommandContext``), so any object
with those parts runs them, and this module never imports the window.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from echoquality_gui.common.session import Session
from echoquality_gui.label.panel import LabelPanel, ask_rater
from echoquality_gui.window.keybinds import FIVE_POINT, ISSUE_KEYS, KEYBINDS


class CommandContext(Protocol):
    """What the commands need of the window (``MainWindow`` is one)."""

    session: Session
    label_panel: LabelPanel
    review: Any  # the Review tab: toggle_overlay(), confirm()

    def active_player(self) -> Any: ...  # the player of the tab in front
    def give_score(self, score: float) -> None: ...
    def open_neighbour(self, step: int) -> None: ...
    def choose_folder(self) -> None: ...
    def show_keys(self) -> Any: ...


Command = Callable[[CommandContext], None]


def label(score: float) -> Command:
    """Label the current clip with ``score`` (on Review: relabel the clip under review)."""

    def run(window: CommandContext) -> None:
        if ask_rater(window):  # ask ...
            window.give_score(score)  # ... then do
    return run


def toggle_issue(tag: str) -> Command:
    """Toggle an issue tag of the current clip."""
    return lambda window: window.label_panel.toggle_issue(tag)


def _player(act: Callable) -> Command:
    return lambda window: act(window.active_player())


COMMANDS: dict[str, Command] = {
    "label_good": label(1.0),
    "label_poor": label(0.0),
    **{f"label_{key}": label(score) for key, score in FIVE_POINT.items()},
    **{f"issue_{tag}": toggle_issue(tag) for tag in ISSUE_KEYS},
    "save_label": lambda w: w.label_panel.save(),
    "next_unlabelled": lambda w: w.session.next_unlabelled(),
    "next_uncertain": lambda w: w.session.next_most_uncertain(),
    "undo": lambda w: w.session.undo(),
    "redo": lambda w: w.session.redo(),
    "toggle_gradcam": lambda w: w.review.toggle_overlay(),
    "confirm_label": lambda w: w.review.confirm(),
    "play_pause": _player(lambda p: p.toggle_play()),
    "step_back": _player(lambda p: p.step(-1)),
    "step_forward": _player(lambda p: p.step(1)),
    "first_frame": _player(lambda p: p.first()),
    "last_frame": _player(lambda p: p.last()),
    "slower": _player(lambda p: p.change_speed(-1)),
    "faster": _player(lambda p: p.change_speed(1)),
    "toggle_loop": _player(lambda p: p.set_loop(not p.loop)),
    "reset_levels": _player(lambda p: p.reset_levels()),
    "toggle_model_input": _player(lambda p: p.set_model_input(not p.show_model_input)),
    "fit_view": _player(lambda p: p.fit()),
    "next_clip": lambda w: w.open_neighbour(1),
    "previous_clip": lambda w: w.open_neighbour(-1),
    "open_folder": lambda w: w.choose_folder(),
    "show_keys": lambda w: w.show_keys(),
}


def handlers(window: CommandContext) -> dict[str, Callable[[], None]]:
    """The registry's actions bound to ``window`` (KeyError names an action without one)."""
    missing = [b.action for b in KEYBINDS if b.action not in COMMANDS]
    if missing:
        raise KeyError(f"no command for the keybind action(s) {missing}")
    return {action: (lambda run=run: run(window)) for action, run in COMMANDS.items()}
