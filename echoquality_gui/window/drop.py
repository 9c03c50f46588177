"""Drag and drop onto the window: a folder opens as a project, a labels CSV opens with its
folder as the project."""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from PySide6.QtCore import QEvent, QMimeData, QObject
from PySide6.QtWidgets import QWidget


def dropped_project(mime: QMimeData) -> tuple[Path, Path | None] | None:
    """(project folder, labels CSV or None) for a drop of one local folder or ``.csv`` file;
    None for anything else."""
    if not mime.hasUrls() or len(mime.urls()) != 1 or not mime.urls()[0].isLocalFile():
        return None
    path = Path(mime.urls()[0].toLocalFile())
    if path.is_dir():
        return path, None
    if path.is_file() and path.suffix.lower() == ".csv":
        return path.parent, path
    return None


class DropOpener(QObject):
    """Event filter on the window: accepts a folder or CSV dragged over it and calls
    ``open_project(root, csv_or_None)`` when it is dropped."""

    def __init__(self, window: QWidget, open_project: Callable[[Path, Path | None], object]):
        super().__init__(window)
        self.open_project = open_project
        window.setAcceptDrops(True)
        window.installEventFilter(self)

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:  # noqa: N802 (Qt's name)
        kind = event.type()
        if kind in (QEvent.Type.DragEnter, QEvent.Type.DragMove):
            if dropped_project(event.mimeData()) is not None:
                event.acceptProposedAction()
                return True
            return False
        if kind == QEvent.Type.Drop:
            target = dropped_project(event.mimeData())
            if target is None:
                return False
            event.acceptProposedAction()
            self.open_project(*target)
            return True
        return False
