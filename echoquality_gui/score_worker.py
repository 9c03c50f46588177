"""Scoring clips with a model in a QThread around the core's ``score_clips``: the model is
loaded first (``loaded``), then ``progress(done, total)`` per clip; cancellable between clips
(the batch being scored is finished and, with an output CSV, written).

The core's model modules (torch) are imported in the worker thread when a run starts, so the
window opens without loading torch."""
from __future__ import annotations

import logging
import os
from pathlib import Path

from typing import TYPE_CHECKING

from PySide6.QtCore import QObject, QThread, Signal

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)

BATCH_SIZE = 4  # small batches: progress and Cancel answer within a few clips


class _Cancelled(Exception):
    """Raised from the progress callback to leave ``score_clips`` between batches."""


def scores_by_clip(table: pd.DataFrame) -> dict[str, float]:
    """{clip name: score} for the clips that were scored (unreadable ones have no score)."""
    scored = table.dropna(subset=["score"])
    return dict(zip(scored["video_path"], scored["score"].astype(float), strict=True))


class ScoreWorker(QThread):
    """Load ``model`` and score ``clips`` (a folder, or a list of (path, name) pairs; an empty
    list only loads the model).

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
                 cache_dir: str | os.PathLike | None = None, parent: QObject | None = None):
        super().__init__(parent)
        ScoreWorker._ids += 1
        self.id = ScoreWorker._ids
        self.clips = clips
        self.model_path = Path(model)
        self.threshold = threshold
        self.out_csv = Path(out_csv) if out_csv is not None else None
        self.cache_dir = cache_dir
        self._cancelled = False

    def cancel(self) -> None:
        """Stop after the clip being scored (its batch is finished first)."""
        self._cancelled = True

    def _progress(self, done: int, total: int, _name: str) -> None:
        self.progress.emit(self.id, done, total)
        if self._cancelled:
            raise _Cancelled

    def run(self) -> None:
        import pandas as pd

        from echoquality_core.checkpoint import (
            load_scoring_model,
            params_from_info,
            threshold_from_info,
        )
        from echoquality_core.scoring import COLUMNS, ClipInput, score_clips

        try:
            net, info = load_scoring_model(self.model_path)
            threshold = threshold_from_info(info, self.threshold)
        except Exception as exc:  # any file the user picks: say why it cannot be used
            if not isinstance(exc, (OSError, ValueError, RuntimeError)):
                log.exception("unexpected error loading %s", self.model_path.name)
            self.failed.emit(self.id, f"Cannot use the model {self.model_path.name}: {exc}")
            return
        if self._cancelled:
            self.cancelled.emit(self.id)
            return
        self.loaded.emit(self.id, threshold)
        self.progress.emit(self.id, 0, 0)
        if isinstance(self.clips, list) and not self.clips:  # only check that the model loads
            self.finished_scoring.emit(self.id, pd.DataFrame(columns=list(COLUMNS)))
            return
        clips = ([ClipInput(Path(p), name) for p, name in self.clips]
                 if isinstance(self.clips, list) else self.clips)
        try:
            table = score_clips(clips, net, out_csv=self.out_csv, threshold=threshold,
                                batch_size=BATCH_SIZE, params=params_from_info(info),
                                cache_dir=self.cache_dir, progress=self._progress)
        except _Cancelled:
            self.cancelled.emit(self.id)
            return
        except Exception as exc:  # reported, never a dead worker
            if not isinstance(exc, (OSError, ValueError, RuntimeError)):
                log.exception("unexpected error while scoring")
            self.failed.emit(self.id, f"Scoring stopped: {exc}")
            return
        table.attrs["threshold"] = threshold
        self.finished_scoring.emit(self.id, table)
