"""File ▸ Import from PACS…: search a DICOMweb PACS for studies (date range, modality,
accession, description), pick some, import their clips into a project folder in the background
with progress and Cancel, then open (or refresh) that project.

The dialog only shows and forwards: searching and importing are the core's ``search_studies``
and ``import_studies``, run in QThreads. The URL is remembered in the settings; the user name
and password are used for this session only (empty: ECHOQUALITY_PACS_USER/PASSWORD/TOKEN or the
OS keyring) and never stored.
"""
from __future__ import annotations

import threading
from pathlib import Path

from PySide6.QtCore import QDate, Qt, QThread, Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QDateEdit,
    QDialog,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from echoquality_core.pacs import (
    Credentials,
    PacsConnection,
    StudySummary,
    import_studies,
    search_studies,
)
from echoquality_core.pacs.connection import check_url
from echoquality_gui import settings

URL_KEY = "pacs/url"
COLUMNS = ("Date", "Description", "Modalities", "Series", "Instances")


class _SearchWorker(QThread):
    found = Signal(object)  # list[StudySummary]
    failed = Signal(str)

    def __init__(self, url: str, creds: Credentials | None, query: dict, parent=None):
        super().__init__(parent)
        self.url, self.creds, self.query = url, creds, query

    def run(self) -> None:
        try:  # the connection looks up the keyring: not in the GUI thread
            conn = PacsConnection(self.url, self.creds)
            self.found.emit(search_studies(conn, **self.query))
        except Exception as exc:  # any failure is shown in the dialog, never raised
            self.failed.emit(str(exc) or type(exc).__name__)


class _ImportWorker(QThread):
    progress = Signal(int, int)
    done = Signal(object)  # ImportResult
    failed = Signal(str)

    def __init__(self, url: str, creds: Credentials | None, studies: list[StudySummary],
                 into: Path, modality: str | None, parent=None):
        super().__init__(parent)
        self.url, self.creds, self.studies = url, creds, studies
        self.into, self.modality = into, modality
        self.cancel_event = threading.Event()

    def run(self) -> None:
        try:
            conn = PacsConnection(self.url, self.creds)
            self.into.mkdir(parents=True, exist_ok=True)
            self.done.emit(import_studies(
                conn, self.studies, self.into, modality=self.modality,
                progress=lambda d, t, _n: self.progress.emit(d, t), cancel=self.cancel_event))
        except Exception as exc:  # shown in the dialog
            self.failed.emit(str(exc) or type(exc).__name__)


