"""Exported models score like the checkpoint they came from (within 1e-4) and carry their
preprocessing, threshold and calibration in model_info.json."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from echoquality_core.model.checkpoint import INFO_FILE, TORCHSCRIPT_FILE, load_exported, score_arrays
from echoquality_core.model.export import EXPORT_FORMAT, ONNX_FILE, export_model
from echoquality_core.model.network import WeightsError, save_checkpoint
from echoquality_core.data.preprocess import PreprocessParams
from echoquality_core.scoring.score import score_clips

PARAMS = PreprocessParams(n_frames=4, stride=1, size=48)
CALIBRATION = {"method": "platt", "a": 1.0, "b": 0.3}


@pytest.fixture(scope="module")
def model(random_model):
    torch.set_num_threads(1)
    return random_model(1)


@pytest.fixture(scope="module")
def exported(model, tmp_path_factory) -> tuple[Path, Path, dict]:
    """(checkpoint, export folder, returned info)."""
    root = tmp_path_factory.mktemp("export")
    checkpoint = save_checkpoint(model, root / "best.pt", threshold=0.37, preprocess=PARAMS,
                                 calibration=CALIBRATION)
    info = export_model(checkpoint, root / "exported", example_frames=4,
                        formats=("torchscript", "onnx"))
    return checkpoint, root / "exported", info


def test_torchscript_export_scores_like_the_original(model, exported):
    _, folder, info = exported
    assert (folder / TORCHSCRIPT_FILE).is_file()
    net, saved = load_exported(folder)
    assert isinstance(net, torch.jit.ScriptModule)
    torch.manual_seed(2)
    for shape in ((3, 3, 4, 48, 48), (2, 3, 6, 48, 48)):  # other batch sizes and clip lengths
        videos = torch.randn(shape)
        difference = np.abs(score_arrays(net, videos) - score_arrays(model, videos)).max()
        assert difference <= 1e-4, shape
    assert info["max_score_difference"]["torchscript"] <= 1e-4
    assert saved == json.loads((folder / INFO_FILE).read_text(encoding="utf-8"))


def test_model_info_says_how_to_feed_the_export(exported):
    _, folder, _ = exported
    info = json.loads((folder / INFO_FILE).read_text(encoding="utf-8"))
    assert info["format"] == EXPORT_FORMAT
    assert info["threshold"] == 0.37
    assert info["calibration"] == CALIBRATION  # the export makes the checkpoint's calls
    assert PreprocessParams(**info["preprocess"]) == PARAMS
    assert info["input_shape"] == [1, 3, 4, 48, 48]
    assert info["score"] == "sigmoid(logit)"
    assert info["files"]["torchscript"] == TORCHSCRIPT_FILE


def test_onnx_is_written_or_skipped_with_the_reason(exported):
    _, folder, info = exported
    if importlib.util.find_spec("onnx") is None:
        assert "onnx" in info["skipped"]["onnx"] and "pip install onnx" in info["skipped"]["onnx"]
        assert not (folder / ONNX_FILE).exists()
        assert "onnx" not in info["files"]
    else:
        assert info["files"]["onnx"] == ONNX_FILE and (folder / ONNX_FILE).stat().st_size > 0


def test_scoring_with_the_export_matches_the_checkpoint(demo_project, exported):
    from echoquality_core.dicom import find_clips

    checkpoint, folder, _ = exported
    clips = find_clips(demo_project)[:3]
    original = score_clips(clips, checkpoint, device="cpu")
    for model in (folder, folder / TORCHSCRIPT_FILE):
        copy = score_clips(clips, model, device="cpu", trust_exported=True)
        assert copy.attrs["threshold"] == 0.37  # from model_info.json
        assert copy.attrs["calibration"] == CALIBRATION
        assert np.abs(copy["score"].to_numpy() - original["score"].to_numpy()).max() <= 1e-4
        assert list(copy["pass"]) == list(original["pass"])


def test_only_torchscript_exports_load_and_exports_are_not_exported_again(exported, tmp_path):
    checkpoint, folder, _ = exported
    with pytest.raises(WeightsError, match="not a TorchScript export"):
        load_exported(checkpoint)
    with pytest.raises(WeightsError, match="no model.ts.pt"):
        load_exported(tmp_path)
    with pytest.raises(WeightsError, match="already a TorchScript export"):
        export_model(folder / TORCHSCRIPT_FILE, tmp_path / "again", formats=("torchscript",))
    with pytest.raises(ValueError, match="formats"):
        export_model(checkpoint, tmp_path / "x", formats=("tflite",))
