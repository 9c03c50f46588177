"""Evaluation and GradCAM figures as PNG files (matplotlib, Agg canvas only: no pyplot, no
global backend, safe in worker threads and without a display).

Labels may be soft (0..1); the plots use them binarised at 0.5 (1 = good quality).
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from echoquality_core.decision import TRAINING_THRESHOLD, labelled_good
from echoquality_core.evaluation.curves import (
    average_precision,
    precision_recall_curve,
    roc_auc,
    roc_curve,
)
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

CLASS_NAMES = ("poor (0)", "good (1)")
_COLOURS = ("#d95f02", "#1b9e77")  # poor, good
_DPI = 100


def _figure(width: float = 5.0, height: float = 4.5) -> Figure:
    fig = Figure(figsize=(width, height), dpi=_DPI)
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Figure, path: str | os.PathLike) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=_DPI)
    return path


def _binary(labels) -> np.ndarray:
    return labelled_good(np.asarray(labels, dtype=float).reshape(-1)).astype(int)


def _note(ax, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes,
            fontsize=11, color="0.3", wrap=True)


def _both_classes(y: np.ndarray) -> bool:
    return y.size > 0 and 0 < y.sum() < y.size


def plot_roc(labels, scores, path: str | os.PathLike) -> Path:
    """ROC curve with its AUC (a note instead when the clips are all one class)."""
    y, s = _binary(labels), np.asarray(scores, dtype=float).reshape(-1)
    fig = _figure()
    ax = fig.add_subplot()
    ax.plot([0, 1], [0, 1], ls="--", color="0.6", lw=1, label="chance")
    if _both_classes(y):
        fpr, tpr, _ = roc_curve(y, s)
        ax.plot(fpr, tpr, color=_COLOURS[1], lw=2, label=f"AUC = {roc_auc(y, s):.3f}")
        ax.legend(loc="lower right")
    else:
        _note(ax, "ROC needs clips of both classes")
    ax.set(xlim=(0, 1), ylim=(0, 1.02), xlabel="False positive rate (1 - specificity)",
           ylabel="True positive rate (sensitivity)", title=f"ROC curve (n = {y.size})")
    return _save(fig, path)


def plot_precision_recall(labels, scores, path: str | os.PathLike) -> Path:
    """Precision-recall curve with average precision and the base rate."""
    y, s = _binary(labels), np.asarray(scores, dtype=float).reshape(-1)
    fig = _figure()
    ax = fig.add_subplot()
    if _both_classes(y):
        precision, recall, _ = precision_recall_curve(y, s)
        ap = average_precision(y, s)
        ax.plot(recall, precision, color=_COLOURS[1], lw=2, drawstyle="steps-post",
                label=f"AP = {ap:.3f}")
        ax.axhline(y.mean(), ls="--", color="0.6", lw=1, label=f"base rate = {y.mean():.2f}")
        ax.legend(loc="lower left")
    else:
        _note(ax, "Precision-recall needs clips of both classes")
    ax.set(xlim=(0, 1), ylim=(0, 1.02), xlabel="Recall (good clips found)",
           ylabel="Precision", title=f"Precision-recall (n = {y.size})")
    return _save(fig, path)


def plot_confusion_matrix(confusion, path: str | os.PathLike,
                          threshold: float = TRAINING_THRESHOLD) -> Path:
    """2x2 confusion matrix [[tn, fp], [fn, tp]] with counts and row percentages."""
    cm = np.asarray(confusion, dtype=int).reshape(2, 2)
    fig = _figure(4.8, 4.2)
    ax = fig.add_subplot()
    ax.imshow(cm, cmap="Blues", vmin=0, vmax=max(int(cm.max()), 1))
    for (r, c), count in np.ndenumerate(cm):
        row = cm[r].sum()
        share = f"\n{100 * count / row:.0f}%" if row else ""
        dark = count > cm.max() / 2
        ax.text(c, r, f"{count}{share}", ha="center", va="center", fontsize=13,
                color="white" if dark else "black")
    ax.set_xticks([0, 1], CLASS_NAMES)
    ax.set_yticks([0, 1], CLASS_NAMES)
    ax.set(xlabel="Predicted", ylabel="Label",
           title=f"Confusion matrix (threshold {threshold:.2f})")
    return _save(fig, path)


def plot_score_histogram(labels, scores, threshold: float, path: str | os.PathLike) -> Path:
    """Histogram of scores per class, with the decision threshold."""
    y, s = _binary(labels), np.asarray(scores, dtype=float).reshape(-1)
    fig = _figure(5.5, 4.0)
    ax = fig.add_subplot()
    bins = np.linspace(0, 1, 21)
    for cls in (0, 1):
        chosen = s[y == cls]
        if chosen.size:
            ax.hist(chosen, bins=bins, alpha=0.6, color=_COLOURS[cls],
                    label=f"{CLASS_NAMES[cls]}, n = {chosen.size}")
    ax.axvline(threshold, color="black", ls="--", lw=1, label=f"threshold {threshold:.2f}")
    ax.legend(loc="best", fontsize=9)
    if not s.size:
        _note(ax, "No clips")
    ax.set(xlim=(0, 1), xlabel="Quality score", ylabel="Clips", title="Scores by label")
    return _save(fig, path)


def plot_reliability(labels, scores, path: str | os.PathLike, n_bins: int = 10) -> Path:
    """Reliability diagram: fraction of good clips against mean score per score bin."""
    from sklearn.calibration import calibration_curve

    y, s = _binary(labels), np.asarray(scores, dtype=float).reshape(-1)
    fig = _figure()
    ax = fig.add_subplot()
    ax.plot([0, 1], [0, 1], ls="--", color="0.6", lw=1, label="perfectly calibrated")
    if s.size:
        frac_good, mean_score = calibration_curve(y, s, n_bins=n_bins, strategy="uniform")
        ax.plot(mean_score, frac_good, marker="o", color=_COLOURS[1], lw=2, label="model")
        ax.legend(loc="upper left")
    else:
        _note(ax, "No clips")
    ax.set(xlim=(0, 1), ylim=(-0.02, 1.02), xlabel="Mean quality score in bin",
           ylabel="Fraction labelled good", title=f"Reliability ({n_bins} bins)")
    return _save(fig, path)


def _shown_frames(n_frames: int, n_shown: int) -> np.ndarray:
    return np.unique(np.linspace(0, n_frames - 1, max(1, min(n_shown, n_frames))).round()
                     ).astype(int)


def save_gradcam_strip(
    frames: np.ndarray,
    maps: np.ndarray,
    path: str | os.PathLike,
    *,
    n_frames_shown: int = 8,
    title: str | None = None,
    lead_frame: int | None = None,
    alpha: float = 0.45,
) -> Path:
    """PNG strip: evenly spaced frames (uint8 (T,H,W,3)) with a jet GradCAM overlay (maps
    (T,H,W) in 0..1), the frame without overlay above each, and the per-frame importance curve.
    ``lead_frame`` adds that frame, large and without overlay, on the left."""
    frames = np.asarray(frames)
    maps = np.asarray(maps, dtype=np.float32)
    if frames.ndim != 4 or frames.shape[-1] != 3 or maps.shape != frames.shape[:3]:
        raise ValueError(
            f"frames (T,H,W,3) and maps (T,H,W) must match, got {frames.shape} and {maps.shape}"
        )
    shown = _shown_frames(frames.shape[0], n_frames_shown)
    lead = 2 if lead_frame is not None else 0
    ncols = lead + len(shown)
    fig = _figure(1.6 * ncols + 0.4, 5.2)
    grid = fig.add_gridspec(3, ncols, height_ratios=(1, 1, 0.9))
    jet = colormaps["jet"]
    if lead_frame is not None:
        ax = fig.add_subplot(grid[0:2, 0:2])
        ax.imshow(frames[lead_frame])
        ax.set_title(f"frame {lead_frame} (model input)", fontsize=9)
        ax.axis("off")
    for k, t in enumerate(shown):
        top = fig.add_subplot(grid[0, lead + k])
        top.imshow(frames[t])
        top.set_title(f"frame {t}", fontsize=8)
        top.axis("off")
        bottom = fig.add_subplot(grid[1, lead + k])
        bottom.imshow(frames[t])
        bottom.imshow(jet(np.clip(maps[t], 0, 1)), alpha=alpha)
        bottom.axis("off")
    curve = fig.add_subplot(grid[2, :])
    importance = maps.mean(axis=(1, 2))
    curve.plot(np.arange(len(importance)), importance, marker="o", ms=3, color="#c0392b")
    curve.scatter(shown, importance[shown], color="black", s=14, zorder=3, label="shown above")
    curve.set(xlim=(-0.5, len(importance) - 0.5), ylim=(0, max(1e-3, importance.max()) * 1.1),
              xlabel="Model frame", ylabel="Mean GradCAM")
    curve.legend(loc="upper right", fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    return _save(fig, path)
