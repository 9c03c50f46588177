"""Fine-tune the R(2+1)D quality model on labelled clips, tracked in MLflow.

``Trainer(config, callback).run()`` does what the training guide's ``train_quality_model.py``
does: load the labels CSV, decode and cache the clips (unreadable ones are reported and left
out), split by patient, freeze all but the last blocks, train, keep the best model by
validation loss, evaluate it on the test split and log everything to MLflow. It reports
progress as events (``echoquality_core.events``) to one callback, which the GUI and the CLI
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

import csv
import dataclasses
import json
import logging
import math
import os
import queue
import random
import shutil
import threading
import time
import tomllib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from uuid import uuid4

import numpy as np
import torch
from torch.utils.data import ConcatDataset, DataLoader

from echoquality_core.atomic import atomic_write
from echoquality_core.events import BatchEnd, EpochEnd, Progress, TrainEnd, TrainError
from echoquality_core.interrupt import Interrupted, interruptible
from echoquality_core.preprocess import PreprocessParams

log = logging.getLogger(__name__)

LOSSES = ("bce", "focal")
SCHEDULERS = ("plateau", "cosine_restarts", "none")
_PATH_FIELDS = ("annotations_csv", "videos_dir", "model_weights", "save_dir", "cache_dir",
                "split_csv")
MIN_CLIPS = 4
STATE_DICT_FILE = "best_state_dict.pt"  # the best model as a plain state dict, like EchoPrime's


@dataclass
class TrainConfig:
    """Training settings; the first block has the training guide's names and defaults.

    ``model_weights=None`` starts from random weights (with a warning); the guide's file is
    ``video_quality_model.pt``. ``cache_dir=None`` means ``<CSV folder>/.echoquality/cache``;
    ``tracking_uri=None`` means ``sqlite:///<CSV folder>/mlruns.db`` (artifacts in
    ``<CSV folder>/mlartifacts``).
    """

    batch_size: int = 8
    epochs: int = 20
    learning_rate: float = 1e-4
    weight_decay: float = 1e-5
    device: str = "auto"
    annotations_csv: str = "echo_annotations.csv"
    videos_dir: str | None = "echo_videos"
    model_weights: str | None = None
    save_dir: str = "trained_models"
    use_mlflow: bool = True
    num_unfrozen_layers: int = 2

    loss: str = "bce"  # "bce" | "focal"
    focal_alpha: float = 0.25
    focal_gamma: float = 2.0
    class_weighting: bool = False  # weight the good class by n_poor / n_good
    scheduler: str = "plateau"  # "plateau" | "cosine_restarts" | "none"
    cosine_t0: int = 5  # cosine_restarts: epochs until the first restart
    cosine_t_mult: int = 2  # cosine_restarts: each restart period is this many times longer
    grad_accum_steps: int = 1
    amp: bool = True  # mixed precision, CUDA only
    unfreeze_schedule: str = ""  # e.g. "fc@0,layer4@3,layer3@6"; overrides num_unfrozen_layers
    early_stopping_patience: int = 0  # epochs without improvement; 0 = off
    seed: int = 42
    augment: bool = False
    synthetic_pairs: bool = False  # degraded copies of good training clips, labelled 0
    n_frames: int = 16
    stride: int = 2
    size: int = 112  # model input height/width (EchoPrime: 112)
    mask: str = "sector"
    split: tuple[float, float, float] = (0.7, 0.15, 0.15)
    num_workers: int = 0
    cache_dir: str | None = None
    tracking_uri: str | None = None
    experiment: str = "echoquality"
    threshold: str | float = "youden"
    log_mlflow_model: bool = True
    run_name: str | None = None
    split_csv: str | None = None  # a given split (video_path, split); clips not in it are unused
    parent_run_id: str | None = None  # MLflow run this one is nested under (cross-validation)

    def __post_init__(self) -> None:
        self.split = tuple(float(f) for f in self.split)  # TOML gives a list
        problems = []
        for name in ("batch_size", "epochs", "grad_accum_steps", "n_frames", "stride",
                     "size", "cosine_t0", "cosine_t_mult"):
            if int(getattr(self, name)) < 1:
                problems.append(f"{name} must be at least 1")
        if self.learning_rate <= 0:
            problems.append("learning_rate must be positive")
        if self.loss not in LOSSES:
            problems.append(f"loss must be one of {LOSSES}")
        if self.scheduler not in SCHEDULERS:
            problems.append(f"scheduler must be one of {SCHEDULERS}")
        if len(self.split) != 3 or min(self.split) < 0 or self.split[0] <= 0 or self.split[1] <= 0:
            problems.append("split must be three fractions (train, val, test) with train, val > 0")
        if self.unfreeze_schedule:
            from echoquality_core.model import parse_unfreeze_schedule

            try:
                if 0 not in parse_unfreeze_schedule(self.unfreeze_schedule):
                    problems.append("unfreeze_schedule must make a block trainable at epoch 0 "
                                    "(e.g. 'fc@0,layer4@3'); otherwise nothing can learn")
            except ValueError as exc:
                problems.append(str(exc))
        if problems:
            raise ValueError("Invalid training settings: " + "; ".join(problems))

    @property
    def preprocess(self) -> PreprocessParams:
        """Preprocessing settings of this run."""
        return PreprocessParams(n_frames=self.n_frames, stride=self.stride, size=self.size,
                                mask=self.mask)

    def to_dict(self) -> dict[str, Any]:
        """Plain dict of the settings (JSON/TOML/MLflow friendly)."""
        out = dataclasses.asdict(self)
        out["split"] = list(self.split)
        return out

    @classmethod
    def from_toml(cls, path: str | os.PathLike, **overrides: Any) -> TrainConfig:
        """Settings from a TOML file (top level or a ``[train]`` table; keys are the field
        names); relative paths in it are taken relative to the TOML file's folder."""
        path = Path(path)
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
        data = dict(data.get("train", data))
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"{path.name}: unknown setting(s) {unknown}")
        for name in _PATH_FIELDS:
            if data.get(name) and not Path(data[name]).is_absolute():
                data[name] = str((path.parent / data[name]).resolve())
        data.update(overrides)
        return cls(**data)


