"""Cross-validation end to end with a real model on tiny real DICOM clips: the CLI's out-of-fold
table (one score per labelled clip), fold runs nested under a parent MLflow run, clips decoded
once for all folds, Stop/Cancel, the threshold saved from it and used by `score`, and
`evaluate --run` on the run's own test split."""
from __future__ import annotations

import contextlib
import csv
import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from mlflow import MlflowClient

from echoquality_core.data import clips as data_module
from echoquality_core.cli.main import main
from echoquality_core.train.crossval import CrossValidator
from echoquality_core.train.folds import read_oof
from echoquality_core.demo.project import synthetic_clip, write_dicom_clip
from echoquality_core.train.events import CrossValEnd, EpochEnd, FoldStart
from echoquality_core.labels.store import LabelStore
from echoquality_core.decision import FAIL_BANDS, PASS_BANDS
from echoquality_core.scoring.score import score_clips
from echoquality_core.runs.tracking import default_tracking_uri
from echoquality_core.train.trainer import TrainConfig

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_torch_thread"),
              pytest.mark.filterwarnings("ignore:No weights given:UserWarning")]

TINY = ["--epochs", "1", "--frames", "4", "--stride", "1", "--size", "32", "--batch-size", "4",
        "--device", "cpu"]


def write_project(root: Path, n_patients: int = 6) -> Path:
    """Each patient one good and one low-contrast clip (4 frames, 48x64); one more clip is
    left unlabelled. Returns the labels CSV."""
    rng = np.random.default_rng(4)
    store = LabelStore(root / "labels.csv", root=root)
    for p in range(n_patients):
        for kind, label in (("good", 1.0), ("low_contrast", 0.0)):
            rel = f"clips/p{p}_{kind}.dcm"
            write_dicom_clip(root / rel, synthetic_clip(rng, kind, n_frames=4, height=48,
                                                        width=64),
                             compression="none", patient_id=f"PATIENT-{p}")
            store.set(rel, label, rater="test", save=False)
    write_dicom_clip(root / "clips/unlabelled.dcm", synthetic_clip(rng, "good", n_frames=4,
                                                                    height=48, width=64))
    store.save()
    return root / "labels.csv"


@pytest.fixture(scope="module")
def cv_cli(tmp_path_factory):
    """`echoquality crossval` run once (3 folds, MLflow on), counting DICOM decodes; its folder
    (~1 GB of fold models) is removed after the module."""
    root = tmp_path_factory.mktemp("cv")
    csv_path = write_project(root)
    decodes = []
    real = data_module.clip_model_frames

    def counting(clip, params):  # a path or an opened Clip
        decodes.append(Path(getattr(clip, "path", clip)).name)
        return real(clip, params)

    data_module.clip_model_frames = counting
    out = io.StringIO()
    try:
        with contextlib.redirect_stdout(out):
            code = main(["crossval", "--csv", str(csv_path), "--folds", "3", "--name", "cv1",
                         *TINY])
    finally:
        data_module.clip_model_frames = real
    yield root, code, out.getvalue(), decodes
    shutil.rmtree(root, ignore_errors=True)


def test_cli_writes_one_out_of_fold_score_per_labelled_clip(cv_cli):
    root, code, shown, decodes = cv_cli
    assert code == 0, shown
    rows = read_oof(root / "crossval" / "cv1" / "oof_scores.csv")
    labelled = LabelStore(root / "labels.csv").paths()
    assert sorted(r["video_path"] for r in rows) == sorted(labelled)  # each once, none extra
    assert {r["fold"] for r in rows} == {1, 2, 3}
    assert all(0 <= r["score"] <= 1 and r["n_scores"] == 1 for r in rows)
    for r in rows:  # one anonymous group per patient, and a patient's clips share a fold
        twin = next(o for o in rows if o is not r and Path(o["video_path"]).name.split("_")[0]
                    == Path(r["video_path"]).name.split("_")[0])
        assert (twin["group"], twin["fold"]) == (r["group"], r["fold"])
        assert not r["group"].startswith("PATIENT")
    assert "Out-of-fold scores of 12 clip(s) from 6 patient(s)" in shown
    assert "ROC AUC" in shown and "95% CI" in shown
    assert sorted(decodes) == sorted(Path(p).name for p in labelled)  # decoded once, all folds


def test_fold_runs_are_nested_under_one_parent_mlflow_run(cv_cli):
    root, *_ = cv_cli
    client = MlflowClient(default_tracking_uri(root))
    runs = client.search_runs([client.get_experiment_by_name("echoquality").experiment_id])
    parents = [r for r in runs if r.data.tags.get("echoquality.kind") == "crossval"]
    assert len(parents) == 1
    parent = parents[0]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert sorted(r.info.run_name for r in children) == ["cv1-f1", "cv1-f2", "cv1-f3"]
    assert {r.info.status for r in children + [parent]} == {"FINISHED"}
    assert "oof_roc_auc" in parent.data.metrics and "oof_roc_auc_ci_low" in parent.data.metrics
    assert parent.data.params["n_folds"] == "3"
    assert {a.path for a in client.list_artifacts(parent.info.run_id)} >= {"oof_scores.csv",
                                                                            "summary.json"}
    summary = json.loads((root / "crossval" / "cv1" / "summary.json").read_text())
    assert summary["folds_done"] == 3 and summary["n_clips"] == 12


