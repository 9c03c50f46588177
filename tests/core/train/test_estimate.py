"""The run's duration from the measured step time: warm-up left out, validation counted, long
runs called out; before a run, from one step timed on this machine, the frozen-trunk cache
counted."""
from __future__ import annotations

import pytest

from echoquality_core.train.estimate import (
    LONG_RUN_SECONDS,
    StepClock,
    StepSpeed,
    estimate_run,
    expected_run,
    run_seconds,
    trunk_cached,
)
from echoquality_core.train.events import BatchEnd


def test_estimate_counts_training_and_validation():
    est = estimate_run(2.0, 18, 2, split=(0.7, 0.15, 0.15))
    assert est.seconds == pytest.approx(2.0 * 18 * 2 * (1 + 0.15 / 0.7 / 3))
    assert not est.long and "about 1 min" in est.text() and "over" not in est.text()
    long = estimate_run(20.0, 50, 2)
    assert long.long and long.seconds > LONG_RUN_SECONDS
    assert "over 15 min" in long.text() and "Measured 20 s per batch" in long.text()
    folds = estimate_run(2.0, 18, 2, runs=5)
    assert folds.seconds == pytest.approx(5 * est.seconds) and "each of 5 folds" in folds.text()


def test_step_clock_skips_the_warm_up_batch_and_answers_once():
    clock = StepClock(epochs=3, split=(0.8, 0.2, 0.0))
    seconds = [9.0, 1.0, 1.2, 0.8]
    answers = [clock.add(BatchEnd(1, i + 1, 10, 0.7, s)) for i, s in enumerate(seconds)]
    assert answers[:2] == [None] * 2 and answers[3] is None
    assert answers[2].step_seconds == pytest.approx(1.1) and answers[2].steps_per_epoch == 10
    assert answers[2].seconds == pytest.approx(1.1 * 10 * 3 * (1 + 0.25 / 3))


def test_step_clock_with_one_or_two_batches_per_epoch():
    one = StepClock(epochs=2)
    assert one.add(BatchEnd(1, 1, 1, 0.7, 3.0)).step_seconds == 3.0
    two = StepClock(epochs=2)
    assert two.add(BatchEnd(1, 1, 2, 0.7, 9.0)) is None
    assert two.add(BatchEnd(1, 2, 2, 0.7, 1.5)).step_seconds == 1.5


def test_step_clock_for_training_settings():
    clock = StepClock.for_settings({"epochs": 4, "crossval_folds": 3})
    assert (clock.epochs, clock.split, clock.runs) == (4, (0.7, 0.15, 0.15), 3)
    assert StepClock.for_settings({"split": (0.75, 0.25, 0.0)}).split == (0.75, 0.25, 0.0)
    assert clock.settings == {"epochs": 4, "crossval_folds": 3}


def test_expected_run_from_a_step_measured_here_counts_the_frozen_trunk_once():
    """Issue 22.2: the speed of one step of the real network (small: 1 clip of 4 frames),
    measured in this process, scaled to a run. With the frozen-trunk cache the trunk runs once
    per clip (first epoch) and later epochs train the head only; with augmentation (no cache)
    every epoch runs the trunk again."""
    from echoquality_core.train.step_speed import measure_step

    small = {"batch_size": 1, "n_frames": 4}
    speed = measure_step(small)
    assert speed.trunk > 0 and speed.train > 0 and speed.evaluate > 0
    assert speed.train > speed.evaluate  # a training step is more than its forward
    assert StepSpeed.from_text(speed.to_text()) == speed

    cached = {"epochs": 10, "batch_size": 8, "n_frames": 16}
    uncached = {**cached, "augment": True}
    assert trunk_cached(cached) and not trunk_cached(uncached)
    assert not trunk_cached({**cached, "frozen_trunk_cache": False})
    assert not trunk_cached({**cached, "ranks": 2})  # DDP runs the whole forward
    on, off = expected_run(cached, 100, speed), expected_run(uncached, 100, speed)
    steps = 9  # ceil(100 * 0.7 / 8)
    assert on.steps_per_epoch == off.steps_per_epoch == steps and on.before and off.before
    clips = steps * 8 * 16  # clip frames of an epoch's training batches
    val, test = clips * 0.15 / 0.7, clips * 0.15 / 0.7
    trunk_pass = (clips + val) * speed.trunk
    head = clips * speed.train + val * speed.evaluate
    tested = test * (speed.trunk + speed.evaluate)
    assert on.seconds == pytest.approx(trunk_pass + 10 * head + tested)
    assert off.seconds == pytest.approx(10 * (trunk_pass + head) + tested)
    assert off.seconds - on.seconds == pytest.approx(9 * trunk_pass)
    # a batch as the run times it: the head alone when cached, trunk and head when not
    assert on.step_seconds == pytest.approx(8 * 16 * speed.train)
    assert off.step_seconds == pytest.approx(8 * 16 * (speed.trunk + speed.train))
    folds = expected_run({**cached, "crossval_folds": 5}, 100, speed)
    assert folds.seconds == pytest.approx(5 * on.seconds) and folds.runs == 5


def test_the_estimate_before_a_run_says_where_it_comes_from_and_when_it_is_long():
    speed = StepSpeed(trunk=0.02, train=0.01, evaluate=0.003)
    short = expected_run({"epochs": 10, "batch_size": 8, "n_frames": 16}, 100, speed)
    assert 60 < short.seconds < LONG_RUN_SECONDS
    assert short.text().startswith(f"About {short.seconds / 60:.0f} min (measured on this "
                                   "computer): 10 epochs of 9 batches")
    assert not short.long and "over 15 min" not in short.text()
    long = expected_run({"epochs": 50, "batch_size": 8, "n_frames": 16}, 400, speed)
    assert long.long and "over 15 min: Stop keeps the best model" in long.text()
    assert StepSpeed.from_text("0.01") is None and StepSpeed.from_text(None) is None
    assert StepSpeed.from_text("nan 1 1") is None


def test_a_runs_batches_rescale_the_measured_speed():
    """During a run, its own median batch time rescales the speed measured before it (the
    machine may be busier now), and the estimate keeps the frozen-trunk arithmetic."""
    speed = StepSpeed(trunk=0.02, train=0.01, evaluate=0.003)
    settings = {"epochs": 3, "batch_size": 8, "n_frames": 16}
    clock = StepClock.for_settings(settings, speed)
    answers = [clock.add(BatchEnd(1, i + 1, 10, 0.7, s)) for i, s in enumerate([9.0, 2.4, 2.6])]
    estimate = answers[-1]
    assert estimate.step_seconds == pytest.approx(2.5) and not estimate.before
    scale = 2.5 / (8 * 16 * 0.01)  # cached: a batch is the head's step
    assert clock.speed == pytest.approx(StepSpeed(0.02 * scale, 0.01 * scale, 0.003 * scale))
    assert estimate.seconds == pytest.approx(run_seconds(settings, 10, clock.speed))
    assert estimate.text().startswith("Measured 2.5 s per batch: this run takes about")
