"""How long a run will take, from measured step times.

During a run the child reports each batch's seconds (``BatchEnd.seconds``). The first batch pays
for warm-up (allocations, the first cached clips), so the estimate uses the median of the
batches after it (the first alone when an epoch has one batch). Without a measured
:class:`StepSpeed` a run is epochs x (training batches + validation), validation being forward
passes only: about a third of a training step per clip (:func:`estimate_run`; with the
frozen-trunk cache a batch's time is the head's alone, so this leaves out the first epoch's
trunk pass).

Before a run, ``jobs.devices.measure_speed`` times one step of the real network on this
machine (``train.step_speed``) as a :class:`StepSpeed`: seconds per clip frame of the frozen
blocks' forward (the *trunk*), of a training step of the trainable blocks (the *head*) and of
the head's forward. :func:`expected_run` scales it to a run's batches, frames and clips (a
step's compute grows about linearly with both) and follows the frozen-trunk cache
(``config.off_reason``): with it the trunk runs once per clip, in the first epoch, and later
epochs only train and validate the head; without it (augmentation, synthetic pairs, several
GPUs) every epoch runs the trunk again. The test clips' forward comes once at the end. Decoding
the clips (cached on disk after the first run) is not counted.
"""
from __future__ import annotations

import dataclasses
import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

from echoquality_core.train.config import TrainConfig, off_reason
from echoquality_core.train.events import BatchEnd

LONG_RUN_SECONDS = 15 * 60  # a run longer than this is called out before it goes on
MEASURED_BATCHES = 2  # batches after the first that the step time is the median of
FORWARD_SHARE = 1 / 3  # a validation (forward-only) clip costs this share of a training clip
_DEFAULTS = {f.name: f.default for f in dataclasses.fields(TrainConfig)}


@dataclass(frozen=True)
class StepSpeed:
    """This machine's speed, in seconds per clip frame: the frozen blocks' forward
    (``trunk``), a training step of the trainable blocks (``train``: forward and backward) and
    their forward alone (``evaluate``)."""

    trunk: float
    train: float
    evaluate: float

    def to_text(self) -> str:
        """``"trunk train evaluate"``: how a setting stores it."""
        return f"{self.trunk!r} {self.train!r} {self.evaluate!r}"

    @classmethod
    def from_text(cls, text: object) -> StepSpeed | None:
        """The speed :meth:`to_text` wrote; None for anything else (an older setting)."""
        try:
            values = [float(v) for v in str(text).split()]
        except ValueError:
            return None
        if len(values) != 3 or not all(math.isfinite(v) and v >= 0 for v in values):
            return None
        return cls(*values)

    def step_seconds(self, settings: Mapping[str, Any]) -> float:
        """A training batch of a run of TrainConfig fields ``settings`` (what the run's
        ``BatchEnd.seconds`` times: the head alone when the trunk is cached)."""
        per_frame = self.train + (0.0 if trunk_cached(settings) else self.trunk)
        return per_frame * _setting(settings, "batch_size") * _setting(settings, "n_frames")

    def rescaled(self, step_seconds: float, settings: Mapping[str, Any]) -> StepSpeed:
        """This speed scaled so that a batch of ``settings`` takes ``step_seconds`` (what a
        run measured: the machine may be busier or freer than when this was measured)."""
        expected = self.step_seconds(settings)
        scale = step_seconds / expected if expected > 0 else 1.0
        return StepSpeed(self.trunk * scale, self.train * scale, self.evaluate * scale)


@dataclass(frozen=True)
class RunEstimate:
    """A run's expected duration from a measured step time."""

    step_seconds: float
    steps_per_epoch: int
    epochs: int
    seconds: float
    runs: int = 1  # the folds of a cross-validation
    before: bool = False  # from a step measured before the run, not by the run itself

    @property
    def long(self) -> bool:
        """Over :data:`LONG_RUN_SECONDS`."""
        return self.seconds > LONG_RUN_SECONDS

    def text(self) -> str:
        """One sentence, e.g. "Measured 1.9 s per batch: this run takes about 25 min (2 epochs
        of 18 batches, with validation)." or, before the run, "About 25 min (measured on this
        computer): 2 epochs of 18 batches of 1.9 s.", plus a warning when it is long."""
        minutes = self.seconds / 60
        span = f"{minutes:.0f} min" if minutes >= 1 else f"{self.seconds:.0f} s"
        folds = f", for each of {self.runs} folds" if self.runs > 1 else ""
        shape = (f"{self.epochs} epoch{'s' * (self.epochs != 1)} of {self.steps_per_epoch} "
                 f"batch{'es' * (self.steps_per_epoch != 1)}")
        if self.before:
            line = (f"About {span} (measured on this computer): {shape} of "
                    f"{self.step_seconds:.2g} s{folds}.")
        else:
            shape += ", with validation" + folds
            line = (f"Measured {self.step_seconds:.2g} s per batch: this run takes about "
                    f"{span} ({shape}).")
        if self.long:
            line += (f" That is over {LONG_RUN_SECONDS // 60} min: Stop keeps the best model "
                     "so far; fewer epochs or frames make it shorter.")
        return line


