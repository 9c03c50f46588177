"""The one child-process helper (``jobs.child``), the one trainer picker (``jobs.launch``) and
the device probe (``jobs.devices``), which runs in a child so torch never enters the app."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from echoquality_core.jobs import child
from echoquality_core.jobs.launch import launch, make_trainer
from echoquality_core.train.config import TrainConfig


def _pid_and_double(value: int) -> tuple[int, int]:
    return os.getpid(), 2 * value


def _refuse(_value: int) -> None:
    raise ValueError("no such clip")


def _sleep(seconds: float) -> None:
    time.sleep(seconds)


def test_call_in_child_returns_the_value_or_the_error_from_another_process():
    pid, doubled = child.call_in_child(_pid_and_double, 21, name="test-child")
    assert doubled == 42 and pid != os.getpid()
    with pytest.raises(RuntimeError, match="no such clip"):
        child.call_in_child(_refuse, 1, name="test-child")


def test_a_cancelled_call_kills_its_child_at_once():
    started = time.monotonic()
    clock = lambda: time.monotonic() - started > 1.0  # noqa: E731 - cancel after 1 s
    with pytest.raises(RuntimeError, match="stopped"):
        child.call_in_child(_sleep, 60, name="test-child", cancelled=clock)
    assert time.monotonic() - started < 10
    import multiprocessing

    assert not multiprocessing.active_children()


def test_cpu_threads_leave_one_core_for_the_window():
    cores = os.cpu_count() or 1
    assert child.cpu_threads() == max(1, cores - 1)
    assert child.cpu_threads(ranks=cores * 2) == 1


def test_the_device_probe_answers_from_a_child_and_imports_no_torch_here():
    code = ("import json, sys; from echoquality_core.jobs.devices import probe; "
            "auto, choices = probe(); "
            "print(json.dumps([auto, [label for label, _ in choices], 'torch' in sys.modules]))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=300, check=True)
    auto, labels, torch_here = json.loads(out.stdout)
    assert auto and labels[:2] == ["Auto", "CPU"] and torch_here is False


def test_one_place_picks_the_trainer(tiny_project, monkeypatch):
    from echoquality_core.train.crossval import CrossValidator
    from echoquality_core.train.trainer import Trainer

    csv_path = tiny_project(n_clips=6, n_frames=4, height=32, width=40, seed=1)
    config = TrainConfig(annotations_csv=str(csv_path))
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert type(make_trainer(config)) is Trainer
    cv = make_trainer(config, folds=3, repeats=2, val_fraction=0.25)
    assert isinstance(cv, CrossValidator) and (cv.n_folds, cv.repeats) == (3, 2)
    run = launch({"annotations_csv": str(csv_path), "crossval_folds": 2}, print)
    assert isinstance(run.trainer, CrossValidator) and run.world == 1 and not run.others
    with pytest.raises(ValueError, match="one device"):  # the Train tab: folds on all GPUs
        launch({"annotations_csv": str(csv_path), "crossval_folds": 2, "ranks": 2}, print)
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    with pytest.raises(ValueError, match="one device"):  # torchrun with crossval
        make_trainer(config, folds=3)
