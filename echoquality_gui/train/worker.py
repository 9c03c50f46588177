"""Relays a training run's events (core ``TrainProcess``, a child process) as Qt signals: a
``ProcessRelay`` whose messages are routed to one signal per event type.

Signals carry the core's event objects unchanged; connected to widgets of the UI thread they
are queued there. The window never imports torch for a run (the child says what it trains on:
``RunDevice``), nor shares a GIL with it.
"""
from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from PySide6.QtCore import QObject, Signal

from echoquality_core.jobs.devices import RunDevice
from echoquality_core.jobs.train_process import TrainProcess
from echoquality_core.train.events import (
    BatchEnd,
    EpochEnd,
    FoldStart,
    Progress,
    TrainEnd,
    TrainError,
)
from echoquality_gui.common.workers import ProcessRelay

END_WAIT_MS = 1500  # closing the app: a cancelled run ends by itself within this, or is ended


class TrainWorker(ProcessRelay):
    """One training run of ``TrainConfig(**settings)`` in a child process (core
    ``TrainProcess``); this thread only relays its events as signals. ``stop()`` /
    ``cancel()`` at any time, even before the child has started; ``abort()`` cancels the run
    and drops its events."""

    device = Signal(str)  # what the run trains on, once known
    progress = Signal(object)  # Progress (clips being decoded and cached, testing)
    batch_end = Signal(object)  # BatchEnd
    epoch_end = Signal(object)  # EpochEnd
    error = Signal(object)  # TrainError (fatal or a warning)
    ended = Signal(object)  # TrainEnd (CrossValEnd for a cross-validation), always the last
    fold_start = Signal(object)  # FoldStart (cross-validation)

    def __init__(self, settings: dict[str, Any], parent: QObject | None = None):
        self.settings = dict(settings)
        self.run_process = TrainProcess(self.settings)
        super().__init__(_events(self.run_process), cancel=self.run_process.cancel,
                         parent=parent)
        self.on(RunDevice, lambda found: self.device.emit(found.text))
        for kind, signal in ((Progress, self.progress), (BatchEnd, self.batch_end),
                             (EpochEnd, self.epoch_end), (TrainError, self.error),
                             (TrainEnd, self.ended), (FoldStart, self.fold_start)):
            self.on(kind, signal.emit)

    def stop(self) -> None:
        """Finish now, keeping and testing the best model so far."""
        self.run_process.stop()

    def end(self, wait_ms: int = END_WAIT_MS) -> None:
        """Wait for the run to end (a cancelled one), ending its process if it takes longer
        than ``wait_ms``; then this thread ends too."""
        if not self.wait(wait_ms):
            self.run_process.kill()
            self.wait()


def _events(run: TrainProcess) -> Iterator[Any]:
    """Start the run and yield its events; a failure to run at all ends as a TrainEnd."""
    try:
        run.start()
        yield from run.events()
        run.join()
    except Exception as exc:  # noqa: BLE001 - shown in the Train tab, never a silent hang
        error = TrainError("error", f"The training could not run: {type(exc).__name__}: {exc}")
        yield error
        yield TrainEnd(None, {}, None, error=error)
