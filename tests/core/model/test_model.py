"""Model building, weights loading/saving, freezing and device choice (echoquality_core.model.network)."""

import logging
import os
import warnings
from pathlib import Path

import pytest
import torch
from torch import nn

from echoquality_core.model.network import (
    BLOCKS,
    CHECKPOINT_FORMAT,
    WeightsError,
    build_model,
    freeze_model_except_final_layers,
    load_weights,
    model_summary,
    parse_unfreeze_schedule,
    resolve_device,
    save_checkpoint,
    unfreeze,
)
from echoquality_core.data.preprocess import PreprocessParams

TINY = (1, 3, 4, 32, 32)  # r2plus1d_18 runs on small inputs


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _random_model(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return build_model(None).eval()


def _logits(model: nn.Module) -> torch.Tensor:
    x = torch.randn(TINY, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        return model.eval()(x)


def _load_without_warning(path) -> nn.Module:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return build_model(path)


class _WritesMarker:
    """Pickles to a call that creates a file: proof of whether loading runs pickled code."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_build_model_without_weights_warns_and_logs(caplog):
    with (
        caplog.at_level(logging.WARNING, logger="echoquality_core.model.network"),
        pytest.warns(UserWarning, match="random initialisation"),
    ):
        model = build_model(None)
    assert "scores will be poor until it is trained" in caplog.text
    assert isinstance(model.fc, nn.Linear) and tuple(model.fc.weight.shape) == (1, 512)
    assert _logits(model).shape == (1, 1)


def test_echoprime_plain_state_dict_loads_with_identical_logits(tmp_path):
    source = _random_model(seed=1)
    path = tmp_path / "video_quality_model.pt"
    torch.save(source.state_dict(), path)  # EchoPrime's format
    assert not torch.equal(_logits(_random_model(seed=2)), _logits(source))
    loaded = _load_without_warning(path)
    assert torch.equal(_logits(loaded), _logits(source))


def test_dataparallel_module_prefix_is_stripped(tmp_path):
    source = _random_model(seed=3)
    path = tmp_path / "dp.pt"
    torch.save({f"module.{k}": v for k, v in source.state_dict().items()}, path)
    assert torch.equal(_logits(_load_without_warning(path)), _logits(source))


@pytest.mark.parametrize("key", ["model_state_dict", "state_dict"])
def test_checkpoint_dict_loads_and_returns_its_other_entries(tmp_path, key):
    source = _random_model(seed=4)
    path = tmp_path / "ckpt.pt"
    torch.save({key: source.state_dict(), "epoch": 7, "val_loss": 0.25}, path)
    target = _random_model(seed=5)
    info = load_weights(target, path)
    assert info == {"epoch": 7, "val_loss": 0.25}
    assert torch.equal(_logits(target), _logits(source))


def test_plain_state_dict_returns_no_info(tmp_path):
    path = tmp_path / "plain.pt"
    torch.save(_random_model().state_dict(), path)
    assert load_weights(_random_model(seed=9), path) == {}


def test_own_checkpoint_round_trip_keeps_threshold_and_preprocess(tmp_path):
    source = nn.DataParallel(_random_model(seed=6))  # saved without the 'module.' prefix
    params = PreprocessParams(n_frames=8, stride=1)
    path = save_checkpoint(
        source, tmp_path / "runs" / "best.pt", threshold=0.37, preprocess=params,
        config={"epochs": 3, "split": (0.7, 0.15, 0.15), "out": tmp_path}, run_id=None,
    )
    raw = torch.load(path, map_location="cpu", weights_only=True)
    assert raw["format"] == CHECKPOINT_FORMAT
    assert not any(k.startswith("module.") for k in raw["model_state_dict"])
    target = _random_model(seed=7)
    info = load_weights(target, path)
    assert info["threshold"] == 0.37
    assert info["preprocess"]["n_frames"] == 8 and info["preprocess"]["stride"] == 1
    assert info["config"] == {"epochs": 3, "split": [0.7, 0.15, 0.15], "out": str(tmp_path)}
    assert info["run_id"] is None and info["format"] == CHECKPOINT_FORMAT
    assert torch.equal(_logits(target), _logits(source.module))


def test_save_checkpoint_replaces_atomically_and_leaves_no_temp_files(tmp_path):
    path = tmp_path / "best.pt"
    save_checkpoint(_random_model(seed=1), path, threshold=0.4)
    save_checkpoint(_random_model(seed=2), path, threshold=0.6)
    assert os.listdir(tmp_path) == ["best.pt"]
    assert load_weights(_random_model(), path)["threshold"] == 0.6


def test_save_checkpoint_refuses_info_it_cannot_store_as_data(tmp_path):
    with pytest.raises(TypeError, match="'callback'"):
        save_checkpoint(_random_model(), tmp_path / "x.pt", callback=object())
    assert os.listdir(tmp_path) == []


def test_missing_file_is_a_weights_error(tmp_path):
    with pytest.raises(WeightsError, match="nope.pt: file not found"):
        load_weights(_random_model(), tmp_path / "nope.pt")


@pytest.mark.parametrize("content", [b"hello world\nnot a model\n", b""])
def test_non_torch_file_is_a_weights_error(tmp_path, content):
    path = tmp_path / "notes.pt"
    path.write_bytes(content)
    with pytest.raises(WeightsError, match="not a PyTorch weights file") as err:
        load_weights(_random_model(), path)
    assert err.value.path == path


def test_random_tensor_dict_lists_unexpected_and_missing_keys(tmp_path):
    path = tmp_path / "other.pt"
    torch.save({"encoder.weight": torch.zeros(3), "head.bias": torch.zeros(1)}, path)
    with pytest.raises(WeightsError) as err:
        load_weights(_random_model(), path)
    message = str(err.value)
    assert "2 unexpected key(s): encoder.weight, head.bias" in message
    assert "missing key(s): stem.0.weight" in message and "more)" in message


def test_wrong_fc_shape_lists_expected_and_found_shapes(tmp_path):
    kinetics = _random_model()
    kinetics.fc = nn.Linear(512, 400)
    path = tmp_path / "kinetics.pt"
    torch.save(kinetics.state_dict(), path)
    with pytest.raises(WeightsError) as err:
        build_model(path)
    message = str(err.value)
    assert "2 shape mismatch(es)" in message
    assert "fc.weight expected (1, 512) got (400, 512)" in message
    assert "fc.bias expected (1,) got (400,)" in message


def test_non_tensor_entries_are_refused(tmp_path):
    path = tmp_path / "settings.pt"
    torch.save({"lr": 0.1, "epochs": 3}, path)
    with pytest.raises(WeightsError, match="no model state dict found"):
        load_weights(_random_model(), path)
    torch.save([torch.zeros(1)], path)
    with pytest.raises(WeightsError, match="found a list"):
        load_weights(_random_model(), path)


def test_pickled_code_is_refused_not_executed(tmp_path):
    marker = tmp_path / "marker"
    path = tmp_path / "evil.pt"
    torch.save({"model_state_dict": _random_model().state_dict(), "x": _WritesMarker(marker)},
               path)
    with pytest.raises(WeightsError, match="refuse") as err:
        load_weights(_random_model(), path)
    assert "io.open" in str(err.value)
    assert not marker.exists()
    # the file really does run code when loaded unsafely, so the check above means something
    torch.load(path, map_location="cpu", weights_only=False)
    assert marker.exists()


@pytest.mark.parametrize("n", range(7))
def test_freezing_trains_exactly_the_last_n_blocks(n):
    model = _random_model()
    names = freeze_model_except_final_layers(model, n)
    assert names == list(BLOCKS[:n])
    trainable = {name.split(".")[0] for name, p in model.named_parameters() if p.requires_grad}
    assert trainable == set(BLOCKS[:n])
    assert model_summary(model)["trainable_blocks"] == [b for b in BLOCKS if b in trainable]


def test_freezing_one_block_trains_only_the_fc_parameters():
    model = _random_model()
    freeze_model_except_final_layers(model, 1)
    summary = model_summary(model)
    assert summary["n_trainable"] == 512 + 1
    assert summary["n_params"] == sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("n", [-1, 7, 2.5, True])
def test_freezing_rejects_impossible_counts(n):
    with pytest.raises(ValueError, match="num_layers_to_train"):
        freeze_model_except_final_layers(_random_model(), n)


def test_unfreeze_adds_blocks_for_progressive_schedules():
    model = _random_model()
    freeze_model_except_final_layers(model, 0)
    unfreeze(model, ["fc", "layer3"])
    trainable = {name.split(".")[0] for name, p in model.named_parameters() if p.requires_grad}
    assert trainable == {"fc", "layer3"}
    with pytest.raises(ValueError, match="unknown block 'avgpool'"):
        unfreeze(model, ["avgpool"])


def test_unfreeze_schedule_parses_blocks_by_epoch():
    assert parse_unfreeze_schedule("fc@0,layer4@3,layer3@6") == {
        0: ["fc"], 3: ["layer4"], 6: ["layer3"]
    }
    assert parse_unfreeze_schedule(" layer4@2 , fc@0, layer3@2 ") == {
        0: ["fc"], 2: ["layer4", "layer3"]
    }
    assert parse_unfreeze_schedule("  ") == {}


@pytest.mark.parametrize(
    ("spec", "problem"),
    [
        ("fc", "expected block@epoch"),
        ("fc@", "expected block@epoch"),
        ("fc@0,,layer4@1", "expected block@epoch"),
        ("avgpool@1", "unknown block 'avgpool'"),
        ("fc@x", "whole number"),
        ("fc@-1", "whole number"),
        ("fc@0,fc@2", "more than once"),
    ],
)
def test_bad_unfreeze_schedule_is_a_clear_error(spec, problem):
    with pytest.raises(ValueError, match=problem):
        parse_unfreeze_schedule(spec)


def test_resolve_device_auto_and_explicit():
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == expected
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")
    with pytest.raises(ValueError, match="unknown device 'banana'"):
        resolve_device("banana")


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
@pytest.mark.parametrize("device", ["cuda", "cuda:0"])
def test_asking_for_cuda_without_it_is_a_clear_error(device):
    with pytest.raises(ValueError, match="CUDA is not available"):
        resolve_device(device)
