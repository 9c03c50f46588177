"""Evaluation: metrics equal scikit-learn's, thresholds, a real model end to end, the
misclassification report, plots, and MLflow logging into a real SQLite store."""
from __future__ import annotations

import csv
import math
import warnings

import numpy as np
import pytest
import torch
from sklearn import metrics as skm
from torch.utils.data import DataLoader, TensorDataset

from echoquality_core.evaluation.evaluate import (
    PLOT_FILES,
    analyze_misclassifications,
    choose_threshold,
    evaluate_model,
    log_evaluation_to_mlflow,
    metrics_from_scores,
    safe_stem,
    save_evaluation_plots,
)
from echoquality_core.runs.tracking import default_artifact_location, default_tracking_uri, start_run

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
SHAPE = (3, 4, 32, 32)  # tiny clips: r2plus1d_18 still runs all its layers


@pytest.fixture(scope="module")
def small_model(random_model):
    """A seeded, untrained R(2+1)D-18 (what build_model gives without weights)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    yield random_model(7)
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def clips():
    """10 clips whose brightness varies, so the model's scores spread out."""
    rng = np.random.default_rng(3)
    videos = rng.normal(0.0, 1.0, (10, *SHAPE)).astype(np.float32)
    videos *= np.linspace(0.2, 3.0, 10, dtype=np.float32).reshape(10, 1, 1, 1, 1)
    return torch.from_numpy(videos)


def _scores_one_by_one(model, videos) -> np.ndarray:
    """The model's scores computed clip by clip, independently of evaluate.py."""
    model.eval()
    with torch.no_grad():
        return np.array([torch.sigmoid(model(v.unsqueeze(0))).item() for v in videos])


@pytest.fixture(scope="module")
def clip_scores(small_model, clips):
    return _scores_one_by_one(small_model, clips)


def _sklearn_metrics(labels, scores, threshold):
    y = (np.asarray(labels) >= 0.5).astype(int)
    pred = (np.asarray(scores) >= threshold).astype(int)
    return {
        "accuracy": skm.accuracy_score(y, pred),
        "precision": skm.precision_score(y, pred, zero_division=0),
        "recall": skm.recall_score(y, pred, zero_division=0),
        "f1": skm.f1_score(y, pred, zero_division=0),
        "roc_auc": skm.roc_auc_score(y, scores),
        "pr_auc": skm.average_precision_score(y, scores),
        "confusion_matrix": skm.confusion_matrix(y, pred, labels=[0, 1]).tolist(),
    }


def test_metrics_equal_sklearn_on_random_scores():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 60)
    scores = np.clip(0.35 * labels + rng.uniform(0, 0.65, 60), 0, 1)
    got = metrics_from_scores(labels, scores, threshold=0.45)
    expected = _sklearn_metrics(labels, scores, 0.45)
    assert got["confusion_matrix"] == expected.pop("confusion_matrix")
    for key, value in expected.items():
        assert got[key] == pytest.approx(value), key
    assert got["brier"] == pytest.approx(skm.brier_score_loss(labels, scores))
    assert (got["n"], got["n_pos"], got["n_neg"]) == (60, labels.sum(), 60 - labels.sum())
    assert got["threshold"] == 0.45


def test_metrics_on_a_hand_checked_example():
    got = metrics_from_scores([0, 0, 1, 1], [0.1, 0.6, 0.4, 0.9], threshold=0.5)
    assert got["confusion_matrix"] == [[1, 1], [1, 1]]  # [[tn, fp], [fn, tp]]
    assert got["accuracy"] == got["precision"] == got["recall"] == got["f1"] == 0.5
    assert got["roc_auc"] == pytest.approx(0.75)
    assert got["brier"] == pytest.approx((0.01 + 0.36 + 0.36 + 0.01) / 4)


def test_soft_labels_binarised_for_classification_but_brier_uses_them_as_given():
    labels = np.array([0.0, 0.2, 0.6, 1.0, 0.5])
    scores = np.array([0.1, 0.7, 0.4, 0.9, 0.55])
    got = metrics_from_scores(labels, scores, 0.5)
    expected = _sklearn_metrics(labels, scores, 0.5)  # binarised at 0.5: 0, 0, 1, 1, 1
    assert got["confusion_matrix"] == expected["confusion_matrix"] == [[1, 1], [1, 2]]
    assert got["roc_auc"] == pytest.approx(expected["roc_auc"])
    assert got["brier"] == pytest.approx(np.mean((scores - labels) ** 2))


