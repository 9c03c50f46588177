"""Classification metrics of quality scores against labels, and the decision threshold.

Scores are sigmoid(logit) in 0..1 (1 = good quality). Labels may be soft (0..1): the
classification metrics use them binarised at 0.5, the Brier score uses them as they are.
Every metric is computed in numpy as scikit-learn computes it (``curves``; tests compare the
two): the window reviews a model without importing scikit-learn. An empty split gives NaN
metrics and a one-class split NaN ROC/PR AUC, never an exception. No torch here (tensors are
accepted when torch is loaded).
"""
from __future__ import annotations

import numbers
import sys
from typing import Any

import numpy as np
from echoquality_core.decision import TRAINING_THRESHOLD, called_good, labelled_good
from echoquality_core.evaluation.curves import (
    average_precision,
    confusion_counts,
    precision_recall_curve,
    roc_auc,
    roc_curve,
)

_NAN = float("nan")
_SCALAR_METRICS = ("accuracy", "precision", "recall", "f1", "roc_auc", "pr_auc", "brier")


def _as_1d(values: Any, name: str) -> np.ndarray:
    torch = sys.modules.get("torch")  # accept tensors without importing torch here
    if torch is not None and isinstance(values, torch.Tensor):
        values = values.detach().cpu().numpy()
    arr = np.asarray(values, dtype=np.float64).reshape(-1)
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contain NaN or infinite values")
    return arr


def _labels_scores(labels: Any, scores: Any) -> tuple[np.ndarray, np.ndarray]:
    y, s = _as_1d(labels, "labels"), _as_1d(scores, "scores")
    if y.size != s.size:
        raise ValueError(f"{y.size} labels but {s.size} scores")
    if y.size and (y.min() < 0 or y.max() > 1):
        raise ValueError(f"labels must lie in 0..1, got {y.min():g}..{y.max():g}")
    if s.size and (s.min() < 0 or s.max() > 1):
        raise ValueError(f"scores must be probabilities in 0..1, got {s.min():g}..{s.max():g}")
    return y, s


def metrics_from_scores(labels: Any, scores: Any,
                        threshold: float = TRAINING_THRESHOLD) -> dict[str, Any]:
    """Classification metrics for quality scores against labels at a decision threshold.

    Returns accuracy, precision, recall, f1, roc_auc, pr_auc (average precision), brier,
    confusion_matrix [[tn, fp], [fn, tp]], threshold, n, n_pos, n_neg.
    """
    y_soft, s = _labels_scores(labels, scores)
    threshold = float(threshold)
    y = labelled_good(y_soft)
    predicted = called_good(s, threshold)
    n_pos = int(y.sum())
    out: dict[str, Any] = dict.fromkeys(_SCALAR_METRICS, _NAN)
    out.update(confusion_matrix=[[0, 0], [0, 0]], threshold=threshold, n=int(y.size),
               n_pos=n_pos, n_neg=int(y.size) - n_pos)
    if y.size == 0:
        return out
    tp, fp, fn, tn = confusion_counts(y, predicted)
    out["accuracy"] = (tp + tn) / y.size
    out["precision"] = _ratio(tp, tp + fp)
    out["recall"] = _ratio(tp, tp + fn)
    out["f1"] = _ratio(2 * tp, 2 * tp + fp + fn)
    out["brier"] = float(np.mean((y_soft - s) ** 2))  # == brier_score_loss for 0/1 labels
    out["confusion_matrix"] = [[tn, fp], [fn, tp]]
    if 0 < n_pos < y.size:
        out["roc_auc"] = roc_auc(y, s)
        out["pr_auc"] = average_precision(y, s)
    return out


def _ratio(a: int, b: int) -> float:
    """a / b, 0 when b is 0 (scikit-learn's ``zero_division=0``)."""
    return a / b if b else 0.0


def _closest_to_half(candidates: np.ndarray) -> float:
    return float(candidates[np.argmin(np.abs(candidates - 0.5))])


def choose_threshold(labels: Any, scores: Any, method: str | float = "youden") -> float:
    """Decision threshold for "good" (score >= threshold).

    ``"youden"``: the ROC point maximising sensitivity + specificity - 1; ``"f1"``: the
    threshold maximising F1; a number: that fixed threshold. Ties go to the threshold closest
    to 0.5; a split with one class (or none) gives 0.5.
    """
    if isinstance(method, numbers.Real) and not isinstance(method, bool):
        fixed = float(method)
    elif isinstance(method, str) and method.strip().lower() not in ("youden", "f1"):
        try:
            fixed = float(method)
        except ValueError:
            raise ValueError(
                f"threshold method must be 'youden', 'f1' or a number in 0..1, got {method!r}"
            ) from None
    elif isinstance(method, str):
        fixed = None
        method = method.strip().lower()
    else:
        raise TypeError(f"threshold method must be a string or a number, got {method!r}")
    if fixed is not None:
        if not 0.0 <= fixed <= 1.0:
            raise ValueError(f"a fixed threshold must lie in 0..1, got {fixed:g}")
        return fixed

    y_soft, s = _labels_scores(labels, scores)
    y = labelled_good(y_soft).astype(int)
    if not 0 < y.sum() < y.size:
        return TRAINING_THRESHOLD
    if method == "youden":
        fpr, tpr, thresholds = roc_curve(y, s, drop_intermediate=False)
        finite = np.isfinite(thresholds) & (thresholds <= 1.0)
        j = (tpr - fpr)[finite]
        return _closest_to_half(thresholds[finite][np.isclose(j, j.max(), rtol=0, atol=1e-12)])
    precision, recall, thresholds = precision_recall_curve(y, s)
    precision, recall = precision[:-1], recall[:-1]
    denom = precision + recall
    f1 = np.divide(2 * precision * recall, denom, out=np.zeros_like(denom), where=denom > 0)
    return _closest_to_half(thresholds[np.isclose(f1, f1.max(), rtol=0, atol=1e-12)])
