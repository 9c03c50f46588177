"""Screenshots of every tab with a clip and a model loaded, and a geometry check, on an
offscreen screen of a given size at a given QT_SCALE_FACTOR. Run in a child process (the scale
factor must be set before the QApplication exists) by tests/test_gui_ui_pass.py:

    python tests/gui/ui_screens.py PROJECT RUN_DIR OUT_DIR --screen 1920x1080 --scale 1.5

Prints one JSON line: {"tabs": [...], "screen": [w, h], "window": [w, h],
"outside": ["tab: button text", ...], "squashed": ["tab: control WxH < hint", ...],
"scrolled": ["tab: its height > the window's", ...],
"screenshots": [...]}.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path


def _environment(screen: str, scale: float, tmp: Path) -> None:
    width, height = (int(v) for v in screen.split("x"))
    config = tmp / "screen.json"
    config.write_text(json.dumps({"screens": [{
        "name": "test", "x": 0, "y": 0, "width": width, "height": height,
        "logicalDpi": 96, "logicalBaseDpi": 96, "dpr": 1}]}))
    os.environ["QT_QPA_PLATFORM"] = f"offscreen:configfile={config}"
    os.environ["QT_SCALE_FACTOR"] = f"{scale:g}"
    os.environ.setdefault("MPLBACKEND", "Agg")


def _outside(window, tab_name: str) -> list[str]:
    """Visible buttons whose rectangle is not inside the window (clipped off)."""
    from PySide6.QtCore import QRect
    from PySide6.QtWidgets import QAbstractButton

    inside = window.rect()
    bad = []
    for button in window.findChildren(QAbstractButton):
        if not button.isVisible() or button.width() <= 0:
            continue
        top_left = button.mapTo(window, button.rect().topLeft())
        rect = QRect(top_left, button.size())
        if not inside.contains(rect):
            bad.append(f"{tab_name}: {button.text() or button.toolTip() or type(button).__name__}"
                       f" at {rect.getRect()}")
    return bad


def _squashed(window, tab_name: str) -> list[str]:
    """Visible controls laid out smaller than their minimum size hint (a box squashed to a
    line, a button whose text is cut)."""
    from PySide6.QtWidgets import (QAbstractButton, QAbstractSpinBox, QComboBox, QGroupBox,
                                   QLineEdit, QTabBar)

    bad = []
    for kind in (QAbstractButton, QAbstractSpinBox, QComboBox, QGroupBox, QLineEdit, QTabBar):
        for widget in window.findChildren(kind):
            if (not widget.isVisible() or widget.width() <= 0
                    or isinstance(widget.parent(), (QComboBox, QAbstractSpinBox))):
                continue  # a combo box's or spin box's own line edit is sized by its box
            hint = widget.minimumSizeHint()
            if widget.height() < hint.height() - 1 or widget.width() < min(hint.width(), 60):
                name = (getattr(widget, "title", None) or getattr(widget, "text", None)
                        or (lambda: ""))() or widget.objectName() or type(widget).__name__
                bad.append(f"{tab_name}: {name} {widget.width()}x{widget.height()} < "
                           f"{hint.width()}x{hint.height()}")
    return bad


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("project", type=Path)
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--screen", default="1366x768")
    parser.add_argument("--scale", type=float, default=1.0)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="ui_screens"))
    _environment(args.screen, args.scale, tmp)

    from PySide6.QtCore import QSettings
    from PySide6.QtWidgets import QApplication

    app = QApplication(sys.argv[:1])
    QSettings.setPath(QSettings.Format.IniFormat, QSettings.Scope.UserScope, str(tmp))
    from echoquality_gui.common import settings
    from echoquality_gui.app import configure_application
    from echoquality_gui.window.main_window import MainWindow

    settings.set_rater("Screenshot Rater")
    configure_application(app)
    window = MainWindow()
    window.show()
    screen = window.screen().availableGeometry()
    window.setGeometry(screen)  # maximised on that screen
    window.open_project(args.project)
    checkpoint = sorted(args.run_dir.glob("best*.pt"))[0]
    window.session.set_model(checkpoint, run_dir=args.run_dir)

    def wait(condition, seconds: float) -> None:
        import time

        end = time.monotonic() + seconds
        while not condition() and time.monotonic() < end:
            app.processEvents()
            time.sleep(0.02)

    wait(lambda: window.player.frames_shown > 0, 30)
    tag = f"{args.screen}@{args.scale:g}x"
    args.out.mkdir(parents=True, exist_ok=True)
    from PySide6.QtWidgets import QScrollArea

    centre = window.findChild(QScrollArea, "centreScroll")
    outside, squashed, scrolled, shots, tabs = [], [], [], [], []
    for index in range(window.tabs.count()):
        name = window.tabs.tabText(index)
        tabs.append(name)
        window.tabs.setCurrentIndex(index)
        if name == "Review":
            wait(lambda: window.review.player.frames_shown > 0, 60)
        if name == "Runs":
            wait(lambda: "Reading" not in window.runs_panel.status_label.text(), 30)
        wait(lambda: False, 0.6)
        path = args.out / f"{tag}-{index}-{name.lower()}.png"
        window.grab().save(str(path))
        shots.append(str(path))
        outside += _outside(window, name)
        squashed += _squashed(window, name)
        if centre.verticalScrollBar().isVisible():  # the tab is taller than the window
            scrolled.append(f"{name}: {centre.widget().minimumSizeHint().height()} px > "
                            f"{centre.viewport().height()} px")
    print(json.dumps({"tabs": tabs, "screen": [screen.width(), screen.height()],
                      "window": [window.width(), window.height()], "outside": outside,
                      "squashed": squashed, "scrolled": scrolled,
                      "screenshots": shots, "minimum": [window.minimumSizeHint().width(),
                                                        window.minimumSizeHint().height()]}))
    window.close()
    window.deleteLater()
    app.processEvents()
    shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