def test_label_issues_cli_ranks_every_clip(cv_cli, tmp_path, capsys):
    root, *_ = cv_cli
    out = tmp_path / "issues.csv"
    assert main(["label-issues", "--crossval", "cv1", "--project", str(root), "--out",
                 str(out)]) == 0
    with out.open(newline="") as fh:
        issues = list(csv.DictReader(fh))
    assert [int(r["rank"]) for r in issues] == list(range(1, 13))
    quality = [float(r["label_quality"]) for r in issues]
    assert quality == sorted(quality)
    assert "cleanlab flags" in capsys.readouterr().out
    assert main(["label-issues", "--crossval", "nope", "--project", str(root), "--out",
                 str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "nope" in err[0]


def test_saved_threshold_and_calibration_are_what_score_uses(cv_cli, tmp_path, capsys):
    root, *_ = cv_cli
    model = root / "crossval" / "cv1" / "folds" / "cv1-f1" / "best.pt"
    clips = root / "clips"
    raw = score_clips(clips, model, device="cpu", num_workers=0)
    assert main(["threshold", "--crossval", "cv1", "--project", str(root), "--model",
                 str(model), "--preset", "0.42"]) == 0
    assert "Threshold 0.420 saved" in capsys.readouterr().out
    table = score_clips(clips, model, device="cpu", num_workers=0)
    assert table.attrs["threshold"] == pytest.approx(0.42)
    assert list(table["pass"]) == [s >= 0.42 for s in table["score"]]
    decision = json.loads((root / ".echoquality" / "decision.json").read_text())
    assert decision["threshold"] == pytest.approx(0.42)
    run_id = MlflowClient(default_tracking_uri(root)).search_runs(
        [MlflowClient(default_tracking_uri(root)).get_experiment_by_name(
            "echoquality").experiment_id], "attributes.run_name = 'cv1-f1'")[0].info.run_id
    tags = MlflowClient(default_tracking_uri(root)).get_run(run_id).data.tags
    assert tags["saved_threshold"].startswith("0.42")

    assert main(["threshold", "--crossval", "cv1", "--project", str(root), "--model",
                 str(model), "--preset", "youden", "--calibrate", "platt"]) == 0
    from echoquality_core.decision import apply_calibration
    from echoquality_core.model.checkpoint import load_scoring_model

    info = load_scoring_model(model)[1]
    calibrated = score_clips(clips, model, device="cpu", num_workers=0)
    assert calibrated.attrs["threshold"] == pytest.approx(info["threshold"])
    np.testing.assert_allclose(calibrated["score"], apply_calibration(raw["score"],
                                                                      info["calibration"]),
                               atol=1e-5)
    threshold = info["threshold"]
    for _, row in calibrated.iterrows():  # pass and assessment never contradict
        assert row["pass"] == (row["score"] >= threshold)
        assert row["assessment"] in (PASS_BANDS if row["pass"] else FAIL_BANDS)


def _collect(cv: CrossValidator) -> tuple[CrossValEnd, list]:
    events = []
    user = cv.callback

    def callback(event):
        events.append(event)
        if user is not None:
            user(cv, event)

    cv.callback = callback
    return cv.run(), events


def _config(csv_path: Path, **overrides) -> TrainConfig:
    return TrainConfig(**({"annotations_csv": str(csv_path), "videos_dir": None, "n_frames": 4,
                           "stride": 1, "size": 32, "batch_size": 4, "epochs": 1,
                           "device": "cpu", "use_mlflow": False} | overrides))


def test_stop_keeps_the_finished_folds_and_cancel_keeps_nothing(tmp_path):
    csv_path = write_project(tmp_path / "p", n_patients=4)

    def stop_at_fold_2(cv, event):
        if isinstance(event, FoldStart) and event.fold == 2:
            cv.stop()

    end, events = _collect(CrossValidator(_config(csv_path), 2, callback=stop_at_fold_2))
    assert end.stopped and not end.cancelled and end.error is None and end.folds_done == 1
    kinds = [type(e).__name__ for e in events]
    assert kinds[-1] == "CrossValEnd" and kinds.index("FoldStart") < kinds.index("EpochEnd")
    assert [e.fold for e in events if isinstance(e, FoldStart)] == [1, 2]
    assert all(isinstance(e, (FoldStart, EpochEnd)) or type(e).__name__ != "TrainEnd"
               for e in events[:-1])  # the folds' own TrainEnds are not passed on
    rows = read_oof(end.oof_csv)
    assert rows and {r["fold"] for r in rows} == {1} and len(rows) < 8

    def cancel_at_fold_2(cv, event):
        if isinstance(event, FoldStart) and event.fold == 2:
            cv.cancel()

    cv = CrossValidator(_config(csv_path, run_name="gone"), 2, callback=cancel_at_fold_2)
    end, _ = _collect(cv)
    assert end.cancelled and end.oof_csv is None
    assert not (csv_path.parent / "crossval" / "gone").exists()


def test_evaluate_run_measures_its_own_test_split_unless_asked(trained_run, tmp_path, capsys):
    root, end = trained_run
    base = ["evaluate", "--run", end.run_id, "--csv", str(root / "labels.csv"), "--workers", "0",
            "--device", "cpu"]
    assert main([*base, "--out", str(tmp_path / "a")]) == 0
    shown = capsys.readouterr().out
    metrics = json.loads((tmp_path / "a" / "metrics.json").read_text())
    assert metrics["n"] == end.split_sizes["test"]
    assert f"test split of run {end.run_id}" in shown and "patient(s)" in shown
    assert "95% CI" in shown or "one class only" in shown
    assert main([*base, "--out", str(tmp_path / "b"), "--all-clips"]) == 0
    shown = capsys.readouterr().out
    metrics = json.loads((tmp_path / "b" / "metrics.json").read_text())
    assert metrics["n"] == sum(end.split_sizes.values())
    assert "NOT a test measurement" in shown
