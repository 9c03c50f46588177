"""Distributed scoring: 2 real gloo ranks under torchrun on the CPU give the same CSV as one
process, row for row; a rank killed mid-run loses nothing and a rerun scores nothing twice.

Real DICOM demo clips (10 + one truncated) and a seeded R(2+1)D-18 checkpoint that sees 4 frames
of 32x32 px.
"""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import psutil
import pytest
import torch

from echoquality_core.jobs import distributed as dist
from echoquality_core.cli.distributed import read_list
from echoquality_core.dicom import find_clips
from echoquality_core.model.network import save_checkpoint
from echoquality_core.data.preprocess import PreprocessParams
from echoquality_core.scoring.distributed import merge_parts, part_files, part_path
from echoquality_core.scoring.score import read_scores, score_clips

ROOT = Path(__file__).resolve().parents[3]  # the checkout (tests/<room>/../..)
PARAMS = PreprocessParams(n_frames=4, stride=1, size=32)


@pytest.fixture(scope="module")
def checkpoint(random_model, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("model") / "best.pt"
    return save_checkpoint(random_model(0), path, threshold=0.5, preprocess=PARAMS)


@pytest.fixture
def clips(project_copy) -> Path:
    """The demo project's 10 clips plus one DICOM cut off half-way."""
    data = find_clips(project_copy)[0].read_bytes()
    (project_copy / "clips" / "zz_truncated.dcm").write_bytes(data[: len(data) // 2])
    return project_copy


def _env() -> dict[str, str]:
    return os.environ | {"PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1",
                         "MLFLOW_DISABLE_TELEMETRY": "true"}


def _score_cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "echoquality_core", "score", *args],
                          capture_output=True, text=True, env=_env(), timeout=timeout, cwd=ROOT)


def _single(clips: Path, checkpoint: Path, out: Path):
    torch.set_num_threads(1)
    return score_clips(clips, checkpoint, out_csv=out, device="cpu", batch_size=2)


def test_stable_hash_sharding_covers_every_clip_once():
    names = [f"clips/clip_{i:03d}.dcm" for i in range(200)]
    shards = [dist.my_shard(names, rank_=r, world=3) for r in range(3)]
    assert sorted(sum(shards, [])) == sorted(names)
    assert all(len(s) > 40 for s in shards)  # roughly even
    assert dist.shard_of("clips/clip_007.dcm", 3) == dist.shard_of("clips/clip_007.dcm", 3)


def test_list_file_input(tmp_path, clips):
    listing = tmp_path / "archive.txt"
    names = [str(p) for p in find_clips(clips / "clips")[:3]]
    listing.write_text("# archive export\n" + "\n".join(names) + "\n\n", encoding="utf-8")
    assert [c.name for c in read_list(listing)] == names
    empty = tmp_path / "empty.txt"
    empty.write_text("# nothing\n", encoding="utf-8")
    with pytest.raises(ValueError, match="no clip paths"):
        read_list(empty)


@pytest.mark.slow
def test_two_gloo_ranks_match_single_process(clips, checkpoint, tmp_path):
    single = _single(clips / "clips", checkpoint, tmp_path / "single.csv")
    out = tmp_path / "dist.csv"
    done = _score_cli(str(clips / "clips"), "--model", str(checkpoint), "--out", str(out),
                      "--distributed", "2", "--workers", "0", "--batch-size", "2",
                      "--device", "cpu")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "on 2 ranks" in done.stdout
    merged = read_scores(out)
    assert list(merged["video_path"]) == list(single["video_path"])
    assert len(merged) == 11 and merged["video_path"].is_unique
    np.testing.assert_allclose(merged["score"].fillna(-1), single["score"].fillna(-1), atol=1e-5)
    for column in ("pass", "assessment", "frames", "fps"):
        assert merged[column].astype(str).tolist() == single[column].astype(str).tolist()
    broken = merged[merged["video_path"] == "zz_truncated.dcm"]
    assert broken["score"].isna().all() and broken["error"].str.contains("zz_truncated").all()
    assert part_files(out) == []


def _rank_process(launcher: subprocess.Popen, rank: int, timeout: float = 60) -> psutil.Process:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        for child in psutil.Process(launcher.pid).children(recursive=True):
            try:
                if child.environ().get("RANK") == str(rank) and "echoquality_core" in " ".join(
                        child.cmdline()):
                    return child
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
        time.sleep(0.05)
    raise AssertionError(f"rank {rank} never started")


def _rows(path: Path) -> int:
    return max(0, len(path.read_text(encoding="utf-8").splitlines()) - 1) if path.exists() else 0


@pytest.mark.slow
def test_killed_rank_is_redone_and_nothing_scored_twice(clips, checkpoint, tmp_path):
    single = _single(clips / "clips", checkpoint, tmp_path / "single.csv")
    out = tmp_path / "dist.csv"
    args = [str(clips / "clips"), "--model", str(checkpoint), "--out", str(out), "--workers",
            "0", "--batch-size", "1", "--device", "cpu"]
    launcher = subprocess.Popen(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
         "-m", "echoquality_core", "score", *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(), cwd=ROOT)
    try:
        victim = _rank_process(launcher, 1)
        part = part_path(out, 1)
        end = time.monotonic() + 90
        while _rows(part) < 1 and time.monotonic() < end:
            time.sleep(0.005)
        victim.send_signal(signal.SIGSTOP)  # freeze it mid-shard, then kill it
        written = _rows(part)
        victim.send_signal(signal.SIGKILL)
        launcher.communicate(timeout=60)
    finally:
        if launcher.poll() is None:
            launcher.kill()
            launcher.communicate()
    assert launcher.returncode != 0  # torchrun reports the killed rank
    shard_1 = dist.my_shard(list(single["video_path"]), rank_=1, world=2)
    assert 1 <= written < len(shard_1), "rank 1 must die with part of its shard left"
    scored_before = sum(int(read_scores(p)["score"].notna().sum())
                        for p in [*part_files(out), out] if p.exists())

    rerun = _score_cli(*args, "--distributed", "2")
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    scored = int(re.search(r"Scored (\d+) clip\(s\)", rerun.stdout).group(1))
    merged = read_scores(out)
    assert merged["video_path"].is_unique
    assert list(merged["video_path"]) == list(single["video_path"])  # nothing missing
    np.testing.assert_allclose(merged["score"].fillna(-1), single["score"].fillna(-1), atol=1e-5)
    assert scored_before >= 1
    assert scored == int(single["score"].notna().sum()) - scored_before  # none scored twice

def test_merge_keeps_a_scored_row_over_an_error_row_and_cuts_torn_lines(tmp_path):
    out = tmp_path / "s.csv"
    header = "video_path,score,pass,assessment,frames,fps,error\n"
    out.write_text(header + "a.dcm,,,,,,a.dcm: unreadable\n", encoding="utf-8")
    part_path(out, 0).write_text(header + "b.dcm,0.9,True,Excellent quality,4,30,\n",
                                 encoding="utf-8")
    part_path(out, 1).write_text(header + "a.dcm,0.1,False,Very poor quality,4,30,\nc.dcm,0.",
                                 encoding="utf-8")
    table = merge_parts(out, ["a.dcm", "b.dcm", "c.dcm"])
    assert list(table["video_path"]) == ["a.dcm", "b.dcm"]
    assert table["score"].tolist() == pytest.approx([0.1, 0.9])
    assert part_files(out) == []
