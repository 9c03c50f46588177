"""Start EchoQuality Studio: ``echoquality-gui [PROJECT_DIR]``."""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import pyqtgraph as pg
from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication

from echoquality_gui.common import settings
from echoquality_gui.common.garbage import collect_in_gui_thread, freeze_start_up
from echoquality_gui.window.main_window import MainWindow
from echoquality_gui.window.preferences import prompt_rater
from echoquality_gui.common.resources import icon, stylesheet

def configure_application(app: QApplication) -> None:
    """Names (for QSettings), dark theme, icon, pyqtgraph options, garbage collection."""
    collect_in_gui_thread()
    app.setOrganizationName(settings.ORGANISATION)
    app.setApplicationName(settings.APPLICATION)
    app.setApplicationDisplayName("EchoQuality Studio")
    app.setStyle("Fusion")
    app.setStyleSheet(stylesheet())
    app.setWindowIcon(icon("app"))
    pg.setConfigOptions(imageAxisOrder="row-major", antialias=False)


def _screenshot_when_ready(window: MainWindow, path: Path, timeout: float = 15.0) -> None:
    """Save the window as a PNG once a clip's first frame is on screen, then quit."""
    deadline = time.monotonic() + timeout
    timer = QTimer(window)

    def check() -> None:
        if window.player.frames_shown > 0 or time.monotonic() > deadline:
            timer.stop()
            window.grab().save(str(path))
            QApplication.quit()

    timer.timeout.connect(check)
    timer.start(100)


def main(argv: list[str] | None = None) -> int:
    """Open the app (optionally on a dataset folder) and run until the window closes."""
    parser = argparse.ArgumentParser(prog="echoquality-gui", description=__doc__)
    parser.add_argument("project", nargs="?", help="dataset folder to open")
    parser.add_argument("--labels", help="labels CSV (default <project>/labels.csv)")
    parser.add_argument("--screenshot", type=Path, metavar="PNG",
                        help="save the window as a PNG once the first clip shows, then quit")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)

    app = QApplication.instance() or QApplication(sys.argv[:1])
    configure_application(app)
    first_start = not settings.rater()
    window = MainWindow()
    window.show()
    app.processEvents()  # the window is painted before any clip is read or decoded
    if args.project:
        window.open_project(args.project, args.labels)
    if first_start and not args.screenshot:  # asked once, never on a label key press
        QTimer.singleShot(0, lambda: prompt_rater(window))
    if args.screenshot:
        _screenshot_when_ready(window, args.screenshot)
    freeze_start_up()
    try:
        code = app.exec()
    finally:
        # Close and delete the window before Python tears down modules: pyqtgraph items
        # destroyed during interpreter shutdown can crash.
        window.close()
        window.deleteLater()
        app.sendPostedEvents(None, 0)
        app.processEvents()
    return int(code)


if __name__ == "__main__":
    sys.exit(main())