class PacsImportDialog(QDialog):
    """Search, pick, import. ``imported(folder)`` is emitted when clips were imported."""

    imported = Signal(str)

    def __init__(self, project_root: str | Path | None = None, parent: QWidget | None = None):
        super().__init__(parent)
        self.setWindowTitle("Import from PACS")
        self.studies: list[StudySummary] = []
        self.worker: QThread | None = None
        self._build(project_root)

    def _build(self, project_root) -> None:
        self.url = QLineEdit(str(settings.app_settings().value(URL_KEY, "") or ""),
                             placeholderText="http://pacs.example/dicom-web")
        self.user = QLineEdit(placeholderText="from ECHOQUALITY_PACS_USER or the keyring")
        self.password = QLineEdit(placeholderText="not stored",
                                  echoMode=QLineEdit.EchoMode.Password)
        today = QDate.currentDate()
        self.since = QDateEdit(today.addDays(-30), calendarPopup=True, displayFormat="yyyy-MM-dd")
        self.until = QDateEdit(today, calendarPopup=True, displayFormat="yyyy-MM-dd")
        self.modality = QComboBox(editable=True)
        self.modality.addItems(["US", ""])
        self.accession = QLineEdit(placeholderText="any")
        self.description = QLineEdit(placeholderText="any (part of the study description)")
        self.search_button = QPushButton("Search")
        self.search_button.clicked.connect(self.search)
        dates = QHBoxLayout()
        for widget in (self.since, QLabel("to"), self.until):
            dates.addWidget(widget)
        form = QFormLayout()
        for label, widget in (("DICOMweb URL", self.url), ("User", self.user),
                              ("Password", self.password), ("Study dates", dates),
                              ("Modality", self.modality), ("Accession", self.accession),
                              ("Description", self.description)):
            form.addRow(label, widget)
        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(COLUMNS)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.horizontalHeader().setStretchLastSection(True)
        self.table.verticalHeader().hide()
        self.table.itemChanged.connect(lambda _item: self._update_buttons())
        self.folder = QLineEdit(str(project_root or ""), placeholderText="project folder")
        browse = QPushButton("Browse…")
        browse.clicked.connect(self._browse)
        target = QHBoxLayout()
        target.addWidget(QLabel("Into"))
        target.addWidget(self.folder, 1)
        target.addWidget(browse)
        self.progress = QProgressBar(visible=False)
        self.status = QLabel("Search the PACS for studies.", wordWrap=True)
        self.import_button = QPushButton("Import", enabled=False)
        self.import_button.clicked.connect(self.start_import)
        self.cancel_button = QPushButton("Cancel", enabled=False)
        self.cancel_button.clicked.connect(self.cancel)
        close = QPushButton("Close")
        close.clicked.connect(self.close)
        buttons = QHBoxLayout()
        buttons.addWidget(self.search_button)
        buttons.addStretch(1)
        for button in (self.import_button, self.cancel_button, close):
            buttons.addWidget(button)
        layout = QVBoxLayout(self)
        for part in (form, self.table, target, self.progress, self.status, buttons):
            (layout.addLayout if isinstance(part, (QFormLayout, QHBoxLayout))
             else layout.addWidget)(part)
        self.resize(760, 620)

    # --- actions ---------------------------------------------------------------------------
    def _connection(self) -> tuple[str, Credentials | None]:
        """(checked URL, credentials typed here or None: env/keyring, looked up by the worker)."""
        user = self.user.text().strip()
        return check_url(self.url.text()), Credentials(user, self.password.text()) if user else None

    def search(self) -> None:
        """Search in the background; the study table fills when the answer comes."""
        try:
            url, creds = self._connection()
        except ValueError as exc:
            self.status.setText(str(exc))
            return
        settings.app_settings().setValue(URL_KEY, url)
        query = {"since": self.since.date().toPython(), "until": self.until.date().toPython(),
                 "modality": self.modality.currentText().strip() or None,
                 "accession": self.accession.text().strip() or None,
                 "description": self.description.text().strip() or None}
        worker = _SearchWorker(url, creds, query, self)
        worker.found.connect(self._show_studies)
        worker.failed.connect(self._failed)
        self._run(worker, "Searching…")

    def _show_studies(self, studies: list[StudySummary]) -> None:
        self.studies = studies
        self.table.blockSignals(True)
        self.table.setRowCount(len(studies))
        for row, study in enumerate(studies):
            cells = (study.date.isoformat() if study.date else "", study.description,
                     "/".join(study.modalities), str(study.n_series), str(study.n_instances))
            for col, text in enumerate(cells):
                item = QTableWidgetItem(text)
                if col == 0:
                    item.setCheckState(Qt.CheckState.Checked)
                self.table.setItem(row, col, item)
        self.table.blockSignals(False)
        self.table.resizeColumnsToContents()
        n = sum(s.n_instances for s in studies)
        self.status.setText(f"{len(studies)} stud{'y' if len(studies) == 1 else 'ies'} found "
                            f"({n} instances); untick those not to import.")
        self._update_buttons()

    def picked(self) -> list[StudySummary]:
        """The studies whose row is ticked."""
        return [s for row, s in enumerate(self.studies)
                if self.table.item(row, 0).checkState() == Qt.CheckState.Checked]

    def start_import(self) -> None:
        folder = self.folder.text().strip()
        if not folder:
            self.status.setText("Choose the project folder to import into.")
            return
        try:
            url, creds = self._connection()
        except ValueError as exc:
            self.status.setText(str(exc))
            return
        worker = _ImportWorker(url, creds, self.picked(), Path(folder),
                               self.modality.currentText().strip() or None, self)
        worker.progress.connect(self._progress)
        worker.done.connect(self._imported)
        worker.failed.connect(self._failed)
        self.progress.setRange(0, 0)
        self.progress.setVisible(True)
        self._run(worker, "Listing the clips…")

    def cancel(self) -> None:
        """Stop the import after the downloads under way (what is on disk is kept)."""
        if isinstance(self.worker, _ImportWorker):
            self.worker.cancel_event.set()
            self.status.setText("Cancelling…")

    def _run(self, worker: QThread, text: str) -> None:
        self.worker = worker
        worker.finished.connect(self._worker_finished)
        self.status.setText(text)
        self._update_buttons()
        worker.start()

    def _worker_finished(self) -> None:
        self.worker = None
        self.progress.setVisible(False)
        self._update_buttons()

    def _progress(self, done: int, total: int) -> None:
        self.progress.setRange(0, max(total, 1))
        self.progress.setValue(done)
        self.status.setText(f"Importing clip {done} of {total}…")

    def _imported(self, result) -> None:
        failed = f"; {len(result.failed)} failed: {result.failed[0][1]}" if result.failed else ""
        self.status.setText(
            ("Cancelled: " if result.cancelled else "")
            + f"{len(result.downloaded)} clip(s) imported, {len(result.skipped)} already there"
            + failed)
        if result.clips:
            self.imported.emit(self.folder.text().strip())

    def _failed(self, text: str) -> None:
        self.status.setText(" ".join(text.split()))

    def _update_buttons(self) -> None:
        busy = self.worker is not None
        self.search_button.setEnabled(not busy)
        self.import_button.setEnabled(not busy and bool(self.studies) and bool(self.picked()))
        self.cancel_button.setEnabled(isinstance(self.worker, _ImportWorker))

    def _browse(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Import into folder", self.folder.text())
        if folder:
            self.folder.setText(folder)

    def closeEvent(self, event) -> None:
        if self.worker is not None:  # let a running import stop cleanly
            self.cancel()
            self.worker.wait()
        super().closeEvent(event)


def show_pacs_dialog(window) -> PacsImportDialog:
    """Open the dialog from the main window; an import opens (or refreshes) its project."""
    project = window.session.project
    dialog = PacsImportDialog(project.root if project else None, window)
    dialog.imported.connect(window.open_project)
    dialog.show()
    return dialog
