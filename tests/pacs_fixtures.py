"""Fixtures of the PACS tests: a real Orthanc (session-wide) holding demo clips and pydicom's
ultrasound files, every one re-written with a sentinel patient name, ID and birth date so
that tests can search the outputs for them."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file

from orthanc_server import PASSWORD, USER, OrthancServer, unavailable_reason

SENTINEL_NAME = "Zzsentinel^Quintessa"
SENTINEL_BIRTH = "19020304"
SENTINEL_ID = "EQSENT-4711"
SENTINELS = ("Zzsentinel", "Quintessa", SENTINEL_BIRTH, SENTINEL_ID)


@dataclasses.dataclass
class Uploaded:
    """One uploaded file and what the import should make of it."""

    path: Path
    sop_uid: str
    study_uid: str
    date: str
    expected: bool  # a US clip dated 2024-02-01 or later


def _sentinel(ds: pydicom.Dataset, date: str, patient: int) -> None:
    ds.PatientName = SENTINEL_NAME
    ds.PatientBirthDate = SENTINEL_BIRTH
    ds.PatientID = f"{SENTINEL_ID}-{patient}"
    ds.StudyDate = date


def write_clip(folder: Path, name: str, date: str, *, patient: int, seed: int,
               n_frames: int = 8, study_uid: str | None = None, instance: int = 1) -> Path:
    """A small demo clip (uint8 8x64x80 RGB, JPEG) with sentinel patient data."""
    from echoquality_core.demo.project import synthetic_clip, write_dicom_clip

    frames = synthetic_clip(np.random.default_rng(seed), "good", n_frames=n_frames, height=64,
                            width=80)
    path = write_dicom_clip(folder / name, frames, patient_id=f"{SENTINEL_ID}-{patient}",
                            patient_name=SENTINEL_NAME, study_uid=study_uid,
                            instance_number=instance)
    ds = pydicom.dcmread(path)
    _sentinel(ds, date, patient)
    ds.save_as(path, enforce_file_format=True)
    return path


def _testdata(folder: Path, name: str, date: str, patient: int) -> Path:
    ds = pydicom.dcmread(get_testdata_file(name))
    _sentinel(ds, date, patient)
    path = folder / name
    ds.save_as(path)
    return path


@pytest.fixture(scope="session")
def orthanc(tmp_path_factory):
    """A running Orthanc with DICOMweb on 127.0.0.1 (stopped after the session)."""
    reason = unavailable_reason()
    if reason:
        pytest.skip(reason)
    server = OrthancServer(tmp_path_factory.mktemp("orthanc")).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def pacs_files(orthanc, tmp_path_factory) -> list[Uploaded]:
    """Upload the test set once: demo clips in studies of distinct dates, pydicom's US clips,
    a US still image, a multi-frame MR and a CT."""
    folder = tmp_path_factory.mktemp("uploads")
    files = [
        (write_clip(folder, "old.dcm", "20240105", patient=1, seed=1), True),
        (write_clip(folder, "feb.dcm", "20240210", patient=2, seed=2), True),
        (write_clip(folder, "mar_a.dcm", "20240315", patient=3, seed=3), True),
        (write_clip(folder, "mar_b.dcm", "20240315", patient=3, seed=4, instance=2), True),
        (_testdata(folder, "OBXXXX1A_rle_2frame.dcm", "20240220", 4), True),
        (_testdata(folder, "color3d_jpeg_baseline.dcm", "20240222", 5), True),
        (_testdata(folder, "US1_J2KR.dcm", "20240225", 6), False),   # US still image
        (_testdata(folder, "emri_small.dcm", "20240225", 7), False),  # multi-frame MR
        (_testdata(folder, "CT_small.dcm", "20240225", 8), False),    # CT
    ]
    uploaded = []
    for path, clip in files:
        orthanc.upload(path)
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        uploaded.append(Uploaded(path, str(ds.SOPInstanceUID), str(ds.StudyInstanceUID),
                                 str(ds.StudyDate), clip and str(ds.StudyDate) >= "20240201"))
    return uploaded


@pytest.fixture
def pacs_env(monkeypatch):
    """The test user's credentials in the environment (and no token)."""
    monkeypatch.setenv("ECHOQUALITY_PACS_USER", USER)
    monkeypatch.setenv("ECHOQUALITY_PACS_PASSWORD", PASSWORD)
    monkeypatch.delenv("ECHOQUALITY_PACS_TOKEN", raising=False)


@pytest.fixture(scope="session")
def tiny_checkpoint(random_model, tmp_path_factory) -> Path:
    """A seeded, randomly initialised R(2+1)D-18 that sees 4 frames of 48x48 (fast on a CPU)."""
    from echoquality_core.model.network import save_checkpoint
    from echoquality_core.data.preprocess import PreprocessParams

    path = tmp_path_factory.mktemp("model") / "best.pt"
    return save_checkpoint(random_model(0), path, threshold=0.42,
                           preprocess=PreprocessParams(n_frames=4, stride=1, size=48))
