"""Training faults leave no lies: the training child dies with the app that started it, and the
MLflow run of a training that was killed is not left RUNNING."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psutil
import pytest

from echoquality_core.demo.project import write_demo_project
from echoquality_core.runs.tracking import default_tracking_uri

ROOT = Path(__file__).resolve().parents[2]

APP = textwrap.dedent("""
    import json, sys, time
    from echoquality_core.train.events import BatchEnd
    from echoquality_core.jobs.train_process import TrainProcess
    run = TrainProcess(json.loads(sys.argv[1]))
    run.start()
    for event in run.events():
        if isinstance(event, BatchEnd):
            print(run.process.pid, flush=True)
            break
    time.sleep(600)  # the app goes on (and is killed by the test)
""")


@pytest.fixture(scope="module")
def settings(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("faults_demo")
    csv_path = write_demo_project(root, n_clips=8, n_frames=6, height=64, width=80, seed=3,
                                  unlabelled=0.0)
    return {"annotations_csv": str(csv_path), "videos_dir": None, "n_frames": 4, "stride": 1,
            "batch_size": 2, "epochs": 50, "learning_rate": 1e-3, "device": "cpu",
            "log_mlflow_model": False, "tracking_uri": default_tracking_uri(root)}


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def _statuses(tracking_uri: str) -> list[str]:
    import mlflow

    client = mlflow.MlflowClient(tracking_uri)
    return [run.info.status for exp in client.search_experiments()
            for run in client.search_runs([exp.experiment_id])]


@pytest.mark.slow
def test_killing_the_app_ends_its_training_child_within_2_s(settings):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    app = subprocess.Popen([sys.executable, "-c", APP, json.dumps(settings)],
                           stdout=subprocess.PIPE, text=True, env=env)
    try:
        child = int(app.stdout.readline())
        assert not _gone(child)
    finally:
        app.send_signal(signal.SIGKILL)
        app.wait(10)
    killed = time.monotonic()
    while not _gone(child) and time.monotonic() - killed < 10:
        time.sleep(0.02)
    assert _gone(child)
    assert time.monotonic() - killed < 2.0
    assert _statuses(settings["tracking_uri"]) == ["KILLED"]  # cancelled, nothing kept


CLI = "import sys; from echoquality_core.cli.main import main; sys.exit(main())"


def _train(settings: dict) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(
        [sys.executable, "-c", CLI, "train", "--csv", settings["annotations_csv"],
         "--epochs", "50", "--batch-size", "2", "--frames", "4", "--stride", "1",
         "--device", "cpu", "--workers", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def _wait_for_a_running_run(settings: dict, known: int, process: subprocess.Popen) -> None:
    from echoquality_core.runs.tracking import list_runs

    began = time.monotonic()
    while time.monotonic() - began < 240:
        runs = list_runs(settings["tracking_uri"])
        if len(runs) > known and runs[0]["status"] == "RUNNING" and \
                (Path(settings["annotations_csv"]).parent / "trained_models").exists():
            return
        assert process.poll() is None, process.communicate()
        time.sleep(0.5)
    raise AssertionError("the training did not start")


@pytest.mark.slow
def test_sigterm_or_kill_9_of_train_leaves_no_running_run_and_no_model_offered(settings):
    from echoquality_core.runs.tracking import list_runs, mark_stale_runs, run_checkpoint

    uri, project = settings["tracking_uri"], Path(settings["annotations_csv"]).parent
    known = len(list_runs(uri))
    train = _train(settings)
    _wait_for_a_running_run(settings, known, train)
    train.send_signal(signal.SIGTERM)
    train.communicate(timeout=60)
    assert train.returncode != 0
    assert list_runs(uri)[0]["status"] == "FAILED"  # marked by the run itself

    train = _train(settings)
    _wait_for_a_running_run(settings, known + 1, train)
    train.send_signal(signal.SIGKILL)
    train.communicate(timeout=60)
    killed = list_runs(uri)[0]
    assert killed["status"] == "RUNNING"  # nobody could end it ...
    assert run_checkpoint(killed, project) is None  # ... and its best.pt is not offered
    assert mark_stale_runs(uri) == [killed["run_id"]]  # what the next training / the app does
    assert [r["status"] for r in list_runs(uri)[:2]] == ["KILLED", "FAILED"]
