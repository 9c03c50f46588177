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

import csv
import dataclasses
import json
import logging
import shutil
import threading
from collections import defaultdict
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any
from uuid import uuid4

import numpy as np

from echoquality_core.train.events import CrossValEnd, FoldStart, Progress, TrainEnd, TrainError

log = logging.getLogger(__name__)

OOF_FILE = "oof_scores.csv"
OOF_COLUMNS = ("video_path", "label", "score", "fold", "threshold", "group", "n_scores")
CROSSVAL_DIR = "crossval"


class FoldError(ValueError):
    """The labelled clips cannot be cut into the folds asked for (message says why)."""


def _group(record: dict) -> str:
    return str(record.get("patient_key") or record.get("study_key") or f"path:{record['path']}")


def make_folds(records: Sequence[dict], n_folds: int,
               seed: int = 42) -> tuple[list[list[int]], str]:
    """Test indices of each fold and the method used: no patient in two folds, both classes
    (label >= 0.5 is good) in every fold. scikit-learn's shuffled ``StratifiedGroupKFold`` when
    it gives both classes everywhere, else a per-class quota assignment of patients. Raises
    FoldError when fewer patients than folds have clips of a class."""
    if n_folds < 2:
        raise FoldError(f"cross-validation needs at least 2 folds, got {n_folds}")
    y = np.array([float(r["label"]) >= 0.5 for r in records])
    groups = [_group(r) for r in records]
    for cls, name in ((False, "poor"), (True, "good")):
        n = len({g for g, c in zip(groups, y) if c == cls})
        if n < n_folds:
            raise FoldError(
                f"only {n} patient(s) have {name} clips; {n_folds}-fold cross-validation needs "
                f"at least {n_folds} (one per fold): use --folds {max(2, n)} or fewer, or "
                f"label more {name} clips")
    from sklearn.model_selection import StratifiedGroupKFold

    splitter = StratifiedGroupKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    folds = [sorted(int(i) for i in test)
             for _, test in splitter.split(np.zeros(len(y)), y.astype(int), groups)]
    if all(0 < y[f].sum() < len(f) for f in folds):
        return folds, "StratifiedGroupKFold"
    folds = _quota_folds(y, groups, n_folds, seed)
    if not all(0 < y[f].sum() < len(f) for f in folds):
        raise FoldError(f"the patients cannot be spread over {n_folds} folds with both good "
                        "and poor clips in each; use fewer folds")
    return folds, "quota"


def _quota_folds(y: np.ndarray, groups: list[str], n_folds: int, seed: int) -> list[list[int]]:
    """Patients holding the rarer class first, each to the fold with the fewest clips of that
    class; then the others to the fold with the fewest clips of the common class."""
    members: dict[str, list[int]] = defaultdict(list)
    for i, g in enumerate(groups):
        members[g].append(i)
    rare = bool(y.sum() * 2 < y.size)  # the rarer class
    keys = sorted(members)
    keys = [keys[i] for i in np.random.default_rng(seed).permutation(len(keys))]
    n_rare = {k: int(sum(y[i] == rare for i in members[k])) for k in keys}
    keys.sort(key=lambda k: (-n_rare[k], -len(members[k])))  # stable: seeded order among ties
    counts = np.zeros((n_folds, 2))  # [rare, common] per fold
    folds: list[list[int]] = [[] for _ in range(n_folds)]
    for k in keys:
        column = 0 if n_rare[k] else 1
        f = int(np.lexsort((np.arange(n_folds), counts.sum(axis=1), counts[:, column]))[0])
        folds[f] += members[k]
        counts[f] += (n_rare[k], len(members[k]) - n_rare[k])
    return [sorted(f) for f in folds]


