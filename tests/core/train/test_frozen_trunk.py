"""The frozen-trunk cache on real runs (tiny demo project, real model and MLflow store): the same
losses and best epoch as the full forward, spilled to disk, recomputed when unfreezing moves the
boundary, off with augmentation; and how the training precision is chosen."""
from __future__ import annotations

import csv
import math
import os
from pathlib import Path

import pytest
import torch
from mlflow import MlflowClient

from echoquality_core.demo.project import write_demo_project
from echoquality_core.model import precision
from echoquality_core.model.network import build_model, freeze_model_except_final_layers
from echoquality_core.runs.tracking import default_tracking_uri
from echoquality_core.train.events import BatchEnd, EpochEnd, Progress, TrainError
from echoquality_core.train.frozen_trunk import Head, MemoryThenDisk, frozen_blocks
from echoquality_core.train.trainer import TrainConfig, Trainer

pytestmark = [pytest.mark.filterwarnings("ignore:No weights given:UserWarning"),
              pytest.mark.usefixtures("one_torch_thread")]


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("trunk")
    return write_demo_project(root, n_clips=8, n_frames=8, height=64, width=80, seed=3)


def _run(csv_path: Path, tmp_path: Path, name: str, cached: bool = True, react=None,
         **overrides):
    config = TrainConfig(**({
        "annotations_csv": str(csv_path), "videos_dir": None, "save_dir": str(tmp_path / "m"),
        "tracking_uri": default_tracking_uri(tmp_path), "n_frames": 4, "stride": 1,
        "size": 32, "batch_size": 2, "epochs": 3, "learning_rate": 1e-3, "device": "cpu",
        "log_mlflow_model": False, "run_name": name, "cache_dir": str(tmp_path / "cache"),
        "split": (0.5, 0.25, 0.25), "frozen_trunk_cache": cached} | overrides))
    events: list = []

    def callback(event) -> None:
        events.append(event)
        if react is not None:
            react(trainer, event)

    trainer = Trainer(config, callback)
    end = trainer.run()
    assert end.error is None, end.error
    return trainer, end, events


@pytest.mark.slow
def test_cached_trunk_trains_as_the_full_forward(project, tmp_path):
    with precision.precision("fp32"):
        plain, plain_end, plain_events = _run(project, tmp_path, "plain", cached=False)
        fast, fast_end, fast_events = _run(project, tmp_path, "cached")
    sizes = fast_end.split_sizes
    assert plain.trunk is None
    assert fast.trunk.computed == sum(sizes.values())  # every clip once: train, val and test
    assert fast.trunk.hits == 2 * (sizes["train"] + sizes["val"])  # epochs 2 and 3
    plain_epochs = [e for e in plain_events if isinstance(e, EpochEnd)]
    fast_epochs = [e for e in fast_events if isinstance(e, EpochEnd)]
    assert len(plain_epochs) == len(fast_epochs) == 3
    for a, b in zip(plain_epochs, fast_epochs):
        assert b.train_loss == pytest.approx(a.train_loss, abs=1e-4)
        assert b.val_loss == pytest.approx(a.val_loss, abs=1e-4)
    assert fast_end.best_epoch == plain_end.best_epoch
    for key in ("roc_auc", "accuracy", "brier"):  # nan on a one-class test split
        assert fast_end.test_metrics[key] == pytest.approx(plain_end.test_metrics[key],
                                                           abs=1e-4, nan_ok=True)
    plain_scores, fast_scores = (
        [float(row["score"]) for row in csv.DictReader(t.folder.predictions.open())]
        for t in (plain, fast))
    assert fast_scores == pytest.approx(plain_scores, abs=1e-4) and fast_scores
    setup = [e.message for e in fast_events if isinstance(e, Progress) and e.stage == "setup"]
    assert setup == [("Precision fp32 (ECHOQUALITY_PRECISION=fp32); frozen-trunk cache on "
                      "(stem, layer1, layer2, layer3 computed once per clip).")]
    params = MlflowClient(default_tracking_uri(tmp_path)).get_run(fast_end.run_id).data.params
    assert params["precision"] == "fp32" and params["frozen_trunk"].startswith("on")


@pytest.mark.slow
def test_unfreezing_moves_the_boundary_and_augmentation_turns_the_cache_off(project, tmp_path):
    with precision.precision("fp32"):
        trainer, end, _ = _run(project, tmp_path, "schedule", epochs=2,
                               unfreeze_schedule="fc@0,layer4@1")
        assert frozen_blocks(trainer.model) == ["stem", "layer1", "layer2", "layer3"]
        # epoch 1 ran from layer4's output, epoch 2 from layer3's: each train/val clip twice
        sizes = end.split_sizes
        assert trainer.trunk.computed == 2 * (sizes["train"] + sizes["val"]) + sizes["test"]
        assert trainer.trunk.hits == 0
        _, _, events = _run(project, tmp_path, "augment", epochs=1, augment=True)
    setup = [e.message for e in events if isinstance(e, Progress) and e.stage == "setup"]
    assert setup == [("Precision fp32 (ECHOQUALITY_PRECISION=fp32); frozen-trunk cache off: "
                      "augmentation changes each clip every epoch.")]


