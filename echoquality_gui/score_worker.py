"""Scoring clips with a model: a QThread relaying a child process (core ``ScoreProcess``) that
loads the model (``loaded``) and runs ``score_clips`` (``progress(done, total)`` per clip);
cancellable between clips (the batch being scored is finished and, with an output CSV,
written). Torch runs only in the child, so the window never waits on its GIL."""
from __future__ import annotations

import logging
import os
from pathlib import Path

import pandas as pd
from PySide6.QtCore import QObject, QThread, Signal

from echoquality_core.score_process import ScoreProcess
from echoquality_core.scoring import ClipInput

log = logging.getLogger(__name__)

BATCH_SIZE = 4  # small batches: progress and Cancel answer within a few clips


def scores_by_clip(table: pd.DataFrame) -> dict[str, float]:
    """{clip name: score} for the clips that were scored (unreadable ones have no score)."""
    scored = table.dropna(subset=["score"])
    return dict(zip(scored["video_path"], scored["score"].astype(float), strict=True))


class ScoreWorker(QThread):
    """Load ``model`` and score ``clips`` (folders, files or ClipInputs, as the core takes;
    an empty list only loads the model).

    Signals carry the worker's ``id`` so that a replaced worker's queued signals can be told
    apart. Exactly one of ``finished_scoring``, ``failed`` or ``cancelled`` ends a run.
    """

    loaded = Signal(int, float)  # id, threshold in use (given, else the checkpoint's)
    progress = Signal(int, int, int)  # id, done, total
    finished_scoring = Signal(int, object)  # id, result DataFrame (rows of the core's COLUMNS)
    failed = Signal(int, str)  # id, message (e.g. a bad weights file)
    cancelled = Signal(int)  # id

    _ids = 0

    def __init__(self, clips: str | os.PathLike | list[str | os.PathLike | ClipInput],
                 model: str | os.PathLike, *, threshold: float | None = None,
                 out_csv: str | os.PathLike | None = None,
                 cache_dir: str | os.PathLike | None = None, trust_exported: bool = False,
                 parent: QObject | None = None):
        super().__init__(parent)
        ScoreWorker._ids += 1
        self.id = ScoreWorker._ids
        self.clips = clips
        self.model_path = Path(model)
        self.trust_exported = trust_exported  # the user confirmed: a TorchScript file runs code
        self.threshold = threshold
        self.out_csv = Path(out_csv) if out_csv is not None else None
        self.cache_dir = cache_dir
        self._cancelled = False
        self._process: ScoreProcess | None = None

    def cancel(self) -> None:
        """Stop after the clip being scored (its batch is finished first)."""
        self._cancelled = True
        if self._process is not None:
            self._process.cancel()

    def run(self) -> None:
        """Relay the child process's events (the model is loaded and clips scored there: no
        torch in this process, no GIL shared with the window)."""
        self._process = ScoreProcess(self.clips, self.model_path, threshold=self.threshold,
                                     out_csv=self.out_csv, cache_dir=self.cache_dir,
                                     batch_size=BATCH_SIZE, trust_exported=self.trust_exported)
        if self._cancelled:
            self._process.cancel()
        try:
            self._process.start()
            for event in self._process.events():
                self._relay(event)
        except Exception as exc:  # noqa: BLE001 - shown, never a silent hang
            self.failed.emit(self.id, f"Scoring could not run: {type(exc).__name__}: {exc}")

    def _relay(self, event: tuple) -> None:
        kind = event[0]
        if kind == "loaded":
            self.loaded.emit(self.id, event[1])
            self.progress.emit(self.id, 0, 0)
        elif kind == "progress":
            self.progress.emit(self.id, event[1], event[2])
        elif kind == "done":
            self.finished_scoring.emit(self.id, event[1])
        elif kind == "failed":
            self.failed.emit(self.id, event[1])
        else:
            self.cancelled.emit(self.id)
