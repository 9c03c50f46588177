"""Confidence intervals, threshold presets, calibration and score's pass/assessment agreement,
on fixed score tables checked against plain reference computations."""
from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score

from echoquality_core.evaluation.calibration import (
    fit_calibration,
    flipped,
    reliability_curve,
    threshold_preset,
)
from echoquality_core.decision import FAIL_BANDS, PASS_BANDS, apply_calibration, assessment
from echoquality_core.evaluation.stats import format_with_ci, metrics_with_ci, point_metrics

# A fixed table: 20 clips of 8 patients (labels 1 = good), scores of a middling model.
LABELS = np.array([1, 1, 0, 1, 0, 0, 1, 1, 1, 0, 1, 0, 1, 1, 0, 1, 0, 1, 1, 0], dtype=float)
SCORES = np.array([.91, .62, .35, .77, .48, .12, .55, .83, .29, .61, .95, .22, .71, .44, .05,
                   .88, .39, .67, .58, .31])
GROUPS = ["a", "a", "a", "b", "b", "c", "c", "d", "d", "d", "e", "e", "f", "f", "f", "g", "g",
          "h", "h", "h"]


def _wilson(p, n, z=1.959963984540054):
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return max(0.0, centre - half), min(1.0, centre + half)


def _pairwise_auc(y, s):
    """ROC AUC by its definition: P(good clip scores above poor clip), ties half."""
    diff = s[y][:, None] - s[~y][None, :]
    return float(np.mean((diff > 0) + 0.5 * (diff == 0)))


def _reference(labels, scores, groups, threshold, n=1000, seed=0):
    """The intervals computed the plain way: a loop over resampled patients, the AUC by its
    definition, scikit-learn's average precision, percentiles, then widened to the Wilson
    interval where the metric is a proportion."""
    members = {k: [i for i, g in enumerate(groups) if g == k] for k in set(groups)}
    keys = sorted(members, key=lambda k: sorted((labels[i], round(scores[i], 6))
                                                for i in members[k]))  # by content, not name
    rng = np.random.default_rng(seed)
    samples = {k: [] for k in ("roc_auc", "pr_auc", "sensitivity", "specificity", "brier")}
    for _ in range(n):
        idx = [i for g in rng.integers(0, len(keys), len(keys)) for i in members[keys[g]]]
        y, s = labels[idx] >= 0.5, scores[idx]
        if 0 < y.sum() < len(y):
            samples["roc_auc"].append(_pairwise_auc(y, s))
            samples["pr_auc"].append(average_precision_score(y, s))
        if y.sum():
            samples["sensitivity"].append(np.mean(s[y] >= threshold))
        if (~y).sum():
            samples["specificity"].append(np.mean(s[~y] < threshold))
        samples["brier"].append(np.mean((s - labels[idx]) ** 2))
    y = labels >= 0.5
    value = {"roc_auc": roc_auc_score(y, scores), "pr_auc": average_precision_score(y, scores),
             "sensitivity": np.mean(scores[y] >= threshold),
             "specificity": np.mean(scores[~y] < threshold)}
    denominators = {"roc_auc": min(y.sum(), (~y).sum()), "pr_auc": y.sum(),
                    "sensitivity": y.sum(), "specificity": (~y).sum()}
    out = {"brier": tuple(np.percentile(samples["brier"], [2.5, 97.5]))}
    for key, n_key in denominators.items():
        low, high = np.percentile(samples[key], [2.5, 97.5])
        w_low, w_high = _wilson(value[key], int(n_key))
        out[key] = (min(low, w_low), max(high, w_high))
    return out


def test_bootstrap_intervals_match_a_plain_reference_computation():
    got = metrics_with_ci(LABELS, SCORES, GROUPS, 0.5, n_resamples=1000, seed=0)
    want = _reference(LABELS, SCORES, GROUPS, 0.5)
    for key, (low, high) in want.items():
        assert got[key].low == pytest.approx(low, abs=1e-9), key
        assert got[key].high == pytest.approx(high, abs=1e-9), key
    assert got["roc_auc"].value == pytest.approx(roc_auc_score(LABELS, SCORES))
    assert got["roc_auc"].low < got["roc_auc"].value < got["roc_auc"].high
    again = metrics_with_ci(LABELS, SCORES, GROUPS, 0.5, n_resamples=1000, seed=0)
    assert again == got  # seeded: the same intervals every time


def test_point_metrics_agree_with_scikit_learn_on_ties():
    rng = np.random.default_rng(1)
    for _ in range(50):
        y = rng.random(15) < 0.5
        if not 0 < y.sum() < 15:
            continue
        s = np.round(rng.random(15), 1)  # many ties
        m = point_metrics(y.astype(float), s, 0.5)
        assert m["roc_auc"] == pytest.approx(roc_auc_score(y, s), abs=1e-12)
        assert m["pr_auc"] == pytest.approx(average_precision_score(y, s), abs=1e-12)


