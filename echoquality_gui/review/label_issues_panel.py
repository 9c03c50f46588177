"""The Review tab's "Possible label errors" list: labelled clips whose label the out-of-fold
score disputes, ranked by cleanlab (core ``label_issues``), most likely error first.

Selecting a row plays the clip with its GradCAM in the Review tab; "Keep label" (K) and "Flip
label" (F) write the decision to the labels CSV with rater, time and the tag ``reviewed``
(through the Review tab, so it is undoable). The ranking (cleanlab, which imports
scikit-learn and scipy) runs in a child process: never imported into the window's.
"""
from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QKeySequence, QShortcut
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from echoquality_core.evaluation.label_issues import rank_label_issues
from echoquality_gui.label.clip_list import label_text
from echoquality_gui.common.workers import Latest, child_worker

KEEP_KEY, FLIP_KEY = "K", "F"


class LabelIssuesPanel(QWidget):
    """Ranked possible label errors; ``open_clip(rel)``, ``keep(rel)``, ``flip(rel)`` ask the
    Review tab to show or resolve a clip."""

    open_clip = Signal(str)
    keep = Signal(str)
    flip = Signal(str)

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.issues: list[dict] = []
        self.reviewed: set[str] = set()
        self.ranking = Latest()
        self.title = QLabel("Possible label errors need out-of-fold scores: choose a "
                            "cross-validation as the scope (or run one in the Train tab).")
        self.title.setWordWrap(True)
        self.table = QTableWidget(0, 6)
        self.table.setHorizontalHeaderLabels(["Rank", "Clip", "Label", "OOF score", "Quality",
                                              "Done"])
        self.table.horizontalHeaderItem(4).setToolTip(
            "cleanlab's label quality (low = the label is likely wrong); * = flagged by "
            "cleanlab's find_label_issues")
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.verticalHeader().setVisible(False)
        self.table.verticalHeader().setDefaultSectionSize(24)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(1, QHeaderView.ResizeMode.Stretch)
        self.table.itemSelectionChanged.connect(self._selected)
        self.keep_button = QPushButton(f"Keep label  [{KEEP_KEY}]")
        self.keep_button.setToolTip("The label is right: mark the clip reviewed")
        self.flip_button = QPushButton(f"Flip label  [{FLIP_KEY}]")
        self.flip_button.setToolTip("The label is wrong: good becomes poor and vice versa "
                                    "(marked reviewed; Ctrl+Z undoes)")
        for button, signal in ((self.keep_button, self.keep), (self.flip_button, self.flip)):
            button.setFocusPolicy(Qt.FocusPolicy.NoFocus)
            button.clicked.connect(lambda _=False, s=signal: self._act(s))
        for key, signal in ((KEEP_KEY, self.keep), (FLIP_KEY, self.flip)):
            shortcut = QShortcut(QKeySequence(key), self)
            shortcut.setContext(Qt.ShortcutContext.WidgetWithChildrenShortcut)
            shortcut.activated.connect(lambda s=signal: self._act(s))
        buttons = QHBoxLayout()
        buttons.addStretch(1)
        buttons.addWidget(self.keep_button)
        buttons.addWidget(self.flip_button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 4, 0, 0)
        layout.addWidget(self.title)
        layout.addWidget(self.table, 1)
        layout.addLayout(buttons)

    def set_rows(self, rows: list[dict] | None, reviewed: set[str]) -> None:
        """Rank ``rows`` ({video_path, label, score}, out-of-fold) in a thread; None clears."""
        self.reviewed = set(reviewed)
        if rows is None:
            self.ranking.abort()
            self.issues = []
            self._fill()
            return
        self.title.setText("Ranking with cleanlab…")
        self.ranking.start(child_worker(rank_label_issues, rows, name="echoquality-label-issues",
                                        parent=self).connect(
            returned=self._ranked, errored=self._not_ranked))

    def _ranked(self, issues: list) -> None:
        self.issues = issues
        self._fill()

    def _not_ranked(self, exc: BaseException) -> None:
        self.issues = []
        self._fill(str(exc))

    def _fill(self, error: str = "") -> None:
        flagged = sum(r["flagged"] for r in self.issues)
        if error:
            self.title.setText(f"No ranking: {error}")
        elif self.issues:
            left = sum(r["video_path"] not in self.reviewed for r in self.issues if r["flagged"])
            self.title.setText(f"Possible label errors · cleanlab flags {flagged} of "
                               f"{len(self.issues)} ({left} not reviewed) · most likely first")
        selected = self.current()
        self.table.blockSignals(True)
        self.table.setRowCount(len(self.issues))
        for row, issue in enumerate(self.issues):
            rel = issue["video_path"]
            cells = [str(issue["rank"]), Path(rel).name, label_text(issue["label"]),
                     f"{issue['score']:.3f}",
                     f"{issue['label_quality']:.3f}{' *' if issue['flagged'] else ''}",
                     "✓" if rel in self.reviewed else ""]
            for col, text in enumerate(cells):
                item = QTableWidgetItem(text)
                item.setData(Qt.ItemDataRole.UserRole, rel)
                if col == 1:
                    item.setToolTip(rel)
                self.table.setItem(row, col, item)
            if rel == selected:
                self.table.selectRow(row)
        self.table.blockSignals(False)

    def current(self) -> str | None:
        rows = self.table.selectionModel().selectedRows()
        return self.table.item(rows[0].row(), 0).data(Qt.ItemDataRole.UserRole) if rows else None

    def select(self, rel: str) -> bool:
        for row in range(self.table.rowCount()):
            if self.table.item(row, 0).data(Qt.ItemDataRole.UserRole) == rel:
                self.table.selectRow(row)
                return True
        return False

    def _selected(self) -> None:
        rel = self.current()
        if rel is not None:
            self.open_clip.emit(rel)

    def _act(self, signal) -> None:
        rel = self.current()
        if rel is not None:
            signal.emit(rel)

    def wait(self) -> None:
        self.ranking.abort()  # its child is killed
        self.ranking.wait()
