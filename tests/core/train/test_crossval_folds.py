"""Cross-validation folds on real DICOM clips: grouped by the patient key read from the headers,
both classes in every fold of an imbalanced project, deterministic, and a clear refusal when a
class is too small for k folds."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from echoquality_core.train.folds import FoldError, _quota_folds, make_folds
from echoquality_core.demo.project import synthetic_clip, write_dicom_clip
from echoquality_core.dicom import read_clip


@pytest.fixture(scope="module")
def imbalanced(tmp_path_factory) -> list[dict]:
    """24 clips of 10 patients (2-3 each), 4 poor clips in 4 different patients; records as
    the cross-validation builds them (patient key from the DICOM header)."""
    root = tmp_path_factory.mktemp("imbalanced")
    rng = np.random.default_rng(0)
    sizes = [3, 3, 3, 2, 2, 2, 2, 3, 2, 2]
    poor_patients = {1, 4, 6, 9}
    records = []
    for patient, size in enumerate(sizes):
        for clip in range(size):
            poor = patient in poor_patients and clip == 0
            path = write_dicom_clip(
                root / f"p{patient}_c{clip}.dcm",
                synthetic_clip(rng, "noise" if poor else "good", n_frames=2, height=32,
                               width=40),
                compression="none", patient_id=f"PAT-{patient}", patient_name=f"P{patient}^X")
            meta = read_clip(path).metadata
            records.append({"path": path.name, "label": 0.0 if poor else 1.0,
                            "patient_key": meta["patient_key"], "study_key": meta["study_key"]})
    assert len(records) == 24 and sum(r["label"] == 0 for r in records) == 4
    return records


def _check(records, folds, k):
    assert len(folds) == k
    assert sorted(i for f in folds for i in f) == list(range(len(records)))  # each clip once
    fold_of = {}
    for n, fold in enumerate(folds):
        labels = {records[i]["label"] for i in fold}
        assert labels == {0.0, 1.0}, f"fold {n} lacks a class"
        for i in fold:
            key = records[i]["patient_key"]
            assert fold_of.setdefault(key, n) == n, "a patient is in two folds"


@pytest.mark.parametrize("k", [2, 3, 4])
def test_folds_are_grouped_by_patient_and_each_has_both_classes(imbalanced, k):
    folds, method = make_folds(imbalanced, k, seed=7)
    _check(imbalanced, folds, k)
    assert method in ("StratifiedGroupKFold", "quota")


def test_folds_are_deterministic_with_a_seed(imbalanced):
    assert make_folds(imbalanced, 4, seed=3) == make_folds(imbalanced, 4, seed=3)
    seeds = {str(make_folds(imbalanced, 3, seed=s)[0]) for s in range(6)}
    assert len(seeds) > 1  # the seed matters


def test_quota_assignment_gives_both_classes_where_it_is_used(imbalanced):
    y = np.array([r["label"] >= 0.5 for r in imbalanced])
    groups = [r["patient_key"] for r in imbalanced]
    folds = _quota_folds(y, groups, 4, seed=1)
    _check(imbalanced, folds, 4)
    assert folds == _quota_folds(y, groups, 4, seed=1)


def test_too_few_poor_patients_for_k_folds_is_refused_with_a_clear_message(imbalanced):
    with pytest.raises(FoldError, match=r"only 4 patient\(s\) have poor clips; 5-fold .*"
                                         r"--folds 4"):
        make_folds(imbalanced, 5)
    with pytest.raises(FoldError, match="at least 2 folds"):
        make_folds(imbalanced, 1)


def test_clips_without_patient_key_are_their_own_group(imbalanced):
    records = [dict(r, patient_key=None, study_key=None) for r in imbalanced]
    folds, _ = make_folds(records, 4, seed=0)
    assert sorted(i for f in folds for i in f) == list(range(24))
    assert all({records[i]["label"] for i in f} == {0.0, 1.0} for f in folds)


def test_a_fold_split_file_feeds_the_trainer_its_exact_split(imbalanced, tmp_path: Path):
    from echoquality_core.train.folds import write_fold_split
    from echoquality_core.data.clips import load_split

    folds, _ = make_folds(imbalanced, 3, seed=0)
    sizes = write_fold_split(tmp_path / "split.csv", imbalanced, folds[1], 0.25, seed=0)
    split = load_split(tmp_path / "split.csv", imbalanced)
    assert split["test"] == folds[1] and sizes["test"] == len(folds[1])
    assert sorted(split["train"] + split["val"] + split["test"]) == list(range(24))
    train_keys = {imbalanced[i]["patient_key"] for i in split["train"]}
    assert not train_keys & {imbalanced[i]["patient_key"] for i in split["val"]}
