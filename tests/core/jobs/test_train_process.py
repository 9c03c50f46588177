"""Training in a child process: events come back in order, Stop/Cancel reach the child, and a
child that dies is reported instead of hanging the caller."""
from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from echoquality_core.train.events import BatchEnd, EpochEnd, Progress, TrainEnd, TrainError
from echoquality_core.runs.tracking import default_tracking_uri
from echoquality_core.jobs.devices import RunDevice
from echoquality_core.jobs.train_process import TrainProcess


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
    assert kinds[0] is RunDevice and kinds[1] is Progress and kinds[-1] is TrainEnd
    assert events[0].text.startswith("CPU, ")  # said by the child: no torch in the parent
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
    assert isinstance(events[1], TrainError) and "epochs must be at least 1" in events[1].message
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


def _ranks_started_by(pid: int) -> list[int]:
    """Pids of live rank processes (``jobs.launch``) whose parent (rank 0) is ``pid``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"echoquality_core.jobs.launch" in argv and str(pid).encode() in argv:
            found.append(int(entry.name))
    return found


@pytest.mark.slow
def test_cancel_with_two_ranks_ends_every_rank_and_keeps_no_model(settings):
    run = TrainProcess(settings | {"ranks": 2, "epochs": 3})
    run.start()
    running = None
    for event in run.events():
        if isinstance(event, BatchEnd) and running is None:
            running = _ranks_started_by(run.process.pid)
            run.cancel()
        last = event
    run.join(60)
    assert len(running) == 1  # rank 1 was there when Cancel was pressed
    assert isinstance(last, TrainEnd) and last.cancelled and last.error is None
    assert last.best_checkpoint is None and run.process.exitcode == 0
    assert not _ranks_started_by(run.process.pid)  # and is gone with rank 0


@pytest.mark.slow
def test_a_rank_that_dies_ends_the_run_with_a_clear_error(settings):
    run = TrainProcess(settings | {"ranks": 2, "epochs": 3})
    run.start()
    killed = []
    for event in run.events():
        if isinstance(event, BatchEnd) and not killed:
            killed = _ranks_started_by(run.process.pid)
            os.kill(killed[0], signal.SIGKILL)
        last = event
    run.join(60)
    assert len(killed) == 1
    assert isinstance(last, TrainEnd) and last.error is not None and not last.cancelled
    assert last.error.message.startswith(
        f"Training process 2 of 2 ended unexpectedly (exit code {-signal.SIGKILL})")
    assert last.best_checkpoint is None and run.process.exitcode == 0
