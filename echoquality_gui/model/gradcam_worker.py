"""GradCAM off the GUI thread and out of the app's process: a worker thread that relays one
clip at a time to a warm child process (core ``ModelProcess``, the session's, shared by the
views: torch imported and the model loaded once, on the first request) and keeps only the
NEWEST request (selecting clip after clip never queues work up). A forward that hangs is
killed after the process's timeout and reported through ``failed``."""
from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

from PySide6.QtCore import QThread, Signal

from echoquality_core.scoring.heatmap import ClipExplanation
from echoquality_core.jobs.model_process import Done, Failed, ModelProcess


@dataclass(frozen=True)
class _Request:
    id: int
    model_path: Path
    clip_path: Path
    explain: str


class GradcamWorker(QThread):
    """Computes GradCAM maps for the clip asked last. Call ``request`` from the GUI thread;
    results come back as ``ready(id, ClipExplanation)`` or ``failed(id, reason)``."""

    ready = Signal(int, object)
    failed = Signal(int, str)

    def __init__(self, process: ModelProcess, parent=None):
        super().__init__(parent)
        self._cond = threading.Condition()
        self._want: _Request | None = None
        self._stopped = False
        self._ids = 0
        self.process = process  # its owner closes it

    def request(self, model_path: str | Path, clip_path: str | Path, explain: str) -> int:
        """Ask for the maps of ``clip_path`` explaining ``explain`` ("good" or "poor");
        replaces any request not yet started. Returns the request id."""
        with self._cond:
            self._ids += 1
            self._want = _Request(self._ids, Path(model_path), Path(clip_path), explain)
            self._cond.notify()
            return self._ids

    def warm(self, model_path: str | Path) -> None:
        """Start the child and load ``model_path`` now, unless a request is waiting, so the
        first GradCAM does not pay for starting torch (seconds)."""
        with self._cond:
            if self._want is None:
                self._ids += 1
                self._want = _Request(self._ids, Path(model_path), Path(), "")
                self._cond.notify()

    def cancel(self) -> None:
        """Forget the request not yet started (a running one finishes; its id is stale)."""
        with self._cond:
            self._ids += 1
            self._want = None

    def stop(self) -> None:
        """End the thread (close the process first, or a clip being computed is waited for)."""
        with self._cond:
            self._stopped = True
            self._want = None
            self._cond.notify()
        self.wait()

    def run(self) -> None:
        while True:
            with self._cond:
                while self._want is None and not self._stopped:
                    self._cond.wait()
                if self._stopped:
                    return
                job, self._want = self._want, None
            try:
                result = self._compute(job)
            except Exception as exc:  # noqa: BLE001 - any failure is shown to the user
                text = str(exc).strip() or type(exc).__name__
                if job.explain:  # a failed warm-up is told by the request that needs the model
                    self._emit(job.id, self.failed,
                               f"GradCAM failed for {job.clip_path.name}: {text}")
            else:
                self._emit(job.id, self.ready, result)

    def _emit(self, job_id: int, signal, value) -> None:
        with self._cond:
            stale = job_id != self._ids or self._stopped or value is None  # None: warmed up
        if not stale:
            signal.emit(job_id, value)

    def _compute(self, job: _Request) -> ClipExplanation | None:
        result = None
        work = (self.process.explain(job.model_path, job.clip_path, job.explain) if job.explain
                else self.process.load(job.model_path))
        for message in work:
            result = message
        if isinstance(result, Done):
            return result.value
        raise RuntimeError(result.message if isinstance(result, Failed) else "stopped")
