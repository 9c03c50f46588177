"""What the window remembers between sessions (QSettings): its size and place, the splitters,
the last tab, the clip table's column widths; the File ▸ Recent projects menu, which forgets
folders that no longer exist; and a window size that fits the screen at any display scaling."""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from PySide6.QtCore import QByteArray
from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QFrame,
    QHeaderView,
    QMainWindow,
    QMenu,
    QScrollArea,
    QSplitter,
    QTabWidget,
    QWidget,
)

from echoquality_gui.common import settings

PREFIX = "window"


def _splitters(window: QMainWindow) -> list[QSplitter]:
    """The window's splitters that have a name (the name is the settings key)."""
    return [s for s in window.findChildren(QSplitter) if s.objectName()]


def save_state(window: QMainWindow, tabs: QTabWidget, headers: dict[str, QHeaderView]) -> None:
    """Remember geometry, splitters, the current tab and the named headers' column widths."""
    store = settings.app_settings()
    store.setValue(f"{PREFIX}/geometry", window.saveGeometry())
    store.setValue(f"{PREFIX}/state", window.saveState())
    store.setValue(f"{PREFIX}/tab", tabs.tabText(tabs.currentIndex()))
    for splitter in _splitters(window):
        store.setValue(f"{PREFIX}/splitter/{splitter.objectName()}", splitter.saveState())
    for name, header in headers.items():
        store.setValue(f"{PREFIX}/header/{name}", header.saveState())
    store.sync()


def _bytes(value: object) -> QByteArray | None:
    if isinstance(value, QByteArray) and not value.isEmpty():
        return value
    if isinstance(value, (bytes, bytearray)) and value:
        return QByteArray(bytes(value))
    return None


def restore_state(window: QMainWindow, tabs: QTabWidget, headers: dict[str, QHeaderView]) -> bool:
    """Put back what ``save_state`` kept; False (window sized to the screen) the first time."""
    store = settings.app_settings()
    geometry = _bytes(store.value(f"{PREFIX}/geometry"))
    if geometry is None or not window.restoreGeometry(geometry):
        fit_to_screen(window)
    state = _bytes(store.value(f"{PREFIX}/state"))
    if state is not None:
        window.restoreState(state)
    for splitter in _splitters(window):
        value = _bytes(store.value(f"{PREFIX}/splitter/{splitter.objectName()}"))
        if value is not None:
            splitter.restoreState(value)
    for name, header in headers.items():
        value = _bytes(store.value(f"{PREFIX}/header/{name}"))
        if value is not None:
            header.restoreState(value)
    last = store.value(f"{PREFIX}/tab")
    for i in range(tabs.count()):
        if tabs.tabText(i) == last:
            tabs.setCurrentIndex(i)
    return geometry is not None


def fit_to_screen(window: QMainWindow, share: float = 0.9) -> None:
    """Size the window to ``share`` of the screen's free area (at most 1600 x 1000 logical
    pixels), centred: it fits at 100%, 150% and 200% scaling on a 1366 x 768 screen too."""
    screen = window.screen()
    if screen is None:
        return
    free = screen.availableGeometry()
    width = min(int(free.width() * share), 1600)
    height = min(int(free.height() * share), 1000)
    window.resize(width, height)
    window.move(free.x() + (free.width() - width) // 2, free.y() + (free.height() - height) // 2)


def scrollable_centre(window: QMainWindow, widget: QWidget) -> QScrollArea:
    """Make ``widget`` the window's centre inside a frameless scroll area: on a small screen
    at 150-200% scaling the window still fits (scroll bars appear instead of clipped or
    overlapping widgets); when there is room, ``widget`` fills the window as before."""
    area = QScrollArea()
    area.setObjectName("centreScroll")
    area.setFrameShape(QFrame.Shape.NoFrame)
    area.setWidgetResizable(True)
    area.setFocusPolicy(Qt.FocusPolicy.NoFocus)
    area.setWidget(widget)
    window.setCentralWidget(area)
    return area


def fill_recent_menu(menu: QMenu, open_project: Callable[[str], object]) -> list[str]:
    """Fill File ▸ Recent projects with the folders that still exist (the others are dropped
    from the settings too); returns them."""
    menu.clear()
    stored = settings.app_settings().value("recent_projects", []) or []
    stored = [stored] if isinstance(stored, str) else list(stored)
    existing = [p for p in stored if Path(p).is_dir()]
    if existing != stored:
        settings.app_settings().setValue("recent_projects", existing)
    for root in existing:
        action = menu.addAction(Path(root).name or root,
                                lambda _=False, r=root: open_project(r))
        action.setToolTip(root)
        action.setStatusTip(root)
    if not existing:
        menu.addAction("No recent projects").setEnabled(False)
    return existing
