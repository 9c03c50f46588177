"""Batch scoring: one row per clip, unreadable clips reported not fatal (and tried again on
resume), a GradCAM strip that cannot be written not fatal, resumable CSV output.

Real DICOM demo clips (10 clips, 24 frames, 120x160) and a real, seeded R(2+1)D-18 checkpoint
that sees 4 frames of 48x48 px, so a clip scores in milliseconds.
"""
from __future__ import annotations

import csv
import io
import math
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pydicom
import pytest
import torch

from echoquality_core.demo.project import synthetic_clip, write_dicom_clip
from echoquality_core.dicom import find_clips
from echoquality_core.model.network import save_checkpoint
from echoquality_core.data.preprocess import PreprocessParams
from echoquality_core.decision import DEFAULT_THRESHOLD, SCORE_BANDS, assessment
from echoquality_core.scoring.score import score_clips
from echoquality_core.scoring.scores_csv import COLUMNS, ScoresFile, read_scores

PARAMS = PreprocessParams(n_frames=4, stride=1, size=48)


@pytest.fixture(scope="module")
def model(random_model):
    torch.set_num_threads(1)
    return random_model(0)


@pytest.fixture(scope="module")
def checkpoint(model, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("model") / "best.pt"
    return save_checkpoint(model, path, threshold=0.42, preprocess=PARAMS)


@pytest.fixture
def folder_with_corrupt_clip(project_copy) -> tuple[Path, str]:
    """The demo project plus a DICOM clip cut off half-way; returns (root, its name)."""
    source = find_clips(project_copy)[0]
    broken = project_copy / "broken" / "truncated.dcm"
    broken.parent.mkdir()
    data = source.read_bytes()
    broken.write_bytes(data[: len(data) // 2])
    return project_copy, "broken/truncated.dcm"


def test_assessment_bands_include_their_lower_bound():
    assert [text for _, text in SCORE_BANDS] == [
        "Excellent quality", "Good quality", "Acceptable quality", "Poor quality",
        "Very poor quality"]
    cases = {1.0: "Excellent quality", 0.8: "Excellent quality", 0.7999: "Good quality",
             0.6: "Good quality", 0.5999: "Acceptable quality", 0.4: "Acceptable quality",
             0.3999: "Poor quality", 0.2: "Poor quality", 0.1999: "Very poor quality",
             0.0: "Very poor quality"}
    for score, text in cases.items():
        assert assessment(score) == text, score
    for bad in (-0.01, 1.01, float("nan")):
        with pytest.raises(ValueError, match="0..1"):
            assessment(bad)


def test_scoring_a_folder_gives_a_row_per_clip_and_an_error_row_for_a_corrupt_one(
    folder_with_corrupt_clip, checkpoint, tmp_path
):
    root, broken = folder_with_corrupt_clip
    out = tmp_path / "scores.csv"
    seen = []
    result = score_clips(root, checkpoint, out_csv=out, device="cpu", batch_size=4,
                         progress=lambda done, total, name: seen.append((done, total, name)))

    clips = find_clips(root)
    expected = sorted(p.relative_to(root).as_posix() for p in clips)
    assert sorted(result["video_path"]) == expected
    assert list(result.columns) == list(COLUMNS)
    assert result.attrs["scored"] == len(clips) - 1 and result.attrs["failed"] == 1
    assert [d for d, _, _ in seen] == list(range(1, len(clips) + 1))
    assert {t for _, t, _ in seen} == {len(clips)}

    bad = result[result["video_path"] == broken].iloc[0]
    assert bad["error"].startswith("truncated.dcm:")
    assert math.isnan(bad["score"]) and pd.isna(bad["pass"]) and bad["assessment"] == ""

    good = result[result["video_path"] != broken]
    assert (good["error"] == "").all()
    assert good["score"].between(0, 1).all()
    assert (good["pass"] == (good["score"] >= 0.42)).all()
    assert list(good["assessment"]) == [assessment(s, 0.42) for s in good["score"]]
    first = pydicom.dcmread(clips[0], stop_before_pixels=True)
    assert (good["frames"] == first.get("NumberOfFrames")).all()
    assert (good["fps"] > 0).all()

    assert read_scores(out).equals(result)
    text = out.read_text(encoding="utf-8")
    for value in (first.get("PatientName"), first.get("PatientID")):
        if value:
            assert str(value) not in text  # nothing from the headers but frames and fps


def test_a_second_run_skips_scored_clips_and_keeps_earlier_rows(project_copy, checkpoint,
                                                                 tmp_path):
    root = project_copy
    out = tmp_path / "scores.csv"
    score_clips(root, checkpoint, out_csv=out, device="cpu")
    lines = out.read_text(encoding="utf-8").splitlines(keepends=True)
    n = len(lines) - 1
    kept = lines[:-3]  # header + all but the last 3 rows: as if the run had been interrupted
    out.write_text("".join(kept) + lines[-3][:7], encoding="utf-8")  # plus a torn line

    result = score_clips(root, checkpoint, out_csv=out, device="cpu")

    assert result.attrs["skipped"] == n - 3
    assert result.attrs["scored"] + result.attrs["failed"] == 3
    assert len(result) == n and result["video_path"].is_unique
    new_text = out.read_text(encoding="utf-8")
    assert new_text.startswith("".join(kept))  # earlier rows untouched, torn line gone
    first = pd.read_csv(io.StringIO("".join(lines))).set_index("video_path").sort_index()
    now = pd.read_csv(out).set_index("video_path").sort_index()
    assert list(now.index) == list(first.index)
    assert np.allclose(now["score"], first["score"], atol=1e-5, equal_nan=True)

    again = score_clips(root, checkpoint, out_csv=out, device="cpu")
    assert again.attrs["skipped"] == n and again.attrs["scored"] == 0
    assert out.read_text(encoding="utf-8") == new_text


def test_an_unreadable_clip_is_tried_again_on_resume_and_its_row_replaced(
    folder_with_corrupt_clip, checkpoint, tmp_path
):
    root, broken = folder_with_corrupt_clip
    out = tmp_path / "scores.csv"
    first = score_clips(root, checkpoint, out_csv=out, device="cpu", batch_size=4)
    assert first.attrs["failed"] == 1
    others = [line for line in out.read_text(encoding="utf-8").splitlines()
              if not line.startswith(broken)]

    still = score_clips(root, checkpoint, out_csv=out, device="cpu")  # still being copied
    assert (still.attrs["retried"], still.attrs["failed"], still.attrs["scored"]) == (1, 1, 0)
    assert still.attrs["skipped"] == len(first) - 1
    assert len(still) == len(first) and still["video_path"].is_unique
    assert still[still["video_path"] == broken]["error"].iloc[0].startswith("truncated.dcm:")

    frames = synthetic_clip(np.random.default_rng(5), "good", n_frames=8, height=64, width=80)
    write_dicom_clip(root / broken, frames, compression="none")  # the copy has finished
    repaired = score_clips(root, checkpoint, out_csv=out, device="cpu")

    assert (repaired.attrs["retried"], repaired.attrs["failed"]) == (1, 0)
    assert repaired.attrs["scored"] == 1 and repaired.attrs["skipped"] == len(first) - 1
    assert len(repaired) == len(first) and repaired["video_path"].is_unique
    row = repaired[repaired["video_path"] == broken].iloc[0]
    assert row["error"] == "" and 0 <= row["score"] <= 1 and row["frames"] == 8
    lines = out.read_text(encoding="utf-8").splitlines()
    assert lines[:-1] == others and lines[-1].startswith(broken)  # other rows untouched
    assert read_scores(out).equals(repaired)


def test_csv_input_scores_its_video_path_column(demo_project, checkpoint, tmp_path):
    clips = find_clips(demo_project)[:3]
    listing = tmp_path / "to_score.csv"
    with open(listing, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["video_path", "note"])
        for clip in clips:
            writer.writerow([clip.relative_to(demo_project).as_posix(), "x"])
    shutil.copytree(demo_project, tmp_path, dirs_exist_ok=True)  # paths relative to the CSV

    result = score_clips(listing, checkpoint, device="cpu")

    assert list(result["video_path"]) == [c.relative_to(demo_project).as_posix() for c in clips]
    assert (result["error"] == "").all() and result["score"].notna().all()


def test_resume_reads_which_clips_are_done_as_the_scores_table_does(tmp_path):
    """A byte-order mark, an empty, a "nan" and a text score: only numbers count as done; a
    clip with an error row and a scored row is done (the resume reads without pandas)."""
    path = tmp_path / "scores.csv"
    path.write_text("\ufeff" + ",".join(COLUMNS) + "\n"
                    "a.dcm,0.5,True,Acceptable quality,24,25.0,\n"
                    "b.dcm,nan,,,,,\n"
                    "c.dcm,,,,,,c.dcm: unreadable\n"
                    "d.dcm,high,,,,,\n"
                    "e.dcm,,,,,,e.dcm: not yet copied\n"
                    "e.dcm,0.25,False,Very poor quality,24,25.0,\n", encoding="utf-8")
    table = read_scores(path)
    done = ScoresFile(path)
    assert done.done == set(table.loc[table["score"].notna(), "video_path"]) == {"a.dcm", "e.dcm"}
    assert done.unreadable == {"b.dcm", "c.dcm", "d.dcm"}


def test_threshold_comes_from_the_checkpoint_else_0_3(demo_project, model, tmp_path):
    clips = find_clips(demo_project)[:4]
    plain = tmp_path / "video_quality_model.pt"
    torch.save(model.state_dict(), plain)  # EchoPrime's format: no threshold inside
    base = score_clips(clips, plain, device="cpu", params=PARAMS)
    assert base.attrs["threshold"] == DEFAULT_THRESHOLD == 0.3

    middle = float(np.median(base["score"]))
    tuned = save_checkpoint(model, tmp_path / "tuned.pt", threshold=middle, preprocess=PARAMS)
    result = score_clips(clips, tuned, device="cpu")
    assert result.attrs["threshold"] == middle
    assert list(result["pass"]) == [s >= middle for s in result["score"]]
    assert np.allclose(result["score"], base["score"], atol=1e-6)

    forced = score_clips(clips, tuned, device="cpu", threshold=0.0)
    assert forced.attrs["threshold"] == 0.0 and forced["pass"].all()


def test_cache_workers_and_module_input_give_the_same_scores(
    demo_project, model, checkpoint, tmp_path
):
    clips = find_clips(demo_project)[:4]
    plain = score_clips(clips, checkpoint, device="cpu")
    cache = tmp_path / "cache"
    cold = score_clips(clips, checkpoint, device="cpu", cache_dir=cache, num_workers=2,
                       batch_size=3)
    assert len(list(cache.glob("*.npy"))) == len(clips)
    warm = score_clips(clips, model, device="cpu", cache_dir=cache, params=PARAMS,
                       threshold=0.42)
    for other in (cold, warm):
        assert list(other["video_path"]) == list(plain["video_path"])
        assert np.allclose(other["score"], plain["score"], atol=1e-6)


def test_gradcam_strips_are_written_for_failing_clips(demo_project, checkpoint, tmp_path):
    clips = find_clips(demo_project)[:3]
    strips = tmp_path / "gradcam"
    score_clips(clips[:1], checkpoint, device="cpu", threshold=0.0, gradcam_dir=strips)
    assert not strips.exists() or not any(strips.iterdir())  # nothing failed

    result = score_clips(clips, checkpoint, device="cpu", threshold=1.0, gradcam_dir=strips)
    assert not result["pass"].any()
    pngs = sorted(strips.glob("*.png"))
    assert len(pngs) == len(clips)
    assert all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in pngs)


def test_a_gradcam_strip_that_cannot_be_written_keeps_every_score(
    demo_project, checkpoint, tmp_path, caplog
):
    clips = find_clips(demo_project)[:3]
    not_a_folder = tmp_path / "gradcam"
    not_a_folder.write_text("a file where the strips folder should be", encoding="utf-8")
    out = tmp_path / "scores.csv"
    result = score_clips(clips, checkpoint, out_csv=out, device="cpu", threshold=1.0,
                         batch_size=2, gradcam_dir=not_a_folder)

    assert result.attrs["scored"] == 3 and result.attrs["failed"] == 0
    assert result["score"].between(0, 1).all() and not result["pass"].any()
    assert list(result["assessment"]) == [assessment(s, 1.0) for s in result["score"]]
    assert result["error"].str.startswith("gradcam failed: ").all()
    assert out.read_text(encoding="utf-8").splitlines()[0] == ",".join(COLUMNS)
    assert caplog.text.count("GradCAM strip for") == 3

    again = score_clips(clips, checkpoint, out_csv=out, device="cpu")  # scored: not retried
    assert again.attrs["skipped"] == 3 and again.attrs["retried"] == 0
    assert again.equals(result)


def test_bad_inputs_are_refused_with_a_clear_error(demo_project, checkpoint, tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        score_clips(tmp_path / "nowhere", checkpoint)
    no_column = tmp_path / "list.csv"
    no_column.write_text("path\na.dcm\n", encoding="utf-8")
    with pytest.raises(ValueError, match="video_path"):
        score_clips(no_column, checkpoint)
    for name, data in (("blank.csv", b""), ("spaces.csv", b"   \n"),
                       ("binary.csv", b"video_path\n\xff\x81\x00\n"),
                       ("quote.csv", b'video_path\n"a.dcm\n')):
        (tmp_path / name).write_bytes(data)
        with pytest.raises(ValueError, match=f"{name}: not a readable CSV"):
            score_clips(tmp_path / name, checkpoint)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="no DICOM clips"):
        score_clips(empty, checkpoint)
    foreign = tmp_path / "other.csv"
    foreign.write_text("a,b\n1,2\n", encoding="utf-8")
    with pytest.raises(ValueError, match="not a scores CSV"):
        score_clips(demo_project, checkpoint, out_csv=foreign)
    assert foreign.read_text(encoding="utf-8") == "a,b\n1,2\n"


def test_workers_report_and_skip_a_corrupt_clip_and_score_as_one_process(
    folder_with_corrupt_clip, checkpoint, tmp_path
):
    root, broken = folder_with_corrupt_clip
    alone = score_clips(root, checkpoint, device="cpu", batch_size=3)
    out = tmp_path / "scores.csv"
    result = score_clips(root, checkpoint, out_csv=out, device="cpu", batch_size=3,
                         num_workers=2)

    assert result.attrs["failed"] == 1 and result.attrs["scored"] == len(result) - 1
    bad = result[result["video_path"] == broken].iloc[0]
    assert bad["error"].startswith("truncated.dcm:") and math.isnan(bad["score"])
    good = result[result["video_path"] != broken]
    assert (good["error"] == "").all() and good["score"].between(0, 1).all()
    assert list(alone["video_path"]) == list(result["video_path"])
    assert np.allclose(alone["score"], result["score"], atol=1e-6, equal_nan=True)
    assert read_scores(out).equals(result)


@pytest.mark.parametrize("damage", ["truncated", "not torch"])
def test_a_bad_model_file_leaves_the_scores_csv_untouched(
    project_copy, checkpoint, tmp_path, damage
):
    out = tmp_path / "scores.csv"
    clips = find_clips(project_copy)
    score_clips(clips[:2], checkpoint, out_csv=out, device="cpu")
    find_clips(project_copy)[2].write_bytes(b"not a DICOM file")  # an error row to retry
    score_clips(clips[:3], checkpoint, out_csv=out, device="cpu")
    before = out.read_bytes()
    assert read_scores(out)["error"].astype(bool).sum() == 1

    bad = tmp_path / "bad.pt"
    data = checkpoint.read_bytes()
    bad.write_bytes(data[: len(data) // 2] if damage == "truncated" else b"hello " * 100)
    with pytest.raises(ValueError):  # WeightsError
        score_clips(clips, bad, out_csv=out, device="cpu", num_workers=2)
    assert out.read_bytes() == before
