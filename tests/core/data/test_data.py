"""Training data: the on-disk clip cache, the Dataset, failing clips, the patient split."""
from __future__ import annotations

import csv
from collections import Counter

import numpy as np
import pytest
import torch

from echoquality_core.data.clips import (
    ClipCache,
    EchoDataset,
    prepare_clips,
    save_split,
    split_by_patient,
)
from echoquality_core.demo.project import synthetic_clip, write_dicom_clip
from echoquality_core.dicom import DicomReadError, read_clip
from echoquality_core.data.preprocess import PreprocessParams, model_frames, normalize

PARAMS = PreprocessParams(n_frames=4, stride=1)


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    """Three small real DICOM clips (two good, one noisy)."""
    root = tmp_path_factory.mktemp("clips")
    rng = np.random.default_rng(0)
    paths = []
    for i, quality in enumerate(("good", "noise", "good")):
        frames = synthetic_clip(rng, quality, n_frames=6, height=64, width=80)
        paths.append(write_dicom_clip(root / f"clip{i}.dcm", frames, compression="none"))
    return paths


def _records(n_patients, seed=0):
    rng = np.random.default_rng(seed)
    records = []
    for p in range(n_patients):
        for c in range(int(rng.integers(1, 6))):
            records.append({"path": f"p{p}/c{c}.dcm", "label": float(rng.random() < 0.4),
                            "patient_key": f"pat{p:03d}", "study_key": f"st{p}"})
    return records


def _patients(records, idx):
    return {records[i]["patient_key"] for i in idx}


def test_split_never_puts_a_patient_in_two_splits():
    records = _records(40)
    split = split_by_patient(records, seed=3)
    train, val, test = (_patients(records, split[k]) for k in ("train", "val", "test"))
    assert not (train & val) and not (train & test) and not (val & test)
    assert sorted(split["train"] + split["val"] + split["test"]) == list(range(len(records)))


def test_split_is_reproducible_with_the_seed_and_changes_with_it():
    records = _records(40)
    assert split_by_patient(records, seed=7) == split_by_patient(records, seed=7)
    assert split_by_patient(records, seed=7) != split_by_patient(records, seed=8)


def test_split_is_stratified_and_sized_by_fraction():
    records = _records(60, seed=1)
    split = split_by_patient(records, (0.7, 0.15, 0.15), seed=0)
    n = len(records)
    overall = np.mean([r["label"] for r in records])
    for name, frac in (("train", 0.7), ("val", 0.15), ("test", 0.15)):
        idx = split[name]
        assert abs(len(idx) / n - frac) < 0.06, name
        share_good = np.mean([records[i]["label"] for i in idx])
        assert abs(share_good - overall) < 0.15, name
        assert {records[i]["label"] for i in idx} == {0.0, 1.0}, name


def test_split_with_three_groups_fills_every_split_and_val_test_get_both_classes_if_possible():
    three = [{"path": f"{i}.dcm", "label": float(i % 2), "patient_key": f"p{i}"} for i in range(3)]
    split = split_by_patient(three, seed=0)
    assert all(len(split[k]) == 1 for k in ("train", "val", "test"))

    # 8 single-clip patients, 3 good: every split can get a good and a poor clip
    eight = [{"path": f"{i}.dcm", "label": float(i < 3), "patient_key": f"p{i}"} for i in range(8)]
    for seed in range(20):
        split = split_by_patient(eight, (0.5, 0.25, 0.25), seed=seed)
        for name in ("train", "val", "test"):
            assert {eight[i]["label"] for i in split[name]} == {0.0, 1.0}, (seed, name)


def test_split_groups_by_study_then_by_file_when_no_patient_key():
    records = [{"path": f"{i}.dcm", "label": float(i % 2), "study_key": f"s{i // 4}"}
               for i in range(24)]
    records += [{"path": f"solo{i}.dcm", "label": float(i % 2)} for i in range(6)]
    split = split_by_patient(records, seed=1)
    for name in ("train", "val", "test"):
        studies = {records[i].get("study_key") for i in split[name]} - {None}
        others = [k for k in ("train", "val", "test") if k != name]
        for other in others:
            assert not studies & ({records[i].get("study_key") for i in split[other]} - {None})
    solo = [i for i, r in enumerate(records) if "study_key" not in r]
    assert sum(i in split[k] for k in ("train", "val", "test") for i in solo) == len(solo)


