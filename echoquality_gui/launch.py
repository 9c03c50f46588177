"""The ``echoquality-gui`` command. It imports the app only when called: a spawned child of
the app (scoring, training, a bootstrap) runs the command's script again as ``__mp_main__``,
and with ``echoquality_gui.app`` as its entry point every child imported Qt, pyqtgraph and the
whole window (~1 CPU-second) before its own work."""
from __future__ import annotations


def main() -> int:
    """Start EchoQuality Studio (``echoquality_gui.app.main``)."""
    from echoquality_gui.app import main as run_app

    return run_app()