def _criterion_args(config: TrainConfig, train_labels: list[float]) -> dict[str, Any]:
    from echoquality_core.losses import class_pos_weight

    pos_weight = class_pos_weight(train_labels) if config.class_weighting else None
    return {"alpha": config.focal_alpha, "gamma": config.focal_gamma, "pos_weight": pos_weight}


def _run_epoch(
    model: torch.nn.Module,
    loader: Any,
    criterion: Callable,
    optimizer: torch.optim.Optimizer,
    device: torch.device,
    *,
    accum_steps: int = 1,
    amp_dtype: torch.dtype | None = None,
    scaler: torch.amp.GradScaler | None = None,
    on_batch: Callable[[int, int, float, float], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> tuple[float, int]:
    """One pass over ``loader`` with gradient accumulation and optional autocast.

    Returns (mean loss per clip, batches done). Raises FloatingPointError on a non-finite loss
    (its args: step number). ``should_stop`` is checked after every batch and inside the model
    at every block; a batch interrupted that way is abandoned (no optimiser step).
    """
    model.train()
    for module in model.modules():  # frozen blocks keep their pretrained BatchNorm statistics
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm) and not any(
                p.requires_grad for p in module.parameters(recurse=False)):
            module.eval()
    n_steps = len(loader)
    total, count, done = 0.0, 0, 0
    optimizer.zero_grad(set_to_none=True)
    for step, batch in enumerate(loader, start=1):
        t0 = time.perf_counter()
        videos, labels = batch[0].to(device), batch[1].to(device).float()
        try:
            with interruptible(model, should_stop):
                with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
                    logits = model(videos).reshape(-1)
                loss = criterion(logits.float(), labels.reshape(-1))
                if not torch.isfinite(loss):
                    optimizer.zero_grad(set_to_none=True)
                    raise FloatingPointError(step)
                scaled = loss / accum_steps
                (scaler.scale(scaled) if scaler is not None else scaled).backward()
        except Interrupted:
            break
        if step % accum_steps == 0 or step == n_steps:
            if scaler is not None:
                scaler.step(optimizer)
                scaler.update()
            else:
                optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        total += float(loss.detach()) * len(labels)
        count += len(labels)
        done = step
        if on_batch is not None:
            on_batch(step, n_steps, float(loss.detach()), time.perf_counter() - t0)
        if should_stop is not None and should_stop():
            break
    optimizer.zero_grad(set_to_none=True)
    return (total / count if count else float("nan")), done


def train_epoch(
    model: torch.nn.Module,
    loader: Any,
    criterion: Callable,
    optimizer: torch.optim.Optimizer,
    device: torch.device | str,
) -> float:
    """Train one epoch, as in the guide; batches are (video, label[, path]). Returns the mean
    training loss. Raises FloatingPointError if the loss becomes NaN or infinite."""
    loss, _ = _run_epoch(model, loader, criterion, optimizer, torch.device(device))
    return loss


@torch.no_grad()
def _predict(model, loader, criterion, device, should_cancel=None) -> dict[str, Any]:
    """Mean loss, labels, scores (sigmoid) and paths over a loader; stops early on cancel."""
    model.eval()
    total, labels, scores, paths = 0.0, [], [], []
    for batch in loader:
        videos, y = batch[0].to(device), batch[1].to(device).float().reshape(-1)
        try:
            with interruptible(model, should_cancel):
                logits = model(videos).reshape(-1).float()
        except Interrupted:
            break
        total += float(criterion(logits, y)) * len(y)
        labels += y.cpu().tolist()
        scores += torch.sigmoid(logits).cpu().tolist()
        if len(batch) > 2:
            paths += list(batch[2])
        if should_cancel is not None and should_cancel():
            break
    return {
        "loss": total / len(labels) if labels else float("nan"),
        "labels": labels,
        "scores": scores,
        "paths": paths,
    }


def _seed_everything(seed: int) -> torch.Generator:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def _seed_worker(worker_id: int) -> None:
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)


