"""Hostile model files: a TorchScript file is a program and is refused unless the user trusts
it (``--trust-exported``); weights holding NaN are refused before they score anything."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from echoquality_core.model.checkpoint import UntrustedModelError, load_scoring_model
from echoquality_core.demo.project import synthetic_clip, write_dicom_clip
from echoquality_core.model.network import WeightsError, save_checkpoint
from echoquality_core.data.preprocess import PreprocessParams
from echoquality_core.scoring.score import score_clips

ROOT = Path(__file__).resolve().parents[2]
CLI = "import sys; from echoquality_core.cli.main import main; sys.exit(main())"


class Hang(nn.Module):
    """A TorchScript forward that never returns: what a hostile file can do when run."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        while True:
            x = x + 0
        return x


class MeanScore(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(1, 2, 3, 4)).unsqueeze(1)


@pytest.fixture
def clips(tmp_path) -> Path:
    folder = tmp_path / "clips"
    frames = synthetic_clip(np.random.default_rng(0), n_frames=4, height=64, width=80)
    write_dicom_clip(folder / "a.dcm", frames, compression="none")
    return folder


def script(module: nn.Module, path: Path) -> Path:
    torch.jit.save(torch.jit.script(module), str(path))
    return path


def test_a_torchscript_file_is_refused_without_the_flag(tmp_path, clips):
    hang = script(Hang(), tmp_path / "hang.ts.pt")
    with pytest.raises(UntrustedModelError, match="a TorchScript export is a program: loading "
                                                  "it runs code from the file"):
        load_scoring_model(hang)
    with pytest.raises(UntrustedModelError):
        score_clips(clips, hang)
    with pytest.raises(UntrustedModelError):
        load_scoring_model(tmp_path)  # an export's folder too


@pytest.mark.slow
def test_the_cli_refuses_it_in_one_line_and_runs_it_only_when_trusted(tmp_path, clips):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-c", CLI, *args], capture_output=True,
                              text=True, env=env, timeout=120, check=False)

    hang = script(Hang(), tmp_path / "hang.ts.pt")
    for command in (["score", str(clips), "--out", str(tmp_path / "s.csv")],
                    ["evaluate", "--csv", str(tmp_path / "labels.csv")]):
        if command[0] == "evaluate":
            (tmp_path / "labels.csv").write_text("video_path,quality_score\nclips/a.dcm,1\n")
        done = run(*command, "--model", str(hang))  # would hang for ever if it were run
        assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
        assert "--trust-exported" in done.stderr and "Traceback" not in done.stderr
    done = run("gradcam", str(clips / "a.dcm"), "--model", str(hang), "--out",
               str(tmp_path / "g.png"))
    assert done.returncode == 2 and "GradCAM needs the model's checkpoint" in done.stderr

    mean = script(MeanScore(), tmp_path / "mean.ts.pt")
    done = run("score", str(clips), "--model", str(mean), "--out", str(tmp_path / "s.csv"),
               "--trust-exported", "--workers", "0")
    assert done.returncode == 0, done.stderr
    assert "Scored 1 clip(s)" in done.stdout


def test_nan_weights_are_refused(tmp_path, clips):
    from torchvision.models.video import r2plus1d_18

    net = r2plus1d_18(num_classes=1)
    with torch.no_grad():
        net.fc.weight[0, 3] = float("nan")
    path = save_checkpoint(net, tmp_path / "diverged.pt",
                           preprocess=PreprocessParams(n_frames=4, size=32))
    with pytest.raises(WeightsError, match="the weights fc.weight hold NaN or infinite values"):
        load_scoring_model(path)
