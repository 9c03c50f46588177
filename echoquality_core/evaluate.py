"""How good is a quality model on a labelled split: metrics, threshold choice, plots,
MLflow logging and a look at the clips it got wrong.

Scores are sigmoid(logit) in 0..1 (1 = good quality). Labels may be soft (0..1): the
classification metrics use them binarised at 0.5, the Brier score uses them as they are.
Every metric comes from scikit-learn; an empty split gives NaN metrics and a one-class split
NaN ROC/PR AUC, never an exception.
"""
from __future__ import annotations

import csv
import logging
import math
import numbers
import os
import re
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

log = logging.getLogger(__name__)

PLOT_FILES = ("roc.png", "precision_recall.png", "confusion_matrix.png", "score_histogram.png",
              "reliability.png")
_NAN = float("nan")
_SCALAR_METRICS = ("accuracy", "precision", "recall", "f1", "roc_auc", "pr_auc", "brier")


def _as_1d(values: Any, name: str) -> np.ndarray:
    if isinstance(values, torch.Tensor):
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


def metrics_from_scores(labels: Any, scores: Any, threshold: float = 0.5) -> dict[str, Any]:
    """Classification metrics for quality scores against labels at a decision threshold.

    Returns accuracy, precision, recall, f1, roc_auc, pr_auc (average precision), brier,
    confusion_matrix [[tn, fp], [fn, tp]], threshold, n, n_pos, n_neg.
    """
    from sklearn.metrics import (
        accuracy_score,
        average_precision_score,
        confusion_matrix,
        f1_score,
        mean_squared_error,
        precision_score,
        recall_score,
        roc_auc_score,
    )

    y_soft, s = _labels_scores(labels, scores)
    threshold = float(threshold)
    y = (y_soft >= 0.5).astype(int)
    predicted = (s >= threshold).astype(int)
    n_pos = int(y.sum())
    out: dict[str, Any] = dict.fromkeys(_SCALAR_METRICS, _NAN)
    out.update(confusion_matrix=[[0, 0], [0, 0]], threshold=threshold, n=int(y.size),
               n_pos=n_pos, n_neg=int(y.size) - n_pos)
    if y.size == 0:
        return out
    out["accuracy"] = float(accuracy_score(y, predicted))
    out["precision"] = float(precision_score(y, predicted, zero_division=0))
    out["recall"] = float(recall_score(y, predicted, zero_division=0))
    out["f1"] = float(f1_score(y, predicted, zero_division=0))
    out["brier"] = float(mean_squared_error(y_soft, s))  # == brier_score_loss for 0/1 labels
    out["confusion_matrix"] = confusion_matrix(y, predicted, labels=[0, 1]).tolist()
    if 0 < n_pos < y.size:
        out["roc_auc"] = float(roc_auc_score(y, s))
        out["pr_auc"] = float(average_precision_score(y, s))
    return out


evaluate_scores = metrics_from_scores  # the name train.py uses


def _closest_to_half(candidates: np.ndarray) -> float:
    return float(candidates[np.argmin(np.abs(candidates - 0.5))])


def choose_threshold(labels: Any, scores: Any, method: str | float = "youden") -> float:
    """Decision threshold for "good" (score >= threshold).

    ``"youden"``: the ROC point maximising sensitivity + specificity - 1; ``"f1"``: the
    threshold maximising F1; a number: that fixed threshold. Ties go to the threshold closest
    to 0.5; a split with one class (or none) gives 0.5.
    """
    from sklearn.metrics import precision_recall_curve, roc_curve

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
    y = (y_soft >= 0.5).astype(int)
    if not 0 < y.sum() < y.size:
        return 0.5
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


def _unpack(batch: Any) -> tuple[torch.Tensor, torch.Tensor, list[str] | None]:
    if not isinstance(batch, (list, tuple)) or len(batch) not in (2, 3):
        raise ValueError(
            "loader batches must be (videos, labels) or (videos, labels, paths), "
            f"got {type(batch).__name__}" + (f" of length {len(batch)}"
                                              if isinstance(batch, (list, tuple)) else "")
        )
    paths = [str(p) for p in batch[2]] if len(batch) == 3 else None
    return batch[0], torch.as_tensor(batch[1]), paths


