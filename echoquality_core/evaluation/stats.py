"""Numbers with uncertainty: metrics of quality scores with patient-level bootstrap 95% CIs.

On ~100 labelled clips a single accuracy says little; every metric here comes with a 95%
confidence interval from a *patient-level* bootstrap (patients, not clips, are resampled, since
clips of one patient are not independent), ``n_resamples`` >= 1000, seeded, percentile method.
A bootstrap of a perfect result has zero width (every resample is perfect too), so intervals of
proportion-like metrics are never narrower than the Wilson score interval of the same proportion
on its denominator (sensitivity: the good clips; AUC: the smaller class; PR AUC: the good clips).

Patients are drawn in an order fixed by their clips' labels and scores, not by their keys or
the order of the rows: every surface (evaluate, report, MLflow, cross-validation, the Review
tab) that holds the same clips, scores and patient partition gets the same intervals, whatever
it calls the patients. :func:`metrics_with_ci` is the one function that computes them and
:func:`format_with_ci` the one text of them.

"Positive" is a *good* clip (label 1, score near 1), as in ``evaluate.py``: sensitivity is the
share of good clips called good, specificity the share of poor clips called poor, PPV the share
of clips called good that are good, NPV the share of clips called poor that are poor.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from echoquality_core.decision import called_good, labelled_good
from echoquality_core.evaluation.curves import (
    average_precision,
    confusion_counts,
    normal_quantile,
    roc_auc,
)

METRICS = ("roc_auc", "pr_auc", "sensitivity", "specificity", "ppv", "npv", "accuracy", "brier")
NAMES = {"roc_auc": "ROC AUC", "pr_auc": "PR AUC", "sensitivity": "sensitivity (recall)",
         "specificity": "specificity", "ppv": "PPV (precision)", "npv": "NPV",
         "accuracy": "accuracy", "brier": "Brier score"}
N_RESAMPLES = 1000
METHOD = f"95% CIs: patient-level bootstrap, {N_RESAMPLES} resamples"
Z95 = 1.959963984540054
_NAN = float("nan")


@dataclass(frozen=True)
class Estimate:
    """A metric's value with its 95% CI; ``n``: clips its proportion rests on (None: all)."""

    value: float
    low: float
    high: float
    n: int | None = None

    def text(self, digits: int = 3) -> str:
        """"0.912 (95% CI 0.850-0.960)", or "n/a" when the value is undefined."""
        if math.isnan(self.value):
            return "n/a"
        if math.isnan(self.low):
            return f"{self.value:.{digits}f} (CI n/a)"
        return f"{self.value:.{digits}f} (95% CI {self.low:.{digits}f}-{self.high:.{digits}f})"


