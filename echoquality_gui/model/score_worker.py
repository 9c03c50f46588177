"""Scoring clips with a model: a QThread that relays a core ``ModelProcess`` job (the core's
``score_clips`` in a child process) as signals: the model is loaded first (``loaded``), then
``progress(done, total)`` per clip; cancellable between clips (the batch being scored is
finished and, with an output CSV, written). A model call that hangs is killed after the
process's timeout and reported through ``failed``.

Neither torch nor the model is ever loaded in the app's process: the window keeps its GIL."""
from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import QObject, QThread, Signal

from echoquality_core.train.events import Progress
from echoquality_core.jobs.model_process import Cancelled, Done, Failed, Loaded, ModelProcess

if TYPE_CHECKING:
    import pandas as pd

BATCH_SIZE = 4  # small batches: progress and Cancel answer within a few clips


def scores_by_clip(table: pd.DataFrame) -> dict[str, float]:
    """{clip name: score} for the clips that were scored (unreadable ones have no score)."""
    scored = table.dropna(subset=["score"])
    return dict(zip(scored["video_path"], scored["score"].astype(float), strict=True))


class ScoreWorker(QThread):
    """Load ``model`` and score ``clips`` (a folder, or a list of (path, name) pairs; an empty
    list only loads the model) in ``process`` (a shared, warm one) or in a child of its own.

    Signals carry the worker's ``id`` so that a replaced worker's queued signals can be told
    apart. Exactly one of ``finished_scoring``, ``failed`` or ``cancelled`` ends a run.
    """

    loaded = Signal(int, float)  # id, threshold in use (given, else the checkpoint's)
    progress = Signal(int, int, int)  # id, done, total
    finished_scoring = Signal(int, object)  # id, result DataFrame (rows of the core's COLUMNS)
    failed = Signal(int, str)  # id, message (e.g. a bad weights file)
    cancelled = Signal(int)  # id

    _ids = 0

    def __init__(self, clips: str | os.PathLike | list[tuple[Path, str]],
                 model: str | os.PathLike, *, threshold: float | None = None,
                 out_csv: str | os.PathLike | None = None,
                 cache_dir: str | os.PathLike | None = None, trust_exported: bool = False,
                 process: ModelProcess | None = None, parent: QObject | None = None):
        super().__init__(parent)
        ScoreWorker._ids += 1
        self.id = ScoreWorker._ids
        self.clips = clips
        self.model_path = Path(model)
        self.trust_exported = trust_exported  # the user confirmed: a TorchScript file runs code
        self.threshold = threshold
        self.out_csv = Path(out_csv) if out_csv is not None else None
        self.cache_dir = cache_dir
        self._own_process = process is None  # else shared (warm), its owner closes it
        self.process = process or ModelProcess()
        self._job = self.process.score(clips, self.model_path, threshold=threshold,
                                       out_csv=self.out_csv, cache_dir=cache_dir,
                                       trust_exported=trust_exported, batch_size=BATCH_SIZE)

    def cancel(self) -> None:
        """Stop after the clip being scored (its batch is finished first)."""
        self._job.cancel()

    def run(self) -> None:
        loaded = False
        try:
            for message in self._job:
                if isinstance(message, Loaded):
                    loaded = True
                    self.loaded.emit(self.id, message.threshold)
                    self.progress.emit(self.id, 0, 0)
                elif isinstance(message, Progress):
                    self.progress.emit(self.id, message.done, message.total)
                elif isinstance(message, Done):
                    self.finished_scoring.emit(self.id, message.value)
                elif isinstance(message, Cancelled):
                    self.cancelled.emit(self.id)
                elif isinstance(message, Failed):
                    self.failed.emit(self.id, self._failure(message, loaded))
        except Exception as exc:  # noqa: BLE001 - reported, never a dead worker
            self.failed.emit(self.id, f"Scoring stopped: {type(exc).__name__}: {exc}")
        finally:
            if self._own_process:
                self.process.close()

    def _failure(self, failed: Failed, loaded: bool) -> str:
        if failed.stage == "load" or not loaded:
            return f"Cannot use the model {self.model_path.name}: {failed.message}"
        return f"Scoring stopped: {failed.message}"
