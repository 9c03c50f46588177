"""The numpy curves, areas, ranks and normal quantile (``evaluation.curves``) and the metrics
built on them (``metrics``, ``stats``) equal scikit-learn's and scipy's, on random scores and on
scores with many ties (scikit-learn and scipy are the reference here, never in the window)."""
from __future__ import annotations

import numpy as np
import pytest
import scipy.stats
import sklearn.metrics as skm

from echoquality_core.evaluation import curves
from echoquality_core.evaluation.metrics import choose_threshold, metrics_from_scores
from echoquality_core.evaluation.stats import point_metrics


def cases():
    """(labels 0/1, scores): random, tied (scores on a coarse grid), tiny, all scores equal."""
    rng = np.random.default_rng(7)
    out = []
    for n in (2, 3, 7, 40, 250):
        y = rng.integers(0, 2, n)
        y[0], y[-1] = 0, 1  # both classes
        out.append((y, rng.uniform(0, 1, n)))
        out.append((y, np.round(rng.uniform(0, 1, n) * 4) / 4))  # heavy ties
        out.append((y, np.clip(y * 0.3 + np.round(rng.uniform(0, 1, n), 1), 0, 1)))
    out.append((np.array([0, 1, 0, 1]), np.full(4, 0.5)))
    return out


@pytest.mark.parametrize("y, s", cases())
def test_curves_and_areas_equal_scikit_learns(y, s):
    for drop in (True, False):
        for ours, theirs in zip(curves.roc_curve(y, s, drop_intermediate=drop),
                                skm.roc_curve(y, s, drop_intermediate=drop), strict=True):
            np.testing.assert_array_equal(ours, theirs)
    for ours, theirs in zip(curves.precision_recall_curve(y, s),
                            skm.precision_recall_curve(y, s), strict=True):
        np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-15)
    assert curves.roc_auc(y, s) == pytest.approx(skm.roc_auc_score(y, s), abs=1e-12)
    assert curves.average_precision(y, s) == pytest.approx(
        skm.average_precision_score(y, s), abs=1e-12)


@pytest.mark.parametrize("y, s", cases())
def test_ranks_equal_scipys(y, s):
    np.testing.assert_array_equal(curves.rankdata(s), scipy.stats.rankdata(s))
    np.testing.assert_array_equal(curves.rankdata(y), scipy.stats.rankdata(y))


@pytest.mark.parametrize("p", [1e-12, 0.001, 0.025, 0.3, 0.5, 0.9, 0.975, 0.995, 1 - 1e-12])
def test_normal_quantile_equals_scipys(p):
    assert curves.normal_quantile(p) == pytest.approx(scipy.stats.norm.ppf(p), rel=1e-12)


@pytest.mark.parametrize("y, s", cases())
@pytest.mark.parametrize("threshold", [0.0, 0.25, 0.5, 0.73, 1.0])
def test_metrics_equal_scikit_learns(y, s, threshold):
    y_soft = np.where(y == 1, 0.75, 0.25) if len(y) == 7 else y.astype(float)  # soft labels too
    m = metrics_from_scores(y_soft, s, threshold)
    called = (s >= threshold).astype(int)
    assert m["accuracy"] == pytest.approx(skm.accuracy_score(y, called), abs=1e-15)
    for name, fn in (("precision", skm.precision_score), ("recall", skm.recall_score),
                     ("f1", skm.f1_score)):
        assert m[name] == pytest.approx(fn(y, called, zero_division=0), abs=1e-15), name
    assert m["brier"] == pytest.approx(skm.mean_squared_error(y_soft, s), abs=1e-15)
    assert m["confusion_matrix"] == skm.confusion_matrix(y, called, labels=[0, 1]).tolist()
    assert m["roc_auc"] == pytest.approx(skm.roc_auc_score(y, s), abs=1e-12)
    assert m["pr_auc"] == pytest.approx(skm.average_precision_score(y, s), abs=1e-12)
    stats = point_metrics(y_soft, s, threshold)
    assert stats["roc_auc"] == pytest.approx(m["roc_auc"], abs=1e-12)
    assert stats["pr_auc"] == pytest.approx(m["pr_auc"], abs=1e-12)


@pytest.mark.parametrize("y, s", cases())
def test_youden_and_f1_thresholds_equal_scikit_learn_curves(y, s):
    fpr, tpr, thresholds = skm.roc_curve(y, s, drop_intermediate=False)
    finite = np.isfinite(thresholds) & (thresholds <= 1.0)
    j = (tpr - fpr)[finite]
    best = thresholds[finite][np.isclose(j, j.max(), rtol=0, atol=1e-12)]
    assert choose_threshold(y, s, "youden") == best[np.argmin(np.abs(best - 0.5))]
    precision, recall, thresholds = skm.precision_recall_curve(y, s)
    precision, recall = precision[:-1], recall[:-1]
    f1 = np.divide(2 * precision * recall, precision + recall,
                   out=np.zeros_like(precision), where=precision + recall > 0)
    best = thresholds[np.isclose(f1, f1.max(), rtol=0, atol=1e-12)]
    assert choose_threshold(y, s, "f1") == best[np.argmin(np.abs(best - 0.5))]
