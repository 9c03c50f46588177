"""A training run's folder on disk, one owner for every file in it (writers and readers).

``<save_dir>/<run name>/`` holds ``best.pt`` (checkpoint with threshold and preprocessing),
``best_state_dict.pt`` (the same weights as a plain state dict, EchoPrime's format),
``split.csv`` (video_path, split, label), ``summary.json``, ``test_predictions.csv``
(video_path, label, score, group: p001, p002, ... one per patient, what the bootstrap CIs
resample) and ``plots/``. Every file is written atomically; none holds patient data (no DICOM
header fields, no patient keys).
"""
from __future__ import annotations

import csv
import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from echoquality_core.files.atomic import atomic_write

BEST_FILE = "best.pt"
STATE_DICT_FILE = "best_state_dict.pt"  # the best model as a plain state dict, like EchoPrime's
SPLIT_FILE = "split.csv"
SUMMARY_FILE = "summary.json"
PREDICTIONS_FILE = "test_predictions.csv"
PLOTS_DIR = "plots"


class RunFolder:
    """The files of one training run's folder."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    best = property(lambda self: self.path / BEST_FILE, doc="the best checkpoint")
    state_dict = property(lambda self: self.path / STATE_DICT_FILE, doc="best weights, plain")
    split_csv = property(lambda self: self.path / SPLIT_FILE, doc="which clip went where")
    summary = property(lambda self: self.path / SUMMARY_FILE, doc="outcome of the run")
    predictions = property(lambda self: self.path / PREDICTIONS_FILE, doc="test split scores")
    plots = property(lambda self: self.path / PLOTS_DIR, doc="evaluation plots")

    # --- writing -------------------------------------------------------------------------
    def write_state_dict(self, model: Any) -> Path:
        """The model's weights as a plain CPU state dict (``best_state_dict.pt``)."""
        from echoquality_core.model.network import save_torch_atomic

        save_torch_atomic({k: v.detach().cpu() for k, v in model.state_dict().items()},
                          self.state_dict)
        return self.state_dict

    def write_summary(self, summary: Mapping[str, Any]) -> Path:
        """``summary.json`` (numpy numbers and paths made plain)."""
        text = json.dumps(dict(summary), indent=2, default=_jsonable)
        with atomic_write(self.summary, "w", encoding="utf-8") as fh:
            fh.write(text)
        return self.summary

    def write_predictions(self, records: Sequence[Mapping[str, Any]],
                          names: Mapping[str, str], groups: Sequence[str] = ()) -> Path:
        """``test_predictions.csv`` from evaluation records (path, label, score); ``names``
        maps a record's file path to its name in the labels CSV (default: the file name);
        ``groups``: each record's patient key, written as anonymous p001, p002, ..."""
        number = {k: f"p{n:03d}" for n, k in enumerate(sorted(set(groups)), start=1)}
        with atomic_write(self.predictions, "w", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh)
            writer.writerow(["video_path", "label", "score"] + (["group"] if groups else []))
            for i, r in enumerate(records):
                path = str(r.get("path"))
                writer.writerow([names.get(path, Path(path).name), r.get("label"),
                                 f"{float(r.get('score', float('nan'))):.6f}"]
                                + ([number[groups[i]]] if groups else []))
        return self.predictions

    # --- reading -------------------------------------------------------------------------
    def read_predictions(self) -> dict[str, tuple[float, float]]:
        """{video_path: (label, score)} of the test split; rows without finite numbers are
        skipped."""
        predictions: dict[str, tuple[float, float]] = {}
        with open(self.predictions, newline="", encoding="utf-8") as fh:
            for row in csv.DictReader(fh):
                try:
                    label, score = float(row["label"]), float(row["score"])
                except (KeyError, TypeError, ValueError):
                    continue
                if math.isfinite(label) and math.isfinite(score):
                    predictions[row["video_path"]] = (label, score)
        return predictions

    def read_groups(self) -> dict[str, str] | None:
        """{video_path: anonymous patient} of the test split; None when the file has no
        ``group`` column (runs from before it was written)."""
        with open(self.predictions, newline="", encoding="utf-8") as fh:
            rows = list(csv.DictReader(fh))
        if not rows or not rows[0].get("group"):
            return None
        return {row["video_path"]: row["group"] for row in rows}

    def read_threshold(self) -> float | None:
        """The decision threshold the run chose, or None when its summary does not say."""
        try:
            return float(json.loads(self.summary.read_text(encoding="utf-8"))["threshold"])
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def find_checkpoint(self) -> Path | None:
        """The best model file here or in ``checkpoints/`` (``best.pt`` before other
        ``best*.pt``), or None."""
        for folder in (self.path, self.path / "checkpoints"):
            files = sorted(folder.glob("best*.pt"), key=lambda p: (p.name != BEST_FILE, p.name))
            if files:
                return files[0]
        return None


def _jsonable(value: Any) -> Any:
    if isinstance(value, (np.integer, np.floating)):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)
