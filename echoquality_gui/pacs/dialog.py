"""File ▸ Import from PACS…: search a DICOMweb PACS for studies (date range, modality,
accession, description), pick some, import their clips into a project folder in the background
with progress and Cancel, then open (or refresh) that project.

The dialog only shows and forwards: searching and importing are the core's ``search_studies``
and ``import_studies``, each run in a ``workers.Worker``. The URL is remembered in the
settings; the user name and password are used for this session only (empty:
ECHOQUALITY_PACS_USER/PASSWORD/TOKEN or the OS keyring) and never stored.
"""
from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QDate, Qt, Signal
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
from echoquality_gui.common import settings
from echoquality_gui.common.workers import Worker

URL_KEY = "pacs/url"
COLUMNS = ("Date", "Description", "Modalities", "Series", "Instances")


def _search(url: str, creds: Credentials | None, query: dict) -> list[StudySummary]:
    conn = PacsConnection(url, creds)  # looks up the keyring: not in the GUI thread
    return search_studies(conn, **query)


def _import_worker(url: str, creds: Credentials | None, studies: list[StudySummary],
                   into: Path, modality: str | None, parent=None) -> Worker:
    """A worker (not started) that imports ``studies`` into ``into``: it yields (done, total),
    returns the ImportResult and stops after the downloads under way on ``cancel()``."""

    def run():
        conn = PacsConnection(url, creds)
        into.mkdir(parents=True, exist_ok=True)
        return import_studies(conn, studies, into, modality=modality,
                              progress=lambda d, t, _n: worker.yielded.emit((d, t)),
                              cancel=worker.cancelled)

    worker = Worker(run, parent=parent)
    return worker


class PacsImportDialog(QDialog):
    """Search, pick, import. ``imported(folder)`` is emitted when clips were imported."""

    imported = Signal(str)

    def __init__(self, project_root: str | Path | None = None, parent: QWidget | None = None):
        super().__init__(parent)
        self.setWindowTitle("Import from PACS")
        self.studies: list[StudySummary] = []
        self.worker: Worker | None = None
        self.importing = False  # the worker is an import (it can be cancelled)
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
        worker = Worker(_search, url, creds, query, parent=self).connect(
            returned=self._show_studies, errored=self._failed)
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
        worker = _import_worker(url, creds, self.picked(), Path(folder),
                                self.modality.currentText().strip() or None, self).connect(
            yielded=lambda step: self._progress(*step), returned=self._imported,
            errored=self._failed)
        self.progress.setRange(0, 0)
        self.progress.setVisible(True)
        self._run(worker, "Listing the clips…", importing=True)

    def cancel(self) -> None:
        """Stop the import after the downloads under way (what is on disk is kept)."""
        if self.worker is not None and self.importing:
            self.worker.cancel()
            self.status.setText("Cancelling…")

    def _run(self, worker: Worker, text: str, importing: bool = False) -> None:
        self.worker, self.importing = worker, importing
        worker.finished.connect(self._worker_finished)
        self.status.setText(text)
        self._update_buttons()
        worker.start()

    def _worker_finished(self) -> None:
        worker, self.worker, self.importing = self.worker, None, False
        if worker is not None:
            worker.deleteLater()
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

    def _failed(self, exc: BaseException) -> None:
        self.status.setText(" ".join((str(exc) or type(exc).__name__).split()))

    def _update_buttons(self) -> None:
        busy = self.worker is not None
        self.search_button.setEnabled(not busy)
        self.import_button.setEnabled(not busy and bool(self.studies) and bool(self.picked()))
        self.cancel_button.setEnabled(self.worker is not None and self.importing)

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
