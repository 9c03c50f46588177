"""The synthetic demo project: valid ultrasound DICOMs, a usable labels CSV, several clips per fake
patient, reproducible from a seed, and poor-quality kinds that are measurably degraded."""
from __future__ import annotations

import csv
import math
from collections import defaultdict
from pathlib import Path

import cv2
import numpy as np
import pydicom
import pytest
from pydicom.encaps import generate_frames
from pydicom.uid import ExplicitVRLittleEndian, JPEGBaseline8Bit

from echoquality_core.demo.project import (
    FRAME_RATES,
    POOR_QUALITIES,
    QUALITIES,
    US_MULTIFRAME_SOP_CLASS,
    sector_box,
    synthetic_clip,
    write_demo_project,
    write_dicom_clip,
)

ARTIFACTS = Path(__file__).parents[2] / "artifacts"
N_CLIPS, N_FRAMES, HEIGHT, WIDTH = 8, 12, 120, 160


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("demo")
    write_demo_project(root, n_clips=N_CLIPS, n_frames=N_FRAMES, height=HEIGHT, width=WIDTH)
    return root


def _clips(root: Path) -> list[Path]:
    return sorted((root / "clips").glob("*.dcm"))


def _labels(root: Path) -> list[dict[str, str]]:
    with (root / "labels.csv").open(newline="") as f:
        return list(csv.DictReader(f))


def _sof_sampling(jpeg: bytes) -> list[int]:
    """Sampling-factor bytes (0xHV) of each component in a baseline JPEG's SOF0 segment."""
    at = jpeg.index(b"\xff\xc0")
    n_components = jpeg[at + 9]
    return [jpeg[at + 11 + 3 * k] for k in range(n_components)]


def test_demo_clips_are_valid_multiframe_ultrasound_dicoms(project):
    clips = _clips(project)
    assert len(clips) == N_CLIPS
    syntaxes = set()
    for path in clips:
        ds = pydicom.dcmread(path)
        assert ds.file_meta.MediaStorageSOPClassUID == US_MULTIFRAME_SOP_CLASS
        assert ds.SOPClassUID == US_MULTIFRAME_SOP_CLASS
        assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
        assert ds.Modality == "US"
        assert int(ds.NumberOfFrames) == N_FRAMES
        assert (ds.Rows, ds.Columns, ds.SamplesPerPixel, ds.BitsAllocated) == (
            HEIGHT, WIDTH, 3, 8)
        assert ds.CineRate in FRAME_RATES
        assert float(ds.FrameTime) == pytest.approx(1000.0 / ds.CineRate)
        region = ds.SequenceOfUltrasoundRegions[0]
        assert (region.RegionLocationMinX0, region.RegionLocationMinY0,
                region.RegionLocationMaxX1, region.RegionLocationMaxY1) == sector_box(HEIGHT, WIDTH)
        assert ds.pixel_array.shape == (N_FRAMES, HEIGHT, WIDTH, 3)
        syntaxes.add(ds.file_meta.TransferSyntaxUID)
    assert syntaxes == {JPEGBaseline8Bit, ExplicitVRLittleEndian}


def test_jpeg_clip_is_ybr_full_422_and_decodes_to_what_was_drawn(tmp_path):
    frames = synthetic_clip(np.random.default_rng(3), "good", n_frames=3, height=96, width=128)
    path = write_dicom_clip(tmp_path / "c.dcm", frames, fps=50.0, compression="jpeg")
    ds = pydicom.dcmread(path)
    assert ds.file_meta.TransferSyntaxUID == JPEGBaseline8Bit
    assert (ds.PhotometricInterpretation, ds.PlanarConfiguration) == ("YBR_FULL_422", 0)
    fragments = list(generate_frames(ds.PixelData, number_of_frames=3))
    assert len(fragments) == 3
    assert all(_sof_sampling(f) == [0x21, 0x11, 0x11] for f in fragments)  # 4:2:2
    decoded = ds.pixel_array.astype(np.int16)  # pydicom converts YBR to RGB
    assert np.abs(decoded - frames).mean() < 3.0


def test_uncompressed_clip_keeps_every_pixel(tmp_path):
    frames = synthetic_clip(np.random.default_rng(4), "blur", n_frames=2, height=64, width=80)
    path = write_dicom_clip(tmp_path / "c.dcm", frames, fps=25.0, compression="none")
    ds = pydicom.dcmread(path)
    assert ds.PhotometricInterpretation == "RGB"
    np.testing.assert_array_equal(ds.pixel_array, frames)


