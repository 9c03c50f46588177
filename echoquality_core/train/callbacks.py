"""What happens around the Trainer's epoch loop, as callbacks on its events (Lightning's
``ModelCheckpoint``/``EarlyStopping``/loggers): keep the best model, stop when validation stops
improving, log to MLflow. Each is small and sees the trainer only through its public fields.

Hooks, in the order the trainer calls them each epoch: ``on_validation_end(trainer, epoch,
val)`` with the validation predictions (loss, labels, scores), then ``on_epoch_end(trainer,
event)`` with the ``EpochEnd`` event the CLI and GUI also receive; ``on_fit_end(trainer,
metrics, plots)`` after the best model was tested.
"""
from __future__ import annotations

import dataclasses
import logging
import math
from pathlib import Path
from typing import Any, Protocol

from echoquality_core.files.digest import file_digest
from echoquality_core.evaluation.evaluate import choose_threshold, log_evaluation_to_mlflow
from echoquality_core.train.events import EpochEnd
from echoquality_core.model.network import save_checkpoint
from echoquality_core.decision import TRAINING_THRESHOLD, labelled_good

log = logging.getLogger(__name__)


class Trainer(Protocol):
    """What a callback may see of ``train.Trainer``."""

    config: Any  # TrainConfig
    params: Any  # PreprocessParams
    folder: Any  # RunFolder
    model: Any
    device: Any
    data: Any  # split sizes, failures
    csv_path: Path
    run_name: str
    run_id: str | None
    best: BestCheckpoint
    early_stopped_at: int | None
    steps: Any  # loop.StepPrecision: the precision trained in, steps redone in fp32


class Callback:
    """No-op hooks; subclasses override what they need."""

    def on_validation_end(self, trainer: Trainer, epoch: int, val: dict[str, Any]) -> None:
        """After validating epoch ``epoch``: ``val`` has loss, labels, scores, paths."""

    def on_epoch_end(self, trainer: Trainer, event: EpochEnd) -> None:
        """After the epoch's EpochEnd event was built (before it is emitted)."""

    def on_fit_end(self, trainer: Trainer, metrics: dict, plots: list[Path]) -> None:
        """After the best model was tested (``metrics`` empty without a test split)."""


class BestCheckpoint(Callback):
    """Saves ``best.pt`` whenever the validation loss improves, with the decision threshold
    chosen on that validation split (``config.threshold``: "youden", "f1" or a number)."""

    def __init__(self) -> None:
        self.loss = math.inf
        self.epoch: int | None = None
        self.threshold = TRAINING_THRESHOLD
        self.improved = False

    def on_validation_end(self, trainer: Trainer, epoch: int, val: dict[str, Any]) -> None:
        self.improved = val["loss"] < self.loss
        if self.improved:
            self.save(trainer, epoch, val)

    def save(self, trainer: Trainer, epoch: int, val: dict[str, Any]) -> None:
        """Make the model of ``epoch`` the best one (also used when no epoch finished)."""
        binary = [int(labelled_good(y)) for y in val["labels"]]
        method = trainer.config.threshold
        try:
            self.threshold = float(choose_threshold(binary, val["scores"], method=method))
        except ValueError as exc:  # e.g. a single-class validation split
            log.warning("threshold %r not computable on validation (%s); using %g", method, exc,
                        TRAINING_THRESHOLD)
            self.threshold = TRAINING_THRESHOLD
        self.loss, self.epoch = val["loss"], epoch
        save_checkpoint(
            trainer.model, trainer.folder.best, threshold=self.threshold,
            preprocess=dataclasses.asdict(trainer.params), config=trainer.config.to_dict(),
            epoch=epoch, val_loss=val["loss"], run_id=trainer.run_id,
        )


class EarlyStopping(Callback):
    """Counts epochs without a lower validation loss; asks the trainer to stop after
    ``patience`` of them (0 = never)."""

    def __init__(self, patience: int) -> None:
        self.patience = patience
        self.best = math.inf
        self.waited = 0

    def on_validation_end(self, trainer: Trainer, epoch: int, val: dict[str, Any]) -> None:
        if val["loss"] < self.best:
            self.best, self.waited = val["loss"], 0
        else:
            self.waited += 1

    def on_epoch_end(self, trainer: Trainer, event: EpochEnd) -> None:
        if self.patience and self.waited >= self.patience:
            trainer.early_stopped_at = event.epoch


class MlflowLogger(Callback):
    """Logs the data split, every epoch's metrics and the run's outcome to an MLflow run; with
    each epoch the training steps redone in fp32 so far (metric ``fp32_redone_steps``) and the
    precision trained in (tag ``precision_effective``, e.g. "bf16, then fp32 (3 steps redone
    in fp32)"; the param ``precision`` is the one the run started in)."""

    def __init__(self, run_log: Any) -> None:
        self.run_log = run_log

    def log_data(self, trainer: Trainer, split_file: Path) -> None:
        """Split sizes, clips left out, hashes tying the run to its labels and split."""
        data = trainer.data
        self.run_log.log_params({f"n_{k}": v for k, v in data.sizes.items()}
                                | {"n_excluded": len(data.failures)})
        from echoquality_core.labels.raters import training_table_params

        self.run_log.log_params(training_table_params(trainer.csv_path))
        self.run_log.set_tags({
            "labels_sha256": file_digest(trainer.csv_path),
            "split_sha256": file_digest(split_file),
            "run_dir": trainer.run_name,
        })
        self.run_log.log_artifact(split_file)

    def on_epoch_end(self, trainer: Trainer, event: EpochEnd) -> None:
        self.run_log.log_metrics(
            {"train_loss": event.train_loss, "val_loss": event.val_loss, "lr": event.lr,
             "epoch_seconds": event.seconds, "fp32_redone_steps": trainer.steps.redone}
            | {f"val_{k}": v for k, v in event.metrics.items()},
            step=event.epoch,
        )
        self.run_log.set_tags({"precision_effective": trainer.steps.effective()})
        if trainer.early_stopped_at == event.epoch:
            self.run_log.set_tags({"early_stopped_at_epoch": event.epoch})

    def on_fit_end(self, trainer: Trainer, metrics: dict, plots: list[Path]) -> None:
        best, folder, run_log = trainer.best, trainer.folder, self.run_log
        run_log.log_metrics({"best_val_loss": best.loss, "best_epoch": best.epoch or 0,
                             "threshold": best.threshold})
        run_log.set_tags({"precision_effective": trainer.steps.effective()})
        if metrics:
            log_evaluation_to_mlflow(metrics, prefix="test_",
                                     plots_dir=folder.plots if plots else None)
        run_log.log_artifact(folder.summary)
        if folder.predictions.is_file():
            run_log.log_artifact(folder.predictions)
        # best.pt is stored once: inside the pyfunc model, else as checkpoints/best.pt
        # (tracking.run_checkpoint/download_checkpoint read both); best_state_dict.pt stays local
        if trainer.config.log_mlflow_model:
            from echoquality_core.scoring.pyfunc import log_pyfunc_model

            log_pyfunc_model(folder.best)
        else:
            run_log.log_artifact(folder.best, "checkpoints")
