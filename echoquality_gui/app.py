"""Start EchoQuality Studio: ``echoquality-gui [PROJECT_DIR]`` or ``echoquality gui``."""
from __future__ import annotations

import argparse
import sys

import pyqtgraph as pg
from PySide6.QtWidgets import QApplication

from echoquality_gui import settings
from echoquality_gui.main_window import MainWindow
from echoquality_gui.resources import icon, stylesheet


def configure_application(app: QApplication) -> None:
    """Names (for QSettings), dark theme, icon, pyqtgraph options."""
    app.setOrganizationName(settings.ORGANISATION)
    app.setApplicationName(settings.APPLICATION)
    app.setApplicationDisplayName("EchoQuality Studio")
    app.setStyle("Fusion")
    app.setStyleSheet(stylesheet())
    app.setWindowIcon(icon("app"))
    pg.setConfigOptions(imageAxisOrder="row-major", antialias=False)


def main(argv: list[str] | None = None) -> int:
    """Open the app (optionally on a dataset folder) and run until the window closes."""
    parser = argparse.ArgumentParser(prog="echoquality-gui", description=__doc__)
    parser.add_argument("project", nargs="?", help="dataset folder to open")
    parser.add_argument("--labels", help="labels CSV (default <project>/labels.csv)")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)

    app = QApplication.instance() or QApplication(sys.argv[:1])
    configure_application(app)
    window = MainWindow()
    if args.project:
        window.open_project(args.project, args.labels)
    window.show()
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