def test_read_clip_sees_frames_rate_regions_and_patient_groups(project):
    from echoquality_core.dicom import read_clip

    keys_by_patient = defaultdict(set)
    for path in _clips(project):
        clip = read_clip(path, salt="test")
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        assert (clip.n_frames, clip.height, clip.width) == (N_FRAMES, HEIGHT, WIDTH)
        assert clip.fps == pytest.approx(ds.CineRate)
        assert clip.regions == [sector_box(HEIGHT, WIDTH)]
        assert clip.frames.shape == (N_FRAMES, HEIGHT, WIDTH, 3)
        assert clip.frames.any()
        keys_by_patient[ds.PatientID].add(clip.metadata["patient_key"])
        assert str(ds.PatientID) not in str(clip.metadata)
    assert all(len(keys) == 1 for keys in keys_by_patient.values())
    assert len(set().union(*keys_by_patient.values())) == len(keys_by_patient)


def test_labels_csv_is_balanced_relative_and_leaves_some_clips_unlabelled(project):
    from echoquality_core.labels.store import LabelStore

    assert (project / "labels.csv").read_text().splitlines()[0] == "video_path,quality_score"
    rows = _labels(project)
    assert all((project / r["video_path"]).is_file() for r in rows)
    assert all(not Path(r["video_path"]).is_absolute() for r in rows)
    scores = [float(r["quality_score"]) for r in rows]
    assert set(scores) == {0.0, 1.0} and abs(scores.count(0.0) - scores.count(1.0)) <= 1
    unlabelled = {p.relative_to(project).as_posix() for p in _clips(project)} - {
        r["video_path"] for r in rows}
    assert len(unlabelled) == round(0.2 * N_CLIPS)
    store = LabelStore(project / "labels.csv")
    assert store.paths() == [r["video_path"] for r in rows]
    assert "SYNTHETIC" in (project / "README.txt").read_text()


def test_each_fake_patient_has_several_clips_in_one_study(project):
    studies = defaultdict(set)
    for path in _clips(project):
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        assert str(ds.PatientName).startswith("DEMO^PATIENT")
        assert ds.PatientID.startswith("DEMO-P")
        studies[ds.PatientID].add(ds.StudyInstanceUID)
    assert len(studies) >= 2
    assert all(len(uids) == 1 for uids in studies.values())
    assert len({uid for uids in studies.values() for uid in uids}) == len(studies)
    clips_per_patient = defaultdict(int)
    for path in _clips(project):
        clips_per_patient[path.name.split("_")[0]] += 1
    assert all(2 <= n <= 5 for n in clips_per_patient.values())


@pytest.mark.parametrize("n_clips", range(1, 10))
def test_any_clip_count_gives_that_many_clips_with_patients_of_two_or_more(tmp_path, n_clips):
    csv_path = write_demo_project(tmp_path, n_clips=n_clips, n_frames=1, height=32, width=32)
    clips = _clips(tmp_path)
    assert len(clips) == n_clips
    per_patient = defaultdict(int)
    for path in clips:
        per_patient[path.name.split("_")[0]] += 1
    assert n_clips == 1 or min(per_patient.values()) >= 2
    assert len(_labels(tmp_path)) >= min(n_clips, 2) and csv_path == tmp_path / "labels.csv"


def test_same_seed_writes_identical_files_and_another_seed_does_not(tmp_path):
    def write(name: str, seed: int) -> dict[str, bytes]:
        root = tmp_path / name
        write_demo_project(root, n_clips=4, n_frames=3, height=64, width=80, seed=seed)
        return {p.relative_to(root).as_posix(): p.read_bytes()
                for p in sorted(root.rglob("*")) if p.is_file()}

    first, again, other = write("a", 0), write("b", 0), write("c", 1)
    assert first == again
    shared = first.keys() & other.keys()
    assert any(first[k] != other[k] for k in shared if k.endswith(".dcm"))


def test_rewriting_a_demo_project_drops_its_old_clips_but_not_other_files(tmp_path):
    write_demo_project(tmp_path, n_clips=6, n_frames=2, height=64, width=80)
    (tmp_path / "clips" / "mine.dcm").write_bytes(b"not ours")
    write_demo_project(tmp_path, n_clips=3, n_frames=2, height=64, width=80, unlabelled=0.0)
    names = sorted(p.name for p in (tmp_path / "clips").iterdir())
    assert len(names) == 4 and "mine.dcm" in names
    assert {r["video_path"] for r in _labels(tmp_path)} == {
        f"clips/{n}" for n in names if n != "mine.dcm"}