def _predict(
    model: nn.Module, loader: Iterable, device: Any, keep: Any = None
) -> list[dict[str, Any]]:
    """Records {path, label, score} for every clip; ``keep(record, video)`` sees each clip."""
    device = torch.device(device)
    was_training = model.training
    records: list[dict[str, Any]] = []
    model.to(device)
    model.eval()
    try:
        with torch.inference_mode():
            for batch in loader:
                videos, labels, paths = _unpack(batch)
                logits = model(videos.to(device)).reshape(-1)
                if logits.numel() != len(videos):
                    raise ValueError(
                        f"model gave {logits.numel()} outputs for {len(videos)} clips; "
                        "expected one logit per clip"
                    )
                scores = torch.sigmoid(logits.float()).cpu().numpy()
                labels = labels.reshape(-1).float().cpu().numpy()
                for k in range(len(videos)):
                    path = paths[k] if paths is not None else f"#{len(records)}"
                    record = {"path": path, "label": float(labels[k]), "score": float(scores[k])}
                    records.append(record)
                    if keep is not None:
                        keep(record, videos[k])
    finally:
        model.train(was_training)
    return records


def evaluate_model(
    model: nn.Module, loader: Iterable, device: Any, threshold: float = 0.5
) -> dict[str, Any]:
    """Score every clip of ``loader`` and compute :func:`metrics_from_scores`.

    Batches are (videos, labels) or (videos, labels, paths). The result also holds
    ``records``: one {path, label, score, predicted} per clip ("#<index>" without paths).
    The model is put in eval mode and returned to its previous mode afterwards.
    """
    records = _predict(model, loader, device)
    metrics = metrics_from_scores([r["label"] for r in records],
                                  [r["score"] for r in records], threshold)
    for r in records:
        r["predicted"] = int(r["score"] >= metrics["threshold"])
    metrics["records"] = records
    return metrics


def save_evaluation_plots(metrics: Mapping[str, Any], out_dir: str | os.PathLike) -> list[Path]:
    """ROC, precision-recall, confusion matrix, score histogram and reliability PNGs of an
    :func:`evaluate_model` result, written to ``out_dir``; returns their paths."""
    from echoquality_core import plots

    out_dir = Path(out_dir)
    records = metrics.get("records", [])
    labels = [r["label"] for r in records]
    scores = [r["score"] for r in records]
    threshold = float(metrics.get("threshold", 0.5))
    roc, pr, cm, hist, reliability = (out_dir / name for name in PLOT_FILES)
    return [
        plots.plot_roc(labels, scores, roc),
        plots.plot_precision_recall(labels, scores, pr),
        plots.plot_confusion_matrix(metrics["confusion_matrix"], cm, threshold),
        plots.plot_score_histogram(labels, scores, threshold, hist),
        plots.plot_reliability(labels, scores, reliability),
    ]


def log_evaluation_to_mlflow(
    metrics: Mapping[str, Any], prefix: str = "test_", plots_dir: str | os.PathLike | None = None
) -> dict[str, float]:
    """Log the numeric metrics (confusion-matrix cells as tn/fp/fn/tp; NaN skipped) and the
    plots (under artifact folder "plots") into the active MLflow run: the PNGs in
    ``plots_dir``, or, without one, plots drawn now from the metrics' per-clip records.

    Raises RuntimeError when no run is active. Returns the metrics as logged.
    """
    import mlflow

    if mlflow.active_run() is None:
        raise RuntimeError(
            "no active MLflow run: call log_evaluation_to_mlflow inside `with mlflow.start_run():`"
        )
    logged: dict[str, float] = {}
    for key, value in metrics.items():
        if key == "confusion_matrix":
            (tn, fp), (fn, tp) = value
            logged.update({f"{prefix}{k}": float(v)
                           for k, v in (("tn", tn), ("fp", fp), ("fn", fn), ("tp", tp))})
        elif (isinstance(value, numbers.Real) and not isinstance(value, bool)
              and math.isfinite(float(value))):
            logged[f"{prefix}{key}"] = float(value)
    if logged:
        mlflow.log_metrics(logged)
    if plots_dir is not None:
        plots_dir = Path(plots_dir)
        if not plots_dir.is_dir():
            raise FileNotFoundError(f"plots folder not found: {plots_dir}")
        for png in sorted(plots_dir.glob("*.png")):
            mlflow.log_artifact(str(png), artifact_path="plots")
    elif metrics.get("records") and "confusion_matrix" in metrics:
        with tempfile.TemporaryDirectory() as tmp:
            for png in save_evaluation_plots(metrics, tmp):
                mlflow.log_artifact(str(png), artifact_path="plots")
    return logged