def _setting(settings: Mapping[str, Any], name: str) -> int:
    return int(settings.get(name) or _DEFAULTS[name])


def trunk_cached(settings: Mapping[str, Any]) -> bool:
    """Whether a run of TrainConfig fields ``settings`` computes the frozen trunk once per clip
    (``config.off_reason``; a run on several GPUs never does)."""
    config = SimpleNamespace(**{**_DEFAULTS, **settings})
    return off_reason(config) is None and int(settings.get("ranks") or 1) == 1


def run_seconds(settings: Mapping[str, Any], steps_per_epoch: int, speed: StepSpeed) -> float:
    """A run of TrainConfig fields ``settings`` with ``steps_per_epoch`` training batches, at
    ``speed`` (see the module docstring for what each epoch costs)."""
    batch, frames = _setting(settings, "batch_size"), _setting(settings, "n_frames")
    epochs = _setting(settings, "epochs")
    split = [float(f) for f in settings.get("split") or _DEFAULTS["split"]]
    train = steps_per_epoch * batch  # clips
    val, test = (train * split[1] / split[0], train * split[2] / split[0]) if split[0] else (0, 0)
    trunk, step, forward = (frames * s for s in (speed.trunk, speed.train, speed.evaluate))
    head = train * step + val * forward  # one epoch's training and validation of the head
    trunk_pass = (train + val) * trunk
    epochs_cost = (trunk_pass + epochs * head if trunk_cached(settings)
                   else epochs * (trunk_pass + head))
    return (epochs_cost + test * (trunk + forward)) * int(settings.get("crossval_folds") or 1)


def estimate_run(step_seconds: float, steps_per_epoch: int, epochs: int,
                 split: Sequence[float] = (0.7, 0.15, 0.15), runs: int = 1) -> RunEstimate:
    """The run's duration: ``epochs`` x ``steps_per_epoch`` training steps of ``step_seconds``
    plus validation on the ``split``'s share of clips (forward passes, see module docstring),
    ``runs`` times (the folds of a cross-validation)."""
    train, val = float(split[0]), float(split[1])
    validation = val / train * FORWARD_SHARE if train > 0 else 0.0
    seconds = step_seconds * steps_per_epoch * epochs * (1 + validation) * runs
    return RunEstimate(step_seconds, steps_per_epoch, epochs, seconds, runs)


def expected_run(settings: Mapping[str, Any], n_clips: int, speed: StepSpeed) -> RunEstimate:
    """Before a run of TrainConfig fields ``settings`` on ``n_clips`` labelled clips: its
    duration at the ``speed`` measured on this machine (see module docstring)."""
    clock = StepClock.for_settings(settings)
    batch = _setting(settings, "batch_size")
    train_share = clock.split[0] / (sum(clock.split) or 1.0)
    steps = max(1, math.ceil(n_clips * train_share / batch))
    return RunEstimate(speed.step_seconds(settings), steps, clock.epochs,
                       run_seconds(settings, steps, speed), clock.runs, before=True)


class StepClock:
    """Collects the first batches of a run; :meth:`add` returns the estimate once, as soon as
    it can be made (None before and after). With the :class:`StepSpeed` measured before the
    run (``speed``), the estimate is :func:`run_seconds` at that speed rescaled to the run's
    own batches (kept in ``speed`` for the next runs); without it, :func:`estimate_run`."""

    def __init__(self, epochs: int, split: Sequence[float] = (0.7, 0.15, 0.15), runs: int = 1):
        self.epochs, self.split, self.runs = epochs, tuple(split), runs
        self.settings: dict[str, Any] = {}  # the run's TrainConfig fields, when known
        self.speed: StepSpeed | None = None
        self.seconds: list[float] = []
        self.done = False

    @classmethod
    def for_settings(cls, settings: Mapping[str, Any],
                     speed: StepSpeed | None = None) -> StepClock:
        """For a run of TrainConfig fields ``settings`` (TrainConfig's defaults where absent)
        on a machine measured at ``speed``."""
        clock = cls(int(settings.get("epochs", _DEFAULTS["epochs"])),
                    settings.get("split", _DEFAULTS["split"]),
                    int(settings.get("crossval_folds") or 1))
        clock.settings, clock.speed = dict(settings), speed
        return clock

    def add(self, event: BatchEnd) -> RunEstimate | None:
        if self.done or event.epoch != 1:
            return None
        self.seconds.append(event.seconds)
        measured = self.seconds[1:] or (self.seconds if event.n_steps == 1 else [])
        if len(measured) < min(MEASURED_BATCHES, event.n_steps - 1) or not measured:
            return None
        self.done = True
        step = statistics.median(measured)
        if self.speed is None:
            return estimate_run(step, event.n_steps, self.epochs, self.split, self.runs)
        self.speed = self.speed.rescaled(step, self.settings)
        return RunEstimate(step, event.n_steps, self.epochs,
                           run_seconds(self.settings, event.n_steps, self.speed), self.runs)
