"""The run's duration from the measured step time: warm-up left out, validation counted, long
runs called out."""
from __future__ import annotations

import pytest

from echoquality_core.train.estimate import (
    LONG_RUN_SECONDS,
    StepClock,
    estimate_run,
    expected_run,
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


def test_expected_run_scales_an_earlier_runs_speed():
    measured = estimate_run(2.0, 18, 2)  # batch 8 of 16 frames: 2 s
    speed = measured.clip_frame_seconds({"batch_size": 8, "n_frames": 16})
    assert speed == pytest.approx(2.0 / 128)
    same = expected_run({"epochs": 2, "batch_size": 8, "n_frames": 16}, 180, speed)
    assert same.steps_per_epoch == 16 and same.step_seconds == pytest.approx(2.0)  # 126 / 8
    assert same.earlier and same.text().startswith("An earlier run here measured 2 s per batch")
    bigger = expected_run({"epochs": 20, "batch_size": 4, "n_frames": 32}, 180, speed)
    assert bigger.step_seconds == pytest.approx(2.0) and bigger.steps_per_epoch == 32
    assert bigger.seconds == pytest.approx(2.0 * 32 * 20 * (1 + 0.15 / 0.7 / 3))