def _fan_statistics(frames: np.ndarray) -> dict[str, float]:
    """Simple image measures inside the sector: brightness spread, fine detail, dark share,
    and how dark the left ventricle's usual place is."""
    height, width = frames.shape[1:3]
    x0, y0, x1, y1 = sector_box(height, width)
    apex_x, radius = (x0 + x1) / 2, (y1 - y0)
    yy, xx = np.mgrid[0:height, 0:width]
    depth = np.hypot(xx - apex_x, yy - y0) / radius
    fan = (depth < 0.95) & (np.abs(np.arctan2(xx - apex_x, yy - y0)) < math.radians(40))
    grey = frames[..., 0].astype(np.float32)
    detail = np.mean([np.abs(cv2.Laplacian(g, cv2.CV_32F))[fan].mean() for g in grey])
    lv_y, lv_x = round(y0 + 0.42 * radius), round(apex_x + 0.12 * radius)
    return {
        "spread": float(np.percentile(grey[:, fan], 95) - np.percentile(grey[:, fan], 5)),
        "detail": float(detail),
        "dark": float((grey[:, fan] < 12).mean()),
        "lv": float(grey[:, lv_y - 4 : lv_y + 4, lv_x - 4 : lv_x + 4].mean()),
    }


def test_poor_quality_kinds_are_measurably_degraded():
    size = {"n_frames": 6, "height": 120, "width": 160}
    clips = {q: synthetic_clip(np.random.default_rng(7), q, **size) for q in QUALITIES}
    stats = {q: _fan_statistics(f) for q, f in clips.items()}
    good = stats["good"]
    assert good["lv"] < 20 and good["spread"] > 80  # dark chamber, bright walls
    assert stats["noise"]["detail"] > 1.5 * good["detail"] and stats["noise"]["lv"] > 50
    assert stats["blur"]["detail"] < 0.4 * good["detail"]
    assert stats["low_contrast"]["spread"] < 0.4 * good["spread"]
    assert stats["dropout"]["dark"] > good["dark"] + 0.25
    assert stats["off_axis"]["lv"] > good["lv"] + 20  # no chamber where the view should show it

    ARTIFACTS.mkdir(exist_ok=True)  # a contact sheet for a person to look at
    sheet = np.concatenate([clips[q][2] for q in ("good", *POOR_QUALITIES)], axis=1)
    cv2.imwrite(str(ARTIFACTS / "demo_kinds.png"), sheet[..., ::-1])


def test_square_is_drawn_only_in_the_requested_frames():
    rng = np.random.default_rng(0)
    frames = synthetic_clip(rng, "low_contrast", n_frames=4, height=64, width=80,
                            square={"x": 30, "y": 20, "size": 8, "frames": [1, 2]})
    assert (frames[1:3, 20:28, 30:38] == 255).all()
    assert not (frames[[0, 3], 20:28, 30:38] == 255).all()
    every = synthetic_clip(np.random.default_rng(0), "good", n_frames=2, height=64, width=80,
                           square=(5, 40, 6))
    assert (every[:, 40:46, 5:11] == 255).all()


def test_clip_has_a_beating_heart_and_black_around_the_overlays():
    frames = synthetic_clip(np.random.default_rng(1), "good", n_frames=30, height=120,
                            width=160, fps=30.0)  # one second: at least one beat at 60-90 bpm
    x0, y0, x1, y1 = sector_box(120, 160)
    radius, apex_x = y1 - y0, (x0 + x1) / 2
    lv_box = frames[:, y0 + round(0.1 * radius) : y0 + round(0.72 * radius),
                    round(apex_x) : round(apex_x + 0.3 * radius), 0]
    blood = (lv_box < 15).mean(axis=(1, 2))  # the dark share of the LV's box
    assert blood.max() > 1.2 * blood.min()  # it fills and empties
    assert (frames[:, 90:100, 0:4] == 0).all()  # left of the ECG and the fan: black
    ecg_band = frames[:, round(0.87 * 120):].astype(int)
    assert ((ecg_band[..., 1] - ecg_band[..., 0]) > 100).any()  # the ECG trace is green


@pytest.mark.parametrize("bad", [
    lambda: synthetic_clip(np.random.default_rng(0), "awful"),
    lambda: write_dicom_clip("x.dcm", np.zeros((2, 8, 8, 3), np.float32)),
    lambda: write_dicom_clip("x.dcm", np.zeros((2, 8, 8, 3), np.uint8), compression="zip"),
    lambda: write_demo_project("unused", n_clips=0),
    lambda: write_demo_project("unused", unlabelled=1.0),
])
def test_bad_arguments_are_refused_with_a_clear_error(bad, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError, match="must"):
        bad()
    assert not any(tmp_path.iterdir())
