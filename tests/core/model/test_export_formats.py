"""torch.export (``model.pt2``) and ONNX exports score a real demo clip like the eager model
(within 1e-4); the torch.export file scores folders through ``score_clips``; old TorchScript
exports still load (tests/test_export.py)."""
from __future__ import annotations

import importlib.util
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from echoquality_core.model.checkpoint import (
    EXPORT_FILE,
    ExportedProgramModel,
    load_scoring_model,
    score_arrays,
)
from echoquality_core.data.clips import clip_model_frames
from echoquality_core.dicom import find_clips
from echoquality_core.model.export import ONNX_FILE, export_model, onnx_score_arrays
from echoquality_core.model.network import WeightsError, build_model, save_checkpoint
from echoquality_core.model.precision import precision
from echoquality_core.data.preprocess import PreprocessParams, normalize
from echoquality_core.scoring.score import score_clips

PARAMS = PreprocessParams(n_frames=4, stride=1, size=32)
HAVE_ONNX = all(importlib.util.find_spec(m) for m in ("onnx", "onnxruntime"))


@pytest.fixture(autouse=True)
def fp32():
    """The exports hold fp32 graphs: compare them with the eager model in fp32 (on a CPU with
    native bf16 the eager model would otherwise run in bf16, ~1e-4 away)."""
    with precision("fp32"):
        yield


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """(eager model, checkpoint, export folder, info): torch.export and ONNX."""
    torch.set_num_threads(1)
    torch.manual_seed(3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # random initialisation, on purpose
        net = build_model().eval()
    root = tmp_path_factory.mktemp("formats")
    checkpoint = save_checkpoint(net, root / "best.pt", threshold=0.4, preprocess=PARAMS)
    info = export_model(checkpoint, root / "out", example_frames=PARAMS.n_frames)
    return net, checkpoint, root / "out", info


@pytest.fixture(scope="module")
def demo_clip(demo_project) -> torch.Tensor:
    frames = clip_model_frames(find_clips(demo_project)[0], PARAMS)
    return torch.from_numpy(normalize(frames))[None]


def test_torch_export_matches_eager_on_a_demo_clip(exported, demo_clip):
    net, _, folder, info = exported
    assert info["files"]["export"] == EXPORT_FILE
    assert info["max_score_difference"]["export"] <= 1e-4
    program, saved = load_scoring_model(folder / EXPORT_FILE, trust_exported=True)
    assert isinstance(program, ExportedProgramModel) and saved["threshold"] == 0.4
    eager = score_arrays(net, demo_clip)
    assert np.abs(score_arrays(program, demo_clip) - eager).max() <= 1e-4
    batch = demo_clip.repeat(3, 1, 1, 1, 1)  # the batch dimension is dynamic
    assert np.abs(score_arrays(program, batch) - eager[0]).max() <= 1e-4


@pytest.mark.skipif(not HAVE_ONNX, reason="the [onnx] extra (onnx, onnxruntime) is not installed:"
                    " pip install 'echoquality-studio[onnx]'")
def test_onnx_matches_eager_on_a_demo_clip(exported, demo_clip):
    net, _, folder, info = exported
    assert info["files"]["onnx"] == ONNX_FILE and info["max_score_difference"]["onnx"] <= 1e-4
    onnx_scores = onnx_score_arrays(folder / ONNX_FILE, demo_clip)
    assert np.abs(onnx_scores - score_arrays(net, demo_clip)).max() <= 1e-4


def test_scoring_a_folder_with_the_torch_export(exported, demo_project):
    _, checkpoint, folder, _ = exported
    clips = find_clips(demo_project)[:3]
    original = score_clips(clips, checkpoint, device="cpu")
    copy = score_clips(clips, folder, device="cpu", trust_exported=True)  # model.pt2 first
    assert copy.attrs["threshold"] == 0.4
    assert np.abs(copy["score"].to_numpy() - original["score"].to_numpy()).max() <= 1e-4
    with pytest.raises(WeightsError, match="already an export"):
        export_model(folder / EXPORT_FILE, Path(folder).parent / "again")
