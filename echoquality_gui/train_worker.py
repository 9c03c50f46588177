"""Runs the core ``Trainer`` in a QThread and turns its events into Qt signals.

The worker imports torch and builds the ``TrainConfig`` in its own thread, so the window never
waits for them. Signals carry the core's event objects unchanged; connected to widgets of the UI
thread they are queued there.
"""
from __future__ import annotations

import os
import sys
import threading
from typing import Any

from PySide6.QtCore import QObject, QThread, Signal

from echoquality_core.events import BatchEnd, EpochEnd, Progress, TrainEnd, TrainError

SWITCH_INTERVAL = 0.001  # seconds; while training, the UI thread gets the GIL this often


def describe_device(device: str = "auto") -> str:
    """What a run with ``device`` would train on, in words: the GPU's name or "CPU"."""
    import torch

    from echoquality_core.model import resolve_device

    dev = resolve_device(device)
    if dev.type == "cuda":
        return f"GPU: {torch.cuda.get_device_name(dev)}"
    if dev.type == "mps":
        return "GPU: Apple (MPS)"
    return f"CPU, {cpu_threads()} of {os.cpu_count() or 1} cores"


def cpu_threads() -> int:
    """Threads a CPU training gets: all cores but one, which stays free for the window."""
    return max(1, (os.cpu_count() or 1) - 1)


class DeviceProbe(QThread):
    """Finds the training device in the background (importing torch takes seconds)."""

    found = Signal(str)

    def __init__(self, device: str = "auto", parent: QObject | None = None):
        super().__init__(parent)
        self.device = device

    def run(self) -> None:
        try:
            self.found.emit(describe_device(self.device))
        except (ValueError, RuntimeError) as exc:
            self.found.emit(f"unavailable ({exc})")


class TrainWorker(QThread):
    """One training run of ``TrainConfig(**settings)``; ``stop()`` / ``cancel()`` at any time."""

    device = Signal(str)  # what the run trains on, once known
    progress = Signal(object)  # Progress (clips being decoded and cached)
    batch_end = Signal(object)  # BatchEnd
    epoch_end = Signal(object)  # EpochEnd
    error = Signal(object)  # TrainError (fatal or a warning)
    ended = Signal(object)  # TrainEnd, always the last signal

    def __init__(self, settings: dict[str, Any], parent: QObject | None = None):
        super().__init__(parent)
        self.settings = dict(settings)
        self.trainer = None
        self._lock = threading.Lock()
        self._request: str | None = None  # "stop" | "cancel", asked before the trainer existed
        self._signals = {Progress: self.progress, BatchEnd: self.batch_end,
                         EpochEnd: self.epoch_end, TrainError: self.error, TrainEnd: self.ended}

    def stop(self) -> None:
        """Finish after the current batch, keeping and testing the best model so far."""
        self._ask("stop")

    def cancel(self) -> None:
        """Abandon the run after the current batch; nothing is kept."""
        self._ask("cancel")

    def _ask(self, what: str) -> None:
        with self._lock:
            if self._request != "cancel":
                self._request = what
            if self.trainer is not None:
                getattr(self.trainer, what)()

    def _forward(self, event: Any) -> None:
        self._signals[type(event)].emit(event)

    def run(self) -> None:
        try:
            from echoquality_core.train import TrainConfig, Trainer

            config = TrainConfig(**self.settings)
            self.device.emit(describe_device(config.device))
            trainer = Trainer(config, self._forward)
        except (ValueError, TypeError, RuntimeError, OSError) as exc:
            error = TrainError("settings", str(exc))
            self.error.emit(error)
            self.ended.emit(TrainEnd(None, {}, None, error=error))
            return
        with self._lock:
            self.trainer = trainer
            if self._request is not None:
                getattr(trainer, self._request)()
        import torch

        threads, interval = torch.get_num_threads(), sys.getswitchinterval()
        torch.set_num_threads(cpu_threads())
        sys.setswitchinterval(SWITCH_INTERVAL)
        try:
            trainer.run()
        finally:
            torch.set_num_threads(threads)
            sys.setswitchinterval(interval)
