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

from echoquality_core.demo import write_demo_project
from echoquality_core.tracking import default_tracking_uri

ROOT = Path(__file__).resolve().parents[2]

APP = textwrap.dedent("""
    import json, sys, time
    from echoquality_core.events import BatchEnd
    from echoquality_core.train_process import TrainProcess
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