def write_fold_split(path: Path, records: Sequence[dict], test: Sequence[int],
                     val_fraction: float, seed: int) -> dict[str, int]:
    """The split file of one fold (train/val by patient from the other folds, test = this
    fold); returns clips per split."""
    from echoquality_core.data.clips import save_split, split_by_patient

    held_out = set(test)
    rest = [i for i in range(len(records)) if i not in held_out]
    inner = split_by_patient([records[i] for i in rest], (1 - val_fraction, val_fraction, 0.0),
                             seed=seed)
    split = {"train": [rest[i] for i in inner["train"]], "val": [rest[i] for i in inner["val"]],
             "test": sorted(held_out)}
    save_split(split, records, path)
    return {name: len(idx) for name, idx in split.items()}


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
        self.project_dir = self.csv_path.parent
        self.run_name = config.run_name or f"cv-{datetime.now():%Y%m%d-%H%M%S}-{uuid4().hex[:4]}"
        self.run_dir = self.project_dir / CROSSVAL_DIR / self.run_name
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
        from echoquality_core.train.crossval_steps import run_crossval

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
            p = Path(self.config.cache_dir).expanduser()
            return p if p.is_absolute() else (self.project_dir / p).resolve()
        return self.project_dir / ".echoquality" / "cache"

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


def read_oof(path: str | Path) -> list[dict[str, Any]]:
    """Rows of an ``oof_scores.csv`` with label/score/threshold as floats, fold/n_scores as
    ints. Raises ValueError when a column is missing."""
    path = Path(path)
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        missing = set(OOF_COLUMNS) - set(reader.fieldnames or ())
        if missing:
            raise ValueError(f"{path.name}: not an out-of-fold table (missing {sorted(missing)})")
        rows = list(reader)
    for row in rows:
        for key in ("label", "score", "threshold"):
            row[key] = float(row[key])
        for key in ("fold", "n_scores"):
            row[key] = int(row[key])
    return rows


def write_oof(path: Path, rows: Sequence[dict[str, Any]]) -> Path:
    """Write the out-of-fold table atomically."""
    from echoquality_core.files.atomic import write_csv_rows

    return write_csv_rows(path, OOF_COLUMNS, (
        {**row, "label": f"{row['label']:g}", "score": f"{row['score']:.6f}",
         "threshold": f"{row['threshold']:.6f}"} for row in rows))


def find_crossval(project_dir: str | Path, run: str) -> Path:
    """The out-of-fold table of cross-validation ``run``: a folder name under
    ``<project>/crossval``, a folder, or an ``oof_scores.csv`` path. Raises ValueError."""
    for candidate in (Path(run), Path(project_dir) / CROSSVAL_DIR / run):
        if candidate.is_file():
            return candidate
        if (candidate / OOF_FILE).is_file():
            return candidate / OOF_FILE
    raise ValueError(f"no cross-validation {run!r} (no {OOF_FILE} under "
                     f"{Path(project_dir) / CROSSVAL_DIR})")


def preprocess_mismatch(oof_csv: str | Path, checkpoint: str | Path) -> str | None:
    """Why the out-of-fold scores of ``oof_csv`` cannot stand for the model in ``checkpoint``
    (made with other preprocessing settings, or the cross-validation does not record its own),
    or None when they were made as the model scores clips."""
    from echoquality_core.model.checkpoint import params_from_info
    from echoquality_core.model.network import read_model_file

    try:
        saved = json.loads((Path(oof_csv).parent / "summary.json").read_text(encoding="utf-8"))
        theirs = params_from_info({"preprocess": dict(saved["preprocess"])})
    except (OSError, ValueError, KeyError, TypeError):
        return ("the cross-validation does not record the preprocessing settings of its scores "
                "(it predates that record), so they cannot be checked against the model's")
    ours = params_from_info(read_model_file(checkpoint)[1])
    differ = [f"{f.name} {getattr(theirs, f.name)} (model {getattr(ours, f.name)})"
              for f in dataclasses.fields(ours) if getattr(theirs, f.name) != getattr(ours, f.name)]
    if not differ:
        return None
    return ("the out-of-fold scores were made with other preprocessing settings than the "
            f"model's: {', '.join(differ)}; a threshold chosen on them does not fit this model "
            "(cross-validate with the model's settings)")


def summary_json(path: Path, payload: dict[str, Any]) -> Path:
    path.write_text(json.dumps(payload, indent=2, default=str) + "\n", encoding="utf-8")
    return path
