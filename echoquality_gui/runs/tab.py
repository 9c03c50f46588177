"""The Runs tab: the project's previous training runs (from its MLflow store), their settings,
"Load model" to make a run's best model the project's model, and the MLflow web UI."""
from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from html import escape
from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt, QUrl, Signal
from PySide6.QtGui import QDesktopServices
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QMessageBox,
    QPushButton,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from echoquality_core.runs.run_list import RunRow, read_runs
from echoquality_core.runs.tracking import default_tracking_uri
from echoquality_gui.runs.mlflow_ui import MlflowUiServer
from echoquality_gui.common.session import Session
from echoquality_gui.common.workers import Worker

STATUS_TEXT = {"FINISHED": "finished", "KILLED": "cancelled", "FAILED": "failed",
               "RUNNING": "running", "SCHEDULED": "waiting"}
# (column title, metric name, decimals); decimals None: whole number
METRIC_COLUMNS = (("Test AUC", "test_roc_auc", 3), ("Accuracy", "test_accuracy", 3),
                  ("F1", "test_f1", 3), ("Best val loss", "best_val_loss", 4),
                  ("Best epoch", "best_epoch", None))
COLUMNS = ("Date", "Run", "Status", *(c[0] for c in METRIC_COLUMNS), "Model")


def _date(iso: str | None) -> str:
    if not iso:
        return ""
    return datetime.fromisoformat(iso).astimezone().strftime("%Y-%m-%d %H:%M")


def _number(value: float | None, decimals: int | None) -> str:
    if value is None:
        return "—"
    return f"{int(value)}" if decimals is None else f"{value:.{decimals}f}"


def _item(text: str, align_right: bool = False) -> QTableWidgetItem:
    item = QTableWidgetItem(text)
    item.setFlags(Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsSelectable)
    if align_right:
        item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
    return item


