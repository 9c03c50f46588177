"""Every training option runs end to end on a tiny real demo project and has its visible effect.

Loss options are compared clip by clip with a plain run: batch size 1, only ``fc`` trainable and a
learning rate of 1e-12 keep the weights as they started, and the same seed gives the same start
and the same clip order, so step k of both runs sees the same clip through the same model.
"""
from __future__ import annotations

import csv
import math
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from mlflow import MlflowClient

from echoquality_core.demo.project import write_demo_project
from echoquality_core.train.events import BatchEnd, EpochEnd, TrainEnd
from echoquality_core.labels.store import LabelStore
from echoquality_core.model.network import build_model, save_checkpoint
from echoquality_core.runs.tracking import default_tracking_uri
from echoquality_core.train.trainer import TrainConfig, Trainer

pytestmark = [pytest.mark.filterwarnings("ignore:No weights given:UserWarning"),
              pytest.mark.usefixtures("one_torch_thread")]

FROZEN_LR = 1e-12  # AdamW moves a weight by ~lr per step: nothing changes in float32


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Iterator[Path]:
    """8 demo clips of 3 patients, 2 of the good ones unlabelled so that the classes are unequal
    (with this seed: 1 good and 3 poor clips to train on, 1 and 1 to validate). Removed after the
    module: its runs' models take ~3 GB."""
    root = tmp_path_factory.mktemp("options")
    csv_path = write_demo_project(root, n_clips=8, n_frames=8,
                                  height=64, width=80, seed=2, unlabelled=0.0)
    store = LabelStore(csv_path)
    for rel in [p for p in store.paths() if store.get(p).quality_score == 1][:2]:
        store.remove(rel)
    yield csv_path
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def tracking(tmp_path_factory) -> str:
    return default_tracking_uri(tmp_path_factory.mktemp("mlflow"))


@dataclass
class Run:
    end: TrainEnd
    events: list
    params: dict
    tags: dict

    @property
    def losses(self) -> list[float]:
        """Training loss of every step, in order (all epochs)."""
        return [e.loss for e in self.events if isinstance(e, BatchEnd)]

    def epoch_losses(self, epoch: int) -> list[float]:
        return [e.loss for e in self.events if isinstance(e, BatchEnd) and e.epoch == epoch]

    @property
    def epochs(self) -> list[EpochEnd]:
        return [e for e in self.events if isinstance(e, EpochEnd)]

    def train_labels(self) -> list[float]:
        """Labels of the real training clips, from the run's split.csv."""
        with (self.end.run_dir / "split.csv").open(newline="") as fh:
            return [float(r["label"]) for r in csv.DictReader(fh) if r["split"] == "train"]


def _train(project: Path, tracking: str, **overrides) -> Run:
    settings = {
        "annotations_csv": str(project), "videos_dir": None,
        "save_dir": str(project.parent / "models"), "tracking_uri": tracking,
        "n_frames": 4, "stride": 1, "batch_size": 1, "epochs": 1,
        "learning_rate": FROZEN_LR, "num_unfrozen_layers": 1, "scheduler": "none",
        "split": (0.7, 0.3, 0.0), "device": "cpu", "log_mlflow_model": False,
    }
    events: list = []
    end = Trainer(TrainConfig(**(settings | overrides)), events.append).run()
    assert end.error is None, end.error
    assert events[-1] is end and end.best_checkpoint.is_file()
    run = MlflowClient(tracking).get_run(end.run_id)
    assert run.info.status == "FINISHED"
    return Run(end, events, dict(run.data.params), dict(run.data.tags))


@pytest.fixture(scope="module")
def plain(project, tracking) -> Run:
    """One epoch with all options off: the reference losses, one per training clip."""
    return _train(project, tracking)


@pytest.fixture(scope="module")
def fc_only(project, tracking) -> Run:
    """Two real epochs (lr 1e-3, cosine restarts) training only fc."""
    return _train(project, tracking, epochs=2, learning_rate=1e-3, scheduler="cosine_restarts")


@pytest.mark.slow
def test_plain_run_takes_one_step_per_training_clip(plain):
    n_train = plain.end.split_sizes["train"]
    assert len(plain.losses) == n_train == len(plain.train_labels()) >= 4
    assert plain.params["loss"] == "bce" and plain.params["augment"] == "False"
    assert all(math.isfinite(loss) and loss > 0 for loss in plain.losses)


@pytest.mark.slow
def test_focal_loss_is_the_guides_formula_applied_to_each_clips_bce(plain, project, tracking):
    run = _train(project, tracking, loss="focal", focal_alpha=0.5, focal_gamma=1.5)
    assert run.params["loss"] == "focal" and run.params["focal_gamma"] == "1.5"
    expected = [0.5 * (1 - math.exp(-bce)) ** 1.5 * bce for bce in plain.losses]
    assert run.losses == pytest.approx(expected, rel=1e-4)


