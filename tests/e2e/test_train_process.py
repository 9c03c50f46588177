"""Training in a child process: events come back in order, Stop/Cancel reach the child, and a
child that dies is reported instead of hanging the caller."""
from __future__ import annotations

import os
import signal

import pytest

from echoquality_core.events import BatchEnd, EpochEnd, Progress, TrainEnd, TrainError
from echoquality_core.tracking import default_tracking_uri
from echoquality_core.train_process import TrainProcess


@pytest.fixture(scope="module")
def settings(tiny_project) -> dict:
    csv_path = tiny_project(n_clips=10, n_frames=6, height=64, width=80, seed=7)
    return {"annotations_csv": str(csv_path), "videos_dir": None, "n_frames": 4, "stride": 1,
            "batch_size": 2, "epochs": 2, "learning_rate": 1e-3, "device": "cpu",
            "log_mlflow_model": False, "tracking_uri": default_tracking_uri(csv_path.parent)}


@pytest.mark.slow
def test_a_run_in_a_child_process_sends_its_events_in_order(settings):
    run = TrainProcess(settings | {"epochs": 1})
    run.start()
    events = list(run.events())
    run.join(30)
    kinds = [type(e) for e in events]
    assert kinds[0] is Progress and kinds[-1] is TrainEnd
    assert kinds.index(BatchEnd) < kinds.index(EpochEnd)
    end = events[-1]
    assert end.error is None and end.best_checkpoint.is_file()
    assert run.process.exitcode == 0


@pytest.mark.slow
def test_cancel_reaches_the_child(settings):
    run = TrainProcess(settings)
    run.start()
    for event in run.events():
        if isinstance(event, BatchEnd):
            run.cancel()
        last = event
    run.join(30)
    assert isinstance(last, TrainEnd) and last.cancelled and last.best_checkpoint is None


@pytest.mark.slow
def test_bad_settings_and_a_dead_child_are_reported(settings):
    run = TrainProcess(settings | {"epochs": 0})
    run.start()
    events = list(run.events())
    assert isinstance(events[0], TrainError) and "epochs must be at least 1" in events[0].message
    assert isinstance(events[-1], TrainEnd) and events[-1].error is not None

    run = TrainProcess(settings)
    run.start()
    for event in run.events():
        if isinstance(event, Progress):
            os.kill(run.process.pid, signal.SIGKILL)
        last = event
    assert isinstance(last, TrainEnd) and last.error is not None
    assert "ended unexpectedly" in last.error.message and str(-signal.SIGKILL) in last.error.message


@pytest.mark.slow
def test_two_ranks_from_the_app_train_with_ddp_and_stop_together(settings):
    """"All GPUs (N)" on the Train tab: the child is rank 0 of N DDP ranks (2 gloo ranks on the
    CPU here); Stop pressed in epoch 2 stops every rank and keeps epoch 1's model."""
    from mlflow import MlflowClient

    run = TrainProcess(settings | {"ranks": 2, "epochs": 3})
    run.start()
    events = []
    for event in run.events():
        events.append(event)
        if isinstance(event, BatchEnd) and event.epoch == 2:
            run.stop()
    run.join(60)
    end = events[-1]
    assert isinstance(end, TrainEnd) and end.error is None, end.error
    assert end.stopped and end.best_epoch == 1 and end.best_checkpoint.is_file()
    assert max(e.epoch for e in events if isinstance(e, EpochEnd)) == 1
    assert run.process.exitcode == 0
    mlflow_run = MlflowClient(settings["tracking_uri"]).get_run(end.run_id)
    assert mlflow_run.data.params["world_size"] == "2"  # one run, logged by rank 0 only
    assert mlflow_run.info.status == "FINISHED"