def test_single_class_split_gives_nan_auc_without_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = metrics_from_scores([1, 1, 1], [0.2, 0.7, 0.9], threshold=0.5)
        only_poor = metrics_from_scores([0, 0], [0.2, 0.3], threshold=0.5)
    assert math.isnan(got["roc_auc"]) and math.isnan(got["pr_auc"])
    assert got["recall"] == pytest.approx(2 / 3) and got["precision"] == 1.0
    assert got["confusion_matrix"] == [[0, 0], [1, 2]]
    assert only_poor["precision"] == only_poor["recall"] == only_poor["f1"] == 0.0
    assert only_poor["accuracy"] == 1.0 and math.isnan(only_poor["roc_auc"])


def test_empty_split_gives_nan_metrics():
    got = metrics_from_scores([], [], threshold=0.3)
    assert got["n"] == got["n_pos"] == got["n_neg"] == 0
    for key in ("accuracy", "precision", "recall", "f1", "roc_auc", "pr_auc", "brier"):
        assert math.isnan(got[key]), key
    assert got["confusion_matrix"] == [[0, 0], [0, 0]] and got["threshold"] == 0.3


def test_bad_metric_input_is_refused_clearly():
    with pytest.raises(ValueError, match="3 labels but 2 scores"):
        metrics_from_scores([0, 1, 1], [0.2, 0.3])
    with pytest.raises(ValueError, match="scores must be probabilities"):
        metrics_from_scores([0, 1], [0.2, 1.3])
    with pytest.raises(ValueError, match="NaN"):
        metrics_from_scores([0, 1], [0.2, float("nan")])


def test_youden_threshold_on_a_known_example():
    labels = [0, 0, 0, 1, 1, 1]
    scores = [0.1, 0.3, 0.7, 0.4, 0.8, 0.9]
    # J = tpr - fpr is 2/3 at thresholds 0.8 and 0.4; the tie goes to the one nearer 0.5
    assert choose_threshold(labels, scores) == pytest.approx(0.4)
    assert choose_threshold(labels, scores, method="youden") == pytest.approx(0.4)


def test_youden_and_f1_thresholds_are_the_best_over_all_cut_points():
    rng = np.random.default_rng(5)
    labels = rng.integers(0, 2, 80)
    scores = np.clip(0.3 * labels + rng.uniform(0, 0.7, 80), 0, 1)

    def youden(t):
        pred = scores >= t
        return pred[labels == 1].mean() - pred[labels == 0].mean()

    def f1(t):
        return skm.f1_score(labels, scores >= t, zero_division=0)

    candidates = np.unique(scores)
    best_j = max(youden(t) for t in candidates)
    best_f1 = max(f1(t) for t in candidates)
    assert youden(choose_threshold(labels, scores, "youden")) == pytest.approx(best_j)
    assert f1(choose_threshold(labels, scores, "f1")) == pytest.approx(best_f1)


def test_fixed_and_degenerate_thresholds():
    assert choose_threshold([0, 1], [0.2, 0.9], method=0.3) == 0.3
    assert choose_threshold([0, 1], [0.2, 0.9], method="0.65") == 0.65
    assert choose_threshold([1, 1, 1], [0.2, 0.4, 0.9]) == 0.5
    assert choose_threshold([], []) == 0.5
    with pytest.raises(ValueError, match="'youden', 'f1' or a number"):
        choose_threshold([0, 1], [0.2, 0.9], method="best")
    with pytest.raises(ValueError, match="0..1"):
        choose_threshold([0, 1], [0.2, 0.9], method=1.5)


