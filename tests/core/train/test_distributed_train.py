"""DDP training: 2 real gloo ranks under torchrun for 1 epoch on a tiny demo project make the
same patient split as one process with the same seed, one MLflow run, one checkpoint, and log
the training loss as the mean of the ranks' losses."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from mlflow import MlflowClient

from echoquality_core.data.clips import ClipCache, prepare_training_data, save_split, split_training_data
from echoquality_core.demo.project import write_demo_project
from echoquality_core.runs.tracking import default_tracking_uri
from echoquality_core.train.config import TrainConfig
from echoquality_core.jobs.launch import make_trainer

ROOT = Path(__file__).resolve().parents[3]  # the checkout (tests/<room>/../..)


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("ddp")
    write_demo_project(root, n_clips=12, n_frames=8, height=64, width=80, seed=5, unlabelled=0.0)
    return root


def test_a_plain_process_gets_the_plain_trainer(project, monkeypatch):
    from echoquality_core.train.trainer import Trainer

    monkeypatch.delenv("WORLD_SIZE", raising=False)
    trainer = make_trainer(TrainConfig(annotations_csv=str(project / "labels.csv")))
    assert type(trainer) is Trainer


@pytest.mark.slow
def test_two_gloo_ranks_train_one_epoch(project, tmp_path):
    save_dir = tmp_path / "models"
    done = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
         "-m", "echoquality_core", "train", "--csv", str(project / "labels.csv"), "--videos",
         str(project / "clips"), "--save-dir", str(save_dir), "--epochs", "1",
         "--batch-size", "2", "--frames", "4", "--stride", "1", "--device", "cpu",
         "--seed", "11", "--workers", "0"],
        capture_output=True, text=True, timeout=400, cwd=ROOT,
        env=os.environ | {"PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1",
                          "MLFLOW_DISABLE_TELEMETRY": "true"})
    assert done.returncode == 0, done.stderr[-4000:]
    assert done.stdout.count("MLflow run ") == 1  # only rank 0 prints

    runs = [d for d in save_dir.iterdir() if d.is_dir()]
    assert len(runs) == 1 and len(list(runs[0].glob("best*.pt"))) == 2  # best.pt + plain copy
    state = torch.load(runs[0] / "best.pt", weights_only=True)["model_state_dict"]
    assert not any(k.startswith("module.") for k in state)

    records, _ = prepare_training_data(project / "labels.csv", project / "clips",
                                       ClipCache(tmp_path / "cache", TrainConfig().preprocess))
    single = save_split(split_training_data(records, TrainConfig().split, 11), records,
                        tmp_path / "single_split.csv")
    assert (runs[0] / "split.csv").read_text() == single.read_text()

    client = MlflowClient(default_tracking_uri(project))
    experiment = client.get_experiment_by_name("echoquality")
    found = client.search_runs([experiment.experiment_id])
    assert len(found) == 1 and found[0].info.status == "FINISHED"
    metrics = found[0].data.metrics
    ranks = [metrics["train_loss_rank0"], metrics["train_loss_rank1"]]
    assert metrics["train_loss"] == pytest.approx(sum(ranks) / 2, rel=1e-6)
    assert found[0].data.params["world_size"] == "2"
    run_id = found[0].info.run_id
    assert "checkpoints" not in {a.path for a in client.list_artifacts(run_id)}
    models = client.search_logged_models(experiment_ids=[experiment.experiment_id])
    assert [m.source_run_id for m in models] == [run_id]  # one pyfunc, holding the one best.pt
