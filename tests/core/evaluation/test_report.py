"""The run report (echoquality_core.evaluation.report, `echoquality report`): every section, plots and
GradCAM stills embedded, opened by a real browser engine when Debian's chromium is installed,
and no patient name from the DICOM headers anywhere in it."""
from __future__ import annotations

import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest

from echoquality_core.evaluation.report import SECTIONS

SENTINEL = "ZZSENTINEL^PATIENTNAME"


class _Outline(HTMLParser):
    """Section ids and the images (data URIs) of an HTML document."""

    def __init__(self):
        super().__init__()
        self.sections: list[str] = []
        self.images: list[str] = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "section":
            self.sections.append(attrs.get("id", ""))
        if tag == "img":
            self.images.append(attrs.get("src", ""))


def _sentinel_project(trained_run, tmp_path) -> tuple[Path, Path]:
    """A copy of the trained project whose every clip carries the sentinel patient name."""
    from echoquality_core import read_clip
    from echoquality_core.demo.project import write_dicom_clip
    from echoquality_core.dicom import find_clips

    root, end = trained_run
    copy = Path(shutil.copytree(root, tmp_path / "project"))
    for path in find_clips(copy):
        clip = read_clip(path)
        write_dicom_clip(path, clip.frames, fps=clip.fps, compression="none",
                         patient_name=SENTINEL, patient_id="ZZSENTINEL-ID")
    return copy, Path(end.run_dir)


@pytest.mark.slow
def test_cli_report_has_every_section_and_no_patient_name(trained_run, tmp_path,
                                                          one_torch_thread):
    project, run_dir = _sentinel_project(trained_run, tmp_path)
    import pydicom

    first = next(p for p in project.rglob("*.dcm"))
    assert str(pydicom.dcmread(first).PatientName) == SENTINEL  # the sentinel is really there
    out = tmp_path / "out" / "report.html"
    done = subprocess.run([sys.executable, "-m", "echoquality_core", "report", "--run",
                           str(run_dir), "--out", str(out), "--project", str(project)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    html = out.read_text(encoding="utf-8")
    outline = _Outline()
    outline.feed(html)
    assert outline.sections == list(SECTIONS)
    assert len(outline.images) >= 5  # ROC, PR, calibration, histogram, confusion (+ GradCAM)
    assert all(src.startswith("data:image/png;base64,") for src in outline.images)
    assert "http://" not in html and "https://" not in html and "file:" not in html
    for word in ("ZZSENTINEL", "PATIENTNAME", "DEMO^PATIENT", "ZZSENTINEL-ID"):
        assert word not in html
    assert "95% CI" in html and "Confusion matrix" in html
    if "false positive" in html or "false negative" in html:
        assert "GradCAM of" in html  # a still per disagreement
    _render_in_chromium(out, tmp_path)


def _render_in_chromium(page: Path, tmp_path: Path) -> None:
    """Dump the DOM with headless chromium (when installed) and find every section in it."""
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        return  # html.parser above has checked the document
    done = subprocess.run(
        [browser, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
         f"--user-data-dir={tmp_path / 'chromium'}", "--dump-dom", page.as_uri()],
        capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    outline = _Outline()
    outline.feed(done.stdout)
    assert outline.sections == list(SECTIONS)


def test_cli_report_refuses_a_folder_without_a_run(tmp_path):
    done = subprocess.run([sys.executable, "-m", "echoquality_core", "report", "--run",
                           str(tmp_path), "--out", str(tmp_path / "r.html")],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "test_predictions.csv" in done.stderr
    assert "Traceback" not in done.stderr


def test_report_settings_keep_their_significant_digits_and_metrics_their_intervals():
    """Issue 21.7: learning_rate 1e-4 and weight_decay 1e-5 were shown as 0.000."""
    import numpy as np

    from echoquality_core.evaluation.metrics import metrics_from_scores
    from echoquality_core.evaluation.report import ReportData, render_report
    from echoquality_core.evaluation.stats import metrics_with_ci

    labels = np.array([0, 0, 1, 1, 1, 0], dtype=float)
    scores = np.array([.2, .6, .7, .9, .4, .1])
    data = ReportData(
        run_name="r", threshold=0.5, labels=labels, scores=scores,
        rels=[f"c{i}.dcm" for i in range(6)], metrics=metrics_from_scores(labels, scores, 0.5),
        estimates=metrics_with_ci(labels, scores, None, 0.5), basis="Test split of 6 clip(s)",
        settings={"learning_rate": 1e-4, "weight_decay": 1e-5, "epochs": 10},
        split_counts={})
    html = render_report(data)
    assert "<td>learning_rate</td><td>0.0001</td>" in html
    assert "<td>weight_decay</td><td>1e-05</td>" in html
    assert "<td>epochs</td><td>10</td>" in html and "0.000<" not in html
    assert "patient-level bootstrap, 1000 resamples" in html
