"""ROC and precision-recall curves, their areas, average ranks and the normal quantile in numpy,
computed as scikit-learn and scipy do (importing those in the window held the GIL ~1 s).

Labels here are already binary (bool or 0/1, 1 = good); scores are any finite numbers.
"""
from __future__ import annotations

from statistics import NormalDist

import numpy as np


def confusion_counts(labels, called) -> tuple[int, int, int, int]:
    """(tp, fp, fn, tn) of boolean labels (True = good) against boolean calls."""
    y, c = np.asarray(labels, dtype=bool), np.asarray(called, dtype=bool)
    return (int(np.sum(y & c)), int(np.sum(~y & c)), int(np.sum(y & ~c)),
            int(np.sum(~y & ~c)))


def _binary_curve(y: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(false positives, true positives, threshold) at each distinct score, highest first
    (scikit-learn's ``_binary_clf_curve``)."""
    y = np.asarray(y, dtype=float).reshape(-1)
    s = np.asarray(s, dtype=float).reshape(-1)
    order = np.argsort(s, kind="mergesort")[::-1]
    s, y = s[order], y[order]
    last = np.r_[np.flatnonzero(np.diff(s)), s.size - 1]  # the end of each block of equal scores
    tps = np.cumsum(y)[last]
    return 1 + last - tps, tps, s[last]


def roc_curve(labels, scores, drop_intermediate: bool = True
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(false positive rate, true positive rate, thresholds) as ``sklearn.metrics.roc_curve``:
    the first threshold is ``inf`` (nothing called good); ``drop_intermediate`` leaves out the
    points on a straight stretch. Needs both classes."""
    fps, tps, thresholds = _binary_curve(labels, scores)
    if drop_intermediate and fps.size > 2:
        keep = np.flatnonzero(np.r_[True, np.logical_or(np.diff(fps, 2), np.diff(tps, 2)), True])
        fps, tps, thresholds = fps[keep], tps[keep], thresholds[keep]
    fps, tps = np.r_[0.0, fps], np.r_[0.0, tps]
    return fps / fps[-1], tps / tps[-1], np.r_[np.inf, thresholds]


def precision_recall_curve(labels, scores) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(precision, recall, thresholds) as ``sklearn.metrics.precision_recall_curve``:
    increasing thresholds, the last point (precision 1, recall 0) without one."""
    fps, tps, thresholds = _binary_curve(labels, scores)
    called = tps + fps
    precision = np.divide(tps, called, out=np.zeros_like(tps), where=called != 0)
    recall = tps / tps[-1] if tps[-1] else np.ones_like(tps)
    return np.r_[precision[::-1], 1.0], np.r_[recall[::-1], 0.0], thresholds[::-1]


def roc_auc(labels, scores) -> float:
    """Area under the ROC curve: Mann-Whitney U / (n_pos n_neg), ties counted half
    (= ``sklearn.metrics.roc_auc_score``). Needs both classes."""
    y = np.asarray(labels).reshape(-1).astype(bool)
    n_pos = int(y.sum())
    n_neg = y.size - n_pos
    return float((rankdata(scores)[y].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def average_precision(labels, scores) -> float:
    """Sum over distinct thresholds of (recall step) x precision
    (= ``sklearn.metrics.average_precision_score``). Needs a good clip."""
    fps, tps, _ = _binary_curve(labels, scores)
    precision = tps / (tps + fps)
    recall = tps / tps[-1]
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def rankdata(values) -> np.ndarray:
    """Ranks 1..n, ties given their average rank (= ``scipy.stats.rankdata``)."""
    a = np.asarray(values).reshape(-1)
    order = np.argsort(a, kind="mergesort")
    sorted_a = a[order]
    starts = np.r_[True, sorted_a[1:] != sorted_a[:-1]]
    block = np.cumsum(starts) - 1  # block of equal values each sorted position belongs to
    bounds = np.r_[np.flatnonzero(starts), a.size]  # first position of each block, then n
    average = (bounds[:-1] + bounds[1:] + 1) / 2.0  # mean of the 1-based ranks in a block
    ranks = np.empty(a.size)
    ranks[order] = average[block]
    return ranks


def normal_quantile(p: float) -> float:
    """The standard normal distribution's quantile (= ``scipy.stats.norm.ppf``), 0 < p < 1."""
    return NormalDist().inv_cdf(p)
