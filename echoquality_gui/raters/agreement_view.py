"""The Agreement tab: how much the raters agree (the numbers of ``echoquality agreement``),
computed in a background thread; empty while blind mode is on."""
from __future__ import annotations

import numpy as np
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QGridLayout,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from echoquality_core.labels.agreement import AgreementReport, agreement_report
from echoquality_gui.label.clip_list import label_text
from echoquality_gui.common.session import Session
from echoquality_gui.common.workers import Latest, Worker

N_BOOT = 1000
SEED = 0
BLIND_TEXT = ("Blind mode is on: agreement, other raters' labels and model scores are hidden. "
              "Turn it off in Rater ▸ Blind mode to see them.")


def table(headers: list[str]) -> QTableWidget:
    widget = QTableWidget(0, len(headers))
    widget.setHorizontalHeaderLabels(headers)
    widget.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
    widget.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
    widget.verticalHeader().setVisible(False)
    widget.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
    widget.horizontalHeader().setStretchLastSection(True)
    return widget


def fill(widget: QTableWidget, rows: list[list[str]]) -> None:
    widget.setRowCount(len(rows))
    for r, row in enumerate(rows):
        for c, text in enumerate(row):
            widget.setItem(r, c, QTableWidgetItem(text))


def _title(text: str) -> QLabel:
    label = QLabel(text)
    label.setObjectName("sectionTitle")
    return label


class AgreementView(QWidget):
    """Overall statistics, each pair of raters (Cohen's kappa, % agreement, confusion matrix)
    and per-issue-tag agreement, each with a bootstrap 95% CI."""

    def __init__(self, session: Session, parent: QWidget | None = None):
        super().__init__(parent)
        self.session = session
        self.report: AgreementReport | None = None
        self.job = Latest()
        self._stale = True
        self.status = QLabel("")
        self.status.setWordWrap(True)
        self.status.setObjectName("clipInfo")
        self.overall: dict[str, QLabel] = {}
        grid = QGridLayout()
        for i, (key, name) in enumerate((("percent", "Percent agreement (all raters)"),
                                         ("fleiss", "Fleiss' kappa"),
                                         ("alpha", "Krippendorff's alpha"))):
            value = QLabel("–")
            value.setObjectName("counter")
            grid.addWidget(QLabel(name), i, 0)
            grid.addWidget(value, i, 1)
            self.overall[key] = value
        grid.setColumnStretch(2, 1)
        self.pairs = table(["Rater A", "Rater B", "Clips", "Cohen's kappa [95% CI]",
                            "Agreement [95% CI]"])
        self.pairs.itemSelectionChanged.connect(self._show_confusion)
        self.pair_box = QComboBox()
        self.pair_box.currentIndexChanged.connect(self._show_confusion)
        self.confusion = table([])
        self.confusion.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Stretch)
        self.tags = table(["Issue tag", "Clips", "Tagged on", "Krippendorff's alpha [95% CI]",
                           "Agreement [95% CI]"])
        left = QVBoxLayout()
        left.addWidget(_title("All raters"))
        left.addLayout(grid)
        left.addWidget(_title("Pairs of raters"))
        left.addWidget(self.pairs, 1)
        left.addWidget(_title("Issue tags (present or not)"))
        left.addWidget(self.tags, 1)
        right = QVBoxLayout()
        right.addWidget(_title("Confusion matrix"))
        right.addWidget(self.pair_box)
        right.addWidget(self.confusion, 1)
        body = QHBoxLayout()
        body.addLayout(left, 3)
        body.addLayout(right, 2)
        layout = QVBoxLayout(self)
        layout.addWidget(self.status)
        layout.addLayout(body, 1)
        for signal in (session.raters_changed, session.label_changed, session.project_opened):
            signal.connect(self._changed)
        self._changed()

    # --- computing -------------------------------------------------------------------------
    def _changed(self, *_args) -> None:
        self._stale = True
        self.job.abort()  # a report of the labels before the change is never shown
        if self.session.blind or self.session.project is None:
            self.show_report(None)
        elif self.isVisible():
            self.compute()

    def showEvent(self, event) -> None:
        super().showEvent(event)
        if self._stale and not self.session.blind:
            self.compute()

    def compute(self) -> Worker | None:
        """Recompute the report in the background (from the per-rater labels as now)."""
        project = self.session.project
        if project is None or self.session.blind:
            return None
        labels = project.raters.labels()
        if len(project.raters.raters()) < 2:
            self.show_report(None, "One rater so far: agreement needs labels of two or more.")
            return None
        self._stale = False
        self.status.setText(f"Computing agreement ({N_BOOT} bootstrap resamples)…")
        return self.job.start(Worker(agreement_report, labels, n_boot=N_BOOT, seed=SEED,
                                     parent=self).connect(
            returned=self._done, errored=lambda exc: self.status.setText(
                f"Agreement failed: {exc or type(exc).__name__}")))

    def _done(self, report: AgreementReport) -> None:
        if not self.session.blind:
            self.show_report(report)

    # --- showing ---------------------------------------------------------------------------
    def show_report(self, report: AgreementReport | None, text: str | None = None) -> None:
        self.report = report
        if report is None:
            self.status.setText(text or (BLIND_TEXT if self.session.blind else
                                         "Open a project labelled by two or more raters."))
        else:
            self.status.setText(
                f"{', '.join(report.raters)} · {report.scale.replace('_', '-')} scale · "
                f"{report.n_clips} clips labelled by 2+ raters ({report.n_complete} by all) · "
                f"95% CIs from {report.n_boot} bootstrap resamples of the clips (seed "
                f"{report.seed}) · Krippendorff's alpha {report.alpha_kind}"
                + (" · Cohen's kappa quadratic-weighted" if report.scale == "five_point" else ""))
        for key, label in self.overall.items():
            label.setText(getattr(report, key).text(percent=key == "percent") if report else "–")
        pairs = report.pairs if report else []
        fill(self.pairs, [[p.a, p.b, str(p.n), p.kappa.text(), p.percent.text(percent=True)]
                          for p in pairs])
        fill(self.tags, [[t.tag, str(t.n), str(t.n_tagged), t.alpha.text(),
                          t.percent.text(percent=True)] for t in (report.tags if report else [])])
        self.pair_box.blockSignals(True)
        self.pair_box.clear()
        self.pair_box.addItems([f"{p.a} (rows) vs {p.b} (columns)" for p in pairs])
        self.pair_box.blockSignals(False)
        self._show_confusion()

    def _show_confusion(self) -> None:
        report = self.report
        i = self.pair_box.currentIndex()
        if self.sender() is self.pairs and self.pairs.currentRow() >= 0:
            i = self.pairs.currentRow()
            self.pair_box.blockSignals(True)
            self.pair_box.setCurrentIndex(i)
            self.pair_box.blockSignals(False)
        if report is None or not 0 <= i < len(report.pairs):
            self.confusion.setRowCount(0)
            self.confusion.setColumnCount(0)
            return
        matrix: np.ndarray = report.pairs[i].confusion
        names = [label_text(v) for v in report.levels]
        self.confusion.setColumnCount(len(names))
        self.confusion.setHorizontalHeaderLabels(names)
        fill(self.confusion, [[str(int(c)) for c in row] for row in matrix])
        self.confusion.setVerticalHeaderLabels(names)
        self.confusion.verticalHeader().setVisible(True)

    def shutdown(self) -> None:
        """Wait for a computation still running (before the widget goes)."""
        self.job.wait()
