"""The window's commands run against any ``CommandContext`` (SLEAP's FakeApp idea): no window."""
from __future__ import annotations

from echoquality_gui.window.commands import COMMANDS, handlers


class FakeApp:
    """The parts of the window the commands use, recording what they were asked to do."""

    def __init__(self) -> None:
        self.calls: list[tuple] = []
        self.session = self.label_panel = self.review = None

    def active_player(self):
        return self

    def give_score(self, score: float) -> None:
        self.calls.append(("give_score", score))

    def open_neighbour(self, step: int) -> None:
        self.calls.append(("open_neighbour", step))

    def choose_folder(self) -> None:
        self.calls.append(("choose_folder",))

    def show_keys(self) -> None:
        self.calls.append(("show_keys",))

    def step(self, n: int) -> None:  # the player's
        self.calls.append(("step", n))


def test_commands_run_without_a_window(isolated_settings):
    app = FakeApp()
    for action in ("label_poor", "label_3", "next_clip", "previous_clip", "step_back",
                   "show_keys"):
        COMMANDS[action](app)
    assert app.calls == [("give_score", 0.0), ("give_score", 0.5), ("open_neighbour", 1),
                         ("open_neighbour", -1), ("step", -1), ("show_keys",)]
    bound = handlers(app)
    bound["open_folder"]()
    assert app.calls[-1] == ("choose_folder",)
