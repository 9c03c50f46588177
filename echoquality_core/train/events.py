"""Events a training run reports: the GUI turns them into Qt signals, the CLI into a progress bar.

Plain frozen dataclasses, no torch, no Qt, so any consumer can import them cheaply.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from echoquality_core.decision import TRAINING_THRESHOLD


@dataclass(frozen=True)
class Progress:
    """Work before training proper, e.g. stage="prepare" while clips are decoded and cached."""

    stage: str
    done: int
    total: int
    message: str = ""


@dataclass(frozen=True)
class BatchEnd:
    """One optimiser step done (epoch is 1-based, step is 1-based within the epoch)."""

    epoch: int
    step: int
    n_steps: int
    loss: float
    seconds: float = 0.0


@dataclass(frozen=True)
class EpochEnd:
    """One epoch done: losses, validation metrics, current learning rate, whether it is the best."""

    epoch: int
    train_loss: float
    val_loss: float
    metrics: dict = field(default_factory=dict)
    lr: float = 0.0
    seconds: float = 0.0
    best: bool = False
    epochs_without_improvement: int = 0


@dataclass(frozen=True)
class TrainError:
    """Something went wrong. kind: "nan_loss", "out_of_memory", "data", "weights", "error",
    or "precision" (a warning: a bf16 step was redone in fp32, or the run switched to fp32).

    ``fatal`` False means a warning (e.g. unreadable clips were left out) and training goes on;
    a fatal error ends the run (its TrainEnd follows, with ``error`` set).
    """

    kind: str
    message: str
    fatal: bool = True


@dataclass(frozen=True)
class TrainEnd:
    """The run is over (always the last event): where the best model is, its test metrics, the
    MLflow run id; ``error`` is the fatal TrainError that ended it, if any."""

    best_checkpoint: Path | None
    test_metrics: dict
    run_id: str | None
    stopped: bool = False
    cancelled: bool = False
    split_sizes: dict = field(default_factory=dict)
    threshold: float = TRAINING_THRESHOLD
    best_epoch: int | None = None
    run_dir: Path | None = None
    error: TrainError | None = None


@dataclass(frozen=True)
class FoldStart:
    """Cross-validation: fold ``fold`` of ``n_folds`` (1-based; ``repeat`` of ``n_repeats``)
    starts; the Trainer events that follow belong to it. ``sizes``: clips per split."""

    fold: int
    n_folds: int
    repeat: int = 1
    n_repeats: int = 1
    sizes: dict = field(default_factory=dict)


@dataclass(frozen=True)
class CrossValEnd(TrainEnd):
    """A cross-validation is over (always its last event). ``test_metrics`` are the
    out-of-fold metrics, ``run_id`` the parent MLflow run, ``run_dir`` the crossval folder;
    ``oof_csv`` holds one out-of-fold score per labelled clip; ``folds_done`` counts the
    folds that finished."""

    oof_csv: Path | None = None
    n_folds: int = 0
    folds_done: int = 0


TrainEvent = Progress | BatchEnd | EpochEnd | TrainError | TrainEnd | FoldStart


def summarize(end: TrainEnd) -> str:
    """A few human lines about a finished run (for the CLI and logs)."""
    if end.cancelled:
        return "Training cancelled; nothing was kept."
    if end.stopped and end.best_checkpoint is None and end.error is None:
        return "Training stopped before the first epoch ended; no model was kept."
    lines = []
    if end.error is not None:
        lines.append(f"Training failed ({end.error.kind}): {end.error.message}")
    if end.best_checkpoint:
        lines.append(f"Best model (epoch {end.best_epoch}): {end.best_checkpoint}")
        lines.append(f"Decision threshold (chosen on validation): {end.threshold:.3f}")
    shown = ("accuracy", "precision", "recall", "f1", "roc_auc", "pr_auc")
    metrics = [f"{k}={end.test_metrics[k]:.3f}" for k in shown
               if isinstance(end.test_metrics.get(k), (int, float))]
    if metrics:
        lines.append("Test: " + ", ".join(metrics))
    if end.split_sizes:
        lines.append("Split (clips): " + ", ".join(f"{k} {v}" for k, v in end.split_sizes.items()))
    return "\n".join(lines)
