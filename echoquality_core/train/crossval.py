"""Patient-grouped, label-stratified k-fold cross-validation: an out-of-fold score per clip.

``CrossValidator(config, n_folds=5, repeats=1, callback).run()`` decodes and caches every
labelled clip once, assigns patients to folds (:func:`make_folds`), and trains one normal
:class:`~echoquality_core.train.trainer.Trainer` run per fold (its training part split again by patient
into train/val; the held-out fold is the run's test split), each tracked as an MLflow run nested
under one parent run. The held-out scores of all folds make the out-of-fold table
``<project>/crossval/<run>/oof_scores.csv``: one row per usable labelled clip (``video_path,
label, score, fold, threshold, group, n_scores``; ``group`` is an anonymous patient number, the
score the mean over repeats). Metrics with patient-level bootstrap CIs (``stats.py``) go to
``summary.json`` and the parent run.

Events: the Trainer's own (Progress, BatchEnd, EpochEnd, TrainError) with a
:class:`~echoquality_core.train.events.FoldStart` before each fold, and a
:class:`~echoquality_core.train.events.CrossValEnd` (a TrainEnd) last. ``stop()`` ends the current fold
keeping its model and scores and starts no further fold; ``cancel()`` throws everything away.
"""
from __future__ import annotations

import dataclasses
import logging
import shutil
import threading
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any
from uuid import uuid4

from echoquality_core.labels.folder import ProjectFolder
from echoquality_core.train.crossval_steps import run_crossval
from echoquality_core.train.events import CrossValEnd, FoldStart, Progress, TrainEnd, TrainError

log = logging.getLogger(__name__)


class CrossValidator:
    """k-fold cross-validation of ``config`` (a TrainConfig); see the module docstring."""

    def __init__(self, config: Any, n_folds: int = 5, repeats: int = 1,
                 callback: Callable[[Any], None] | None = None, *, val_fraction: float = 0.2):
        if repeats < 1:
            raise ValueError(f"repeats must be at least 1, got {repeats}")
        if not 0 < val_fraction < 1:
            raise ValueError(f"val_fraction must lie between 0 and 1, got {val_fraction:g}")
        self.config = config
        self.n_folds, self.repeats, self.val_fraction = int(n_folds), int(repeats), val_fraction
        self.callback = callback
        self.csv_path = Path(config.annotations_csv).resolve()
        self.project = ProjectFolder.of_labels(self.csv_path)
        self.project_dir = self.project.path
        self.run_name = config.run_name or f"cv-{datetime.now():%Y%m%d-%H%M%S}-{uuid4().hex[:4]}"
        self.run_dir = self.project.crossval / self.run_name
        self._stop, self._cancel = threading.Event(), threading.Event()
        self._trainer: Any = None
        self._lock = threading.Lock()

    # --- control -------------------------------------------------------------------------
    def stop(self) -> None:
        """End the current fold now, keeping its model and scores; start no further fold."""
        self._stop.set()
        with self._lock:
            if self._trainer is not None:
                self._trainer.stop()

    def cancel(self) -> None:
        """Abandon the cross-validation: its folder is deleted, the MLflow runs KILLED."""
        self._cancel.set()
        with self._lock:
            if self._trainer is not None:
                self._trainer.cancel()

    def _emit(self, event: Any) -> None:
        if self.callback is not None:
            self.callback(event)

    # --- run -----------------------------------------------------------------------------
    def run(self) -> CrossValEnd:
        """Cross-validate; returns (and emits, as the last event) the CrossValEnd."""
        try:
            end = run_crossval(self)
        except ValueError as exc:  # FoldError, or the labels CSV cannot be used (DataError)
            error = TrainError("data", f"Cross-validation: {exc}")
            self._emit(error)
            end = CrossValEnd(None, {}, None, error=error, n_folds=self.n_folds)
        except Exception as exc:  # reported like a training error, never a silent thread death
            log.exception("cross-validation failed")
            error = TrainError("error", f"{type(exc).__name__}: {exc}")
            self._emit(error)
            end = CrossValEnd(None, {}, None, error=error, n_folds=self.n_folds)
        if end.cancelled:
            shutil.rmtree(self.run_dir, ignore_errors=True)
        self._emit(end)
        return end

    def fold_config(self, split_csv: Path, name: str, parent_run_id: str | None) -> Any:
        """The TrainConfig of one fold: the given split, nested under the parent run, models
        under this cross-validation's folder, the shared clip cache."""
        return dataclasses.replace(
            self.config, split_csv=str(split_csv), parent_run_id=parent_run_id, run_name=name,
            save_dir=str(self.run_dir / "folds"), annotations_csv=str(self.csv_path),
            cache_dir=str(self.cache_dir))

    @property
    def cache_dir(self) -> Path:
        if self.config.cache_dir:
            return self.project.resolve(self.config.cache_dir)
        return self.project.cache

    def train_fold(self, config: Any) -> TrainEnd:
        """One fold's Trainer run; its events are forwarded, its TrainEnd returned."""
        from echoquality_core.train.trainer import Trainer

        def forward(event: Any) -> None:
            if not isinstance(event, TrainEnd):
                self._emit(event)

        trainer = Trainer(config, forward)
        with self._lock:
            self._trainer = trainer
            if self._cancel.is_set():
                trainer.cancel()
            elif self._stop.is_set():
                trainer.stop()
        try:
            return trainer.run()
        finally:
            with self._lock:
                self._trainer = None

    def progress(self, done: int, total: int, message: str) -> None:
        self._emit(Progress("prepare", done, total, message))

    def fold_started(self, fold: int, repeat: int, sizes: dict[str, int]) -> None:
        self._emit(FoldStart(fold, self.n_folds, repeat, self.repeats, sizes))
