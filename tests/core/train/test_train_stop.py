"""Stop before anything is worth keeping, the plain state-dict file, settings checked up front,
and the CLI's one-line errors for bad training settings."""
from __future__ import annotations

import pytest
import torch
from mlflow import MlflowClient

from echoquality_core.cli.main import main
from echoquality_core.train.events import BatchEnd, Progress
from echoquality_core.model.network import build_model
from echoquality_core.runs.tracking import default_tracking_uri
from echoquality_core.train.trainer import STATE_DICT_FILE, TrainConfig, Trainer

pytestmark = pytest.mark.filterwarnings("ignore:No weights given:UserWarning")


@pytest.fixture(scope="module")
def csv_path(tiny_project):
    return tiny_project(n_clips=10, n_frames=6, height=64, width=80, seed=5)


def config(csv_path, tmp_path, **overrides) -> TrainConfig:
    settings = {"annotations_csv": str(csv_path), "videos_dir": None, "n_frames": 4, "stride": 1,
                    "batch_size": 2, "epochs": 2, "learning_rate": 1e-3, "device": "cpu",
                    "save_dir": str(tmp_path / "models"), "log_mlflow_model": False,
                    "tracking_uri": default_tracking_uri(tmp_path)}
    return TrainConfig(**(settings | overrides))


def run(cfg: TrainConfig, stop_when) -> tuple:
    trainer = Trainer(cfg)
    events: list = []

    def callback(event):
        events.append(event)
        if stop_when(event):
            trainer.stop()

    trainer.callback = callback
    return trainer.run(), events, trainer


@pytest.mark.slow
def test_stop_while_clips_are_prepared_ends_at_once_with_nothing_kept(csv_path, tmp_path):
    end, events, trainer = run(config(csv_path, tmp_path),
                               lambda e: isinstance(e, Progress) and e.done == 1)
    assert end.stopped and not end.cancelled and end.error is None
    assert end.best_checkpoint is None and end.run_id is None
    assert not any(isinstance(e, BatchEnd) for e in events)
    assert not trainer.run_dir.exists()


@pytest.mark.slow
def test_stop_in_the_first_epoch_keeps_nothing_and_kills_the_run(csv_path, tmp_path):
    end, events, trainer = run(config(csv_path, tmp_path),
                               lambda e: isinstance(e, BatchEnd) and e.epoch == 1)
    assert end.stopped and end.best_checkpoint is None and end.error is None
    assert [e.step for e in events if isinstance(e, BatchEnd)] == [1]
    assert not trainer.run_dir.exists()
    assert MlflowClient(default_tracking_uri(tmp_path)).get_run(end.run_id).info.status == "KILLED"


@pytest.mark.slow
def test_best_model_is_also_saved_as_a_plain_state_dict(csv_path, tmp_path):
    end = Trainer(config(csv_path, tmp_path, epochs=1)).run()
    assert end.error is None and end.best_checkpoint.is_file()
    state = torch.load(end.run_dir / STATE_DICT_FILE, weights_only=True)
    with pytest.warns(UserWarning, match="random"):
        model = build_model(None)
    model.load_state_dict(state)  # EchoPrime's way of loading video_quality_model.pt
    saved = torch.load(end.best_checkpoint, weights_only=True)["model_state_dict"]
    assert all(torch.equal(state[k], saved[k]) for k in saved)
    artifacts = {a.path for a in MlflowClient(default_tracking_uri(tmp_path))
                 .list_artifacts(end.run_id, "checkpoints")}
    assert artifacts == {"checkpoints/best.pt"}  # the plain copy stays in the run folder only


def test_an_unfreeze_schedule_must_start_at_epoch_zero():
    with pytest.raises(ValueError, match="epoch 0"):
        TrainConfig(unfreeze_schedule="layer4@3")
    with pytest.raises(ValueError, match="unknown block"):
        TrainConfig(unfreeze_schedule="fc@0,layer9@2")
    assert TrainConfig(unfreeze_schedule="fc@0,layer4@3", cosine_t0=3).cosine_t0 == 3


@pytest.mark.slow
@pytest.mark.parametrize("argv, message", [
    (["--config", "missing.toml"], "missing.toml"),
    (["--epochs", "0"], "epochs must be at least 1"),
    (["--unfreeze", "layer4@2"], "epoch 0"),
])
def test_cli_train_reports_bad_settings_in_one_line(tmp_path, capsys, argv, message):
    assert main(["train", "--csv", str(tmp_path / "labels.csv"), *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("echoquality train: error:") and message in err
    assert "Traceback" not in err