class _Abort(Exception):
    """Ends a run with a fatal TrainError."""

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.error = TrainError(kind, message, fatal=True)


class _Cancelled(Exception):
    """The user cancelled while data was being prepared or the model evaluated."""


class _StoppedEarly(Exception):
    """The user stopped before the first epoch ended: there is no model to keep."""


@dataclass
class _Data:
    records: list[dict]
    split: dict[str, list[int]]
    failures: list[tuple[str, str]] = field(default_factory=list)

    def part(self, name: str) -> list[dict]:
        return [self.records[i] for i in self.split[name]]

    @property
    def sizes(self) -> dict[str, int]:
        return {name: len(idx) for name, idx in self.split.items()}


class Trainer:
    """One training run; events go to ``callback(event)`` (from the thread calling ``run``)."""

    def __init__(self, config: TrainConfig, callback: Callable[[Any], None] | None = None):
        self.config = config
        self.callback = callback
        self._stop = threading.Event()
        self._cancel = threading.Event()
        self.csv_path = Path(config.annotations_csv).resolve()
        self.project_dir = self.csv_path.parent
        self.run_name = config.run_name or f"{datetime.now():%Y%m%d-%H%M%S}-{uuid4().hex[:4]}"
        self.run_dir = self._project_path(config.save_dir) / self.run_name

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
    def _project_path(self, value: str | os.PathLike) -> Path:
        p = Path(value).expanduser()
        return p if p.is_absolute() else (self.project_dir / p).resolve()

    def _clip_path(self, rel: str) -> Path | None:
        p = Path(rel).expanduser()
        if p.is_absolute():
            return p if p.is_file() else None
        candidates = [self.project_dir / p]
        if self.config.videos_dir:
            videos = self._project_path(self.config.videos_dir)
            candidates += [videos / p, videos / p.name]
        return next((c.resolve() for c in candidates if c.is_file()), None)

    @property
    def cache_dir(self) -> Path:
        if self.config.cache_dir:
            return self._project_path(self.config.cache_dir)
        return self.project_dir / ".echoquality" / "cache"

    @property
    def tracking_uri(self) -> str:
        from echoquality_core.tracking import default_tracking_uri

        return self.config.tracking_uri or default_tracking_uri(self.project_dir)

    # --- run -----------------------------------------------------------------------------
    def run(self) -> TrainEnd:
        """Train; returns (and emits, as the last event) the TrainEnd."""
        try:
            end = self._run()
        except _Abort as exc:
            end = self._fail(exc.error)
        except _Cancelled:
            end = TrainEnd(None, {}, None, cancelled=True)
        except _StoppedEarly:
            end = TrainEnd(None, {}, None, stopped=True)
        except Exception as exc:  # reported in the app instead of "see your terminal"
            log.exception("training failed")
            end = self._fail(TrainError("error", f"{type(exc).__name__}: {exc}"))
        self._emit(end)
        return end

    def _fail(self, error: TrainError) -> TrainEnd:
        self._emit(error)
        return TrainEnd(None, {}, None, error=error)

    def _run(self) -> TrainEnd:
        config = self.config
        generator = _seed_everything(config.seed)
        data = self._prepare_data()
        from echoquality_core.model import resolve_device

        device = resolve_device(config.device)
        state = _RunState(self, data, device, generator)
        if not config.use_mlflow:
            return state.fit(None)
        from echoquality_core.tracking import default_artifact_location, start_run

        uri = self.tracking_uri
        artifacts = (
            default_artifact_location(self.project_dir)
            if uri.startswith(("sqlite:", "file:")) or "://" not in uri
            else None
        )
        with start_run(
            _loggable_config(config),
            tracking_uri=uri,
            experiment=config.experiment,
            run_name=self.run_name,
            artifact_location=artifacts,
            tags={"mlflow.parentRunId": config.parent_run_id} if config.parent_run_id else None,
        ) as run_log:
            return state.fit(run_log)

    def _prepare_data(self) -> _Data:
        """Labels → usable clips (decoded and cached) → patient split."""
        from echoquality_core.data import prepare_clips, split_by_patient
        from echoquality_core.dicom import DicomReadError, read_clip
        from echoquality_core.labels import LabelError, LabelStore

        if not self.csv_path.is_file():
            raise _Abort("data", f"Labels CSV not found: {self.csv_path}")
        try:
            store = LabelStore(self.csv_path)
        except LabelError as exc:
            raise _Abort("data", f"{self.csv_path.name}: {exc}") from exc
        rows, failures = [], []
        for rel in store.paths():
            score = float(store.get(rel).quality_score)
            if not 0.0 <= score <= 1.0:
                raise _Abort(
                    "data",
                    f"{rel}: quality_score {score:g} is outside 0..1; training needs 0/1 labels "
                    "or scores between 0 and 1",
                )
            path = self._clip_path(rel)
            if path is None:
                failures.append((rel, f"{Path(rel).name}: file not found"))
            else:
                rows.append((rel, path, score))

        params = self.config.preprocess

        def progress(done: int, total: int, path: str) -> None:
            self._emit(Progress("prepare", done, total, Path(path).name))

        self._emit(Progress("prepare", 0, len(rows), "decoding and caching clips"))
        by_path = {str(path): (rel, score) for rel, path, score in rows}
        ok, bad = prepare_clips(
            [str(p) for _, p, _ in rows], params, self.cache_dir, progress,
            should_stop=self._halted,
        )
        failures += [(by_path[p][0], msg) for p, msg in bad]
        records = []
        for p in ok:
            rel, score = by_path[p]
            try:
                meta = read_clip(p).metadata
            except DicomReadError as exc:
                failures.append((rel, str(exc)))
                continue
            records.append({
                "path": rel, "file": p, "label": score,
                "patient_key": meta.get("patient_key"), "study_key": meta.get("study_key"),
            })
        if failures:
            listing = "\n".join(f"  {rel}: {msg}" for rel, msg in failures)
            self._emit(TrainError(
                "data", f"{len(failures)} clip(s) could not be used and were left out:\n{listing}",
                fatal=False,
            ))
        if self._cancel.is_set():
            raise _Cancelled
        if self._stop.is_set():
            raise _StoppedEarly
        n_good = sum(r["label"] >= 0.5 for r in records)
        if len(records) < MIN_CLIPS:
            raise _Abort(
                "data", f"Only {len(records)} usable labelled clip(s); at least {MIN_CLIPS} are needed."
            )
        if n_good in (0, len(records)):
            raise _Abort(
                "data", "All usable clips have the same label; training needs good and poor clips."
            )
        if self.config.split_csv:
            from echoquality_core.data import load_split

            split = load_split(self._project_path(self.config.split_csv), records)
        else:
            split = split_by_patient(records, self.config.split, seed=self.config.seed)
        if not split["train"] or not split["val"]:
            raise _Abort(
                "data", "Too few patients to make both a training and a validation split."
            )
        return _Data(records, split, failures)


