"""DICOMweb against a real Orthanc: search and import (byte-identical pixel data, resume after
kill -9, cancel, per-instance errors, wrong password), results back as Comprehensive SR by
STOW-RS (found again by QIDO-RS, parsed by highdicom), credentials from env or keyring, and no
patient data in any output."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import highdicom as hd
import pydicom
import pytest
import requests
from keyring.backend import KeyringBackend

from echoquality_core.cli.main import main
from echoquality_core.pacs import (
    PacsConnection,
    clip_path,
    import_clips,
    import_studies,
    list_clips,
    search_studies,
)
from echoquality_core.pacs.connection import Credentials, PacsAuthError, find_credentials
from echoquality_core.pacs.sr import QUALITY_SCORE, PASS_THRESHOLD
from orthanc_server import PASSWORD, USER
from pacs_fixtures import SENTINELS

WORKTREE = Path(__file__).resolve().parents[3]


def _clips(root: Path) -> list[Path]:
    return sorted((root / "pacs").rglob("*.dcm"))


def _assert_no_patient_data(*texts: str, paths: list[Path] = ()) -> None:
    for sentinel in SENTINELS:
        for text in texts:
            assert sentinel not in text, f"{sentinel!r} leaked"
        for path in paths:
            assert sentinel not in str(path)


def test_search_by_date_and_modality_lists_counts_not_names(orthanc, pacs_files, pacs_env):
    conn = PacsConnection(orthanc.url)
    studies = search_studies(conn, since="2024-02-01", modality="US")
    expected = {f.study_uid for f in pacs_files if f.expected}
    assert expected <= {s.study_uid for s in studies}
    assert all(s.date is not None and s.date.isoformat() >= "2024-02-01" for s in studies)
    assert all("US" in s.modalities for s in studies)
    march = next(s for s in studies if s.date.isoformat() == "2024-03-15")
    assert march.n_instances >= 2 and march.n_series >= 2
    _assert_no_patient_data(repr(studies))
    until = search_studies(conn, until="2024-01-31", modality="US")
    assert {s.date.isoformat() for s in until} == {"2024-01-05"}


def test_import_gets_exactly_the_us_clips_with_identical_pixel_data(
        orthanc, pacs_files, pacs_env, tmp_path, capsys, caplog):
    project = tmp_path / "project"
    assert main(["pacs", "import", "--url", orthanc.url, "--since", "2024-02-01",
                 "--modality", "US", "--into", str(project)]) == 0
    out, err = capsys.readouterr()
    expected = [f for f in pacs_files if f.expected]
    got = {str(pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID): p
           for p in _clips(project)}
    assert set(got) == {f.sop_uid for f in expected}
    for f in expected:
        original, copy = pydicom.dcmread(f.path), pydicom.dcmread(got[f.sop_uid])
        assert copy.file_meta.TransferSyntaxUID == original.file_meta.TransferSyntaxUID
        assert copy.PixelData == original.PixelData  # byte-identical, not transcoded
        assert got[f.sop_uid].read_bytes() == f.path.read_bytes()  # the whole file, as stored
    for path in got.values():  # one folder per study, names from hashed UIDs
        assert len(path.stem) == 16 and len(path.parent.name) == 16
    assert f"Imported {len(expected)} clip(s)" in out
    _assert_no_patient_data(out, err, caplog.text, paths=_clips(project))
    # a study given by UID, any date
    only = tmp_path / "one"
    old = next(f for f in pacs_files if f.date == "20240105")
    assert main(["pacs", "import", "--url", orthanc.url, "--study", old.study_uid,
                 "--into", str(only)]) == 0
    assert [pydicom.dcmread(p).SOPInstanceUID for p in _clips(only)] == [old.sop_uid]


def test_an_import_killed_midway_resumes_without_downloading_again(
        orthanc, pacs_files, pacs_env, tmp_path):
    project = tmp_path / "project"
    command = [sys.executable, "-c", "import sys; from echoquality_core.cli.main import main; "
               "sys.exit(main())", "pacs", "import", "--url", orthanc.url, "--since",
               "2024-02-01", "--workers", "1", "--into", str(project)]
    env = dict(os.environ, PYTHONPATH=str(WORKTREE))
    child = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while not _clips(project) and time.monotonic() < deadline and child.poll() is None:
        time.sleep(0.005)
    child.kill()  # SIGKILL: no clean-up at all
    child.wait()
    before = {p: (p.stat().st_ino, p.stat().st_mtime_ns) for p in _clips(project)}
    assert before, "the import was killed before it stored a clip"
    n_expected = sum(f.expected for f in pacs_files)
    conn = PacsConnection(orthanc.url)
    again = import_studies(conn, search_studies(conn, since="2024-02-01"), project)
    assert not again.failed
    assert len(again.skipped) + len(again.downloaded) == n_expected
    for path, stamp in before.items():  # not downloaded again
        assert path in again.skipped
        assert (path.stat().st_ino, path.stat().st_mtime_ns) == stamp
    assert len(_clips(project)) == n_expected
    assert not list(project.rglob(".*.tmp"))  # no half-written file left
    third = import_studies(conn, search_studies(conn, since="2024-02-01"), project)
    assert third.downloaded == [] and len(third.skipped) == n_expected


def test_cancel_progress_and_a_clear_error_per_failed_instance(
        orthanc, pacs_files, pacs_env, tmp_path):
    conn = PacsConnection(orthanc.url)
    refs = [r for s in search_studies(conn, since="2024-02-01") for r in list_clips(conn, s.study_uid)]
    seen = []
    result = import_clips(conn, refs, tmp_path, workers=1,
                          progress=lambda d, t, n: seen.append((d, t)),
                          cancel=lambda: len(seen) >= 3)
    assert result.cancelled and 1 <= len(result.downloaded) < len(refs)
    assert seen[-1][1] == len(refs) and [d for d, _ in seen] == sorted(d for d, _ in seen)
    missing = refs[0].__class__(refs[0].study_uid, refs[0].series_uid, "1.2.3.4.5.6.7.8.9",
                                refs[0].sop_class_uid, 2)
    result = import_clips(conn, [missing, *refs], tmp_path, workers=3)
    assert len(result.failed) == 1 and len(result.clips) == len(refs)
    name, reason = result.failed[0]
    assert name == clip_path(tmp_path, missing).name and "HTTP 404" in reason
    assert "\n" not in reason


def test_a_wrong_password_is_one_clear_line(orthanc, pacs_files, monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("ECHOQUALITY_PACS_USER", USER)
    monkeypatch.setenv("ECHOQUALITY_PACS_PASSWORD", "not-the-password")
    code = main(["pacs", "import", "--url", orthanc.url, "--since", "2024-02-01",
                 "--into", str(tmp_path / "p")])
    err = capsys.readouterr().err
    assert code == 2
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert "refused" in err and "HTTP 401" in err and "not-the-password" not in err
    with pytest.raises(PacsAuthError):
        PacsConnection(orthanc.url).check()
    monkeypatch.setenv("ECHOQUALITY_PACS_PASSWORD", PASSWORD)
    assert main(["pacs", "import", "--url", "http://127.0.0.1:1/dicom-web", "--into",
                 str(tmp_path / "p")]) == 2
    assert "cannot reach the PACS" in capsys.readouterr().err
    assert main(["pacs", "import", "--url", f"http://u:p@127.0.0.1:{orthanc.port}/dicom-web",
                 "--into", str(tmp_path / "p")]) == 2
    assert "must not contain a user name or password" in capsys.readouterr().err


class _MemoryKeyring(KeyringBackend):
    """A real keyring backend that keeps its entries in memory (no OS keyring in CI)."""

    priority = 1

    def __init__(self):
        super().__init__()
        self.entries: dict[tuple[str, str], str] = {}

    def get_password(self, service, username):
        return self.entries.get((service, username))

    def set_password(self, service, username, password):
        self.entries[(service, username)] = password

    def delete_password(self, service, username):
        self.entries.pop((service, username), None)


def test_credentials_from_the_keyring_open_the_pacs(orthanc, pacs_files, monkeypatch):
    import keyring

    from echoquality_core.pacs.connection import store_in_keyring

    for name in ("ECHOQUALITY_PACS_USER", "ECHOQUALITY_PACS_PASSWORD", "ECHOQUALITY_PACS_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    previous = keyring.get_keyring()
    keyring.set_keyring(_MemoryKeyring())
    try:
        with pytest.raises(PacsAuthError):
            PacsConnection(orthanc.url).check()  # nothing stored: no credentials sent
        store_in_keyring(orthanc.url, Credentials(USER, PASSWORD))
        creds = find_credentials(orthanc.url, user=USER)
        assert creds.user == USER and PASSWORD not in repr(creds)
        PacsConnection(orthanc.url, creds).check()
        monkeypatch.setenv("ECHOQUALITY_PACS_USER", USER)
        PacsConnection(orthanc.url).check()  # user from env, password from the keyring
    finally:
        keyring.set_keyring(previous)


def _score_project(project: Path, checkpoint: Path, out: Path) -> None:
    assert main(["score", str(project), "--model", str(checkpoint), "--out", str(out),
                 "--workers", "0", "--device", "cpu"]) == 0


def test_results_sent_by_stow_are_found_by_qido_and_parse_with_the_score(
        orthanc, pacs_files, pacs_env, tiny_checkpoint, tmp_path, capsys, caplog):
    project = tmp_path / "project"
    feb = next(f for f in pacs_files if f.date == "20240210")
    assert main(["pacs", "import", "--url", orthanc.url, "--study", feb.study_uid,
                 "--into", str(project)]) == 0
    scores = project / "scores.csv"
    _score_project(project, tiny_checkpoint, scores)
    table = __import__("pandas").read_csv(scores)
    assert main(["pacs", "send-results", "--scores", str(scores), "--url", orthanc.url,
                 "--model", str(tiny_checkpoint)]) == 0
    out, err = capsys.readouterr()
    assert "Sent 1 SR(s)" in out
    client = PacsConnection(orthanc.url).client()
    found = client.search_for_instances(study_instance_uid=feb.study_uid,
                                        search_filters={"Modality": "SR"})
    assert len(found) == 1
    series = found[0]["0020000E"]["Value"][0]
    sop = found[0]["00080018"]["Value"][0]
    ds = client.retrieve_instance(feb.study_uid, series, sop)
    source = pydicom.dcmread(feb.path, stop_before_pixels=True)
    assert ds.StudyInstanceUID == feb.study_uid and ds.PatientID == source.PatientID
    for keyword in ("PatientName", "PatientBirthDate", "StudyDate", "AccessionNumber"):
        assert ds.get(keyword) == source.get(keyword)  # consistent with its study
    assert "PixelData" not in ds and "InstitutionName" not in ds
    # the study still lists with its date (an SR with empty study values blanks it in QIDO-RS)
    (listed,) = search_studies(PacsConnection(orthanc.url), study_uids=[feb.study_uid])
    assert listed.date.isoformat() == "2024-02-10"
    sr = hd.sr.ComprehensiveSR.from_dataset(ds)
    group = sr.content.get_image_measurement_groups()[0]
    score = group.get_measurements(name=QUALITY_SCORE)[0].value
    assert score == pytest.approx(float(table["score"][0]), abs=1e-5)
    assert group.get_measurements(name=PASS_THRESHOLD)[0].value == pytest.approx(0.42)
    verdict = group.get_qualitative_evaluations()[0].value.meaning
    assert verdict == ("Image quality sufficient" if score >= 0.42
                       else "Image quality insufficient")
    ref = group.source_images[0].ReferencedSOPSequence[0]
    assert ref.ReferencedSOPInstanceUID == feb.sop_uid
    # sending again stores nothing new (same UIDs)
    assert main(["pacs", "send-results", "--scores", str(scores), "--url", orthanc.url,
                 "--model", str(tiny_checkpoint)]) == 0
    assert len(client.search_for_instances(study_instance_uid=feb.study_uid,
                                           search_filters={"Modality": "SR"})) == 1
    # or as files
    out_dir = tmp_path / "sr"
    assert main(["pacs", "send-results", "--scores", str(scores), "--out-dir", str(out_dir),
                 "--threshold", "0.5", "--model-version", "test-1"]) == 0
    (written,) = out_dir.glob("*.dcm")
    parsed = hd.sr.srread(written)
    assert parsed.content.get_image_measurement_groups()[0].get_measurements(
        name=PASS_THRESHOLD)[0].value == pytest.approx(0.5)
    out2, err2 = capsys.readouterr()
    _assert_no_patient_data(out, err, out2, err2, caplog.text, scores.read_text(),
                            paths=[*project.rglob("*"), written])


def test_send_results_refuses_bad_input_in_one_line(tmp_path, capsys):
    assert main(["pacs", "send-results", "--scores", str(tmp_path / "none.csv"),
                 "--out-dir", str(tmp_path), "--threshold", "0.5", "--model-version", "x"]) == 2
    assert "scores CSV not found" in capsys.readouterr().err
    (tmp_path / "s.csv").write_text("video_path,score\n")
    assert main(["pacs", "send-results", "--scores", str(tmp_path / "s.csv"),
                 "--out-dir", str(tmp_path)]) == 2
    assert "give --model" in capsys.readouterr().err


def test_orthanc_requires_the_password(orthanc, pacs_files):
    assert requests.get(f"{orthanc.url}/studies", timeout=5).status_code == 401
