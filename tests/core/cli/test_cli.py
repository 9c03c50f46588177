"""The `echoquality` demo, score, evaluate, gradcam and export commands, run as a user would.

Real demo DICOM clips, a real seeded R(2+1)D-18 checkpoint (4 frames of 48x48 px), a real
MLflow store in SQLite for `evaluate --run`.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch

from echoquality_core.cli.main import main
from echoquality_core.scoring.scores_csv import read_scores
from echoquality_core.model.network import save_checkpoint
from echoquality_core.data.preprocess import PreprocessParams

PARAMS = PreprocessParams(n_frames=4, stride=1, size=48)
SCRIPT = Path(sys.executable).parent / "echoquality"


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, random_model) -> Path:
    torch.set_num_threads(1)
    model = random_model(3)
    path = tmp_path_factory.mktemp("cli_model") / "best.pt"
    return save_checkpoint(model, path, threshold=0.5, preprocess=PARAMS)


def _error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


def test_score_writes_the_csv_and_a_rerun_skips_scored_clips(
    demo_project, checkpoint, tmp_path, capsys
):
    from echoquality_core.dicom import find_clips

    out = tmp_path / "scores.csv"
    args = ["score", str(demo_project), "--model", str(checkpoint), "--out", str(out),
            "--workers", "0", "--batch-size", "4", "--device", "cpu"]
    assert main(args) == 0
    n = len(find_clips(demo_project))
    table = pd.read_csv(out)
    assert len(table) == n and table["score"].between(0, 1).all()
    shown = capsys.readouterr().out
    assert f"Scored {n} clip(s)" in shown and str(out.resolve()) in shown

    assert main(args) == 0
    assert f"Skipped {n} clip(s) already in scores.csv" in capsys.readouterr().out
    assert len(pd.read_csv(out)) == n


def test_score_with_a_missing_model_or_input_exits_2_with_one_line(
    demo_project, tmp_path, checkpoint, capsys
):
    out = tmp_path / "scores.csv"
    assert main(["score", str(demo_project), "--model", str(tmp_path / "nope.pt"),
                 "--out", str(out), "--workers", "0"]) == 2
    line = _error_line(capsys)
    assert line.startswith("echoquality score: error:") and "nope.pt" in line
    assert main(["score", str(tmp_path / "missing"), "--model", str(checkpoint),
                 "--out", str(out), "--workers", "0"]) == 2
    assert "missing" in _error_line(capsys)


@pytest.mark.slow
def test_installed_script_scores_with_an_exported_model(demo_project, checkpoint, tmp_path):
    export_dir = tmp_path / "export"
    assert main(["export", "--model", str(checkpoint), "--out", str(export_dir),
                 "--frames", "4", "--format", "torchscript"]) == 0
    out = tmp_path / "scores.csv"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [str(SCRIPT), "score", str(demo_project), "--model", str(export_dir), "--out", str(out),
         "--workers", "0", "--device", "cpu", "--trust-exported"],
        capture_output=True, text=True, env=env, timeout=300, check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "Scored" in done.stdout
    table = pd.read_csv(out)
    assert len(table) > 0 and table["score"].between(0, 1).all()


@pytest.mark.slow  # a few seconds: the fast tier stays under 4 minutes
def test_export_prints_files_and_the_onnx_outcome(checkpoint, tmp_path, capsys):
    assert main(["export", "--model", str(checkpoint), "--out", str(tmp_path / "e"),
                 "--frames", "4"]) == 0
    shown = capsys.readouterr().out
    assert "export:" in shown and "model_info.json" in shown
    assert "onnx" in shown  # written, or skipped with the reason
    assert (tmp_path / "e" / "model.pt2").is_file()


def _labels_csv(project: Path) -> Path:
    return project / "labels.csv"


def test_evaluate_prints_metrics_and_writes_plots(demo_project, checkpoint, tmp_path, capsys):
    out = tmp_path / "evaluation"
    assert main(["evaluate", "--model", str(checkpoint), "--csv", str(_labels_csv(demo_project)),
                 "--out", str(out), "--workers", "0", "--device", "cpu"]) == 0
    shown = capsys.readouterr().out
    for word in ("accuracy", "precision", "recall", "f1", "ROC AUC", "PR AUC", "Brier",
                 "threshold", "Confusion matrix"):
        assert word in shown
    for name in ("roc.png", "precision_recall.png", "confusion_matrix.png",
                 "score_histogram.png", "reliability.png", "predictions.csv", "metrics.json"):
        assert (out / name).is_file(), name
    metrics = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    predictions = pd.read_csv(out / "predictions.csv")
    assert metrics["n"] == len(predictions) and metrics["threshold"] == 0.5
    assert sum(map(sum, metrics["confusion_matrix"])) == metrics["n"]


@pytest.mark.slow  # a few seconds: the fast tier stays under 4 minutes
def test_evaluate_a_run_uses_its_logged_checkpoint(demo_project, checkpoint, tmp_path, capsys):
    from echoquality_core.runs.tracking import default_artifact_location, start_run

    uri = f"sqlite:///{(tmp_path / 'mlruns.db').as_posix()}"
    with start_run(tracking_uri=uri, artifact_location=default_artifact_location(tmp_path)) as run:
        run.log_artifact(checkpoint, "checkpoints")  # where the trainer puts best.pt

    out = tmp_path / "evaluation"
    assert main(["evaluate", "--run", run.run_id, "--tracking-uri", uri, "--csv",
                 str(_labels_csv(demo_project)), "--out", str(out), "--workers", "0",
                 "--device", "cpu", "--all-clips"]) == 0  # the run logged no split.csv
    by_run = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    assert main(["evaluate", "--model", str(checkpoint), "--csv", str(_labels_csv(demo_project)),
                 "--out", str(tmp_path / "direct"), "--workers", "0", "--device", "cpu"]) == 0
    direct = json.loads((tmp_path / "direct" / "metrics.json").read_text(encoding="utf-8"))
    assert by_run == direct
    from echoquality_core.scoring.pyfunc import log_pyfunc_model

    with start_run(tracking_uri=uri, artifact_location=default_artifact_location(tmp_path)) as held:
        log_pyfunc_model(checkpoint)  # what the trainer logs now: best.pt only inside the model
    assert main(["evaluate", "--run", held.run_id, "--tracking-uri", uri, "--csv",
                 str(_labels_csv(demo_project)), "--out", str(tmp_path / "held"), "--workers",
                 "0", "--device", "cpu", "--all-clips"]) == 0
    assert json.loads((tmp_path / "held" / "metrics.json").read_text(encoding="utf-8")) == direct
    capsys.readouterr()

    assert main(["evaluate", "--run", "0" * 32, "--tracking-uri", uri, "--csv",
                 str(_labels_csv(demo_project)), "--out", str(out)]) == 2
    assert "0" * 32 in _error_line(capsys)


def test_evaluate_without_the_labels_csv_exits_2(checkpoint, tmp_path, capsys):
    assert main(["evaluate", "--model", str(checkpoint), "--csv", str(tmp_path / "x.csv")]) == 2
    assert "x.csv" in _error_line(capsys)


def test_gradcam_writes_a_strip_and_refuses_unreadable_clips(
    demo_project, checkpoint, tmp_path, capsys
):
    from echoquality_core.dicom import find_clips

    clip = find_clips(demo_project)[0]
    strip = tmp_path / "strip.png"
    assert main(["gradcam", str(clip), "--model", str(checkpoint), "--out", str(strip),
                 "--explain", "poor", "--device", "cpu"]) == 0
    assert strip.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "score" in capsys.readouterr().out

    broken = tmp_path / "broken.dcm"
    broken.write_bytes(clip.read_bytes()[:300])
    assert main(["gradcam", str(broken), "--model", str(checkpoint), "--out",
                 str(tmp_path / "b.png")]) == 2
    assert "broken.dcm" in _error_line(capsys)
    assert main(["gradcam", str(clip), "--model", str(checkpoint), "--out",
                 str(tmp_path / "c.png"), "--layer", "layer9"]) == 2
    assert "layer9" in _error_line(capsys)


def test_demo_writes_clips_and_labels_and_keeps_an_existing_project_unless_forced(
    tmp_path, capsys
):
    from echoquality_core.dicom import find_clips, read_clip

    root = tmp_path / "demo"
    assert main(["demo", str(root), "--clips", "3", "--frames", "8"]) == 0
    clips = find_clips(root)
    assert len(clips) == 3 and all(c.parent == root / "clips" for c in clips)
    assert read_clip(clips[0]).n_frames == 8
    labels = pd.read_csv(root / "labels.csv")
    assert list(labels.columns) == ["video_path", "quality_score"]
    assert 1 <= len(labels) <= 3 and all((root / p).is_file() for p in labels.video_path)
    out = capsys.readouterr().out
    assert "Demo project written to" in out and str((root / "labels.csv").resolve()) in out

    (root / "labels.csv").write_text("video_path,quality_score\nclips/mine.dcm,1\n")
    before = {c.name: c.read_bytes() for c in clips}
    assert main(["demo", str(root), "--clips", "2", "--frames", "4"]) == 0  # no --force
    assert "already exists" in capsys.readouterr().out
    assert (root / "labels.csv").read_text() == "video_path,quality_score\nclips/mine.dcm,1\n"
    assert {c.name: c.read_bytes() for c in find_clips(root)} == before

    assert main(["demo", str(root), "--clips", "2", "--frames", "4", "--force"]) == 0
    assert len(find_clips(root)) == 2 and read_clip(find_clips(root)[0]).n_frames == 4
    assert "clips/mine.dcm" not in (root / "labels.csv").read_text()


def _score_in_a_process(folder: Path, checkpoint: Path, out: Path, *extra: str):
    root = Path(__file__).resolve().parents[3]
    return subprocess.run(
        [sys.executable, "-m", "echoquality_core", *extra, "score", str(folder), "--model",
         str(checkpoint), "--out", str(out), "--workers", "0", "--device", "cpu"],
        capture_output=True, text=True, timeout=300, check=False,
        env=os.environ | {"PYTHONPATH": str(root), "OMP_NUM_THREADS": "1"})


@pytest.mark.slow
def test_a_clip_no_decoder_can_read_is_one_line_and_its_row_not_a_traceback(
    demo_project, checkpoint, tmp_path
):
    """Issue 25.2: pydicom's plugins fail on a 12-bit JPEG Extended clip (pydicom's own test
    file) and log a traceback each; score says one line per clip, the reason in its row."""
    import shutil

    import pydicom
    from pydicom.data import get_testdata_file

    from echoquality_core.dicom import find_clips

    folder = tmp_path / "clips"
    folder.mkdir()
    shutil.copy(find_clips(demo_project)[0], folder / "fine.dcm")
    shutil.copy(get_testdata_file("JPEG-lossy.dcm"), folder / "jpeg12.dcm")
    assert pydicom.dcmread(folder / "jpeg12.dcm").file_meta.TransferSyntaxUID == \
        "1.2.840.10008.1.2.4.51"
    done = _score_in_a_process(folder, checkpoint, tmp_path / "scores.csv")
    assert done.returncode == 0, done.stderr
    lines = [line for line in done.stderr.splitlines() if not line.startswith("Scoring:")]
    assert "Traceback" not in done.stderr and len(lines) == 1, done.stderr
    assert "jpeg12.dcm: frame 1 of 1 could not be decoded" in lines[0]
    rows = pd.read_csv(tmp_path / "scores.csv").set_index("video_path")
    assert rows.loc["jpeg12.dcm", "error"].startswith("jpeg12.dcm: frame 1 of 1 could not")
    assert pd.isna(rows.loc["jpeg12.dcm", "score"]) and 0 <= rows.loc["fine.dcm", "score"] <= 1

    debug = _score_in_a_process(folder, checkpoint, tmp_path / "again.csv", "--debug")
    assert debug.returncode == 0 and "Traceback" in debug.stderr  # one per plugin


def test_the_score_command_scores_a_folder_without_importing_pandas(
    demo_project, checkpoint, tmp_path
):
    """Issue 23.3: pandas (0.2-0.3 s to import) stays out of the command's fixed start-up; the
    scores CSV it writes reads back whole (two runs: the second resumes, skipping all)."""
    out = tmp_path / "scores.csv"
    code = ("import sys; from echoquality_core.cli.main import main; "
            f"codes = [main(['score', {str(demo_project)!r}, '--model', {str(checkpoint)!r}, "
            f"'--out', {str(out)!r}, '--workers', '0', '--device', 'cpu']) for _ in range(2)]; "
            "print('pandas' in sys.modules, codes)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=300, env=os.environ | {"OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "False [0, 0]"
    assert "Skipped 10 clip(s) already in scores.csv." in done.stdout
    table = read_scores(out)
    assert len(table) == 10 and table["score"].between(0, 1).all()


def test_the_console_script_exits_with_the_code_after_the_exit_handlers(tmp_path):
    """``run`` (the `echoquality` script) skips the interpreter's slow shutdown once torch is
    imported, but the exit code, the flushed output and the exit handlers (MLflow's, temporary
    folders') are those of a normal exit."""
    marker = tmp_path / "handler_ran"
    argv = ["echoquality", "score", str(tmp_path), "--model", str(tmp_path / "missing.pt"),
            "--out", str(tmp_path / "scores.csv")]
    code = ("import atexit, sys, torch; from echoquality_core.cli.main import run; "
            f"atexit.register(lambda: open({str(marker)!r}, 'w').write('yes')); "
            f"sys.argv = {argv!r}; print('before', end=''); run()")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 2
    assert done.stdout.startswith("before")
    assert "no DICOM clips found" in done.stderr and "Traceback" not in done.stderr
    assert marker.read_text() == "yes"