def test_perfect_separator_on_ten_clips_has_upper_bound_one_and_a_wide_lower_bound():
    labels = np.array([0] * 5 + [1] * 5, dtype=float)
    scores = np.linspace(0.05, 0.95, 10)
    auc = metrics_with_ci(labels, scores, None, 0.5)["roc_auc"]
    assert auc.value == 1.0 and auc.high == 1.0
    assert auc.low < 0.7, auc  # 10 clips cannot prove a perfect model
    assert "95% CI" in auc.text()


def test_fewer_than_1000_resamples_is_refused():
    with pytest.raises(ValueError, match="1000"):
        metrics_with_ci(LABELS, SCORES, GROUPS, 0.5, n_resamples=200)


def test_threshold_presets_meet_their_targets():
    y = LABELS >= 0.5
    sens = threshold_preset(LABELS, SCORES, "sensitivity_95")
    assert np.mean(SCORES[y] >= sens) >= 0.95
    assert all(np.mean(SCORES[y] >= t) < 0.95 for t in SCORES if t > sens)  # the highest one
    spec = threshold_preset(LABELS, SCORES, "specificity_95")
    assert np.mean(SCORES[~y] < spec) >= 0.95
    assert all(np.mean(SCORES[~y] < t) < 0.95 for t in SCORES if t < spec)  # the lowest one
    youden = threshold_preset(LABELS, SCORES, "youden")
    j = [np.mean(SCORES[y] >= t) + np.mean(SCORES[~y] < t) for t in SCORES]
    assert np.mean(SCORES[y] >= youden) + np.mean(SCORES[~y] < youden) == pytest.approx(max(j))


def test_flipped_clips_are_exactly_those_whose_score_lies_between_the_thresholds():
    idx = flipped(SCORES, 0.5, 0.65)
    assert sorted(SCORES[idx]) == sorted(s for s in SCORES if 0.5 <= s < 0.65)
    assert list(flipped(SCORES, 0.4, 0.4)) == []


def test_reliability_curve_counts_every_clip_once():
    curve = reliability_curve(LABELS, SCORES, n_bins=5)
    assert curve["count"].sum() == len(SCORES)
    top = SCORES >= 0.8
    assert curve["fraction_good"][-1] == pytest.approx(LABELS[top].mean())


@pytest.mark.parametrize("method", ["temperature", "platt"])
def test_calibration_lowers_the_log_loss_of_overconfident_scores(method):
    rng = np.random.default_rng(2)
    true_p = rng.uniform(0.1, 0.9, 400)
    y = rng.random(400) < true_p
    over = 1 / (1 + np.exp(-4 * np.log(true_p / (1 - true_p))))  # far too confident
    calibration = fit_calibration(y.astype(float), over, method)
    fixed = apply_calibration(over, calibration)

    def log_loss(p):
        return -np.mean(np.where(y, np.log(p), np.log(1 - p)))

    assert log_loss(fixed) < log_loss(over)
    assert calibration["a"] == pytest.approx(0.25, abs=0.1)


@pytest.mark.parametrize("threshold", [0.003, 0.1, 0.3, 0.5, 0.75, 0.99])
def test_assessment_never_contradicts_the_pass_call(threshold):
    for score in np.linspace(0, 1, 201):
        words = assessment(score, threshold)
        assert (words in PASS_BANDS) == (score >= threshold), (score, threshold, words)
        assert (words in FAIL_BANDS) == (score < threshold)
    assert assessment(0.003, 0.003) == "Acceptable quality"  # was "Very poor" with pass=True


def test_intervals_do_not_depend_on_patient_names_or_row_order():
    """evaluate names patients by header keys, a run folder by p001...: same numbers."""
    got = metrics_with_ci(LABELS, SCORES, GROUPS, 0.5)
    order = np.random.default_rng(5).permutation(len(LABELS))
    renamed = [f"p{ord(GROUPS[i]) * 7 % 11:03d}" for i in order]  # other names, other order
    assert metrics_with_ci(LABELS[order], SCORES[order], renamed, 0.5) == got


def test_one_class_gives_the_defined_metrics_with_intervals():
    labels, scores = np.ones(6), np.array([.9, .8, .4, .7, .95, .6])
    got = metrics_with_ci(labels, scores, None, 0.5)
    assert math.isnan(got["roc_auc"].value) and got["roc_auc"].text() == "n/a"
    assert got["sensitivity"].value == pytest.approx(5 / 6)
    assert got["sensitivity"].low < 5 / 6 < got["sensitivity"].high
    text = format_with_ci(labels, scores, None, 0.5, "Scores")
    assert "one class only" in text and "ROC AUC" in text and "95% CI" in text
