"""Relays a training run's events (core ``TrainProcess``, a child process) as Qt signals.

Signals carry the core's event objects unchanged; connected to widgets of the UI thread they
are queued there. The window never imports torch for a run, nor shares a GIL with it.
"""
from __future__ import annotations

import os
from typing import Any

from PySide6.QtCore import QObject, QThread, Signal

from echoquality_core.train.events import (
    BatchEnd,
    CrossValEnd,
    EpochEnd,
    FoldStart,
    Progress,
    TrainEnd,
    TrainError,
)
from echoquality_core.jobs.train_process import TrainProcess, cpu_threads


def probe_devices() -> tuple[str, list[tuple[str, dict[str, Any]]]]:
    """(what "Auto" trains on, in words; the Device choices): imports torch, so the Train tab
    asks in a worker thread when it is first shown, never at start-up."""
    from echoquality_core.jobs.train_process import device_choices

    return describe_device("auto"), device_choices()


def describe_device(device: str = "auto", ranks: int = 1) -> str:
    """What a run with ``device`` (on ``ranks`` GPUs) would train on, in words: the GPU's name
    or "CPU"."""
    import torch

    from echoquality_core.model.network import resolve_device

    dev = resolve_device(device)
    if dev.type == "cuda":
        if ranks > 1:
            return f"{ranks} GPUs ({torch.cuda.get_device_name(dev)}), one process each"
        return f"GPU: {torch.cuda.get_device_name(dev)}"
    if dev.type == "mps":
        return "GPU: Apple (MPS)"
    return f"CPU, {cpu_threads()} of {os.cpu_count() or 1} cores"


class TrainWorker(QThread):
    """One training run of ``TrainConfig(**settings)`` in a child process (core
    ``TrainProcess``); this thread only relays its events as signals. ``stop()`` /
    ``cancel()`` at any time, even before the child has started."""

    device = Signal(str)  # what the run trains on, once known
    progress = Signal(object)  # Progress (clips being decoded and cached, testing)
    batch_end = Signal(object)  # BatchEnd
    epoch_end = Signal(object)  # EpochEnd
    error = Signal(object)  # TrainError (fatal or a warning)
    ended = Signal(object)  # TrainEnd (CrossValEnd for a cross-validation), always the last
    fold_start = Signal(object)  # FoldStart (cross-validation)

    def __init__(self, settings: dict[str, Any], parent: QObject | None = None):
        super().__init__(parent)
        self.settings = dict(settings)
        self.run_process = TrainProcess(self.settings)
        self._signals = {Progress: self.progress, BatchEnd: self.batch_end,
                         EpochEnd: self.epoch_end, TrainError: self.error, TrainEnd: self.ended,
                         CrossValEnd: self.ended, FoldStart: self.fold_start}

    def stop(self) -> None:
        """Finish now, keeping and testing the best model so far."""
        self.run_process.stop()

    def cancel(self) -> None:
        """Abandon the run; nothing is kept."""
        self.run_process.cancel()

    def run(self) -> None:
        try:
            self.run_process.start()
            try:
                self.device.emit(describe_device(self.settings.get("device", "auto"),
                                                 int(self.settings.get("ranks") or 1)))
            except (ValueError, RuntimeError) as exc:
                self.device.emit(f"unavailable ({exc})")
            for event in self.run_process.events():
                self._signals[type(event)].emit(event)
            self.run_process.join()
        except Exception as exc:  # noqa: BLE001 - shown in the Train tab, never a silent hang
            error = TrainError("error", f"The training could not run: {type(exc).__name__}: {exc}")
            self.error.emit(error)
            self.ended.emit(TrainEnd(None, {}, None, error=error))
