"""Saving the labels CSV off the GUI thread, so that a label key never waits for the disk (a
100,000-row file takes 0.1-0.2 s to write). The label changes the table in memory at once; the
GUI thread then takes a snapshot of the table (milliseconds) and a ``Worker`` writes it
atomically under the CSV's lock (``LabelStore.write_snapshot``). One write runs at a time, in
order; labels made meanwhile go into the next write. ``saved`` fires only once a write that
holds every label made so far is on disk, so a kill right after loses only labels that were
never shown as saved. A file another program changed is merged in (GUI thread) and written again.
"""
from __future__ import annotations

import time

from PySide6.QtCore import QObject, QTimer, Signal

from echoquality_core.labels.project import Project
from echoquality_core.labels.store import LabelError, SaveSnapshot
from echoquality_gui.common.workers import Worker


class LabelSaver(QObject):
    """Writes a project's labels CSV in a background thread: ``request`` after each change."""

    saved = Signal(str)  # "HH:MM:SS": every label made so far is on disk
    merged = Signal()  # another program had changed the file: theirs were read in first
    failed = Signal(str)  # why the labels could not be written (they stay in memory)

    def __init__(self, parent: QObject | None = None):
        super().__init__(parent)
        self.project: Project | None = None
        self._worker: Worker | None = None
        self._snap: SaveSnapshot | None = None
        self._outcome: list = []  # the running write's result or exception (read by ``flush``)
        self._dirty = False

    @property
    def busy(self) -> bool:
        """Labels not yet on disk (being written, or waiting for the write in progress)."""
        return self._worker is not None or self._dirty

    def request(self, project: Project) -> None:
        """Save ``project``'s labels CSV soon (after the write in progress, if any)."""
        if project is not self.project:
            self.flush()
            self.project = project
        self._dirty = True
        QTimer.singleShot(0, self._next)  # once the label's own GUI work is done

    def _next(self) -> None:
        if self._worker is not None or not self._dirty or self.project is None:
            return
        self._dirty = False
        store = self.project.store
        self._snap = snap = store.snapshot()
        self._outcome = outcome = []
        worker = Worker(_write, store.write_snapshot, snap, outcome, parent=self)
        worker.connect(returned=lambda disk: self._done(worker, disk),
                       errored=lambda exc: self._failed(worker, exc))
        worker.finished.connect(worker.deleteLater)
        self._worker = worker
        worker.start()

    def _done(self, worker: Worker, disk) -> None:
        if worker is not self._worker:  # settled already by ``flush``
            return
        self._worker = None
        if disk is None:  # another program wrote the file since we read it: merge, write again
            try:
                self.project.reload_if_changed()
            except (OSError, LabelError) as exc:  # theirs cannot be read: ours stay in memory
                self._report(exc)
                return
            self.merged.emit()
            self._dirty = True
        else:
            self.project.store.saved(self._snap, disk)
            if not self._dirty:
                self.saved.emit(time.strftime("%H:%M:%S"))
        self._next()

    def _failed(self, worker: Worker, exc: BaseException) -> None:
        if worker is not self._worker:
            return
        self._worker = None
        self._report(exc)

    def _report(self, exc: BaseException) -> None:
        self.failed.emit(f"Labels NOT saved: {exc}" if isinstance(exc, (OSError, LabelError))
                         else f"Labels NOT saved ({type(exc).__name__}: {exc})")

    def flush(self) -> None:
        """Wait until every label made so far is on disk (before the project changes or the
        window closes; at most one write of the file)."""
        for _ in range(3):  # a write, then one with the labels made meanwhile, then a merge
            worker = self._worker
            if worker is not None:
                worker.wait()  # its queued signals are ignored once it is settled here
                result = self._outcome[0] if self._outcome else RuntimeError("no result")
                if isinstance(result, BaseException):
                    self._failed(worker, result)
                    return
                self._done(worker, result)
            if self._worker is None and not self._dirty:
                return
            if self._worker is None:
                self._next()


def _write(write, snap: SaveSnapshot, outcome: list):
    """``write(snap)`` in the worker thread, its result or exception also put in ``outcome``."""
    try:
        outcome.append(write(snap))
    except Exception as exc:
        outcome.append(exc)
        raise
    return outcome[0]