def test_evaluate_model_matches_the_models_own_scores(small_model, clips, clip_scores):
    labels = torch.tensor([0, 1] * 5, dtype=torch.float32)
    threshold = float(np.median(clip_scores))
    loader = DataLoader(TensorDataset(clips, labels), batch_size=4)
    small_model.train()
    got = evaluate_model(small_model, loader, "cpu", threshold=threshold)
    assert small_model.training  # mode restored
    small_model.eval()
    assert [r["path"] for r in got["records"]] == [f"#{i}" for i in range(10)]
    np.testing.assert_allclose([r["score"] for r in got["records"]], clip_scores, atol=1e-5)
    assert [r["predicted"] for r in got["records"]] == [int(s >= threshold) for s in
                                                        [r["score"] for r in got["records"]]]
    expected = metrics_from_scores(labels.numpy(), [r["score"] for r in got["records"]],
                                   threshold)
    assert {k: v for k, v in got.items() if k != "records"} == expected
    assert got["n"] == 10 and got["n_pos"] == 5


def test_evaluate_model_keeps_paths_from_three_tuple_batches(small_model, clips, clip_scores):
    items = [(clips[i], torch.tensor(float(i % 2)), f"clips/clip_{i}.dcm") for i in range(4)]
    got = evaluate_model(small_model, DataLoader(items, batch_size=3), "cpu")
    assert [r["path"] for r in got["records"]] == [f"clips/clip_{i}.dcm" for i in range(4)]
    assert [r["label"] for r in got["records"]] == [0.0, 1.0, 0.0, 1.0]
    np.testing.assert_allclose([r["score"] for r in got["records"]], clip_scores[:4], atol=1e-5)


def test_evaluate_model_on_an_empty_split(small_model):
    empty = DataLoader(TensorDataset(torch.zeros(0, *SHAPE), torch.zeros(0)), batch_size=2)
    got = evaluate_model(small_model, empty, "cpu")
    assert got["n"] == 0 and got["records"] == [] and math.isnan(got["accuracy"])


def test_evaluate_model_refuses_unknown_batches(small_model, clips):
    with pytest.raises(ValueError, match=r"\(videos, labels\)"):
        evaluate_model(small_model, [clips[:2]], "cpu")


