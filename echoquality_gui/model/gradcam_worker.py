"""GradCAM off the GUI thread and out of the app's process: each request is a ``ProcessRelay``
of a job in a warm child process (core ``ModelProcess``, the session's, shared by the views:
torch imported and the model loaded once, on the first request), and only the NEWEST request
counts (``Latest``: selecting clip after clip never queues work up, and a replaced request
delivers nothing). A forward that hangs is killed after the process's timeout and reported
through ``failed``."""
from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QObject, Signal

from echoquality_core.jobs.model_process import Done, Failed, ModelProcess
from echoquality_gui.common.workers import Latest, ProcessRelay


class GradcamWorker(QObject):
    """Computes GradCAM maps for the clip asked last. Call ``request`` from the GUI thread;
    results come back as ``ready(id, ClipExplanation)`` or ``failed(id, reason)``."""

    ready = Signal(int, object)
    failed = Signal(int, str)

    def __init__(self, process: ModelProcess, parent: QObject | None = None):
        super().__init__(parent)
        self._latest = Latest()
        self._ids = 0
        self.process = process  # its owner closes it

    def request(self, model_path: str | Path, clip_path: str | Path, explain: str) -> int:
        """Ask for the maps of ``clip_path`` explaining ``explain`` ("good" or "poor");
        replaces any earlier request. Returns the request id."""
        self._ids += 1
        request, name = self._ids, Path(clip_path).name
        job = self.process.explain(model_path, clip_path, explain)

        def fail(text: str) -> None:
            self.failed.emit(request, f"GradCAM failed for {name}: {text}")

        relay = ProcessRelay(job, cancel=job.cancel, parent=self)
        relay.on(Done, lambda done: self.ready.emit(request, done.value))
        relay.on(Failed, lambda failed: fail(failed.message))
        relay.errored.connect(lambda exc: relay.aborted or fail(str(exc).strip()
                                                                or type(exc).__name__))
        self._latest.start(relay)
        return request

    def warm(self, model_path: str | Path) -> None:
        """Start the child and load ``model_path`` now, unless a request is running, so the
        first GradCAM does not pay for starting torch (seconds). A failed warm-up is told by
        the request that needs the model."""
        if self._latest.worker is None:
            job = self.process.load(model_path)
            self._latest.start(ProcessRelay(job, cancel=job.cancel, parent=self))

    def cancel(self) -> None:
        """Forget the newest request (a running clip is finished in the child; nothing comes)."""
        self._latest.abort()

    def stop(self) -> None:
        """Drop every request and wait for their threads (close the process first, or a clip
        being computed is waited for)."""
        self._latest.abort()
        self._latest.wait()
