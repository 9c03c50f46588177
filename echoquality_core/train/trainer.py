"""Fine-tune the R(2+1)D quality model on labelled clips, tracked in MLflow.

``Trainer(config, callback).run()`` does what the training guide's ``train_quality_model.py``
does: load the labels CSV, decode and cache the clips (unreadable ones are reported and left
out), split by patient, freeze all but the last blocks, train, keep the best model by
validation loss, evaluate it on the test split and log everything to MLflow. It reports
progress as events (``echoquality_core.train.events``) to one callback, which the GUI and the CLI
turn into a progress display; ``stop()`` ends early keeping the best model, ``cancel()``
throws the run away.

Paths: a relative ``annotations_csv`` is relative to the working directory; every other
relative path in the config (videos_dir, model_weights, save_dir, cache_dir) is relative to the
CSV's folder. A clip path in the CSV is looked up as: absolute path; relative to the CSV's
folder; relative to ``videos_dir``; ``videos_dir``/file name (so both the guide's
``echo_videos/video1.dcm`` and bare ``video1.dcm`` work).

Progressive unfreezing (``unfreeze_schedule="fc@0,layer4@3,layer3@6"``, epochs 0-based): the
optimiser is built over all parameters once; frozen ones have ``requires_grad=False``, get no
gradient and are skipped by AdamW until their block is unfrozen.
"""
from __future__ import annotations

import errno
import logging
import queue
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any
from uuid import uuid4

import torch

from echoquality_core.files.atomic import DiskFullError
from echoquality_core.labels.folder import ProjectFolder
from echoquality_core.data.clips import ClipCache, save_split
from echoquality_core.data.patients import patient_group
from echoquality_core.evaluation.evaluate import evaluate_model, metrics_from_scores, save_evaluation_plots
from echoquality_core.evaluation.stats import ci_metrics, metrics_with_ci
from echoquality_core.train.events import BatchEnd, EpochEnd, Progress, TrainEnd, TrainError, summarize
from echoquality_core.model.interrupt import Interrupted, interruptible
from echoquality_core.model.precision import cuda_batch_that_fits, prepare_model
from echoquality_core.train.losses import make_criterion
from echoquality_core.model.network import (freeze_model_except_final_layers, load_weights,
                                            parse_unfreeze_schedule, resolve_device, unfreeze)
from echoquality_core.runs.folder import STATE_DICT_FILE, RunFolder
from echoquality_core.runs.tracking import default_artifact_location, default_tracking_uri, start_run
from echoquality_core.train.callbacks import BestCheckpoint, Callback, EarlyStopping, MlflowLogger
from echoquality_core.train.config import LOSSES, SCHEDULERS, TrainConfig, loggable_config
from echoquality_core.train.frozen_trunk import TrunkFeatures, setup_message
from echoquality_core.train.loop import (StepPrecision, criterion_args, make_optimizer,
                                         mixed_precision, predict, run_epoch, seed_everything,
                                         train_epoch)
from echoquality_core.train.preflight import (
    RunData,
    SetupError,
    _Abort,
    _Cancelled,
    _StoppedEarly,
    check_setup,
    make_loaders,
    prepare_run_data,
)
from echoquality_core.model.weights import build_start_model, starting_point_params

__all__ = ["LOSSES", "SCHEDULERS", "STATE_DICT_FILE", "SetupError", "TrainConfig", "Trainer",
           "summarize", "train_epoch"]  # re-exported: the names callers know from this module

log = logging.getLogger(__name__)


