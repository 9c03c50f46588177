"""How good is a quality model on a labelled split: metrics, threshold choice, plots,
MLflow logging and a look at the clips it got wrong.

The metrics themselves and the threshold choice are in ``echoquality_core.evaluation.metrics``.
"""
from __future__ import annotations

import logging
import math
import numbers
import os
import re
import tempfile
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from torch import nn

from echoquality_core.files.atomic import write_csv_rows
from echoquality_core.labels.store import LabelStore
from echoquality_core.evaluation.metrics import choose_threshold, metrics_from_scores
from echoquality_core.scoring.score import ClipInput, score_clips
from echoquality_core.decision import TRAINING_THRESHOLD, called_good, disagrees, labelled_good

__all__ = ["PLOT_FILES", "analyze_misclassifications", "choose_threshold", "evaluate_labels",
           "evaluate_model", "log_evaluation_to_mlflow", "metrics_from_scores", "safe_stem",
           "save_evaluation_plots"]  # the metric names are re-exported: callers know them here

log = logging.getLogger(__name__)

PLOT_FILES = ("roc.png", "precision_recall.png", "confusion_matrix.png", "score_histogram.png",
              "reliability.png")


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
    model: nn.Module, loader: Iterable, device: Any, threshold: float = TRAINING_THRESHOLD
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


def evaluate_labels(
    csv_path: str | os.PathLike,
    model: str | os.PathLike | nn.Module,
    *,
    videos_dir: str | os.PathLike | None = None,
    threshold: float | None = None,
    device: str = "auto",
    batch_size: int = 8,
    num_workers: int = 2,
    cache_dir: str | os.PathLike | None = None,
    progress: Callable[[int, int, str], None] | None = None,
    trust_exported: bool = False,
    only: set[str] | None = None,
) -> tuple[dict[str, Any], pd.DataFrame]:
    """(metrics with ``records``, predictions table) of ``model`` on the labelled clips of a
    labels CSV (paths relative to ``videos_dir``, default the CSV's folder); with ``only``
    just the labelled clips named there (e.g. a run's test split); ``progress(done, total,
    name)`` as in ``score_clips``.

    The table has the scores CSV's columns plus ``label``; unreadable clips keep their row with
    an ``error`` and are left out of the metrics. ``threshold`` defaults to the checkpoint's.
    Raises ValueError when nothing is labelled or no labelled clip can be read.
    """
    store = LabelStore(csv_path, root=videos_dir)
    names = [n for n in store.paths() if only is None or n in only]
    if not names:
        raise ValueError(f"{Path(csv_path).name}: no labelled clips"
                         + (" of the run's test split" if only is not None else ""))
    labels = {name: float(store.get(name).quality_score) for name in names}
    clips = [ClipInput(store.resolve(name), name) for name in names]
    table = score_clips(clips, model, threshold=threshold, device=device, batch_size=batch_size,
                        num_workers=num_workers, cache_dir=cache_dir, progress=progress,
                        trust_exported=trust_exported)
    table.insert(1, "label", [labels[name] for name in table["video_path"]])
    ok = table[table["error"] == ""]
    if ok.empty:
        raise ValueError(f"none of the {len(table)} labelled clips could be read; first error: "
                         f"{table['error'].iloc[0]}")
    threshold = table.attrs["threshold"]
    metrics = metrics_from_scores(ok["label"].to_numpy(), ok["score"].to_numpy(), threshold)
    metrics["records"] = [
        {"path": p, "label": float(y), "score": float(s),
         "predicted": int(called_good(s, threshold)), "file": str(store.resolve(p))}
        for p, y, s in zip(ok["video_path"], ok["label"], ok["score"], strict=True)
    ]
    return metrics, table


def save_evaluation_plots(metrics: Mapping[str, Any], out_dir: str | os.PathLike) -> list[Path]:
    """ROC, precision-recall, confusion matrix, score histogram and reliability PNGs of an
    :func:`evaluate_model` result, written to ``out_dir``; returns their paths."""
    from echoquality_core.evaluation import plots

    out_dir = Path(out_dir)
    records = metrics.get("records", [])
    labels = [r["label"] for r in records]
    scores = [r["score"] for r in records]
    threshold = float(metrics.get("threshold", TRAINING_THRESHOLD))
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
    """Log the numeric metrics (confusion-matrix cells as tn/fp/fn/tp; the 95% CIs of
    ``stats.ci_metrics`` as <metric>_ci_low/_ci_high; NaN skipped) and the plots (under
    artifact folder "plots") into the active MLflow run: the PNGs in ``plots_dir``, or,
    without one, plots drawn now from the metrics' per-clip records.

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
        elif key == "ci":
            logged.update({f"{prefix}{name}_ci_{end}": float(v)
                           for name, pair in value.items() for end, v in zip(("low", "high"), pair)
                           if math.isfinite(float(v))})
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
    threshold: float = TRAINING_THRESHOLD,
    target_layer_name: str = "layer4",
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The clips the model gets wrong at ``threshold``: (false_positives, false_negatives).

    False positives (labelled poor, scored good) come most confident first (highest score),
    false negatives lowest score first. Each record is {path, label, score, rank, image};
    ``save_dir`` gets one PNG per clip (``fp_001_<file stem>.png``: the middle model-input frame
    and a GradCAM strip) and ``misclassifications.csv`` (kind, rank, path, label, score, image).
    """
    from echoquality_core.scoring.gradcam import denormalize, gradcam
    from echoquality_core.evaluation.plots import save_gradcam_strip

    threshold = float(threshold)
    wrong: list[tuple[dict[str, Any], torch.Tensor]] = []

    def keep_mistake(record: dict[str, Any], video: torch.Tensor) -> None:
        if disagrees(record["label"], record["score"], threshold):
            wrong.append((record, video.detach().to("cpu", torch.float16)))

    _predict(model, loader, device, keep=keep_mistake)
    false_pos = sorted((w for w in wrong if not labelled_good(w[0]["label"])),
                       key=lambda w: -w[0]["score"])
    false_neg = sorted((w for w in wrong if labelled_good(w[0]["label"])),
                       key=lambda w: w[0]["score"])

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

    write_csv_rows(save_dir / "misclassifications.csv", MISCLASSIFICATION_FIELDS, (
        {"kind": kind, **{k: r[k] for k in MISCLASSIFICATION_FIELDS[1:]}}
        for kind in ("fp", "fn") for r in results[kind]))
    log.info("%d false positives, %d false negatives at threshold %.3f -> %s",
             len(results["fp"]), len(results["fn"]), threshold, save_dir)
    return results["fp"], results["fn"]