def _loggable_config(config: TrainConfig) -> dict[str, Any]:
    """Settings for MLflow params: paths reduced to file/folder names (no local paths)."""
    out = config.to_dict()
    out.pop("tracking_uri")
    for name in _PATH_FIELDS:
        if out.get(name):
            out[name] = Path(out[name]).name
    return out


class _RunState:
    """Everything one fit needs: datasets, model, optimiser, scheduler, best-model bookkeeping."""

    def __init__(self, trainer: Trainer, data: _Data, device: torch.device, generator):
        from echoquality_core.data import EchoDataset

        self.t = trainer
        self.config = c = trainer.config
        self.data = data
        self.device = device
        self.params = c.preprocess
        cache = trainer.cache_dir

        def dataset(name: str, transform=None) -> EchoDataset:
            part = data.part(name)
            return EchoDataset(
                [r["file"] for r in part], [r["label"] for r in part], transform,
                params=self.params, cache_dir=cache, return_path=True,
            )

        transform = None
        if c.augment:
            from echoquality_core.augment import EchoVideoAugmentation

            transform = EchoVideoAugmentation()
        train_set = dataset("train", transform)
        if c.synthetic_pairs:
            from echoquality_core.augment import create_synthetic_low_quality
            from echoquality_core.data import SyntheticLowQuality

            good = [i for i, y in enumerate(train_set.labels) if y >= 0.5]
            train_set = ConcatDataset(
                [train_set, SyntheticLowQuality(train_set, good, create_synthetic_low_quality)]
            )
        loader_args = {"batch_size": c.batch_size, "num_workers": c.num_workers,
                       "pin_memory": device.type == "cuda"}
        if c.num_workers > 0:
            loader_args["worker_init_fn"] = _seed_worker
        self.train_loader = DataLoader(train_set, shuffle=True, generator=generator, **loader_args)
        self.val_loader = DataLoader(dataset("val"), shuffle=False, **loader_args)
        self.test_loader = (
            DataLoader(dataset("test"), shuffle=False, **loader_args) if data.split["test"] else None
        )
        self.train_labels = [r["label"] for r in data.part("train")]
        if c.synthetic_pairs:
            self.train_labels += [0.0] * sum(y >= 0.5 for y in self.train_labels)

        self.best_path = trainer.run_dir / "best.pt"
        self.best_loss = math.inf
        self.best_epoch: int | None = None
        self.threshold = 0.5
        self.history: list[dict[str, float]] = []

    # --- model ---------------------------------------------------------------------------
    def _build(self) -> None:
        from echoquality_core.losses import make_criterion
        from echoquality_core.model import (
            build_model,
            freeze_model_except_final_layers,
            parse_unfreeze_schedule,
        )

        c = self.config
        weights = str(self.t._project_path(c.model_weights)) if c.model_weights else None
        self.model = build_model(weights, device=self.device)
        if c.unfreeze_schedule:
            self.schedule = parse_unfreeze_schedule(c.unfreeze_schedule)
            freeze_model_except_final_layers(self.model, 0)
        else:
            self.schedule = {}
            freeze_model_except_final_layers(self.model, c.num_unfrozen_layers)
        self.optimizer = torch.optim.AdamW(
            self.model.parameters(), lr=c.learning_rate, weight_decay=c.weight_decay
        )
        if c.scheduler == "plateau":
            self.scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
                self.optimizer, mode="min", factor=0.1, patience=3
            )
        elif c.scheduler == "cosine_restarts":
            self.scheduler = torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(
                self.optimizer, T_0=c.cosine_t0, T_mult=c.cosine_t_mult
            )
        else:
            self.scheduler = None
        self.criterion = make_criterion(c.loss, **_criterion_args(c, self.train_labels))
        self.amp_dtype, self.scaler = None, None
        if c.amp and self.device.type == "cuda":
            if torch.cuda.is_bf16_supported():
                self.amp_dtype = torch.bfloat16
            else:
                self.amp_dtype = torch.float16
                self.scaler = torch.amp.GradScaler("cuda")

    def _unfreeze_for(self, epoch_index: int) -> list[str]:
        from echoquality_core.model import unfreeze

        names = self.schedule.get(epoch_index, [])
        if names:
            unfreeze(self.model, names)
        return list(names)

    # --- fit -----------------------------------------------------------------------------
    def fit(self, run_log) -> TrainEnd:
        t, c = self.t, self.config
        self.run_log = run_log
        self.run_id = run_log.run_id if run_log else None
        t.run_dir.mkdir(parents=True, exist_ok=True)
        self._log_data()
        try:
            self._build()
            stopped = self._epochs()
        except FloatingPointError as exc:
            return self._failed(TrainError(
                "nan_loss",
                f"The training loss became NaN/infinite at epoch {self.epoch} step {exc.args[0]}; "
                f"try a lower learning rate (now {c.learning_rate:g}).",
            ))
        except torch.cuda.OutOfMemoryError:
            return self._failed(self._out_of_memory())
        except _Cancelled:
            stopped = False
        if t._cancel.is_set():
            return self._cancelled()
        if stopped and self.best_epoch is None:
            return self._cancelled(stopped=True)
        try:
            test_metrics = self._finish()
        except _Cancelled:
            return self._cancelled()
        except torch.cuda.OutOfMemoryError:  # testing the kept model; it stays on disk
            return self._failed(self._out_of_memory())
        return TrainEnd(
            self.best_path, test_metrics, self.run_id, stopped=stopped,
            split_sizes=self.data.sizes, threshold=self.threshold, best_epoch=self.best_epoch,
            run_dir=t.run_dir,
        )

    def _out_of_memory(self) -> TrainError:
        """Free the GPU and explain what to change."""
        c = self.config
        self.__dict__.pop("model", None)
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        return TrainError(
            "out_of_memory",
            f"The GPU ran out of memory (batch size {c.batch_size}, {c.n_frames} frames); "
            "reduce batch size or frames, or use gradient accumulation (grad_accum_steps).",
        )

    def _failed(self, error: TrainError) -> TrainEnd:
        if self.run_log is not None:
            self.run_log.status = "FAILED"
            self.run_log.set_tags({"error_kind": error.kind})
        self.t._emit(error)
        best = self.best_path if self.best_path.is_file() else None
        return TrainEnd(best, {}, self.run_id, split_sizes=self.data.sizes,
                        threshold=self.threshold, best_epoch=self.best_epoch,
                        run_dir=self.t.run_dir, error=error)

    def _cancelled(self, stopped: bool = False) -> TrainEnd:
        """Cancel, or Stop before any epoch ended: nothing is kept, the MLflow run is KILLED."""
        if self.run_log is not None:
            self.run_log.status = "KILLED"
        shutil.rmtree(self.t.run_dir, ignore_errors=True)
        return TrainEnd(None, {}, self.run_id, stopped=stopped, cancelled=not stopped,
                        split_sizes=self.data.sizes)

    def _log_data(self) -> None:
        from echoquality_core.data import save_split

        split_file = save_split(self.data.split, self.data.records, self.t.run_dir / "split.csv")
        if self.run_log is None:
            return
        from echoquality_core.tracking import file_sha256

        self.run_log.log_params({f"n_{k}": v for k, v in self.data.sizes.items()}
                                | {"n_excluded": len(self.data.failures)})
        self.run_log.set_tags({
            "labels_sha256": file_sha256(self.t.csv_path),
            "split_sha256": file_sha256(split_file),
            "run_dir": self.t.run_name,
        })
        self.run_log.log_artifact(split_file)

    def _epochs(self) -> bool:
        """The epoch loop; returns True when the user stopped it."""
        t, c = self.t, self.config
        waited = 0
        self.epoch = 0
        for epoch in range(1, c.epochs + 1):
            self.epoch = epoch
            self._unfreeze_for(epoch - 1)
            start = time.perf_counter()

            def on_batch(step, n_steps, loss, seconds, epoch=epoch):
                t._emit(BatchEnd(epoch, step, n_steps, loss, seconds))

            train_loss, done = _run_epoch(
                self.model, self.train_loader, self.criterion, self.optimizer, self.device,
                accum_steps=c.grad_accum_steps, amp_dtype=self.amp_dtype, scaler=self.scaler,
                on_batch=on_batch, should_stop=t._halted,
            )
            if t._cancel.is_set():
                return False
            if done < len(self.train_loader):
                return True  # stopped mid-epoch: keep the best model saved so far, if any
            val = _predict(self.model, self.val_loader, self.criterion, self.device, t._halted)
            if t._cancel.is_set():
                return False
            if t._stop.is_set():
                return True
            best = val["loss"] < self.best_loss
            if best:
                self._save_best(epoch, val)
                waited = 0
            else:
                waited += 1
            metrics = self._val_metrics(val)
            lr = self.optimizer.param_groups[0]["lr"]
            self._step_scheduler(val["loss"])
            seconds = time.perf_counter() - start
            self.history.append({"epoch": epoch, "train_loss": train_loss,
                                 "val_loss": val["loss"], "lr": lr})
            if self.run_log is not None:
                self.run_log.log_metrics(
                    {"train_loss": train_loss, "val_loss": val["loss"], "lr": lr,
                     "epoch_seconds": seconds} | {f"val_{k}": v for k, v in metrics.items()},
                    step=epoch,
                )
            t._emit(EpochEnd(epoch, train_loss, val["loss"], metrics, lr, seconds, best, waited))
            if t._stop.is_set():
                return True
            if c.early_stopping_patience and waited >= c.early_stopping_patience:
                if self.run_log is not None:
                    self.run_log.set_tags({"early_stopped_at_epoch": epoch})
                return False
        return False

    def _step_scheduler(self, val_loss: float) -> None:
        if isinstance(self.scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
            self.scheduler.step(val_loss)
        elif self.scheduler is not None:
            self.scheduler.step()

    def _val_metrics(self, val: dict) -> dict[str, float]:
        from echoquality_core.evaluate import metrics_from_scores

        return {
            k: v for k, v in metrics_from_scores(val["labels"], val["scores"], self.threshold).items()
            if isinstance(v, (int, float)) and not isinstance(v, bool)
        }

    def _save_best(self, epoch: int, val: dict) -> None:
        from echoquality_core.evaluate import choose_threshold
        from echoquality_core.model import save_checkpoint

        binary = [1 if y >= 0.5 else 0 for y in val["labels"]]
        method = self.config.threshold
        try:
            self.threshold = float(choose_threshold(binary, val["scores"], method=method))
        except ValueError as exc:  # e.g. a single-class validation split
            log.warning("threshold %r not computable on validation (%s); using 0.5", method, exc)
            self.threshold = 0.5
        self.best_loss, self.best_epoch = val["loss"], epoch
        save_checkpoint(
            self.model, self.best_path, threshold=self.threshold,
            preprocess=dataclasses.asdict(self.params), config=self.config.to_dict(),
            epoch=epoch, val_loss=val["loss"], run_id=self.run_id,
        )

    def _finish(self) -> dict[str, Any]:
        """Make sure a best model exists, test it, write plots and log the outcome."""
        t = self.t
        if self.best_epoch is None:  # stopped before the first validation
            val = _predict(self.model, self.val_loader, self.criterion, self.device,
                           t._cancel.is_set)
            if t._cancel.is_set():
                raise _Cancelled
            self._save_best(self.epoch or 0, val)
        from echoquality_core.model import load_weights

        t._emit(Progress("finish", 0, 0, "saving the best model"))
        load_weights(self.model, self.best_path)
        with atomic_write(t.run_dir / STATE_DICT_FILE) as fh:  # EchoPrime's format
            torch.save({k: v.detach().cpu() for k, v in self.model.state_dict().items()}, fh)
        metrics: dict[str, Any] = {}
        plots: list[Path] = []
        if self.test_loader is not None:
            from echoquality_core.evaluate import evaluate_model, save_evaluation_plots

            n_test = self.data.sizes.get("test", 0)
            t._emit(Progress("test", 0, n_test, f"testing the best model on {n_test} clips"))

            try:
                with interruptible(self.model, t._cancel.is_set):
                    metrics = evaluate_model(self.model, self.test_loader, self.device,
                                             threshold=self.threshold)
            except Interrupted:
                raise _Cancelled from None
            if t._cancel.is_set():
                raise _Cancelled
            plots = list(save_evaluation_plots(metrics, t.run_dir / "plots") or [])
            self._write_predictions(metrics.get("records", []))
        summary = t.run_dir / "summary.json"
        summary.write_text(json.dumps({
            "best_epoch": self.best_epoch, "best_val_loss": self.best_loss,
            "threshold": self.threshold, "split_sizes": self.data.sizes,
            "history": self.history,
            "test_metrics": {k: v for k, v in metrics.items() if k != "records"},
        }, indent=2, default=_jsonable))
        if self.run_log is not None:
            self._log_outcome(metrics, plots, summary)
        return metrics

    def _write_predictions(self, records: list[dict]) -> None:
        rel = {r["file"]: r["path"] for r in self.data.records}
        with open(self.t.run_dir / "test_predictions.csv", "w", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh)
            writer.writerow(["video_path", "label", "score"])
            for r in records:
                writer.writerow([rel.get(str(r.get("path")), Path(str(r.get("path"))).name),
                                 r.get("label"), f"{float(r.get('score', float('nan'))):.6f}"])

    def _log_outcome(self, metrics: dict, plots: list[Path], summary: Path) -> None:
        from echoquality_core.evaluate import log_evaluation_to_mlflow

        run_log = self.run_log
        run_log.log_metrics({"best_val_loss": self.best_loss, "best_epoch": self.best_epoch or 0,
                             "threshold": self.threshold})
        if metrics:
            log_evaluation_to_mlflow(metrics, prefix="test_",
                                     plots_dir=self.t.run_dir / "plots" if plots else None)
        run_log.log_artifact(self.best_path, "checkpoints")
        run_log.log_artifact(self.t.run_dir / STATE_DICT_FILE, "checkpoints")
        run_log.log_artifact(summary)
        predictions = self.t.run_dir / "test_predictions.csv"
        if predictions.is_file():
            run_log.log_artifact(predictions)
        if self.config.log_mlflow_model:
            run_log.log_model(self.model.cpu())
            self.model.to(self.device)


def _jsonable(value: Any) -> Any:
    if isinstance(value, (np.integer, np.floating)):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    return str(value)


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

