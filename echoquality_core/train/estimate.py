"""How long a run will take, from the step time the training child measured.

The child reports each batch's seconds (``BatchEnd.seconds``). The first batch pays for
warm-up (allocations, the first cached clips), so the estimate uses the median of the batches
after it (the first alone when an epoch has one batch). A run is epochs x (training batches +
validation), validation being forward passes only: about a third of a training step per clip.

Before a run, :func:`expected_run` scales the speed an earlier run measured (seconds per clip
frame, :meth:`RunEstimate.clip_frame_seconds`) to the new run's batch size and frames: a step's
compute grows about linearly with both.
"""
from __future__ import annotations

import dataclasses
import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from echoquality_core.train.config import TrainConfig
from echoquality_core.train.events import BatchEnd

LONG_RUN_SECONDS = 15 * 60  # a run longer than this is called out before it goes on
MEASURED_BATCHES = 2  # batches after the first that the step time is the median of
FORWARD_SHARE = 1 / 3  # a validation (forward-only) clip costs this share of a training clip
_DEFAULTS = {f.name: f.default for f in dataclasses.fields(TrainConfig)}


@dataclass(frozen=True)
class RunEstimate:
    """A run's expected duration from a measured step time."""

    step_seconds: float
    steps_per_epoch: int
    epochs: int
    seconds: float
    runs: int = 1  # the folds of a cross-validation
    earlier: bool = False  # from an earlier run's speed, not measured in this run

    def clip_frame_seconds(self, settings: Mapping[str, Any]) -> float:
        """The measured speed: seconds per clip frame of a training step of a run with
        TrainConfig fields ``settings``."""
        batch = int(settings.get("batch_size", _DEFAULTS["batch_size"]))
        return self.step_seconds / max(batch * int(settings.get("n_frames",
                                                                _DEFAULTS["n_frames"])), 1)

    @property
    def long(self) -> bool:
        """Over :data:`LONG_RUN_SECONDS`."""
        return self.seconds > LONG_RUN_SECONDS

    def text(self) -> str:
        """One sentence, e.g. "Measured 1.9 s per batch: this run takes about 25 min (2 epochs
        of 18 batches, with validation)." plus a warning when it is long."""
        minutes = self.seconds / 60
        span = f"{minutes:.0f} min" if minutes >= 1 else f"{self.seconds:.0f} s"
        source = "An earlier run here measured" if self.earlier else "Measured"
        line = (f"{source} {self.step_seconds:.2g} s per batch: this run takes about {span} "
                f"({self.epochs} epoch{'s' * (self.epochs != 1)} of {self.steps_per_epoch} "
                "batches, with validation"
                + (f", for each of {self.runs} folds" if self.runs > 1 else "") + ").")
        if self.long:
            line += (f" That is over {LONG_RUN_SECONDS // 60} min: Stop keeps the best model "
                     "so far; fewer epochs or frames make it shorter.")
        return line


def estimate_run(step_seconds: float, steps_per_epoch: int, epochs: int,
                 split: Sequence[float] = (0.7, 0.15, 0.15), runs: int = 1) -> RunEstimate:
    """The run's duration: ``epochs`` x ``steps_per_epoch`` training steps of ``step_seconds``
    plus validation on the ``split``'s share of clips (forward passes, see module docstring),
    ``runs`` times (the folds of a cross-validation)."""
    train, val = float(split[0]), float(split[1])
    validation = val / train * FORWARD_SHARE if train > 0 else 0.0
    seconds = step_seconds * steps_per_epoch * epochs * (1 + validation) * runs
    return RunEstimate(step_seconds, steps_per_epoch, epochs, seconds, runs)


def expected_run(settings: Mapping[str, Any], n_clips: int,
                 clip_frame_seconds: float) -> RunEstimate:
    """Before a run of TrainConfig fields ``settings`` on ``n_clips`` labelled clips: its
    duration at the speed an earlier run measured (see module docstring)."""
    clock = StepClock.for_settings(settings)
    batch = int(settings.get("batch_size", _DEFAULTS["batch_size"]))
    frames = int(settings.get("n_frames", _DEFAULTS["n_frames"]))
    train_share = clock.split[0] / (sum(clock.split) or 1.0)
    steps = max(1, math.ceil(n_clips * train_share / batch))
    estimate = estimate_run(clip_frame_seconds * batch * frames, steps, clock.epochs,
                            clock.split, clock.runs)
    return dataclasses.replace(estimate, earlier=True)


class StepClock:
    """Collects the first batches of a run; :meth:`add` returns the estimate once, as soon as
    it can be made (None before and after)."""

    def __init__(self, epochs: int, split: Sequence[float] = (0.7, 0.15, 0.15), runs: int = 1):
        self.epochs, self.split, self.runs = epochs, tuple(split), runs
        self.settings: dict[str, Any] = {}  # the run's TrainConfig fields, when known
        self.seconds: list[float] = []
        self.done = False

    @classmethod
    def for_settings(cls, settings: Mapping[str, Any]) -> StepClock:
        """For a run of TrainConfig fields ``settings`` (TrainConfig's defaults where absent)."""
        clock = cls(int(settings.get("epochs", _DEFAULTS["epochs"])),
                    settings.get("split", _DEFAULTS["split"]),
                    int(settings.get("crossval_folds") or 1))
        clock.settings = dict(settings)
        return clock

    def add(self, event: BatchEnd) -> RunEstimate | None:
        if self.done or event.epoch != 1:
            return None
        self.seconds.append(event.seconds)
        measured = self.seconds[1:] or (self.seconds if event.n_steps == 1 else [])
        if len(measured) < min(MEASURED_BATCHES, event.n_steps - 1) or not measured:
            return None
        self.done = True
        return estimate_run(statistics.median(measured), event.n_steps, self.epochs,
                            self.split, self.runs)