def test_stop_during_the_trunk_forward_halts_inside_it(project, tmp_path):
    calls: list = []

    def react(trainer, event) -> None:
        if isinstance(event, Progress) and event.stage == "setup":  # the model is built
            def stop_here(_module, _args) -> None:
                calls.append(torch.is_grad_enabled())
                trainer.stop()

            trainer.model.layer2.register_forward_pre_hook(stop_here)

    _, end, events = _run(project, tmp_path, "stop", react=react)
    assert calls == [False]  # the trunk's no-grad forward of the first batch, stopped there
    assert end.stopped and end.best_checkpoint is None
    assert not [e for e in events if isinstance(e, (BatchEnd, EpochEnd))]


def test_outputs_beyond_the_memory_bound_spill_to_disk_and_come_back(tmp_path):
    store = MemoryThenDisk(tmp_path / "trunk", memory_bytes=3 * 400)
    tensors = {f"k{i}": torch.full((100,), float(i)) for i in range(5)}  # 400 bytes each
    for key, tensor in tensors.items():
        store.put(key, tensor)
    assert store.used <= 3 * 400 and store.spilled == 2
    assert sorted(p.stem for p in (tmp_path / "trunk").iterdir()) == ["k0", "k1"]
    for key, tensor in tensors.items():
        assert torch.equal(store.get(key), tensor)
    (tmp_path / "trunk" / "k0.pt").write_bytes(b"torn")
    store.clear()
    assert store.get("k0") is None and torch.equal(store.get("k1"), tensors["k1"])


def test_spilled_outputs_beyond_the_disk_bound_are_pruned_least_recently_used_first(tmp_path):
    folder = tmp_path / "trunk"
    store = MemoryThenDisk(folder, memory_bytes=400)
    for i in range(4):
        store.put(f"k{i}", torch.full((100,), float(i)))
    sizes = {p.stem: p.stat().st_size for p in folder.iterdir()}
    assert sorted(sizes) == ["k0", "k1", "k2"]
    for age, key in enumerate(["k1", "k0", "k2"]):  # k1 least recently used
        os.utime(folder / f"{key}.pt", (1000 + age, 1000 + age))
    assert torch.equal(MemoryThenDisk(folder).get("k1"), torch.full((100,), 1.0))  # now recent
    reopened = MemoryThenDisk(folder, disk_bytes=sizes["k1"] + sizes["k2"])
    assert sorted(p.stem for p in folder.iterdir()) == ["k1", "k2"]
    assert reopened.get("k0") is None and torch.equal(reopened.get("k2"), torch.full((100,), 2.0))


def test_head_after_the_trunk_gives_the_model_output():
    with pytest.warns(UserWarning):
        model = build_model(None).eval()
    freeze_model_except_final_layers(model, 2)
    trunk = frozen_blocks(model)
    videos = torch.randn(2, 3, 4, 32, 32)
    with torch.no_grad():
        x = videos
        for name in trunk:
            x = getattr(model, name)(x)
        assert torch.allclose(Head(model, trunk)(x), model(videos), atol=1e-5)


@pytest.mark.parametrize(("env", "device", "native", "expected"), [
    ("auto", "cpu", True, (torch.bfloat16, "bf16 (this CPU computes bf16 natively)")),
    ("auto", "cpu", False, (None, "fp32 (this CPU has no native bf16)")),
    ("fp32", "cpu", True, (None, "fp32 (ECHOQUALITY_PRECISION=fp32)")),
])
def test_training_precision_follows_the_scoring_rule(monkeypatch, env, device, native, expected):
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: native)
    with precision.precision(env):
        assert precision.training_dtype(device) == expected
        assert precision.training_dtype(device, amp=False) == (
            None, "fp32 (mixed precision turned off)")


def test_this_cpu_trains_in_bf16_exactly_when_it_has_the_flags():
    flags = Path("/proc/cpuinfo").read_text().split()
    native = any(f in flags for f in ("avx512_bf16", "amx_bf16"))
    with precision.precision("auto"):
        dtype, _ = precision.training_dtype("cpu")
    assert (dtype is torch.bfloat16) == (native and precision.cpu_has_native_bf16())