class RunsPanel(QWidget):
    """Table of the open project's training runs, the selected run's settings, Load model and
    Open MLflow UI. ``open_url`` opens the UI in the browser (replaceable, e.g. in tests)."""

    runs_loaded = Signal(int)  # number of runs listed

    def __init__(self, session: Session, parent: QWidget | None = None):
        super().__init__(parent)
        self.session = session
        self.open_url: Callable[[QUrl], Any] = QDesktopServices.openUrl
        self.rows: list[RunRow] = []
        self._loader: Worker | None = None
        self._reload = False
        self.server = MlflowUiServer(self)
        self._build()
        session.project_opened.connect(lambda _p: self.refresh())
        session.model_changed.connect(self._model_changed)
        self.server.ready.connect(self._ui_ready)
        self.server.failed.connect(self._ui_failed)
        self.server.stopped.connect(self._ui_stopped)
        self.error_box: QMessageBox | None = None
        self._show_details(None)

    # --- layout ----------------------------------------------------------------------------
    def _build(self) -> None:
        self.refresh_button = QPushButton("Refresh")
        self.refresh_button.clicked.connect(self.refresh)
        self.load_button = QPushButton("Load model")
        self.load_button.setToolTip("Make the selected run's best model the project's model")
        self.load_button.clicked.connect(self.load_selected)
        self.ui_button = QPushButton("Open MLflow UI")
        self.ui_button.setToolTip("Browse all runs, metrics and plots in the MLflow web UI")
        self.ui_button.clicked.connect(self.open_mlflow_ui)
        self.ui_label = QLabel("")
        self.ui_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextBrowserInteraction)
        self.ui_label.linkActivated.connect(lambda url: self.open_url(QUrl(url)))
        self.status_label = QLabel("Open a project to see its training runs.")
        bar = QHBoxLayout()
        for widget in (self.refresh_button, self.load_button, self.ui_button, self.ui_label):
            bar.addWidget(widget)
        bar.addStretch(1)

        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(COLUMNS)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.verticalHeader().setVisible(False)
        self.table.setAlternatingRowColors(True)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        header.setStretchLastSection(True)
        self.table.itemSelectionChanged.connect(self._selection_changed)
        self.table.itemDoubleClicked.connect(lambda _item: self.load_selected())

        self.details = QLabel("")
        self.details.setWordWrap(True)
        self.details.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.params = QTableWidget(0, 2)
        self.params.setHorizontalHeaderLabels(("Setting", "Value"))
        self.params.verticalHeader().setVisible(False)
        self.params.horizontalHeader().setSectionResizeMode(
            0, QHeaderView.ResizeMode.ResizeToContents)
        self.params.horizontalHeader().setStretchLastSection(True)
        row_height = self.fontMetrics().height() + 8
        for table in (self.table, self.params):
            table.verticalHeader().setDefaultSectionSize(row_height)
        side = QWidget()
        side_layout = QVBoxLayout(side)
        side_layout.setContentsMargins(0, 0, 0, 0)
        side_layout.addWidget(self.details)
        side_layout.addWidget(self.params, 1)

        splitter = QSplitter(Qt.Orientation.Horizontal)
        splitter.addWidget(self.table)
        splitter.addWidget(side)
        splitter.setStretchFactor(0, 3)
        splitter.setStretchFactor(1, 2)
        splitter.setSizes([880, 480])
        layout = QVBoxLayout(self)
        layout.addLayout(bar)
        layout.addWidget(splitter, 1)
        layout.addWidget(self.status_label)

    # --- listing ---------------------------------------------------------------------------
    @property
    def project_dir(self) -> Path | None:
        """The project's folder (the labels CSV's, where training keeps ``mlruns.db``)."""
        project = self.session.project
        return project.folder.path if project is not None else None

    @property
    def tracking_uri(self) -> str | None:
        folder = self.project_dir
        return default_tracking_uri(folder) if folder is not None else None

    @property
    def loading(self) -> bool:
        return self._loader is not None

    def refresh(self) -> None:
        """List the project's runs again (in the background)."""
        if self.project_dir is None:
            return
        if self._loader is not None:  # its runs may be another project's: list again once
            self._reload = True  # it has ended (its child killed now)
            self._loader.abort()
            return
        self._reload = False
        uri, folder = self.tracking_uri, self.project_dir
        loader = Worker(lambda: read_runs(uri, folder, loader.cancelled), parent=self).connect(
            returned=self._on_loaded,
            errored=lambda exc: self._on_failed(str(exc)))  # the child's error, with its type
        loader.finished.connect(self._loader_done)
        self._loader = loader
        self.refresh_button.setEnabled(False)
        self.status_label.setText("Reading the training runs…")
        loader.start()

    def _loader_done(self) -> None:
        loader, self._loader = self._loader, None
        if loader is not None:
            loader.wait()
            loader.deleteLater()
        self.refresh_button.setEnabled(True)
        if self._reload:
            self.refresh()

    def _on_loaded(self, rows: list[RunRow]) -> None:
        if self._reload:  # the project changed meanwhile: these runs are not its runs
            return
        selected = self.selected_run()
        keep = selected.run["run_id"] if selected else None
        self.rows = rows
        self.table.setRowCount(len(rows))
        for r, row in enumerate(rows):
            run = row.run
            cells = [_item(_date(run["start_time"])), _item(run["run_name"] or run["run_id"]),
                     _item(STATUS_TEXT.get(run["status"], run["status"].lower()))]
            cells += [_item(_number(run["metrics"].get(key), decimals), align_right=True)
                      for _title, key, decimals in METRIC_COLUMNS]
            cells.append(_item(""))
            for c, item in enumerate(cells):
                self.table.setItem(r, c, item)
        self._mark_loaded_model()
        where = self.project_dir.name if self.project_dir else ""
        self.status_label.setText(
            f"{len(rows)} training run(s) in {where}/mlruns.db" if rows
            else "No training runs yet: train a model in the Train tab.")
        index = next((i for i, row in enumerate(rows) if row.run["run_id"] == keep), 0)
        if rows:
            self.table.selectRow(index)
        self._selection_changed()
        self.runs_loaded.emit(len(rows))

    def _on_failed(self, message: str) -> None:
        self.status_label.setText(f"Could not read the training runs: {message}. Check that "
                                  "the project's mlruns.db is readable, then press Refresh.")

    def _mark_loaded_model(self) -> None:
        current = self.session.model_path
        for r, row in enumerate(self.rows):
            if row.checkpoint is None:
                text = "none"
            elif current is not None and row.checkpoint == Path(current):
                text = "loaded"
            else:
                text = "saved"
            item = self.table.item(r, len(COLUMNS) - 1)
            item.setText(text)
            font = item.font()
            font.setBold(text == "loaded")
            item.setFont(font)

    def _model_changed(self, path: Path | None) -> None:
        known = {row.checkpoint for row in self.rows}
        if path is not None and Path(path) not in known:
            self.refresh()  # e.g. a training run just ended
        else:
            self._mark_loaded_model()

    # --- selection -------------------------------------------------------------------------
    def selected_run(self) -> RunRow | None:
        rows = self.table.selectionModel().selectedRows()
        if not rows or rows[0].row() >= len(self.rows):
            return None
        return self.rows[rows[0].row()]

    def select_run(self, run_id: str) -> bool:
        """Select the run with this MLflow id; False if it is not listed."""
        for r, row in enumerate(self.rows):
            if row.run["run_id"] == run_id:
                self.table.selectRow(r)
                return True
        return False

    def _selection_changed(self) -> None:
        self._show_details(self.selected_run())

    def _show_details(self, row: RunRow | None) -> None:
        self.load_button.setEnabled(row is not None and row.checkpoint is not None)
        self.params.setRowCount(0)
        if row is None:
            self.details.setText("Select a run to see its settings.")
            return
        run = row.run
        status = STATUS_TEXT.get(run["status"], run["status"])
        lines = [f"<b>{escape(run['run_name'] or run['run_id'])}</b> — {status}",
                 f"MLflow run id: {run['run_id']}"]
        if row.threshold is not None:
            lines.append(f"Decision threshold: {row.threshold:.3f}")
        sizes = [f"{part} {run['params'][f'n_{part}']}" for part in ("train", "val", "test")
                 if f"n_{part}" in run["params"]]
        if sizes:
            lines.append("Clips: " + ", ".join(sizes))
        lines.append(f"Model file: {row.checkpoint}" if row.checkpoint else
                     "No model file: this run kept no model (cancelled, failed or deleted).")
        self.details.setText("<br>".join(lines))
        params = sorted(run["params"].items())
        self.params.setRowCount(len(params))
        for r, (key, value) in enumerate(params):
            self.params.setItem(r, 0, _item(key))
            self.params.setItem(r, 1, _item(value))

    # --- actions ---------------------------------------------------------------------------
    def load_selected(self) -> bool:
        """Make the selected run's best model the project's model; False (with a message) if
        there is no run selected or it has no model file."""
        row = self.selected_run()
        if row is None:
            self.status_label.setText("Select a run first.")
            return False
        if row.checkpoint is None or not row.checkpoint.is_file():
            name = row.run["run_name"] or row.run["run_id"]
            self.status_label.setText(
                f"Run {name} has no model file ({STATUS_TEXT.get(row.run['status'], '')} run): "
                "nothing to load.")
            return False
        self.session.set_model(row.checkpoint, run_dir=row.folder, threshold=row.threshold)
        self.status_label.setText(f"Loaded the model of run {row.run['run_name']}.")
        return True

    def open_mlflow_ui(self) -> None:
        """Start (or reuse) the MLflow web UI on the project's store and open it in the
        browser once it answers."""
        if self.tracking_uri is None:
            self.status_label.setText("Open a project first.")
            return
        self.ui_button.setEnabled(False)
        self.ui_label.setText("Starting the MLflow UI… (this can take a minute)")
        self.server.start(self.tracking_uri, self.project_dir)

    def _ui_ready(self, url: str) -> None:
        self.ui_button.setEnabled(True)
        self.ui_label.setText(f'MLflow UI: <a href="{url}">{url}</a>')
        self.open_url(QUrl(url))

    def _ui_failed(self, message: str) -> None:
        self.ui_button.setEnabled(True)
        self.ui_label.setText("The MLflow UI could not start.")
        summary, _, output = message.partition("\n\n")
        box = QMessageBox(QMessageBox.Icon.Warning, "MLflow UI", summary,
                          QMessageBox.StandardButton.Close, self)
        if output:
            box.setInformativeText("What MLflow printed:")
            box.setDetailedText(output)
        box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        box.open()
        self.error_box = box

    def _ui_stopped(self) -> None:
        self.ui_button.setEnabled(True)
        if not self.ui_label.text().startswith("The MLflow UI could not"):
            self.ui_label.setText("")

    def shutdown(self) -> None:
        """Stop the MLflow UI and wait for a listing in progress (call when the window closes)."""
        self.server.stop()
        if self._loader is not None:
            self._reload = False
            self._loader.abort()  # its child is killed
            self._loader.wait()
