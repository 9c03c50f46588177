"""The Review tab's clip table: the model's disagreements, most confident first, or the clips
of one confusion cell; reviewed clips are greyed (or hidden) and the clip in the player is
selected."""
from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QBrush, QColor
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QHBoxLayout,
    QHeaderView,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from echoquality_core.evaluation.review import KINDS, ReviewClip, ReviewSet
from echoquality_gui.common import theme
from echoquality_gui.common.widgets import section_title
from echoquality_gui.label.clip_list import label_text

_DONE_BRUSH = QBrush(QColor(theme.DONE_ROW))


class ClipTable(QWidget):
    """Lists clips of a ReviewSet; ``clip_chosen`` gives the rel path the user selected."""

    clip_chosen = Signal(str)

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.review_set: ReviewSet | None = None
        self.cell: str | None = None  # confusion cell listed; None: the disagreements
        self.current: str | None = None  # the clip in the player, selected when listed
        self.list_title = section_title("Disagreements")
        self.hide_reviewed = QCheckBox("Hide reviewed")
        self.hide_reviewed.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.hide_reviewed.toggled.connect(lambda _: self.fill())
        self.mistakes_button = QPushButton("Show disagreements")
        self.mistakes_button.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.mistakes_button.clicked.connect(lambda: self.show_cell(None))
        bar = QHBoxLayout()
        bar.addWidget(self.list_title, 1)
        bar.addWidget(self.hide_reviewed)
        bar.addWidget(self.mistakes_button)
        self.table = QTableWidget(0, 6)
        self.table.setHorizontalHeaderLabels(["Clip", "Label", "Score", "Model", "Margin",
                                              "Done"])
        self.table.horizontalHeaderItem(4).setToolTip("Score minus the threshold")
        self.table.horizontalHeaderItem(5).setToolTip("Reviewed (relabelled or confirmed)")
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setAlternatingRowColors(True)
        self.table.verticalHeader().setVisible(False)
        self.table.verticalHeader().setDefaultSectionSize(24)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        self.table.itemSelectionChanged.connect(self._selection_changed)
        page = QVBoxLayout(self)
        page.setContentsMargins(0, 4, 0, 0)
        page.addLayout(bar)
        page.addWidget(self.table, 1)

    def set_review(self, rs: ReviewSet | None) -> None:
        """List the clips of ``rs`` (the same cell as before)."""
        self.review_set = rs
        self.fill()

    def listed(self) -> list[ReviewClip]:
        """The clips the table lists now (a confusion cell, or the disagreements)."""
        rs = self.review_set
        if rs is None:
            return []
        clips = rs.mistakes() if self.cell is None else rs.cell(self.cell)
        if self.hide_reviewed.isChecked():
            clips = [c for c in clips if not c.reviewed]
        return clips

    def show_cell(self, kind: str | None) -> None:
        """List the clips of confusion cell ``kind`` ("tn", "fp", "fn", "tp"); None lists the
        disagreements."""
        self.cell = kind
        self.fill()

    def fill(self) -> None:
        """Rebuild the rows from ``listed()``, selecting ``current`` (without signalling)."""
        clips = self.listed()
        if self.cell is None:
            left = sum(not c.reviewed for c in clips)
            self.list_title.setText(f"Disagreements · {left} to review · most confident first")
        else:
            self.list_title.setText(f"{KINDS[self.cell].capitalize()}s · {len(clips)}")
        self.mistakes_button.setVisible(self.cell is not None)
        self.table.blockSignals(True)
        self.table.setRowCount(len(clips))
        selected = None
        for row, clip in enumerate(clips):
            cells = [Path(clip.rel).name, label_text(clip.label), f"{clip.score:.3f}",
                     "good" if clip.called_good else "poor",
                     f"{clip.score - clip.threshold:+.3f}", "✓" if clip.reviewed else ""]
            for col, text in enumerate(cells):
                item = QTableWidgetItem(text)
                item.setData(Qt.ItemDataRole.UserRole, clip.rel)
                if col == 0:
                    item.setToolTip(clip.rel)
                if clip.reviewed:
                    item.setForeground(_DONE_BRUSH)
                self.table.setItem(row, col, item)
            if clip.rel == self.current:
                selected = row
        self.table.clearSelection()
        if selected is not None:
            self.table.selectRow(selected)
        self.table.blockSignals(False)

    def _selection_changed(self) -> None:
        rows = self.table.selectionModel().selectedRows()
        if rows:
            rel = self.table.item(rows[0].row(), 0).data(Qt.ItemDataRole.UserRole)
            if rel != self.current:
                self.clip_chosen.emit(rel)

    def select(self, rel: str) -> bool:
        """Select clip ``rel`` (``clip_chosen`` follows); False if it is not listed."""
        for row in range(self.table.rowCount()):
            if self.table.item(row, 0).data(Qt.ItemDataRole.UserRole) == rel:
                self.table.selectRow(row)
                return True
        return False

    def next_after(self, rel: str) -> str | None:
        """The next clip to review after ``rel`` in the list (not yet reviewed)."""
        listed = self.listed()
        rels = [c.rel for c in listed]
        start = rels.index(rel) + 1 if rel in rels else 0
        for clip in listed[start:] + listed[:start]:
            if clip.rel != rel and not clip.reviewed:
                return clip.rel
        return None
