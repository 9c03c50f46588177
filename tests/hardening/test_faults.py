"""Faults leave no lies on disk: ``score`` hitting a file size limit (``prlimit --fsize``, the
same error as a full disk) stops with one "disk full" line and a scores CSV of complete rows."""
from __future__ import annotations

import csv
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from echoquality_core.demo.project import synthetic_clip, write_dicom_clip

ROOT = Path(__file__).resolve().parents[2]
CLI = "import sys; from echoquality_core.cli.main import main; sys.exit(main())"


@pytest.fixture(scope="module")
def small_model(tmp_path_factory) -> Path:
    """A real (untrained) checkpoint that preprocesses clips to 4 frames of 32 px."""
    import torch
    from torchvision.models.video import r2plus1d_18

    from echoquality_core.model.network import save_checkpoint
    from echoquality_core.data.preprocess import PreprocessParams

    torch.manual_seed(0)
    net = r2plus1d_18(num_classes=1)
    path = tmp_path_factory.mktemp("model") / "model.pt"
    return save_checkpoint(net, path, preprocess=PreprocessParams(n_frames=4, size=32))


def cli(*args: str, fsize: int | None = None) -> subprocess.CompletedProcess:
    command = [sys.executable, "-c", CLI, *args]
    if fsize is not None:
        command = ["prlimit", f"--fsize={fsize}", "--", *command]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=300,
                          check=False)


@pytest.mark.slow
def test_score_over_the_file_size_limit_leaves_only_complete_rows(tmp_path, small_model):
    if not shutil.which("prlimit"):
        pytest.skip("prlimit (util-linux) not installed")
    clips = tmp_path / "clips"
    rng = np.random.default_rng(1)
    for i in range(8):
        write_dicom_clip(clips / f"clip{i}.dcm", synthetic_clip(rng, n_frames=4, height=64,
                                                                width=80), compression="none")
    out = tmp_path / "scores.csv"
    done = cli("score", str(clips), "--model", str(small_model), "--out", str(out),
               "--batch-size", "1", "--workers", "0", "--device", "cpu", fsize=300)
    assert done.returncode == 2, done.stderr
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
    assert "disk full: could not write scores.csv" in done.stderr
    data = out.read_bytes()
    assert 0 < len(data) <= 300 and data.endswith(b"\n")  # no torn last row
    rows = list(csv.reader(data.decode().splitlines()))
    assert rows[0][0] == "video_path" and len(rows) >= 2
    assert all(len(row) == len(rows[0]) for row in rows)

    done = cli("score", str(clips), "--model", str(small_model), "--out", str(out),
               "--batch-size", "4", "--workers", "0", "--device", "cpu")
    assert done.returncode == 0, done.stderr  # resumes once there is room
    with open(out, newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert sorted(r["video_path"] for r in rows) == [f"clip{i}.dcm" for i in range(8)]
    assert all(r["score"] for r in rows)


@pytest.mark.slow
def test_train_over_the_file_size_limit_says_disk_full_and_leaves_no_torn_file(tmp_path):
    if not shutil.which("prlimit"):
        pytest.skip("prlimit (util-linux) not installed")
    from echoquality_core.demo.project import write_demo_project

    csv_path = write_demo_project(tmp_path, n_clips=8, n_frames=6, height=64, width=80, seed=5,
                                  unlabelled=0.0)
    done = cli("train", "--csv", str(csv_path), "--epochs", "1", "--batch-size", "2",
               "--frames", "4", "--stride", "1", "--device", "cpu", "--workers", "0",
               fsize=20 * 2**20)  # the settings, split, cache and MLflow fit; a model does not
    assert "disk full" in done.stderr + done.stdout, done.stderr[-2000:]
    assert "Traceback" not in done.stderr
    runs = tmp_path / "trained_models"
    files = [p for p in runs.rglob("*") if p.is_file()]
    assert not [p for p in files if ".tmp-" in p.name]  # no temporary file left behind
    assert not [p for p in files if p.suffix == ".pt"]  # no partial model
    from echoquality_core.runs.tracking import default_tracking_uri, list_runs

    assert [r["status"] for r in list_runs(default_tracking_uri(tmp_path))] == ["FAILED"]