def test_save_split_writes_paths_splits_labels_and_no_patient_keys(tmp_path):
    records = _records(12)
    split = split_by_patient(records, seed=0)
    out = save_split(split, records, tmp_path / "split.csv")
    rows = list(csv.DictReader(out.open()))
    assert list(rows[0]) == ["video_path", "split", "label"]
    assert Counter(r["split"] for r in rows) == {k: len(v) for k, v in split.items() if v}
    assert {r["video_path"] for r in rows} == {r["path"] for r in records}
    assert "pat0" not in out.read_text()


def test_dataset_item_is_normalised_model_frames_with_label_and_path(clips, tmp_path):
    ds = EchoDataset(clips, [1, 0, 1], params=PARAMS, cache_dir=tmp_path, return_path=True)
    video, label, path = ds[1]
    assert video.dtype == torch.float32 and video.shape == (3, 4, 112, 112)
    assert label.dtype == torch.float32 and float(label) == 0.0
    assert path == str(clips[1])
    expected = normalize(model_frames(read_clip(clips[1]).frames, PARAMS))
    np.testing.assert_array_equal(video.numpy(), expected)
    assert len(ds) == 3 and ds.labels == [1.0, 0.0, 1.0]


def test_dataset_transform_is_applied_to_the_normalised_tensor(clips):
    ds = EchoDataset(clips[:1], [1], transform=lambda v: v * 0 + 7, params=PARAMS)
    video, _ = ds[0]
    assert torch.all(video == 7)


def test_cache_decodes_each_clip_once_then_serves_from_disk(clips, tmp_path):
    ds = EchoDataset(clips, [1, 0, 1], params=PARAMS, cache_dir=tmp_path)
    first = [ds[i][0] for i in range(len(ds))]
    assert ds.cache.misses == 3 and ds.cache.hits == 0
    assert len(list(tmp_path.glob("*.npy"))) == 3
    second = [ds[i][0] for i in range(len(ds))]  # second epoch: no DICOM decoding
    assert ds.cache.misses == 3 and ds.cache.hits == 3
    assert all(torch.equal(a, b) for a, b in zip(first, second))

    fresh = ClipCache(tmp_path, PARAMS)  # a new run finds the cache on disk
    np.testing.assert_array_equal(fresh.get(clips[0]), first_frames := fresh.get(clips[0]))
    assert fresh.misses == 0 and fresh.hits == 2 and first_frames.dtype == np.uint8


def test_cache_key_follows_file_content_and_settings(clips, tmp_path):
    work = tmp_path / "clip.dcm"
    work.write_bytes(clips[0].read_bytes())
    cache = ClipCache(tmp_path / "cache", PARAMS)
    cache.get(work)
    other = ClipCache(tmp_path / "cache", PreprocessParams(n_frames=2, stride=1))
    assert other.get(work).shape[0] == 2 and other.misses == 1  # other settings: own entry

    work.write_bytes(clips[1].read_bytes())  # same path, new content
    frames = cache.get(work)
    assert cache.misses == 2
    np.testing.assert_array_equal(frames, model_frames(read_clip(clips[1]).frames, PARAMS))


def test_cache_file_is_rebuilt_if_damaged(clips, tmp_path):
    cache = ClipCache(tmp_path, PARAMS)
    good = cache.get(clips[0])
    cache.entry(clips[0]).write_bytes(b"not an npy file")
    np.testing.assert_array_equal(cache.get(clips[0]), good)
    assert cache.misses == 2


def test_corrupt_clip_is_reported_and_left_out_never_zero_filled(clips, tmp_path):
    corrupt = tmp_path / "broken.dcm"
    corrupt.write_bytes(clips[0].read_bytes()[:2000])  # header intact, pixel data cut off
    missing = tmp_path / "gone.dcm"
    seen = []
    ok, failures = prepare_clips(
        [clips[0], corrupt, missing, clips[1]], PARAMS, tmp_path / "cache",
        progress=lambda done, total, path: seen.append((done, total)),
    )
    assert ok == [str(clips[0]), str(clips[1])]
    assert [p for p, _ in failures] == [str(corrupt), str(missing)]
    assert all(msg.startswith(name) for (_, msg), name in zip(failures, ["broken.dcm", "gone.dcm"]))
    assert seen == [(1, 4), (2, 4), (3, 4), (4, 4)]

    ds = EchoDataset([corrupt], [1], params=PARAMS, cache_dir=tmp_path / "cache")
    with pytest.raises(DicomReadError, match="broken.dcm"):
        ds[0]
    assert not list((tmp_path / "cache").rglob("*.tmp"))