def safe_stem(path: str) -> str:
    """A file-name-safe short name for a clip path: its file name without ".dcm" (never header
    data); "clips/a b.dcm#synthetic" -> "a_b_synthetic"."""
    name = str(path).replace("\\", "/").rsplit("/", 1)[-1]
    name = re.sub(r"\.(dcm|dicom)(?=$|#)", "", name, flags=re.IGNORECASE)
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._-")
    return stem[:60] or "clip"


MISCLASSIFICATION_FIELDS = ("kind", "rank", "path", "label", "score", "image")


def analyze_misclassifications(
    model: nn.Module,
    loader: Iterable,
    device: Any,
    save_dir: str | os.PathLike = "misclassifications",
    threshold: float = 0.5,
    target_layer_name: str = "layer4",
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The clips the model gets wrong at ``threshold``: (false_positives, false_negatives).

    False positives (labelled poor, scored good) come most confident first (highest score),
    false negatives lowest score first. Each record is {path, label, score, rank, image};
    ``save_dir`` gets one PNG per clip (``fp_001_<file stem>.png``: the middle model-input frame
    and a GradCAM strip) and ``misclassifications.csv`` (kind, rank, path, label, score, image).
    """
    from echoquality_core.gradcam import denormalize, gradcam
    from echoquality_core.plots import save_gradcam_strip

    threshold = float(threshold)
    wrong: list[tuple[dict[str, Any], torch.Tensor]] = []

    def keep_mistake(record: dict[str, Any], video: torch.Tensor) -> None:
        good = record["label"] >= 0.5
        if good != (record["score"] >= threshold):
            wrong.append((record, video.detach().to("cpu", torch.float16)))

    _predict(model, loader, device, keep=keep_mistake)
    false_pos = sorted((w for w in wrong if w[0]["label"] < 0.5), key=lambda w: -w[0]["score"])
    false_neg = sorted((w for w in wrong if w[0]["label"] >= 0.5), key=lambda w: w[0]["score"])

    save_dir = Path(save_dir)
    save_dir.mkdir(parents=True, exist_ok=True)
    results: dict[str, list[dict[str, Any]]] = {"fp": [], "fn": []}
    for kind, items in (("fp", false_pos), ("fn", false_neg)):
        for rank, (record, video) in enumerate(items, start=1):
            video = video.float()
            image = save_dir / f"{kind}_{rank:03d}_{safe_stem(record['path'])}.png"
            maps = gradcam(model, video, target_layer_name,
                           explain="good" if kind == "fp" else "poor")
            frames = denormalize(video)
            what = "false positive" if kind == "fp" else "false negative"
            save_gradcam_strip(
                frames, maps, image, lead_frame=frames.shape[0] // 2,
                title=f"{what} #{rank}: {Path(record['path']).name}  label {record['label']:g}  "
                      f"score {record['score']:.3f}  (threshold {threshold:.2f})",
            )
            results[kind].append({**record, "rank": rank, "image": image.name})

    with open(save_dir / "misclassifications.csv", "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=MISCLASSIFICATION_FIELDS)
        writer.writeheader()
        for kind in ("fp", "fn"):
            for r in results[kind]:
                writer.writerow({"kind": kind, **{k: r[k] for k in MISCLASSIFICATION_FIELDS[1:]}})
    log.info("%d false positives, %d false negatives at threshold %.3f -> %s",
             len(results["fp"]), len(results["fn"]), threshold, save_dir)
    return results["fp"], results["fn"]
