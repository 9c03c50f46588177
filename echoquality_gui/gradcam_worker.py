"""GradCAM off the GUI thread: a worker that computes the heat maps of one clip at a time and
keeps only the NEWEST request (selecting clip after clip never queues work up). The core's
model modules (torch) are imported in the worker thread, on the first request."""
from __future__ import annotations

import threading
import warnings
from dataclasses import dataclass
from pathlib import Path

from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QThread, Signal

from echoquality_core.heatmap import ClipExplanation
from echoquality_core.preprocess import PreprocessParams

if TYPE_CHECKING:
    from torch import nn


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

    def __init__(self, parent=None):
        super().__init__(parent)
        self._cond = threading.Condition()
        self._want: _Request | None = None
        self._stopped = False
        self._ids = 0
        self._model: tuple[Path, float, Any, PreprocessParams] | None = None

    def request(self, model_path: str | Path, clip_path: str | Path, explain: str) -> int:
        """Ask for the maps of ``clip_path`` explaining ``explain`` ("good" or "poor");
        replaces any request not yet started. Returns the request id."""
        with self._cond:
            self._ids += 1
            self._want = _Request(self._ids, Path(model_path), Path(clip_path), explain)
            self._cond.notify()
            return self._ids

    def cancel(self) -> None:
        """Forget the request not yet started (a running one finishes; its id is stale)."""
        with self._cond:
            self._ids += 1
            self._want = None

    def stop(self) -> None:
        """End the thread (after the clip being computed, if any)."""
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
                self._emit(job.id, self.failed, f"GradCAM failed for {job.clip_path.name}: {text}")
            else:
                self._emit(job.id, self.ready, result)

    def _emit(self, job_id: int, signal, value) -> None:
        with self._cond:
            stale = job_id != self._ids or self._stopped
        if not stale:
            signal.emit(job_id, value)

    def _load(self, path: Path) -> tuple[nn.Module, PreprocessParams]:
        from echoquality_core.checkpoint import (
            load_scoring_model,
            params_from_info,
            require_checkpoint,
        )

        stamp = path.stat().st_mtime
        if self._model is None or self._model[:2] != (path, stamp):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)
                net, info = load_scoring_model(path)
            require_checkpoint(net)
            self._model = (path, stamp, net, params_from_info(info))
        return self._model[2], self._model[3]

    def _compute(self, job: _Request) -> ClipExplanation:
        from echoquality_core.gradcam import explain_clip

        net, params = self._load(job.model_path)
        return explain_clip(net, job.clip_path, params, job.explain)
