"""A checkpoint's decision is read and rewritten only through ``model.checkpoint``: its info
comes back without the weights, a new decision leaves the weights as they were, and bare
weights (no place for a threshold) are refused."""
from __future__ import annotations

import pytest
import torch

from echoquality_core.model.checkpoint import read_info, write_decision
from echoquality_core.model.network import WeightsError, read_model_file, save_checkpoint


@pytest.fixture(scope="module")
def model(random_model):
    return random_model(4)


def test_write_decision_keeps_the_weights_and_the_other_info(model, tmp_path):
    path = save_checkpoint(model, tmp_path / "best.pt", threshold=0.5, run_id="abc")
    before, _ = read_model_file(path)
    written = write_decision(path, 0.42, {"method": "temperature", "a": 0.8, "b": 0.0})
    after, info = read_model_file(path)
    assert info == written == read_info(path)
    assert info["threshold"] == 0.42 and info["calibration"]["a"] == 0.8
    assert info["run_id"] == "abc" and info["format"] == "echoquality-v1"
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert write_decision(path, 0.6)["calibration"] is None  # no calibration: none saved


def test_bare_weights_and_bad_thresholds_are_refused(model, tmp_path):
    bare = tmp_path / "weights.pt"
    torch.save(model.state_dict(), bare)
    assert read_info(bare) == {}
    with pytest.raises(WeightsError, match="not an EchoQuality checkpoint"):
        write_decision(bare, 0.4)
    checkpoint = save_checkpoint(model, tmp_path / "best.pt")
    with pytest.raises(ValueError, match="0..1"):
        write_decision(checkpoint, 1.5)
    assert read_info(checkpoint)["threshold"] == 0.5
