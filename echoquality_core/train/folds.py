"""Folds of a cross-validation and its out-of-fold table: patients assigned to folds
(stratified by label), each fold's split file, and ``oof_scores.csv`` (``video_path, label,
score, fold, threshold, group, n_scores``; ``group`` an anonymous patient number). Plain functions
that ``crossval`` (the CrossValidator) and ``crossval_steps`` (its steps) both use.
"""
from __future__ import annotations

import csv
import dataclasses
import json
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from echoquality_core.data.patients import patient_group
from echoquality_core.decision import labelled_good

OOF_COLUMNS = ("video_path", "label", "score", "fold", "threshold", "group", "n_scores")


class FoldError(ValueError):
    """The labelled clips cannot be cut into the folds asked for (message says why)."""


def make_folds(records: Sequence[dict], n_folds: int,
               seed: int = 42) -> tuple[list[list[int]], str]:
    """Test indices of each fold and the method used: no patient in two folds, both classes
    (``decision.labelled_good``) in every fold. scikit-learn's shuffled ``StratifiedGroupKFold`` when
    it gives both classes everywhere, else a per-class quota assignment of patients. Raises
    FoldError when fewer patients than folds have clips of a class."""
    if n_folds < 2:
        raise FoldError(f"cross-validation needs at least 2 folds, got {n_folds}")
    y = np.array([labelled_good(float(r["label"])) for r in records])
    groups = [patient_group(r) for r in records]
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


def summary_json(path: Path, payload: dict[str, Any]) -> Path:
    path.write_text(json.dumps(payload, indent=2, default=str) + "\n", encoding="utf-8")
    return path


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
