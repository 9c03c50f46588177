"""What a training run sets up before its first epoch: the checks of ``Trainer.preflight``, the
labelled clips prepared and split by patient, and the train/val/test loaders over one shared
clip cache. Also the exceptions that end a run early (``SetupError`` is public; the others are
the ``Trainer``'s control flow)."""
from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import ConcatDataset, DataLoader

from echoquality_core.data.augment import EchoVideoAugmentation, create_synthetic_low_quality
from echoquality_core.data.clips import (
    ClipCache,
    DataError,
    EchoDataset,
    SyntheticLowQuality,
    prepare_training_data,
    split_training_data,
)
from echoquality_core.train.events import Progress, TrainError
from echoquality_core.data.preprocess import PreprocessParams
from echoquality_core.train.config import TrainConfig
from echoquality_core.train.loop import seed_worker
from echoquality_core.decision import labelled_good


class SetupError(ValueError):
    """The labels CSV or the starting weights cannot be used (``kind``: "data" | "weights");
    found by ``Trainer.preflight`` before any clip is prepared."""

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind


class _Abort(Exception):
    """Ends a run with a fatal TrainError."""

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.error = TrainError(kind, message, fatal=True)


class _Cancelled(Exception):
    """The user cancelled while data was being prepared or the model evaluated."""


class _StoppedEarly(Exception):
    """The user stopped before the first epoch ended: there is no model to keep."""


def check_setup(csv_path: Path, model_weights: str | None, project_dir: Path) -> Any:
    """The checked starting weights, after checking the labels CSV; SetupError otherwise."""
    from echoquality_core.labels.store import LabelStore
    from echoquality_core.model.weights import check_starting_weights

    if not csv_path.is_file():
        raise SetupError("data", f"Labels CSV not found: {csv_path}")
    try:
        LabelStore(csv_path)
    except (ValueError, OSError) as exc:
        raise SetupError("data", f"{csv_path.name}: {exc}") from exc
    try:
        return check_starting_weights(model_weights, project_dir)
    except ValueError as exc:
        raise SetupError("weights", str(exc)) from exc


@dataclass
class RunData:
    """The usable clips (``records``), their patient split and the clips left out."""

    records: list[dict]
    split: dict[str, list[int]]
    failures: list[tuple[str, str]] = field(default_factory=list)

    def part(self, name: str) -> list[dict]:
        return [self.records[i] for i in self.split[name]]

    @property
    def sizes(self) -> dict[str, int]:
        return {name: len(idx) for name, idx in self.split.items()}


def prepare_run_data(csv_path: Path, videos: Path | None, split_csv: Path | None,
                     config: TrainConfig, cache: ClipCache, emit: Callable[[Any], None],
                     stop: threading.Event, cancel: threading.Event) -> RunData:
    """Labels → usable clips (decoded and cached, headers read once) → patient split (or the
    given ``split_csv``, e.g. a cross-validation fold). Unusable clips are reported as a
    non-fatal TrainError; raises _Abort, _Cancelled or _StoppedEarly."""
    if not csv_path.is_file():
        raise _Abort("data", f"Labels CSV not found: {csv_path}")

    def progress(done: int, total: int, path: str) -> None:
        name = Path(path).name if path else "decoding and caching clips"
        emit(Progress("prepare", done, total, name))

    def halted() -> bool:
        return stop.is_set() or cancel.is_set()

    try:
        records, failures = prepare_training_data(csv_path, videos, cache, progress, halted)
    except DataError as exc:
        raise _Abort("data", str(exc)) from exc
    if failures:
        listing = "\n".join(f"  {rel}: {msg}" for rel, msg in failures)
        emit(TrainError(
            "data", f"{len(failures)} clip(s) could not be used and were left out:\n{listing}",
            fatal=False,
        ))
    if cancel.is_set():
        raise _Cancelled
    if stop.is_set():
        raise _StoppedEarly
    try:
        if split_csv is not None:
            from echoquality_core.data.clips import load_split

            split = load_split(split_csv, records)
        else:
            split = split_training_data(records, config.split, config.seed)
    except (DataError, ValueError) as exc:
        raise _Abort("data", str(exc)) from exc
    return RunData(records, split, failures)


@dataclass
class Loaders:
    train: DataLoader
    val: DataLoader
    test: DataLoader | None
    train_labels: list[float]  # of the training set, synthetic poor copies included


def make_loaders(config: TrainConfig, data: RunData, params: PreprocessParams, cache: ClipCache,
                 generator: torch.Generator, device: torch.device) -> Loaders:
    """Train/val/test loaders over one shared clip cache."""
    c = config

    def dataset(name: str, transform=None) -> EchoDataset:
        part = data.part(name)
        return EchoDataset([r["file"] for r in part], [r["label"] for r in part], transform,
                           params=params, cache=cache, return_path=True)

    train_set = dataset("train", EchoVideoAugmentation() if c.augment else None)
    train_labels = [r["label"] for r in data.part("train")]
    if c.synthetic_pairs:
        good = [i for i, y in enumerate(train_set.labels) if labelled_good(y)]
        train_set = ConcatDataset(
            [train_set, SyntheticLowQuality(train_set, good, create_synthetic_low_quality)]
        )
        train_labels += [0.0] * len(good)
    args = loader_args(c, device)
    return Loaders(
        DataLoader(train_set, shuffle=True, generator=generator, **args),
        DataLoader(dataset("val"), shuffle=False, **args),
        DataLoader(dataset("test"), shuffle=False, **args) if data.split["test"] else None,
        train_labels,
    )


def loader_args(config: TrainConfig, device: torch.device) -> dict[str, Any]:
    """The DataLoader settings every loader of a run shares."""
    args: dict[str, Any] = {"batch_size": config.batch_size, "num_workers": config.num_workers,
                            "pin_memory": device.type == "cuda"}
    if config.num_workers > 0:
        args["worker_init_fn"] = seed_worker
    return args