@pytest.mark.slow
def test_class_weighting_weights_good_clips_by_poor_to_good_ratio(plain, project, tracking):
    run = _train(project, tracking, class_weighting=True)
    labels = run.train_labels()
    n_good = sum(y >= 0.5 for y in labels)
    pos_weight = (len(labels) - n_good) / n_good
    assert pos_weight != pytest.approx(1.0)  # else weighting would change nothing
    ratios = [w / b for w, b in zip(run.losses, plain.losses, strict=True)]
    assert sum(r == pytest.approx(pos_weight, rel=1e-4) for r in ratios) == n_good
    assert sum(r == pytest.approx(1.0, rel=1e-4) for r in ratios) == len(labels) - n_good
    assert run.params["class_weighting"] == "True"


@pytest.mark.slow
def test_augmentation_changes_what_the_model_sees_in_training(plain, project, tracking):
    run = _train(project, tracking, augment=True)
    assert len(run.losses) == len(plain.losses)
    changed = [a != pytest.approx(b, rel=1e-3) for a, b in zip(run.losses, plain.losses,
                                                                 strict=True)]
    assert sum(changed) >= len(changed) // 2, (run.losses, plain.losses)
    assert all(math.isfinite(loss) for loss in run.losses)
    assert run.params["augment"] == "True"


@pytest.mark.slow
def test_gradient_accumulation_steps_the_optimiser_every_second_clip(plain, project, tracking):
    """With a real learning rate the first 2 clips both meet the starting model (no optimiser
    step yet), the third one a changed model."""
    run = _train(project, tracking, learning_rate=1e-3, grad_accum_steps=2)
    assert run.losses[:2] == pytest.approx(plain.losses[:2], rel=1e-5)
    assert run.losses[2] != pytest.approx(plain.losses[2], rel=1e-3)
    assert run.params["grad_accum_steps"] == "2"


@pytest.mark.slow
def test_synthetic_pairs_add_a_poor_copy_of_each_good_training_clip(plain, project, tracking):
    run = _train(project, tracking, synthetic_pairs=True)
    labels = run.train_labels()
    assert labels == plain.train_labels()  # the split itself holds real clips only
    n_good = sum(y >= 0.5 for y in labels)
    assert n_good >= 1
    assert len(run.losses) == len(labels) + n_good
    assert {e.n_steps for e in run.events if isinstance(e, BatchEnd)} == {len(labels) + n_good}
    assert run.params["synthetic_pairs"] == "True"
    assert run.params["n_train"] == str(len(labels)) == str(run.end.split_sizes["train"])


@pytest.mark.slow
def test_cosine_restarts_lowers_the_learning_rate_after_each_epoch(fc_only, tracking):
    lrs = [e.lr for e in fc_only.epochs]
    assert lrs[0] == pytest.approx(1e-3) and 0 < lrs[1] < lrs[0]
    history = MlflowClient(tracking).get_metric_history(fc_only.end.run_id, "lr")
    assert [m.value for m in sorted(history, key=lambda m: m.step)] == pytest.approx(lrs)
    assert fc_only.params["scheduler"] == "cosine_restarts"


@pytest.mark.slow
def test_unfreeze_schedule_trains_layer4_from_the_second_epoch(fc_only, project, tracking):
    """fc@0 alone is the fc-only run; once layer4 trains too (epoch 2), the runs part at once:
    layer4's BatchNorm switches to training mode and its weights start to change."""
    run = _train(project, tracking, epochs=2, learning_rate=1e-3, scheduler="cosine_restarts",
                 unfreeze_schedule="fc@0,layer4@1")
    assert run.epoch_losses(1) == pytest.approx(fc_only.epoch_losses(1), rel=1e-5)
    assert run.epochs[0].val_loss == pytest.approx(fc_only.epochs[0].val_loss, rel=1e-5)
    second, reference = run.epoch_losses(2), fc_only.epoch_losses(2)
    assert second[0] != pytest.approx(reference[0], rel=1e-3)
    assert second[1:] != pytest.approx(reference[1:], rel=1e-3)
    assert run.params["unfreeze_schedule"] == "fc@0,layer4@1"


def _blind_model(path: Path) -> Path:
    """A starting model whose last layer ignores the clip (fc weights 0, bias 0.5): with the
    frozen learning rate every clip scores the same in every epoch, so validation cannot
    improve."""
    model = build_model(None)
    with torch.no_grad():
        model.fc.weight.zero_()
        model.fc.bias.fill_(0.5)
    return save_checkpoint(model, path)


@pytest.mark.slow
def test_early_stopping_ends_the_run_at_the_first_epoch_without_improvement(project, tracking,
                                                                            tmp_path):
    run = _train(project, tracking, epochs=3, early_stopping_patience=1,
                 model_weights=str(_blind_model(tmp_path / "blind.pt")))
    assert [e.epoch for e in run.epochs] == [1, 2]
    assert run.epochs[1].val_loss == run.epochs[0].val_loss
    assert [(e.best, e.epochs_without_improvement) for e in run.epochs] == [(True, 0), (False, 1)]
    assert run.tags["early_stopped_at_epoch"] == "2"
    assert not run.end.stopped and run.end.best_epoch == 1
    assert run.params["early_stopping_patience"] == "1"
    assert run.epochs[0].lr == run.epochs[1].lr  # scheduler "none" keeps the learning rate
