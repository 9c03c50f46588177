"""File ▸ Export report: the run's HTML report is written in a background Worker, its progress
and outcome in the status bar; an incomplete run folder is one sentence there, not a crash."""
from __future__ import annotations

import shutil

import pytest
from PySide6.QtWidgets import QFileDialog

from echoquality_gui.review.report_export import NO_RUN, export_report


def _export_to(window, monkeypatch, path):
    monkeypatch.setattr(QFileDialog, "getSaveFileName",
                        staticmethod(lambda *_a, **_k: (str(path), "HTML report (*.html)")))
    messages: list[str] = []
    window.statusBar().messageChanged.connect(messages.append)
    return export_report(window, window.session), messages


def test_without_a_run_the_status_bar_says_what_to_do(studio_window, monkeypatch, tmp_path):
    writer, _ = _export_to(studio_window, monkeypatch, tmp_path / "r.html")
    assert writer is None
    assert studio_window.statusBar().currentMessage() == NO_RUN


@pytest.mark.slow
def test_report_of_the_current_run_is_written_with_progress(
        studio_window, open_project, trained_run, monkeypatch, qtbot, tmp_path):
    root, end = trained_run
    session = studio_window.session
    open_project(root)
    session.set_model(end.best_checkpoint, run_dir=end.run_dir)
    out = tmp_path / "report.html"
    writer, messages = _export_to(studio_window, monkeypatch, out)
    assert writer is not None
    qtbot.waitUntil(lambda: any(m.startswith("Report written to") for m in messages),
                    timeout=120000)
    assert any(m.startswith("Report: ") for m in messages)  # progress arrived as it went
    assert out.is_file() and "<html" in out.read_text(encoding="utf-8").lower()

    broken = tmp_path / "run-without-predictions"
    shutil.copytree(end.run_dir, broken)
    (broken / "test_predictions.csv").unlink()
    session.set_model(end.best_checkpoint, run_dir=broken)
    messages.clear()
    export_report(studio_window, session)
    qtbot.waitUntil(lambda: any(m.startswith("The report was not written") for m in messages),
                    timeout=60000)
    assert broken.name in messages[-1]
