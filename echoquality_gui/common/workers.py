"""One way to run work off the GUI thread (napari's / superqt's ``thread_worker`` idea, in a
few lines of our own): a function or generator runs in a ``QThread``; a generator's yields
arrive as ``yielded``, the return value as ``returned``, an exception as ``errored``.

``abort()`` asks a generator to stop at its next yield (yield ``None`` as a heartbeat where
there is nothing to report: it is not emitted). Results of an aborted worker are dropped where
they are delivered, in the GUI thread, so a replaced run can never report after its successor
started (no id bookkeeping needed); ``Latest`` does this for work that a newer request replaces.
``finished`` (QThread's) always ends a run.

A core function that reports through a callback rather than by yielding gets
``worker.yielded.emit`` as that callback, and ``worker.cancelled`` as its stop test: ``cancel()``
asks it to stop early while, unlike ``abort()``, its outcome is still delivered.

``ProcessRelay`` is the Worker for a core job that runs in a child process (a ``ModelProcess``
job, a ``TrainProcess``'s events): this thread only relays the job's messages, ``on(kind,
handler)`` routes them by type, and ``cancel()`` / ``abort()`` reach the job itself. Scoring,
GradCAM (newest wins: ``Latest``) and training all run this way.

``child_worker`` is the Worker for CPU-bound pure Python (a 1000-resample bootstrap): in a
thread of the window's process it holds the GIL for seconds, and every paint event, which calls
into Python (table models, pyqtgraph), then waits for it (a run's verdict and the Review tab's
CIs stalled the window 130–200 ms); so the core function runs in a spawned child and this
thread only waits. ``abort()`` kills the child.
"""
from __future__ import annotations

import functools
import inspect
import logging
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from PySide6.QtCore import QObject, QThread, Signal

from echoquality_core.jobs.child import call_in_child

log = logging.getLogger(__name__)


class Worker(QThread):
    """Runs ``func(*args, **kwargs)`` in its own thread once ``start()`` is called."""

    yielded = Signal(object)
    returned = Signal(object)
    errored = Signal(object)  # the exception

    def __init__(self, func: Callable[..., Any], *args: Any, parent: QObject | None = None,
                 **kwargs: Any):
        super().__init__(parent)
        self._call = (func, args, kwargs)
        self._aborted = False
        self._cancel = threading.Event()

    def abort(self) -> None:
        """Stop at the next yield and drop every result not yet delivered (GUI thread)."""
        self._aborted = True
        self._cancel.set()

    def cancel(self) -> None:
        """Ask the work to stop early (it polls ``cancelled()``); its outcome still arrives."""
        self._cancel.set()

    def cancelled(self) -> bool:
        """Whether ``cancel()`` or ``abort()`` was called (any thread)."""
        return self._cancel.is_set()

    @property
    def aborted(self) -> bool:
        return self._aborted

    def connect(self, *, yielded: Callable[[Any], None] | None = None,
                returned: Callable[[Any], None] | None = None,
                errored: Callable[[BaseException], None] | None = None) -> Worker:
        """Connect handlers that are skipped once the worker was aborted; returns self."""
        for signal, handler in ((self.yielded, yielded), (self.returned, returned),
                                (self.errored, errored)):
            if handler is not None:
                signal.connect(lambda value, handler=handler: None if self._aborted
                               else handler(value))
        return self

    def run(self) -> None:
        func, args, kwargs = self._call
        try:
            result = func(*args, **kwargs)
            if inspect.isgenerator(result):
                result = self._drain(result)
        except Exception as exc:  # noqa: BLE001 - every failure goes to the errored handler
            if not isinstance(exc, (OSError, ValueError, RuntimeError)):
                log.exception("unexpected error in a background worker")
            self.errored.emit(exc)
            return
        if not self._aborted:
            self.returned.emit(result)

    def _drain(self, generator) -> Any:
        while True:
            if self._aborted:
                generator.close()
                return None
            try:
                value = next(generator)
            except StopIteration as stop:
                return stop.value
            if value is not None:
                self.yielded.emit(value)


