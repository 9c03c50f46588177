"""File ▸ Import from PACS… against a real Orthanc: search by date and modality shows the
studies with counts (no patient names), the ticked studies are imported in the background with
progress, the project opens with the clips, and nothing secret or personal reaches the
settings."""
from __future__ import annotations

from pathlib import Path

import pydicom
from PySide6.QtCore import QDate, Qt

from echoquality_gui.pacs.dialog import PacsImportDialog, show_pacs_dialog
from orthanc_server import PASSWORD, USER
from pacs_fixtures import SENTINELS


def _menu_action(window, text: str):
    file_menu = window.menuBar().actions()[0].menu()
    return next(a for a in file_menu.actions() if a.text() == text)


def test_import_from_pacs_dialog_searches_imports_and_opens_the_project(
        qtbot, studio_window, orthanc, pacs_files, tmp_path, screenshot, monkeypatch):
    for name in ("ECHOQUALITY_PACS_USER", "ECHOQUALITY_PACS_PASSWORD", "ECHOQUALITY_PACS_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    assert _menu_action(studio_window, "Import from PACS…") is not None
    dialog = show_pacs_dialog(studio_window)
    qtbot.addWidget(dialog)
    assert isinstance(dialog, PacsImportDialog)
    dialog.url.setText(orthanc.url)
    dialog.user.setText(USER)
    dialog.password.setText(PASSWORD)
    dialog.since.setDate(QDate(2024, 2, 1))
    dialog.until.setDate(QDate(2024, 3, 31))
    with qtbot.waitSignal(dialog.search_button.clicked, timeout=1000):
        dialog.search_button.click()
    qtbot.waitUntil(lambda: dialog.worker is None and dialog.table.rowCount() > 0, timeout=20000)
    still = next(f for f in pacs_files if f.path.name == "US1_J2KR.dcm")  # a US study, no clip
    expected_studies = {f.study_uid for f in pacs_files if f.expected} | {still.study_uid}
    assert {s.study_uid for s in dialog.studies} == expected_studies
    march = next(r for r, s in enumerate(dialog.studies) if s.date.isoformat() == "2024-03-15")
    assert dialog.table.item(march, 4).text() == "2"  # instances
    shown = " ".join(dialog.table.item(r, c).text() for r in range(dialog.table.rowCount())
                     for c in range(dialog.table.columnCount()))
    assert not any(s in shown for s in SENTINELS)
    dialog.table.item(march, 0).setCheckState(Qt.CheckState.Unchecked)  # leave one out
    project = tmp_path / "project"
    dialog.folder.setText(str(project))
    dialog.show()
    screenshot(dialog, "pacs_dialog.png")
    with qtbot.waitSignal(dialog.imported, timeout=60000) as imported:
        dialog.import_button.click()
        assert dialog.cancel_button.isEnabled()
    assert imported.args == [str(project)]
    qtbot.waitUntil(lambda: dialog.worker is None, timeout=5000)
    n = sum(f.expected for f in pacs_files) - 2  # the two March clips left out
    assert f"{n} clip(s) imported" in dialog.status.text()
    qtbot.waitUntil(lambda: studio_window.session.project is not None
                    and Path(studio_window.session.project.root) == project.resolve()
                    and len(studio_window.session.project.clips) == n, timeout=20000)
    got = {str(pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID)
           for p in (project / "pacs").rglob("*.dcm")}
    assert len(got) == n and got < {f.sop_uid for f in pacs_files if f.expected}
    from echoquality_gui.common import settings

    settings.app_settings().sync()
    stored = Path(settings.app_settings().fileName()).read_text()
    assert orthanc.url in stored and PASSWORD not in stored and USER not in stored
    assert not any(s in stored for s in SENTINELS)
    dialog.close()


def test_a_wrong_password_and_a_bad_url_are_shown_in_the_dialog(
        qtbot, qapp, isolated_settings, orthanc, pacs_files):
    dialog = PacsImportDialog()
    qtbot.addWidget(dialog)
    dialog.url.setText("not a url")
    dialog.search()
    assert "not an http(s) DICOMweb URL" in dialog.status.text()
    dialog.url.setText(orthanc.url)
    dialog.user.setText(USER)
    dialog.password.setText("wrong")
    dialog.search()
    qtbot.waitUntil(lambda: dialog.worker is None and "refused" in dialog.status.text(),
                    timeout=20000)
    assert "HTTP 401" in dialog.status.text() and not dialog.import_button.isEnabled()
