"""One decision on every surface: for a checkpoint with a saved threshold and calibration, the
scores CSV, ``echoquality gradcam``, the pyfunc model, the DICOM SRs of ``pacs send-results``,
the Review set and the run report give each clip the same (calibrated) score, pass/fail and
assessment (issue 21.5: gradcam printed the raw score's band, ignoring threshold and
calibration, and pyfunc dropped the calibration)."""
from __future__ import annotations

import re
import warnings

import highdicom as hd
import numpy as np
import pandas as pd
import pydicom
import pytest

from echoquality_core.cli.main import main
from echoquality_core.decision import Decision, labelled_good
from echoquality_core.dicom import find_clips
from echoquality_core.evaluation.report import collect_report
from echoquality_core.evaluation.review import build_review
from echoquality_core.model.checkpoint import read_info, write_decision
from echoquality_core.model.network import save_checkpoint
from echoquality_core.data.preprocess import PreprocessParams
from echoquality_core.pacs.sr import QUALITY_RESULT, QUALITY_SCORE
from echoquality_core.runs.folder import RunFolder
from echoquality_core.scoring.score import score_clips

PARAMS = PreprocessParams(n_frames=4, stride=1, size=32)
LABELS = (1.0, 0.0, 1.0, 0.0)


@pytest.fixture(scope="module")
def scored(tmp_path_factory, tiny_project, random_model):
    """(checkpoint with a saved decision, the clips, their raw scores, the scores CSV table)."""
    root = tiny_project(n_clips=4, n_frames=6, height=64, width=80, seed=5).parent
    clips = [str(p) for p in find_clips(root)][:4]
    work = tmp_path_factory.mktemp("one_decision")
    checkpoint = save_checkpoint(random_model(3), work / "run" / "best.pt", threshold=0.5,
                                 preprocess=PARAMS)
    raw = score_clips(clips, checkpoint, device="cpu")["score"].to_numpy()
    # a calibration that spreads the scores and moves them up, a threshold between the middle
    # two: two clips pass, and the raw scores called at that threshold would say otherwise
    a = 10.0
    b = np.log(3.0) - a * np.log(np.median(raw) / (1 - np.median(raw)))
    calibration = {"method": "platt", "a": a, "b": float(b)}
    calibrated = np.sort(Decision(0.5, calibration).scores(raw))
    threshold = float((calibrated[1] + calibrated[2]) / 2)
    write_decision(checkpoint, threshold, calibration)
    table = score_clips(clips, checkpoint, out_csv=work / "scores.csv", device="cpu")
    table = table.set_index("video_path").loc[clips]
    assert table["pass"].sum() == 2
    assert list(table["pass"]) != [s >= threshold for s in raw]  # calibration matters here
    return checkpoint, clips, raw, table, work


def test_scores_csv_holds_the_checkpoints_verdicts(scored):
    checkpoint, clips, raw, table, _work = scored
    decision = Decision.from_info(read_info(checkpoint))
    assert decision.calibration["method"] == "platt"
    assert table.attrs["threshold"] == decision.threshold
    for clip, verdict in zip(clips, decision.verdicts(raw)):
        row = table.loc[clip]
        assert row["score"] == pytest.approx(verdict.score, abs=1e-5)
        assert (row["pass"], row["assessment"]) == (verdict.passed, verdict.assessment)


def test_gradcam_cli_says_what_the_scores_csv_says(scored, capsys):
    checkpoint, clips, _raw, table, work = scored
    one_of_each = [table.index[table["pass"]][0], table.index[~table["pass"]][0]]
    for i, clip in enumerate(one_of_each):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            assert main(["gradcam", clip, "--model", str(checkpoint), "--out",
                         str(work / f"cam{i}.png"), "--device", "cpu"]) == 0
        said = capsys.readouterr().out
        found = re.search(r"score (\d\.\d{3}) \(([^;]+); (pass|fail) at threshold", said)
        assert found, said
        row = table.loc[clip]
        assert float(found[1]) == pytest.approx(row["score"], abs=6e-4), clip
        assert found[2] == row["assessment"], clip
        assert (found[3] == "pass") == row["pass"], clip


def test_pyfunc_predicts_what_the_scores_csv_says(scored):
    import mlflow.pyfunc

    from echoquality_core.scoring.pyfunc import save_pyfunc_model

    checkpoint, clips, _raw, table, work = scored
    model = mlflow.pyfunc.load_model(str(save_pyfunc_model(checkpoint, work / "pyfunc")))
    out = model.predict(pd.DataFrame({"video_path": clips})).set_index("video_path")
    for clip in clips:
        assert out.loc[clip, "score"] == pytest.approx(table.loc[clip, "score"], abs=1e-6)
        assert bool(out.loc[clip, "pass"]) == table.loc[clip, "pass"]
        assert out.loc[clip, "assessment"] == table.loc[clip, "assessment"]


def test_dicom_srs_say_what_the_scores_csv_says(scored):
    from echoquality_core.pacs.watch import Scorer

    checkpoint, clips, _raw, table, work = scored
    assert Scorer.load(checkpoint).decision == Decision.from_info(read_info(checkpoint))
    assert main(["pacs", "send-results", "--scores", str(work / "scores.csv"), "--out-dir",
                 str(work / "sr"), "--model", str(checkpoint)]) == 0
    by_sop = {str(pydicom.dcmread(c, stop_before_pixels=True).SOPInstanceUID): c
              for c in clips}
    written = sorted((work / "sr").glob("*.dcm"))
    assert len(written) == len(clips)
    for path in written:
        group = hd.sr.srread(path).content.get_image_measurement_groups()[0]
        clip = by_sop[group.source_images[0].ReferencedSOPSequence[0].ReferencedSOPInstanceUID]
        row = table.loc[clip]
        assert group.get_measurements(name=QUALITY_SCORE)[0].value == pytest.approx(
            row["score"], abs=1e-5)
        (evaluation,) = group.get_qualitative_evaluations()
        assert evaluation.name == QUALITY_RESULT
        assert (evaluation.value.meaning == "Image quality sufficient") == row["pass"], clip


def test_review_and_report_call_clips_as_the_scores_csv(scored):
    checkpoint, clips, raw, table, _work = scored
    decision = Decision.from_info(read_info(checkpoint))
    review = build_review({c: (label, s) for c, label, s in zip(clips, LABELS, raw)}, decision,
                          "test", {})
    for clip in review.clips:
        assert clip.score == pytest.approx(table.loc[clip.rel, "score"], abs=1e-5)
        assert clip.called_good == table.loc[clip.rel, "pass"], clip.rel

    run = RunFolder(checkpoint.parent)  # the run chose 0.5 on raw scores; best.pt now says more
    run.write_summary({"threshold": 0.5})
    run.write_predictions([{"path": c, "label": label, "score": s}
                           for c, label, s in zip(clips, LABELS, raw)], {c: c for c in clips})
    data, _info = collect_report(run.path)
    assert data.threshold == decision.threshold
    for rel, score in zip(data.rels, data.scores):
        assert score == pytest.approx(table.loc[rel, "score"], abs=1e-4), rel
    wrong = {c for c, label in zip(clips, LABELS) if labelled_good(label) != table.loc[c, "pass"]}
    assert {d.rel for d in data.disagreements} == wrong
