"""Watch mode against a real Orthanc: a study uploaded while `echoquality pacs watch` runs is
scored and its SR stored in the PACS; after kill -9 (mid-study) and a restart no clip is scored
twice, none is skipped, and the PACS holds exactly one SR per clip."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from echoquality_core.pacs import PacsConnection
from echoquality_core.pacs.retrieve import uid_key
from pacs_fixtures import SENTINELS, write_clip

pytestmark = pytest.mark.slow
WORKTREE = Path(__file__).resolve().parents[3]


def _start(orthanc, checkpoint: Path, folder: Path, log: Path) -> subprocess.Popen:
    command = [sys.executable, "-c", "import sys; from echoquality_core.cli.main import main; "
               "sys.exit(main())", "pacs", "watch", "--url", orthanc.url, "--model",
               str(checkpoint), "--into", str(folder), "--since", "2025-01-01",
               "--interval", "0.3"]
    env = dict(os.environ, PYTHONPATH=str(WORKTREE), OMP_NUM_THREADS="1")
    return subprocess.Popen(command, env=env, stdout=open(log, "ab"), stderr=subprocess.STDOUT)


def _wait(condition, what: str, child: subprocess.Popen, timeout: float = 180.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert child.poll() is None, f"watch exited with {child.returncode} while waiting: {what}"
        assert time.monotonic() < deadline, f"timed out waiting: {what}"
        time.sleep(0.02)


def _srs(conn: PacsConnection, study_uid: str) -> list[dict]:
    return conn.client().search_for_instances(study_instance_uid=study_uid,
                                              search_filters={"Modality": "SR"})


def _study(orthanc, folder: Path, name: str, date: str, n_clips: int, seed: int) -> str:
    import pydicom

    uid = pydicom.uid.generate_uid(entropy_srcs=["watch-test", name])
    for i in range(n_clips):
        path = write_clip(folder, f"{name}_{i}.dcm", date, patient=20 + seed, seed=seed * 10 + i,
                          study_uid=uid, instance=i + 1)
        orthanc.upload(path)
    return uid


def test_watch_scores_new_studies_and_survives_kill_9(orthanc, pacs_env, tiny_checkpoint,
                                                      tmp_path):
    conn = PacsConnection(orthanc.url)
    work, uploads, log = tmp_path / "watch", tmp_path / "uploads", tmp_path / "watch.log"
    child = _start(orthanc, tiny_checkpoint, work, log)
    try:
        _wait(lambda: "Watching" in log.read_text(), "watch to start", child)
        a = _study(orthanc, uploads, "a", "20250601", 1, 1)  # uploaded while it runs
        _wait(lambda: len(_srs(conn, a)) == 1, "the SR of study A", child)
        a_clip = next((work / "pacs" / uid_key(a)).glob("*.dcm"))
        a_stamp = (a_clip.stat().st_ino, a_clip.stat().st_mtime_ns)
        b = _study(orthanc, uploads, "b", "20250602", 2, 2)
        b_folder = work / "pacs" / uid_key(b)
        _wait(lambda: len(list(b_folder.glob("*.dcm"))) >= 1, "study B downloading", child)
    finally:
        child.kill()  # kill -9, in the middle of study B
        child.wait()
    b_srs_at_kill = len(_srs(conn, b))
    restarted = _start(orthanc, tiny_checkpoint, work, log)
    try:
        _wait(lambda: len(_srs(conn, b)) == 2, "study B finished after the restart", restarted)
        c = _study(orthanc, uploads, "c", "20250603", 1, 3)
        _wait(lambda: len(_srs(conn, c)) == 1, "the SR of study C", restarted)
        time.sleep(1.0)  # a few more polls: nothing may be done twice
    finally:
        restarted.kill()
        restarted.wait()

    assert b_srs_at_kill < 2, "study B was already finished when the watcher was killed"
    scores = pd.read_csv(work / "scores.csv")
    assert len(scores) == 4 and scores["video_path"].is_unique  # A, B x2, C: each once
    assert scores["score"].notna().all()
    for uid, n in ((a, 1), (b, 2), (c, 1)):
        assert len(_srs(conn, uid)) == n
    assert (a_clip.stat().st_ino, a_clip.stat().st_mtime_ns) == a_stamp  # A not fetched again
    state = json.loads((work / "pacs-watch.json").read_text())
    assert sum(len(s["done"]) for s in state["studies"].values()) == 4
    text = log.read_text()
    assert text.count("clip(s) scored") == 3  # A, then B (after the restart), then C
    outputs = [text, (work / "scores.csv").read_text(), json.dumps(state),
               *map(str, work.rglob("*"))]
    for sentinel in SENTINELS:
        assert not any(sentinel in t for t in outputs), sentinel
