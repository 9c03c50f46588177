"""One owner for the project's paths (ProjectFolder) and one patient key (data.patients)."""
from __future__ import annotations

import os
from collections import defaultdict

import pydicom
import pytest

from echoquality_core.data.patients import patient_group, patient_groups
from echoquality_core.demo.project import write_demo_project
from echoquality_core.evaluation.calibration import read_project_decision
from echoquality_core.labels.folder import ProjectFolder, labels_table
from echoquality_core.labels.project import Project
from echoquality_core.runs.tracking import default_artifact_location, default_tracking_uri
from echoquality_core.train.config import TrainConfig


def test_the_app_the_trainer_and_cross_validation_share_the_project_paths(tmp_path):
    from echoquality_core.train.crossval import CrossValidator
    from echoquality_core.train.trainer import Trainer

    folder = ProjectFolder(tmp_path)
    folder.labels_csv.write_text("video_path,quality_score\n", encoding="utf-8")
    project = Project(tmp_path)
    config = TrainConfig(annotations_csv=str(folder.labels_csv))
    trainer, cv = Trainer(config), CrossValidator(config)
    assert project.folder.path == folder.path and project.raters.path == folder.rater_csv
    assert project.cache_dir == trainer.cache_dir == cv.cache_dir == tmp_path / ".echoquality/cache"
    assert trainer.run_dir.parent == folder.trained_models == tmp_path / "trained_models"
    assert cv.run_dir.parent == folder.crossval
    assert default_tracking_uri(tmp_path) == f"sqlite:///{folder.tracking_db.as_posix()}"
    assert default_artifact_location(tmp_path) == folder.artifacts.as_uri()
    folder.decision.parent.mkdir(parents=True)
    folder.decision.write_text('{"threshold": 0.4}', encoding="utf-8")
    assert read_project_decision(tmp_path) == {"threshold": 0.4}
    assert project.store.lock_path == folder.lock_file == tmp_path / ".labels.csv.lock"


def test_the_label_files_sit_beside_a_labels_csv_named_otherwise(tmp_path):
    folder = ProjectFolder.of_labels(tmp_path / "study.csv")
    assert folder.path == tmp_path
    assert folder.rater_csv == tmp_path / "study_by_rater.csv"
    assert folder.policy_file == tmp_path / "study_raters.json"
    assert folder.lock_file == tmp_path / ".study.csv.lock"
    assert labels_table(folder.rater_csv) == folder.labels_csv
    assert ProjectFolder.of_labels(folder.rater_csv).lock is folder.lock  # one lock object


def test_cross_validations_are_found_in_one_place(tmp_path):
    folder = ProjectFolder(tmp_path)
    for i, name in enumerate(("cv-old", "cv-new")):
        oof = folder.crossval / name / "oof_scores.csv"
        oof.parent.mkdir(parents=True)
        oof.write_text("video_path\n", encoding="utf-8")
        os.utime(oof, (1_000_000 + i, 1_000_000 + i))
    assert [p.parent.name for p in folder.crossvals()] == ["cv-new", "cv-old"]
    new = folder.crossval / "cv-new" / "oof_scores.csv"
    assert folder.find_crossval("cv-new") == folder.find_crossval(new.parent) == new
    assert folder.find_crossval(str(new)) == new
    with pytest.raises(ValueError, match="no cross-validation 'cv-x'"):
        folder.find_crossval("cv-x")


def test_one_patient_key_from_headers_or_records(tmp_path):
    write_demo_project(tmp_path, n_clips=8, n_frames=8, height=64, width=80)
    paths = sorted((tmp_path / "clips").glob("*.dcm"))
    (tmp_path / "clips" / "broken.dcm").write_bytes(b"not a DICOM file")
    groups = patient_groups([*paths, tmp_path / "clips" / "broken.dcm"])
    by_patient = defaultdict(set)
    for path, group in zip(paths, groups):
        by_patient[pydicom.dcmread(path, stop_before_pixels=True).PatientID].add(group)
        assert "DEMO" not in group  # the salted key, never the patient's id
    assert all(len(g) == 1 for g in by_patient.values())
    assert len(set(groups[:-1])) == len(by_patient) > 1
    assert groups[-1] == patient_group({"path": str(tmp_path / "clips" / "broken.dcm")})
    assert patient_group({"path": "a.dcm", "study_key": "s1"}) == "s1"
    assert patient_group({"path": "a.dcm", "patient_key": "k", "study_key": "s1"}) == "k"