@pytest.mark.slow
@pytest.mark.skipif(not precision.cpu_has_native_bf16(), reason="this CPU has no native bf16")
def test_bf16_training_keeps_the_best_validation_auc_of_fp32(tmp_path):
    csv_path = write_demo_project(tmp_path / "p", n_clips=48, n_frames=8, height=96, width=128,
                                  seed=3, unlabelled=0.0)
    aucs = {}
    for choice in ("fp32", "auto"):
        with precision.precision(choice):
            trainer, end, events = _run(csv_path, tmp_path, choice, epochs=6, batch_size=4,
                                        learning_rate=3e-3, split=(0.6, 0.2, 0.2),
                                        scheduler="none", use_mlflow=False, size=56)
        assert trainer.steps.effective().startswith("bf16" if choice == "auto" else "fp32")
        best = next(e for e in events if isinstance(e, EpochEnd) and e.epoch == end.best_epoch)
        aucs[choice] = best.metrics["roc_auc"]
    assert aucs["auto"] == pytest.approx(aucs["fp32"], abs=0.02), aucs


def test_a_bf16_step_with_non_finite_gradients_is_redone_in_fp32(project, tmp_path,
                                                                monkeypatch):
    """A model whose bf16 forward is NaN and fp32 forward finite: fc's first weight is the
    largest fp32 number (inf in bf16) and the feature it multiplies is exactly 0 (layer4's
    last BatchNorm turns channel 0 to -1e4 before the ReLU), so bf16 gives inf * 0 = NaN.
    Every bf16 step is redone in fp32; after three the run trains in fp32; the trunk cache
    computed in bf16 stays in use."""
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: True)  # emulated elsewhere
    big = torch.finfo(torch.float32).max

    def react(trainer, event) -> None:
        if isinstance(event, Progress) and event.stage == "setup":
            with torch.no_grad():
                trainer.model.layer4[1].conv2[1].weight[0] = 0.0
                trainer.model.layer4[1].conv2[1].bias[0] = -1e4
                trainer.model.fc.weight[0, 0] = big

    with precision.precision("auto"):
        trainer, end, events = _run(project, tmp_path, "redo", react=react, epochs=2,
                                    batch_size=1, split=(0.5, 0.5, 0.0))
    n_train = end.split_sizes["train"]
    assert n_train >= 3 and end.best_epoch is not None
    warnings = [e.message for e in events if isinstance(e, TrainError)]
    assert warnings == [
        f"Epoch 1 step {k}: the bf16 loss or gradients were not finite; the step was redone "
        f"in fp32 ({k} of at most 3)" + ("; the rest of the run trains in fp32" if k == 3 else "")
        + "." for k in (1, 2, 3)]
    assert trainer.steps.redone == 3 and trainer.steps.dtype is None
    model = trainer.model
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert model.fc.weight[0, 0] > 0.999 * big  # still NaN in bf16: the redo was needed
    head = Head(model, frozen_blocks(model)).eval()
    x = torch.randn(1, 256, 1, 8, 8)  # layer3's output for 4 frames of 32x32
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        assert torch.isnan(head(x)).all()
    with torch.no_grad():
        assert torch.isfinite(head(x)).all()
    losses = [e.loss for e in events if isinstance(e, BatchEnd)]
    assert len(losses) == 2 * n_train and all(map(math.isfinite, losses))
    assert trainer.trunk.dtype is torch.bfloat16  # epoch 2 read the bf16 trunk outputs
    assert trainer.trunk.hits == n_train + end.split_sizes["val"]
    run = MlflowClient(default_tracking_uri(tmp_path)).get_run(end.run_id)
    assert run.data.params["precision"] == "bf16"
    assert run.data.tags["precision_effective"] == "bf16, then fp32 (3 steps redone in fp32)"
    assert run.data.metrics["fp32_redone_steps"] == 3


@pytest.mark.slow  # about 20 s
@pytest.mark.skipif(not precision.cpu_has_native_bf16(), reason="this CPU has no native bf16")
def test_bf16_training_at_full_size_ends_with_finite_weights(tmp_path):
    """torch 2.14.1's oneDNN bf16 weight gradient of layer4's temporal convolutions (2 frames
    at 16x112x112) is NaN on some steps (a few in 100 with one thread); the guard redoes
    those steps in fp32, so the trained weights stay finite and every redo is reported."""
    csv_path = write_demo_project(tmp_path / "p", n_clips=6, n_frames=16, height=112,
                                  width=112, seed=5, unlabelled=0.0)
    with precision.precision("auto"):
        trainer, end, events = _run(csv_path, tmp_path, "full", epochs=1, n_frames=16,
                                    size=112, use_mlflow=False, split=(0.5, 0.5, 0.0))
    assert trainer.trunk.dtype is torch.bfloat16 and end.best_epoch == 1
    assert all(torch.isfinite(p).all() for p in trainer.model.parameters())
    redos = [e for e in events if isinstance(e, TrainError) and e.kind == "precision"]
    assert len(redos) == trainer.steps.redone