class ProcessRelay(Worker):
    """Relays the messages of a core job running in a child process, in order, as ``yielded``
    (see the module docstring). ``cancel`` is the job's own cancel (called by ``cancel()`` and
    ``abort()``); ``close`` runs in this thread once the job is over or aborted (e.g. to close
    a child process of the relay's own). Connect handlers with ``on`` or a signal's own
    ``connect``: on this grandchild of QThread, PySide finds QObject's ``connect`` first."""

    def __init__(self, messages: Iterable[Any], *, cancel: Callable[[], None] | None = None,
                 close: Callable[[], None] | None = None, parent: QObject | None = None):
        super().__init__(_relay, messages, close, parent=parent)
        self._cancel_job = cancel

    def on(self, kind: type | tuple[type, ...], handler: Callable[[Any], None]) -> ProcessRelay:
        """Call ``handler(message)`` (GUI thread) for each message of type ``kind``, unless the
        relay was aborted; returns self."""
        self.yielded.connect(lambda message: None if self.aborted or not isinstance(message, kind)
                             else handler(message))
        return self

    def cancel(self) -> None:
        """Ask the job to stop; its last message still arrives."""
        super().cancel()
        if self._cancel_job is not None:
            self._cancel_job()

    def abort(self) -> None:
        """Cancel the job and drop every message not yet delivered."""
        super().abort()
        if self._cancel_job is not None:
            self._cancel_job()


def _relay(messages: Iterable[Any], close: Callable[[], None] | None) -> Iterator[Any]:
    try:
        yield from messages
    finally:
        if close is not None:
            close()


def child_worker(func: Callable[..., Any], *args: Any, name: str,
                 parent: QObject | None = None, timeout: float = 300.0,
                 progress: Callable[..., Any] | None = None, **kwargs: Any) -> Worker:
    """A Worker (not started) whose result is ``func(*args, **kwargs)`` computed in a spawned
    child (``func``: a module-level core function; arguments and result picklable); its errors
    arrive as RuntimeError with the child's message. ``abort()``/``cancel()`` kill the child.
    With ``progress``, ``func`` gets a ``progress`` callback whose calls arrive here as
    ``progress(*values)`` (in the worker's thread: emit ``yielded`` from it)."""
    call = functools.partial(func, **kwargs) if kwargs else func
    worker = Worker(lambda: call_in_child(call, *args, name=name, cancelled=worker.cancelled,
                                          timeout=timeout, progress=progress), parent=parent)
    return worker


def retire(worker: QThread | None) -> None:
    """Abort (if it can be), wait for and delete a worker; None is ignored."""
    if worker is None:
        return
    if isinstance(worker, Worker):
        worker.abort()
    worker.wait()
    worker.deleteLater()


class Latest:
    """The newest of a series of workers that replace each other (a recomputation per user
    change): ``start`` aborts the one before, so only the newest result is delivered; each
    worker is deleted once finished; ``wait()`` before the owner goes away."""

    def __init__(self) -> None:
        self.worker: Worker | None = None
        self._running: list[Worker] = []

    def start(self, worker: Worker) -> Worker:
        self.abort()
        self.worker = worker
        self._running.append(worker)
        worker.finished.connect(lambda: self._finished(worker))
        worker.start()
        return worker

    def abort(self) -> None:
        """Drop the newest worker's result too (nothing to show any more)."""
        if self.worker is not None:
            self.worker.abort()

    def _finished(self, worker: Worker) -> None:
        if worker in self._running:
            self._running.remove(worker)
            worker.deleteLater()
        if self.worker is worker:
            self.worker = None

    def wait(self) -> None:
        """Wait for every worker still running."""
        for worker in list(self._running):
            worker.wait()
