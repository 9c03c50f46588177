"""MLflow bookkeeping: local SQLite store, run status, params without patient data, runs list."""
from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from echoquality_core.files.digest import file_digest as file_sha256
from echoquality_core.runs.tracking import (
    default_tracking_uri,
    flatten,
    free_port,
    list_runs,
    local_artifact_dir,
    mlflow_ui_command,
    run_checkpoint,
    run_folder,
    start_run,
)


def test_default_store_is_sqlite_file_in_project_folder(tmp_path):
    uri = default_tracking_uri(tmp_path)
    assert uri.startswith("sqlite:///")
    assert uri.endswith(f"{tmp_path.resolve().as_posix()}/mlruns.db")


def test_flatten_nests_with_dots_and_stringifies():
    flat = flatten({"lr": 0.001, "split": [0.7, 0.15, 0.15], "opt": {"name": "adamw"}, "w": None})
    assert flat == {"lr": "0.001", "split": "[0.7, 0.15, 0.15]", "opt.name": "adamw", "w": ""}


def test_run_logs_params_metrics_and_finishes(tmp_path):
    from mlflow import MlflowClient

    uri = default_tracking_uri(tmp_path)
    with start_run({"batch_size": 2, "loss": "bce"}, tracking_uri=uri, experiment="t",
                   run_name="r1", artifact_location=(tmp_path / "art").as_uri()) as run:
        run.log_metrics({"train_loss": 0.7, "val_loss": float("nan"), "note": "x"}, step=1)
        run.log_metrics({"train_loss": 0.5}, step=2)
        artifact = tmp_path / "split.csv"
        artifact.write_text("video_path,split,label\n")
        run.log_artifact(artifact)
    client = MlflowClient(uri)
    got = client.get_run(run.run_id)
    assert got.info.status == "FINISHED"
    assert got.data.params == {"batch_size": "2", "loss": "bce"}
    history = client.get_metric_history(run.run_id, "train_loss")
    assert [(m.step, m.value) for m in history] == [(1, 0.7), (2, 0.5)]
    assert "val_loss" not in got.data.metrics  # NaN skipped, not logged as garbage
    assert [a.path for a in client.list_artifacts(run.run_id)] == ["split.csv"]
    assert (tmp_path / "art").is_dir()


def test_run_status_killed_when_set_and_failed_on_exception(tmp_path):
    uri = default_tracking_uri(tmp_path)
    with start_run(tracking_uri=uri, experiment="t") as killed:
        killed.status = "KILLED"
    with pytest.raises(RuntimeError), start_run(tracking_uri=uri, experiment="t") as failed:
        raise RuntimeError("boom")
    runs = {r["run_id"]: r for r in list_runs(uri, "t")}
    assert runs[killed.run_id]["status"] == "KILLED"
    assert runs[failed.run_id]["status"] == "FAILED"


def test_list_runs_newest_first_with_metrics_and_params(tmp_path):
    uri = default_tracking_uri(tmp_path)
    assert list_runs(uri, "missing") == []
    ids = []
    for lr in (0.1, 0.01):
        with start_run({"learning_rate": lr}, tracking_uri=uri, experiment="t") as run:
            run.log_metrics({"val_loss": lr * 2}, step=1)
        ids.append(run.run_id)
    runs = list_runs(uri, "t")
    assert [r["run_id"] for r in runs] == ids[::-1]
    assert runs[0]["params"] == {"learning_rate": "0.01"}
    assert runs[0]["metrics"] == {"val_loss": pytest.approx(0.02)}
    assert runs[0]["status"] == "FINISHED" and runs[0]["start_time"]


@pytest.mark.slow
def test_logged_pytorch_model_loads_back_offline(tmp_path):
    import mlflow.pytorch

    uri = default_tracking_uri(tmp_path)
    model = torch.nn.Sequential(torch.nn.Linear(3, 1))
    with start_run(tracking_uri=uri, experiment="t",
                   artifact_location=(tmp_path / "art").as_uri()) as run:
        model_uri = run.log_model(model)
    mlflow.set_tracking_uri(uri)
    loaded = mlflow.pytorch.load_model(model_uri)
    x = torch.randn(2, 3)
    assert torch.equal(loaded(x), model(x))


def test_file_sha256_matches_hashlib(tmp_path):
    import hashlib

    f = tmp_path / "labels.csv"
    f.write_bytes(b"video_path,quality_score\na.dcm,1\n")
    assert file_sha256(f) == hashlib.sha256(f.read_bytes()).hexdigest()


@pytest.mark.slow
def test_mlflow_ui_command_is_runnable(tmp_path):
    argv = mlflow_ui_command(default_tracking_uri(tmp_path), port=5123)
    assert argv[:4] == [sys.executable, "-m", "mlflow", "ui"]
    assert argv[argv.index("--port") + 1] == "5123"
    assert argv[argv.index("--backend-store-uri") + 1] == default_tracking_uri(tmp_path)
    help_run = subprocess.run(
        [*argv[:4], "--help"], capture_output=True, text=True, timeout=120, check=False
    )
    assert help_run.returncode == 0
    assert "--backend-store-uri" in help_run.stdout


def test_list_runs_does_not_create_a_store(tmp_path):
    assert list_runs(default_tracking_uri(tmp_path)) == []
    assert not (tmp_path / "mlruns.db").exists()


@pytest.mark.slow
def test_run_files_of_a_real_training_run(trained_run):
    root, end = trained_run
    run = next(r for r in list_runs(default_tracking_uri(root)) if r["run_id"] == end.run_id)
    assert run["tags"]["run_dir"] == end.run_dir.name
    assert not any(key.startswith("mlflow.") for key in run["tags"])
    assert run_folder(run, root) == end.run_dir
    assert run_checkpoint(run, root) == end.best_checkpoint
    # training folder gone: the logged copy in the run's artifacts is found instead
    moved = {**run, "tags": {**run["tags"], "run_dir": "deleted-run"}}
    artifacts = local_artifact_dir(run)
    assert run_folder(moved, root) == artifacts
    assert run_checkpoint(moved, root) == artifacts / "checkpoints" / "best.pt"
    assert file_sha256(run_checkpoint(moved, root)) == file_sha256(end.best_checkpoint)


def test_run_without_files_has_no_checkpoint(tmp_path):
    uri = default_tracking_uri(tmp_path)
    with start_run({"save_dir": "trained_models"}, tracking_uri=uri, experiment="t",
                   artifact_location=(tmp_path / "art").as_uri(),
                   tags={"run_dir": "cancelled-run"}) as run:
        run.status = "KILLED"
    (listed,) = list_runs(uri, "t")
    assert listed["status"] == "KILLED"
    assert run_checkpoint(listed, tmp_path) is None
    assert run_folder(listed, tmp_path) is None


def test_free_port_can_be_bound():
    import socket

    port = free_port()
    assert 0 < port < 65536
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))


def test_mlflow_ui_command_uses_one_worker(tmp_path):
    argv = mlflow_ui_command(default_tracking_uri(tmp_path), port=5123)
    assert argv[argv.index("--workers") + 1] == "1"