def test_misclassifications_are_ranked_and_saved(small_model, clips, clip_scores, tmp_path):
    threshold = float(np.median(clip_scores))
    predicted = clip_scores >= threshold
    # the first 6 clips get the wrong label, the last 4 the right one
    labels = np.where(np.arange(10) < 6, ~predicted, predicted).astype(np.float32)
    paths = [f"project/echo {i}/clip:{i}.dcm" for i in range(10)]
    items = [(clips[i], torch.tensor(labels[i]), paths[i]) for i in range(10)]
    out = tmp_path / "mistakes"
    fps, fns = analyze_misclassifications(small_model, DataLoader(items, batch_size=4), "cpu",
                                          save_dir=out, threshold=threshold)

    wrong = np.arange(6)
    expected_fp = sorted((i for i in wrong if labels[i] == 0), key=lambda i: -clip_scores[i])
    expected_fn = sorted((i for i in wrong if labels[i] == 1), key=lambda i: clip_scores[i])
    assert expected_fp and expected_fn
    assert [r["path"] for r in fps] == [paths[i] for i in expected_fp]
    assert [r["path"] for r in fns] == [paths[i] for i in expected_fn]
    np.testing.assert_allclose([r["score"] for r in fps], clip_scores[expected_fp], atol=1e-5)
    assert [r["rank"] for r in fps] == list(range(1, len(fps) + 1))

    for kind, records in (("fp", fps), ("fn", fns)):
        for r in records:
            image = out / r["image"]
            assert image.name == f"{kind}_{r['rank']:03d}_{safe_stem(r['path'])}.png"
            assert image.read_bytes()[:8] == PNG_MAGIC
    assert sorted(p.name for p in out.glob("*.png")) == sorted(r["image"] for r in fps + fns)

    with open(out / "misclassifications.csv", newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert [(row["kind"], row["path"]) for row in rows] == (
        [("fp", paths[i]) for i in expected_fp] + [("fn", paths[i]) for i in expected_fn])
    assert [float(row["score"]) for row in rows] == pytest.approx(
        [r["score"] for r in fps + fns])


def test_safe_stem_keeps_only_the_file_name():
    assert safe_stem("project/echo 3/clip:3.dcm") == "clip_3"
    assert safe_stem("C:\\data\\a b.DCM#synthetic") == "a_b_synthetic"
    assert safe_stem("clips/IM_0001") == "IM_0001"
    assert safe_stem("#4") == "4"
    assert safe_stem("///") == "clip"


def test_evaluation_plots_are_written(small_model, clips, tmp_path):
    labels = torch.tensor([0, 1] * 5, dtype=torch.float32)
    loader = DataLoader(TensorDataset(clips, labels), batch_size=5)
    metrics = evaluate_model(small_model, loader, "cpu", threshold=0.5)
    paths = save_evaluation_plots(metrics, tmp_path / "plots")
    assert [p.name for p in paths] == list(PLOT_FILES)
    for path in paths:
        assert path.read_bytes()[:8] == PNG_MAGIC and path.stat().st_size > 5_000


@pytest.mark.parametrize("labels, scores", [([1, 1, 1], [0.2, 0.6, 0.9]), ([], [])])
def test_plots_survive_one_class_and_empty_splits(labels, scores, tmp_path):
    metrics = metrics_from_scores(labels, scores, 0.5)
    metrics["records"] = [{"path": f"#{i}", "label": y, "score": s}
                          for i, (y, s) in enumerate(zip(labels, scores))]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        paths = save_evaluation_plots(metrics, tmp_path)
    assert all(p.read_bytes()[:8] == PNG_MAGIC for p in paths) and len(paths) == 5


def test_metrics_and_plots_logged_to_mlflow(tmp_path):
    from mlflow import MlflowClient

    metrics = metrics_from_scores([1, 1, 1, 0], [0.9, 0.8, 0.3, 0.6], threshold=0.5)
    only_good = metrics_from_scores([1, 1], [0.9, 0.4], threshold=0.5)
    metrics["records"] = [{"path": "#0", "label": 1, "score": 0.9}]
    plots_dir = tmp_path / "plots"
    save_evaluation_plots(metrics, plots_dir)
    uri = default_tracking_uri(tmp_path)
    with start_run(tracking_uri=uri, experiment="evaluation",
                   artifact_location=default_artifact_location(tmp_path)) as run:
        logged = log_evaluation_to_mlflow(metrics, prefix="test_", plots_dir=plots_dir)
        log_evaluation_to_mlflow(only_good, prefix="val_")
    client = MlflowClient(uri)
    stored = client.get_run(run.run_id).data.metrics
    assert stored["test_accuracy"] == pytest.approx(metrics["accuracy"])
    assert stored["test_roc_auc"] == pytest.approx(metrics["roc_auc"])
    assert (stored["test_tn"], stored["test_fp"], stored["test_fn"], stored["test_tp"]) == (
        0, 1, 1, 2)
    assert stored["test_n"] == 4 and stored["test_threshold"] == 0.5
    assert {k: v for k, v in stored.items() if k.startswith("test_")} == pytest.approx(logged)
    assert "val_roc_auc" not in stored and "val_recall" in stored  # NaN is skipped
    artifacts = {a.path for a in client.list_artifacts(run.run_id, "plots")}
    assert artifacts == {f"plots/{name}" for name in PLOT_FILES}


def test_mlflow_logging_needs_an_active_run():
    import mlflow

    assert mlflow.active_run() is None
    with pytest.raises(RuntimeError, match="no active MLflow run"):
        log_evaluation_to_mlflow({"accuracy": 1.0})


def test_plots_are_drawn_from_the_records_when_no_folder_is_given(tmp_path):
    from mlflow import MlflowClient

    labels, scores = [1, 1, 0, 0, 1], [0.9, 0.7, 0.2, 0.6, 0.4]
    metrics = metrics_from_scores(labels, scores, threshold=0.5)
    metrics["records"] = [{"path": f"#{i}", "label": y, "score": s}
                          for i, (y, s) in enumerate(zip(labels, scores))]
    uri = default_tracking_uri(tmp_path)
    with start_run(tracking_uri=uri, experiment="evaluation",
                   artifact_location=default_artifact_location(tmp_path)) as run:
        log_evaluation_to_mlflow(metrics, prefix="test_")
    artifacts = {a.path for a in MlflowClient(uri).list_artifacts(run.run_id, "plots")}
    assert artifacts == {f"plots/{name}" for name in PLOT_FILES}
