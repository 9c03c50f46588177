"""Hostile weights files. Issue 24.1: a small file whose record inflates to 1 GiB (a zip bomb) is
refused from the zip's directory and data.pkl before torch decompresses anything: in well under
a second, without the memory, on every surface (CLI scoring, the model loading the app's model
process uses, training's starting weights). Issue 24.2: weights holding NaN are refused as
starting weights in under a second, without torch (`train --weights`: tests/core/cli)."""
from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from echoquality_core.model.network import read_model_file
from echoquality_core.model.weights import check_starting_weights
from echoquality_core.model.weights_file import WeightsError, check_archive
from hostile_models import write_weights_bomb

_PEAK = """import resource, subprocess, sys
done = subprocess.run(sys.argv[1:], capture_output=True, text=True)
print(done.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
print(done.stderr, file=sys.stderr)"""


@pytest.fixture(scope="module")
def bomb(tmp_path_factory) -> Path:
    path = write_weights_bomb(tmp_path_factory.mktemp("bomb") / "bomb.pt")
    assert path.stat().st_size < 3 << 20  # small on disk, 1 GiB inflated
    return path


def test_the_bomb_is_refused_from_its_directory_in_milliseconds(bomb):
    start = time.perf_counter()
    with pytest.raises(WeightsError, match="inflates to 1,073,741,824 bytes"):
        check_archive(bomb)
    assert time.perf_counter() - start < 1.0
    for load in (read_model_file, check_starting_weights):  # app's model process; training
        start = time.perf_counter()
        with pytest.raises(WeightsError, match="bomb.pt: the record .* inflates"):
            load(bomb)
        assert time.perf_counter() - start < 1.0, load


def test_a_real_checkpoint_passes_the_check(tmp_path, random_model):
    from echoquality_core.model.network import save_checkpoint

    path = save_checkpoint(random_model(0), tmp_path / "best.pt", threshold=0.4)
    check_archive(path)
    state, info = read_model_file(path)
    assert info["threshold"] == 0.4 and len(state) > 100


def _peak(args: list[str]) -> tuple[int, int, str]:
    """(exit code, peak RSS in kB, stderr) of ``echoquality <args>`` in a fresh process."""
    done = subprocess.run([sys.executable, "-c", _PEAK, sys.executable, "-m",
                           "echoquality_core", *args], capture_output=True, text=True,
                          timeout=300)
    code, peak = map(int, done.stdout.split())
    return code, peak, done.stderr.strip()


@pytest.mark.slow
def test_cli_score_refuses_the_bomb_in_one_line_with_baseline_memory(bomb, tmp_path):
    other = tmp_path / "other.pt"
    other.write_bytes(b"not weights at all")
    clip = tmp_path / "clip.dcm"
    clip.write_bytes(b"")
    base_code, base_peak, _ = _peak(["score", str(clip), "--model", str(other), "--out",
                                     str(tmp_path / "a.csv"), "--workers", "0"])
    code, peak, err = _peak(["score", str(clip), "--model", str(bomb), "--out",
                             str(tmp_path / "b.csv"), "--workers", "0"])
    assert (base_code, code) == (2, 2), err
    assert err.count("\n") == 0 and "bomb.pt" in err and "Traceback" not in err
    assert peak - base_peak < 100 * 1024, (peak, base_peak)  # kB: within 100 MB


def test_nan_starting_weights_are_refused_in_under_a_second(tmp_path, random_model):
    import torch

    state = random_model(0).state_dict()
    state["fc.weight"][0, 3] = float("inf")
    torch.save(state, tmp_path / "nan.pt")
    start = time.perf_counter()
    with pytest.raises(WeightsError, match="nan.pt: the weights fc.weight hold NaN or infinite"):
        check_starting_weights(tmp_path / "nan.pt")
    assert time.perf_counter() - start < 1.0
    state["fc.weight"][0, 3] = 0.5
    torch.save({"model_state_dict": {k: v.bfloat16() if v.is_floating_point() else v
                                     for k, v in state.items()}}, tmp_path / "ok.pt")
    check_starting_weights(tmp_path / "ok.pt")  # finite bf16 weights pass
