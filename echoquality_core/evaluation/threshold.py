"""The state behind the Review tab's threshold panel, in plain Python: held-out scores of
labelled clips, an optional calibration, the threshold in effect and the one being tried, the
clips whose call the change flips (``calibration.save_decision`` saves a choice with the
model)."""
from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from echoquality_core.evaluation.calibration import (
    fit_calibration,
    flipped,
    reliability_curve,
    threshold_preset,
)
from echoquality_core.evaluation.stats import point_metrics
from echoquality_core.decision import apply_calibration, called_good, labelled_good

MIN_AUC = 0.6  # below it, held-out scores barely tell good from poor clips


def weak_auc_warning(labels: Sequence[float], scores: Sequence[float]) -> str | None:
    """A warning when held-out scores separate good from poor clips little (ROC AUC below
    :data:`MIN_AUC`), else None (also with one class, where the AUC is undefined)."""
    auc = point_metrics(labels, scores, 0.5)["roc_auc"]
    if math.isnan(auc) or auc >= MIN_AUC:
        return None
    return (f"ROC AUC of these held-out scores is only {auc:.3f} (below {MIN_AUC:g}): they "
            "barely tell good from poor clips, so a threshold chosen on them means little")


class ThresholdChoice:
    """Choose a threshold (and calibration) on held-out scores.

    ``saved`` is the threshold in effect (the model's); ``threshold`` the one being tried;
    :meth:`flips` lists the clips whose call differs between the two.
    """

    def __init__(self, rels: Sequence[str], labels: Sequence[float], scores: Sequence[float],
                 saved: float, groups: Sequence[str] | None = None,
                 calibration: dict[str, Any] | None = None):
        if not len(rels) == len(labels) == len(scores):
            raise ValueError("rels, labels and scores must have the same length")
        self.rels = list(rels)
        self.labels = np.asarray(labels, dtype=float)
        self.raw = np.asarray(scores, dtype=float)
        self.groups = list(groups) if groups is not None else None
        self.calibration = calibration
        self.saved = float(saved)
        self.threshold = float(saved)

    @property
    def scores(self) -> np.ndarray:
        """The scores as the model (with the calibration being tried) gives them."""
        return apply_calibration(self.raw, self.calibration)

    def set_threshold(self, value: float) -> None:
        if not 0.0 <= float(value) <= 1.0:
            raise ValueError(f"threshold must lie in 0..1, got {value:g}")
        self.threshold = float(value)

    def preset(self, name: str) -> float:
        """Move the threshold to a preset (see ``calibration.threshold_preset``); returns it."""
        self.threshold = threshold_preset(self.labels, self.scores, name)
        return self.threshold

    def set_calibration(self, method: str) -> None:
        """"none", "temperature" or "platt" fitted on these scores (ValueError if impossible)."""
        self.calibration = fit_calibration(self.labels, self.raw, method)

    def stats(self) -> dict[str, float]:
        """Point metrics (sensitivity, specificity, PPV, NPV, ...) at the tried threshold."""
        return point_metrics(self.labels, self.scores, self.threshold)

    def warning(self) -> str | None:
        """:func:`weak_auc_warning` of these scores (a calibration does not change the AUC)."""
        return weak_auc_warning(self.labels, self.raw)

    def flips(self) -> list[tuple[str, float, float, str]]:
        """(clip, label, score, new call) of every clip whose call changes from the saved
        threshold to the tried one, by score."""
        s = self.scores
        idx = sorted(flipped(s, self.saved, self.threshold), key=lambda i: (s[i], self.rels[i]))
        return [(self.rels[i], float(self.labels[i]), float(s[i]),
                 "good" if called_good(s[i], self.threshold) else "poor") for i in idx]

    def reliability(self, n_bins: int = 10) -> dict[str, np.ndarray]:
        return reliability_curve(self.labels, self.scores, n_bins)

    def histograms(self, n_bins: int = 20) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(bin edges, counts of good clips, counts of poor clips) over 0..1."""
        edges = np.linspace(0.0, 1.0, n_bins + 1)
        good = labelled_good(self.labels)
        s = self.scores
        return (edges, np.histogram(s[good], edges)[0], np.histogram(s[~good], edges)[0])