class Trainer:
    """One training run; events go to ``callback(event)`` (from the thread calling ``run``).

    ``run()`` prepares the data, builds the model and runs the epoch loop; keeping the best
    model, early stopping and MLflow logging are callbacks (``train_callbacks``) on its events.
    """

    def __init__(self, config: TrainConfig, callback: Callable[[Any], None] | None = None):
        self.config = config
        self.callback = callback
        self._stop = threading.Event()
        self._cancel = threading.Event()
        self.csv_path = Path(config.annotations_csv).resolve()
        self.project = ProjectFolder.of_labels(self.csv_path)
        self.project_dir = self.project.path
        self.run_name = config.run_name or f"{datetime.now():%Y%m%d-%H%M%S}-{uuid4().hex[:4]}"
        self.run_dir = self.project.resolve(config.save_dir) / self.run_name
        self.folder = RunFolder(self.run_dir)
        self.params = config.preprocess
        self.best = BestCheckpoint()
        self.callbacks: list[Callback] = [self.best,
                                          EarlyStopping(config.early_stopping_patience)]
        self.early_stopped_at: int | None = None
        self.run_id: str | None = None
        self.history: list[dict[str, float]] = []
        self.epoch = 0
        self.start = None  # the checked starting weights, once the run begins
        self.trunk: TrunkFeatures | None = None  # the frozen trunk's outputs, when cached

    # --- control -------------------------------------------------------------------------
    def stop(self) -> None:
        """Finish after the current batch, keeping (and testing) the best model so far."""
        self._stop.set()

    def cancel(self) -> None:
        """Abandon the run after the current batch: checkpoints deleted, MLflow run KILLED."""
        self._cancel.set()

    def _halted(self) -> bool:
        return self._stop.is_set() or self._cancel.is_set()

    def _emit(self, event: Any) -> None:
        if self.callback is not None:
            self.callback(event)

    def events(self) -> Iterator[Any]:
        """Run in a background thread and yield its events; the last one is the TrainEnd.
        Closing the generator early cancels the run."""
        events: queue.Queue = queue.Queue()
        user_callback = self.callback

        def forward(event: Any) -> None:
            if user_callback is not None:
                user_callback(event)
            events.put(event)

        self.callback = forward
        thread = threading.Thread(target=self.run, name="echoquality-train", daemon=True)
        thread.start()
        try:
            while True:
                event = events.get()
                yield event
                if isinstance(event, TrainEnd):
                    break
        finally:
            if thread.is_alive():
                self.cancel()
                thread.join()
            self.callback = user_callback

    # --- paths ---------------------------------------------------------------------------
    @property
    def cache_dir(self) -> Path:
        if self.config.cache_dir:
            return self.project.resolve(self.config.cache_dir)
        return self.project.cache

    @property
    def tracking_uri(self) -> str:
        return self.config.tracking_uri or default_tracking_uri(self.project_dir)

    # --- run -----------------------------------------------------------------------------
    def run(self) -> TrainEnd:
        """Train; returns (and emits, as the last event) the TrainEnd."""
        try:
            end = self._run()
        except _Abort as exc:
            end = self._fail(exc.error)
        except SetupError as exc:
            end = self._fail(TrainError(exc.kind, str(exc)))
        except _Cancelled:
            end = TrainEnd(None, {}, None, cancelled=True)
        except _StoppedEarly:
            end = TrainEnd(None, {}, None, stopped=True)
        except OSError as exc:
            if exc.errno not in (errno.ENOSPC, errno.EFBIG, getattr(errno, "EDQUOT", -1)):
                raise
            text = str(exc) if isinstance(exc, DiskFullError) else f"disk full: {exc}"
            end = self._fail(TrainError("disk_full", f"{text}; free some space and train again"))
        except Exception as exc:  # reported in the app instead of "see your terminal"
            log.exception("training failed")
            end = self._fail(TrainError("error", f"{type(exc).__name__}: {exc}"))
        self._emit(end)
        return end

    def _fail(self, error: TrainError) -> TrainEnd:
        self._emit(error)
        return TrainEnd(None, {}, None, error=error)

    def _run(self) -> TrainEnd:
        self.preflight()  # before any clip is prepared
        generator = seed_everything(self.config.seed)
        cache = ClipCache(self.cache_dir, self.params)
        self.data = self._prepare_data(cache)
        self.device = resolve_device(self.config.device)
        self._make_loaders(cache, generator)
        return self._fit_tracked(starting_point_params(self.start))

    def _fit_tracked(self, params: dict[str, Any]) -> TrainEnd:
        """Fit inside an MLflow run logging the config and ``params`` (without one when
        ``use_mlflow`` is off); a cross-validation fold is nested under its parent run."""
        config = self.config
        if not config.use_mlflow:
            return self._fit(None)
        uri = self.tracking_uri
        artifacts = (
            default_artifact_location(self.project_dir)
            if uri.startswith(("sqlite:", "file:")) or "://" not in uri
            else None
        )
        parent = {"mlflow.parentRunId": config.parent_run_id} if config.parent_run_id else None
        with start_run(loggable_config(config) | params,
                       tracking_uri=uri, experiment=config.experiment,
                       run_name=self.run_name, artifact_location=artifacts,
                       tags=parent) as run_log:
            return self._fit(run_log)

    def preflight(self) -> None:
        """Check the labels CSV and the starting weights (``model_weights``: a starting point's
        name or a file) in milliseconds, before any clip is read or MLflow run opened; raises
        :class:`SetupError` with a one-line reason. ``run()`` does it first."""
        self.start = check_setup(self.csv_path, self.config.model_weights, self.project_dir)

    def _prepare_data(self, cache: ClipCache) -> RunData:
        """Labels → usable clips (decoded and cached, headers read once) → patient split."""
        c = self.config
        return prepare_run_data(
            self.csv_path, self.project.resolve(c.videos_dir) if c.videos_dir else None,
            self.project.resolve(c.split_csv) if c.split_csv else None, c, cache, self._emit,
            self._stop, self._cancel)

    def _make_loaders(self, cache: ClipCache, generator: torch.Generator) -> None:
        """Train/val/test loaders over one shared clip cache."""
        loaders = make_loaders(self.config, self.data, self.params, cache, generator,
                               self.device)
        self.train_loader, self.val_loader = loaders.train, loaders.val
        self.test_loader, self.train_labels = loaders.test, loaders.train_labels
        self.clips = cache

    # --- model ---------------------------------------------------------------------------
    def _build(self) -> None:
        c = self.config
        self.model, _ = build_start_model(self.start, self.device)
        self.schedule = parse_unfreeze_schedule(c.unfreeze_schedule)
        freeze_model_except_final_layers(self.model, 0 if self.schedule else c.num_unfrozen_layers)
        self.optimizer, self.scheduler = make_optimizer(c, self.model)
        self.criterion = make_criterion(c.loss, **criterion_args(c, self.train_labels))
        dtype, self.scaler = mixed_precision(c, self.device)
        self.steps = StepPrecision(dtype, report=lambda step, text: self._emit(  # fp32 redos
            TrainError("precision", f"Epoch {self.epoch} {text}", fatal=False)))
        prepare_model(self.model, self.device, dtype, training=True)  # channels_last_3d?
        self.trunk, params, message = setup_message(c, self.model, self.device, self.cache_dir
                                                    / "trunk", self.clips, self.trunk_off)
        log.info(message)
        self._emit(Progress("setup", 0, 0, message))
        if self.run_log is not None:
            self.run_log.log_params(params)

    def _net(self, loader: Any, should_stop: Callable[[], bool]) -> tuple[Any, Any]:
        """(network, loader) to run: the trainable head and trunk outputs when cached."""
        if self.trunk is None:
            return self.model, loader
        return self.trunk.wrap(self.model, loader, should_stop)

    # --- fit -----------------------------------------------------------------------------
    def _fit(self, run_log) -> TrainEnd:
        c = self.config
        self.run_log = run_log
        self.run_id = run_log.run_id if run_log else None
        self.run_dir.mkdir(parents=True, exist_ok=True)
        split_file = save_split(self.data.split, self.data.records, self.folder.split_csv)
        if run_log is not None:
            mlflow_logger = MlflowLogger(run_log)
            mlflow_logger.log_data(self, split_file)
            self.callbacks.append(mlflow_logger)
        try:
            self._build()
            stopped = self._epochs()
        except FloatingPointError as exc:
            return self._failed(TrainError(
                "nan_loss",
                f"The training loss or its gradients became NaN/infinite at epoch {self.epoch} "
                f"step {exc.args[0]}; "
                f"try a lower learning rate (now {c.learning_rate:g}).",
            ))
        except torch.cuda.OutOfMemoryError as exc:
            return self._failed(self._out_of_memory(exc))
        except _Cancelled:
            stopped = False
        if self._cancel.is_set():
            return self._cancelled()
        if stopped and self.best.epoch is None:
            return self._cancelled(stopped=True)
        try:
            test_metrics = self._finish()
        except _Cancelled:
            return self._cancelled()
        except torch.cuda.OutOfMemoryError as exc:  # testing the kept model; it stays on disk
            return self._failed(self._out_of_memory(exc))
        return TrainEnd(
            self.folder.best, test_metrics, self.run_id, stopped=stopped,
            split_sizes=self.data.sizes, threshold=self.best.threshold,
            best_epoch=self.best.epoch, run_dir=self.run_dir,
        )

    def _out_of_memory(self, error: BaseException | None = None) -> TrainError:
        """Free the GPU and explain what to change, with the batch size that would fit."""
        c = self.config
        fits = (cuda_batch_that_fits(c.batch_size, self.device, error)
                if error is not None and self.device.type == "cuda" else max(1, c.batch_size // 2))
        self.__dict__.pop("model", None)
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        return TrainError(
            "out_of_memory",
            f"The GPU ran out of memory (batch size {c.batch_size}, {c.n_frames} frames); "
            f"batch size {fits} should fit (with grad_accum_steps {-(-c.batch_size // fits)} "
            "for the same effective batch), or use fewer frames.",
        )

    def _failed(self, error: TrainError) -> TrainEnd:
        if self.run_log is not None:
            self.run_log.status = "FAILED"
            self.run_log.set_tags({"error_kind": error.kind})
        self._emit(error)
        best = self.folder.best if self.folder.best.is_file() else None
        return TrainEnd(best, {}, self.run_id, split_sizes=self.data.sizes,
                        threshold=self.best.threshold, best_epoch=self.best.epoch,
                        run_dir=self.run_dir, error=error)

    def _cancelled(self, stopped: bool = False) -> TrainEnd:
        """Cancel, or Stop before any epoch ended: nothing is kept, the MLflow run is KILLED."""
        if self.run_log is not None:
            self.run_log.status = "KILLED"
        shutil.rmtree(self.run_dir, ignore_errors=True)
        return TrainEnd(None, {}, self.run_id, stopped=stopped, cancelled=not stopped,
                        split_sizes=self.data.sizes)

    def _epochs(self) -> bool:
        """The epoch loop; returns True when the user stopped it."""
        for epoch in range(1, self.config.epochs + 1):
            self.epoch = epoch
            unfreeze(self.model, self.schedule.get(epoch - 1, []))
            start = time.perf_counter()
            train_loss, done = self._train_one(epoch)
            self._agree_on_halt()
            if self._cancel.is_set():
                return False
            if done < len(self.train_loader):
                return True  # stopped mid-epoch: keep the best model saved so far, if any
            val = self._validate()
            self._agree_on_halt()
            if self._cancel.is_set():
                return False
            if self._stop.is_set():
                return True
            for callback in self.callbacks:
                callback.on_validation_end(self, epoch, val)
            event = self._epoch_end(epoch, train_loss, val, time.perf_counter() - start)
            for callback in self.callbacks:
                callback.on_epoch_end(self, event)
            self._emit(event)
            if self.stop_between_epochs and self._stop.is_set():
                return True
            if self.early_stopped_at is not None:
                return False
        return False

    # hooks of the epoch loop that a distributed run replaces
    stop_between_epochs = True  # a Stop pressed during the epoch's callbacks ends the loop
    trunk_off: str | None = None  # why the frozen trunk is never cached (DDP: whole forward)

    def _agree_on_halt(self) -> None:
        """Where ranks agree on Stop/Cancel; one process has nothing to agree on."""

    def _validate(self) -> dict[str, Any]:
        """Predictions on the validation clips (loss, labels, scores, paths)."""
        net, loader = self._net(self.val_loader, self._halted)
        return predict(net, loader, self.criterion, self.device, self._halted, self.steps.dtype)

    def _train_one(self, epoch: int) -> tuple[float, int]:
        def on_batch(step, n_steps, loss, seconds):
            self._emit(BatchEnd(epoch, step, n_steps, loss, seconds))

        net, loader = self._net(self.train_loader, self._halted)
        return run_epoch(
            net, loader, self.criterion, self.optimizer, self.device,
            accum_steps=self.config.grad_accum_steps, steps=self.steps, scaler=self.scaler,
            on_batch=on_batch, should_stop=self._halted,
        )

    def _epoch_end(self, epoch: int, train_loss: float, val: dict, seconds: float) -> EpochEnd:
        """The epoch's event (metrics at the current best threshold); steps the scheduler."""
        metrics = {k: v for k, v in metrics_from_scores(val["labels"], val["scores"],
                                                        self.best.threshold).items()
                   if isinstance(v, (int, float)) and not isinstance(v, bool)}
        lr = self.optimizer.param_groups[0]["lr"]
        if isinstance(self.scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
            self.scheduler.step(val["loss"])
        elif self.scheduler is not None:
            self.scheduler.step()
        self.history.append({"epoch": epoch, "train_loss": train_loss, "val_loss": val["loss"],
                             "lr": lr})
        waited = next((c.waited for c in self.callbacks if isinstance(c, EarlyStopping)), 0)
        return EpochEnd(epoch, train_loss, val["loss"], metrics, lr, seconds,
                        self.best.improved, waited)

    def _finish(self) -> dict[str, Any]:
        """Make sure a best model exists, test it, write plots and log the outcome."""
        if self.best.epoch is None:  # stopped before the first validation
            net, loader = self._net(self.val_loader, self._cancel.is_set)
            val = predict(net, loader, self.criterion, self.device, self._cancel.is_set,
                          self.steps.dtype)
            if self._cancel.is_set():
                raise _Cancelled
            self.best.save(self, self.epoch or 0, val)
        self._emit(Progress("finish", 0, 0, "saving the best model"))
        load_weights(self.model, self.folder.best)
        self.folder.write_state_dict(self.model)  # EchoPrime's format
        metrics, plots = self._test() if self.test_loader is not None else ({}, [])
        self.folder.write_summary({
            "best_epoch": self.best.epoch, "best_val_loss": self.best.loss,
            "threshold": self.best.threshold, "split_sizes": self.data.sizes,
            "history": self.history,
            "test_metrics": {k: v for k, v in metrics.items() if k != "records"},
        })
        for callback in self.callbacks:
            callback.on_fit_end(self, metrics, plots)
        return metrics

    def _test(self) -> tuple[dict[str, Any], list[Path]]:
        """Metrics and plots of the best model on the test split; its predictions CSV."""
        n_test = self.data.sizes.get("test", 0)
        self._emit(Progress("test", 0, n_test, f"testing the best model on {n_test} clips"))
        try:
            net, loader = self._net(self.test_loader, self._cancel.is_set)
            with interruptible(net, self._cancel.is_set):
                metrics = evaluate_model(net, loader, self.device, threshold=self.best.threshold)
        except Interrupted:
            raise _Cancelled from None
        if self._cancel.is_set():
            raise _Cancelled
        plots = list(save_evaluation_plots(metrics, self.folder.plots) or [])
        names = {r["file"]: r["path"] for r in self.data.records}
        records = metrics.get("records", [])
        keys = {str(r["file"]): patient_group(r) for r in self.data.records}  # their patients
        groups = [keys.get(str(r["path"]), str(r["path"])) for r in records]
        if records:
            metrics |= ci_metrics(metrics_with_ci([r["label"] for r in records],
                                                  [r["score"] for r in records], groups,
                                                  metrics["threshold"]))
        self.folder.write_predictions(records, names, groups)
        return metrics, plots