def wilson_interval(p: float, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval of a proportion ``p`` observed on ``n`` trials."""
    if n <= 0 or math.isnan(p):
        return _NAN, _NAN
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return max(0.0, centre - half), min(1.0, centre + half)


def point_metrics(labels: Sequence[float], scores: Sequence[float],
                  threshold: float) -> dict[str, float]:
    """The :data:`METRICS` of scores against labels (binarised at 0.5) at ``threshold``;
    undefined ones (e.g. AUC with one class, PPV with nothing called good) are NaN. ROC AUC and
    PR AUC are computed as scikit-learn's ``roc_auc_score`` / ``average_precision_score`` do,
    in plain numpy (``curves``: the bootstrap calls this thousands of times)."""
    y_soft = np.asarray(labels, dtype=float)
    s = np.asarray(scores, dtype=float)
    y = labelled_good(y_soft)
    called = called_good(s, threshold)
    tp, fp, fn, tn = confusion_counts(y, called)
    both = 0 < y.sum() < y.size
    return {
        "roc_auc": roc_auc(y, s) if both else _NAN,
        "pr_auc": average_precision(y, s) if both else _NAN,
        "sensitivity": _ratio(tp, tp + fn),
        "specificity": _ratio(tn, tn + fp),
        "ppv": _ratio(tp, tp + fp),
        "npv": _ratio(tn, tn + fn),
        "accuracy": _ratio(tp + tn, y.size),
        "brier": float(np.mean((s - y_soft) ** 2)) if y.size else _NAN,
    }


def _ratio(a: int, b: int) -> float:
    return a / b if b else _NAN


def _denominators(y: np.ndarray, called: np.ndarray) -> dict[str, int | None]:
    n_pos, n_neg = int(y.sum()), int(y.size - y.sum())
    return {
        "roc_auc": min(n_pos, n_neg), "pr_auc": n_pos, "sensitivity": n_pos,
        "specificity": n_neg, "ppv": int(called.sum()), "npv": int((~called).sum()),
        "accuracy": int(y.size), "brier": None,
    }


def group_indices(groups: Sequence[object]) -> list[np.ndarray]:
    """Clip indices per group, groups in sorted order of their keys (as strings)."""
    members: dict[str, list[int]] = {}
    for i, g in enumerate(groups):
        members.setdefault(str(g), []).append(i)
    return [np.asarray(members[k]) for k in sorted(members)]


def bootstrap_samples(labels: Sequence[float], scores: Sequence[float],
                      groups: Sequence[object], threshold: float, *,
                      n_resamples: int = N_RESAMPLES, seed: int = 0) -> dict[str, np.ndarray]:
    """Each metric on ``n_resamples`` patient-level resamples: resample b draws
    ``rng.integers(0, n_groups, n_groups)`` with ``rng = np.random.default_rng(seed)`` over the
    groups of :func:`group_indices` (ordered by their clips' sorted (label, score) pairs) and
    pools their clips."""
    y, s = np.asarray(labels, dtype=float), np.asarray(scores, dtype=float)
    members = sorted(group_indices(groups), key=lambda m: _content(y[m], s[m]))
    rng = np.random.default_rng(seed)
    out = {name: np.empty(n_resamples) for name in METRICS}
    for b in range(n_resamples):
        pick = rng.integers(0, len(members), len(members))
        idx = np.concatenate([members[g] for g in pick])
        for name, value in point_metrics(y[idx], s[idx], threshold).items():
            out[name][b] = value
    return out


def _content(labels: np.ndarray, scores: np.ndarray) -> tuple[tuple[float, float], ...]:
    """A patient's place in the draw order: its clips' (label, score) pairs, sorted (scores
    rounded to the 6 decimals a run's test_predictions.csv keeps)."""
    return tuple(sorted(zip(labels.tolist(), np.round(scores, 6).tolist(), strict=True)))


def metrics_with_ci(labels: Sequence[float], scores: Sequence[float],
                    groups: Sequence[object] | None, threshold: float, *,
                    n_resamples: int = N_RESAMPLES, seed: int = 0,
                    confidence: float = 0.95) -> dict[str, Estimate]:
    """:data:`METRICS` at ``threshold``, each an Estimate with its bootstrap CI (see module
    docstring); ``groups`` are patient keys per clip (None: every clip its own patient)."""
    if n_resamples < 1000:
        raise ValueError(f"use at least 1000 bootstrap resamples, got {n_resamples}")
    y_soft, s = np.asarray(labels, dtype=float), np.asarray(scores, dtype=float)
    if y_soft.size != s.size or y_soft.size == 0:
        raise ValueError(f"need as many scores as labels (at least one), got {s.size} and "
                         f"{y_soft.size}")
    groups = list(range(y_soft.size)) if groups is None else list(groups)
    order = np.lexsort((s, y_soft))  # rows in a fixed order: sums round the same everywhere
    y_soft, s, groups = y_soft[order], s[order], [groups[i] for i in order]
    values = point_metrics(y_soft, s, threshold)
    samples = bootstrap_samples(y_soft, s, groups, threshold, n_resamples=n_resamples,
                                seed=seed)
    tail = 100 * (1 - confidence) / 2
    dens = _denominators(labelled_good(y_soft), called_good(s, threshold))
    out = {}
    for name in METRICS:
        finite = samples[name][np.isfinite(samples[name])]
        low, high = (np.percentile(finite, [tail, 100 - tail]) if finite.size
                     else (_NAN, _NAN))
        if dens[name] is not None and not math.isnan(values[name]):
            w_low, w_high = wilson_interval(values[name], dens[name], z=_z(confidence))
            low, high = np.nanmin([low, w_low]), np.nanmax([high, w_high])
        out[name] = Estimate(values[name], float(low), float(high), dens[name])
    return out


def _z(confidence: float) -> float:
    return normal_quantile(0.5 + confidence / 2)


def describe_basis(labels: Sequence[float], groups: Sequence[object] | None,
                   source: str) -> str:
    """One plain line: what the numbers rest on, e.g. "Out-of-fold scores of 96 clips from
    41 patients (70 good, 26 poor)"."""
    y = labelled_good(np.asarray(labels, dtype=float))
    n_patients = len(set(map(str, groups))) if groups is not None else y.size
    return (f"{source} of {y.size} clip(s) from {n_patients} patient(s) "
            f"({int(y.sum())} good, {int((~y).sum())} poor)")


def ci_metrics(estimates: dict[str, Estimate]) -> dict[str, object]:
    """Estimates as plain data: {metric: value, ..., "ci": {metric: [low, high]}} (what
    summary files and MLflow keep)."""
    return {k: e.value for k, e in estimates.items()} | {
        "ci": {k: [e.low, e.high] for k, e in estimates.items()}}


def format_with_ci(labels: Sequence[float], scores: Sequence[float],
                   groups: Sequence[object] | None, threshold: float, source: str,
                   estimates: dict[str, Estimate] | None = None) -> str:
    """Lines: what the numbers rest on, then each metric of :func:`metrics_with_ci` (computed
    here unless given) with its 95% CI ("n/a" where undefined, e.g. the AUCs with one class)."""
    lines = [describe_basis(labels, groups, source) + f", threshold {threshold:.3f}:"]
    if estimates is None:
        estimates = metrics_with_ci(labels, scores, groups, threshold)
    lines += [f"  {NAMES[key]:<21} {estimates[key].text()}" for key in METRICS]
    y = [v >= 0.5 for v in labels]
    if not 0 < sum(y) < len(y):
        lines.append("  (one class only: ROC and PR AUC are undefined)")
    lines.append(f"  ({METHOD})")
    return "\n".join(lines)
