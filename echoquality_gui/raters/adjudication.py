"""The Adjudicate tab: clips the raters disagree about, widest disagreement first. The
adjudicator sees every rater's label, tags and notes and the cine (with the model's GradCAM
once a model is loaded) and sets the final label with one key; the decision is recorded with
who and when (``Project.adjudicate``) and the training table takes it. Empty in blind mode."""
from __future__ import annotations

import html
from pathlib import Path

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from echoquality_core.scoring.heatmap import ClipExplanation, ClipHeatMap
from echoquality_core.labels.raters import Disagreement, adjudication_queue
from echoquality_gui.raters.agreement_view import BLIND_TEXT
from echoquality_gui.label.clip_list import label_text
from echoquality_gui.model.gradcam_worker import GradcamWorker
from echoquality_gui.window.keybinds import FIVE_POINT, keybind
from echoquality_gui.label.panel import ask_rater
from echoquality_gui.player.view import CinePlayer
from echoquality_gui.common.session import Session

PICK_TEXT = "Select a clip in the queue on the left to play it with everyone's labels"


def _title(text: str) -> QLabel:
    label = QLabel(text)
    label.setObjectName("sectionTitle")
    return label


def labels_text(item: Disagreement) -> str:
    return " · ".join(f"{la.rater} {label_text(la.quality_score)}" for la in item.labels)


class AdjudicationView(QWidget):
    """The queue, the clip, everyone's labels and the final-label keys."""

    def __init__(self, session: Session, parent: QWidget | None = None):
        super().__init__(parent)
        self.session = session
        self.queue: list[Disagreement] = []
        self.rel: str | None = None
        self._request = 0
        self._buttons: list[QPushButton] = []
        self.worker = GradcamWorker(session.gradcam_process(), self)
        self.worker.ready.connect(self._on_gradcam)
        self.worker.failed.connect(lambda r, text: r == self._request and
                                   self.status.setText(text))
        splitter = QSplitter(Qt.Orientation.Horizontal)
        splitter.addWidget(self._build_queue())
        splitter.addWidget(self._build_clip())
        splitter.setSizes([560, 800])
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(splitter)
        for signal in (session.raters_changed, session.label_changed, session.project_opened):
            signal.connect(lambda *_: self.refresh())
        session.model_changed.connect(lambda *_: self.show_clip(self.rel))
        session.scale_changed.connect(self._build_buttons)
        self._build_buttons(session.scale)
        self.refresh()

    def _build_queue(self) -> QWidget:
        self.summary = QLabel("")
        self.summary.setWordWrap(True)
        self.summary.setObjectName("clipInfo")
        self.hide_decided = QCheckBox("Hide decided")
        self.hide_decided.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.hide_decided.toggled.connect(lambda _on: self.refresh())
        self.table = QTableWidget(0, 4)
        self.table.setHorizontalHeaderLabels(["Clip", "Raters' labels", "Spread", "Final"])
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.verticalHeader().setVisible(False)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        self.table.itemSelectionChanged.connect(self._selected)
        left = QWidget()
        column = QVBoxLayout(left)
        bar = QHBoxLayout()
        bar.addWidget(_title("Adjudication queue"), 1)
        bar.addWidget(self.hide_decided)
        column.addLayout(bar)
        column.addWidget(self.summary)
        column.addWidget(self.table, 1)
        return left

    def _build_clip(self) -> QWidget:
        self.clip_title = QLabel("Select a clip")
        self.clip_title.setObjectName("currentLabel")
        self.player = CinePlayer(parent=self)  # its empty text: refresh()
        self.details = QLabel("")
        self.details.setWordWrap(False)  # one line per rater; a wrapped label lost lines
        self.details.setTextFormat(Qt.TextFormat.RichText)
        self.buttons_row = QHBoxLayout()
        self.status = QLabel("")
        self.status.setWordWrap(True)
        self.status.setObjectName("clipInfo")
        right = QWidget()
        side = QVBoxLayout(right)
        side.addWidget(self.clip_title)
        side.addWidget(self.player, 1)
        side.addWidget(self.details)
        final = QHBoxLayout()
        final.addWidget(QLabel("Final label"))
        final.addLayout(self.buttons_row)
        final.addStretch(1)
        side.addLayout(final)
        side.addWidget(self.status)
        return right

    def _build_buttons(self, scale: str) -> None:
        for button in self._buttons:
            self.buttons_row.removeWidget(button)
            button.hide()
            button.deleteLater()
        self._buttons = []
        if scale == "five_point":
            items = [(score, key) for key, score in FIVE_POINT.items()]
        else:
            items = [(1.0, f"Good  [{keybind('label_good').key}]"),
                     (0.0, f"Poor  [{keybind('label_poor').key}]")]
        for score, text in items:
            button = QPushButton(text)
            button.setFocusPolicy(Qt.FocusPolicy.NoFocus)
            button.setToolTip(f"Final label {score:g}: recorded with your name and the time")
            button.clicked.connect(lambda _=False, s=score: self.decide(s))
            self.buttons_row.addWidget(button)
            self._buttons.append(button)

    # --- the queue -------------------------------------------------------------------------
    def refresh(self) -> None:
        """Rebuild the queue from the per-rater labels (nothing shown in blind mode)."""
        project = self.session.project
        if project is None or self.session.blind:
            self.queue = []
            self.summary.setText(BLIND_TEXT if self.session.blind else "No project open.")
        else:
            self.queue = adjudication_queue(project.raters,
                                            include_decided=not self.hide_decided.isChecked())
            open_ = sum(d.adjudication is None for d in self.queue)
            agreed = sum(d.agreed for d in self.queue)
            self.summary.setText(f"{len(self.queue) - agreed} clips the raters disagree about, "
                                 f"{open_} to decide; widest disagreement first"
                                 + (f" ({agreed} decided although the raters agreed, last)"
                                    if agreed else "") + ". The label keys set the final label.")
        self.player.set_empty_text(
            PICK_TEXT if self.queue else "The queue is empty: no clip to adjudicate"
            + (" (decided clips are hidden)" if self.hide_decided.isChecked() else ""))
        self.table.blockSignals(True)
        self.table.setRowCount(len(self.queue))
        for r, item in enumerate(self.queue):
            final = item.adjudication
            cells = [Path(item.rel).name, labels_text(item), f"{item.spread:g}",
                     f"{label_text(final.quality_score)} by {final.rater}" if final else ""]
            for c, text in enumerate(cells):
                cell = QTableWidgetItem(text)
                cell.setToolTip(item.rel)
                self.table.setItem(r, c, cell)
        self.table.blockSignals(False)
        rels = [d.rel for d in self.queue]
        if self.rel in rels:
            self.table.selectRow(rels.index(self.rel))
            self._show_details()
        elif self.rel is not None or (rels and self.isVisible()):
            self.show_clip(rels[0] if rels else None)

    def _item(self, rel: str | None) -> Disagreement | None:
        return next((d for d in self.queue if d.rel == rel), None)

    def _selected(self) -> None:
        rows = self.table.selectionModel().selectedRows()
        if rows and 0 <= rows[0].row() < len(self.queue):
            rel = self.queue[rows[0].row()].rel
            if rel != self.rel:
                self.show_clip(rel)

    def show_clip(self, rel: str | None) -> None:
        """Play clip ``rel`` with every rater's label; GradCAM when a model is loaded."""
        self.rel = rel if self._item(rel) is not None else None
        self.player.set_overlay(None)
        self.player.set_importance(None)
        project = self.session.project
        if self.rel is None or project is None:
            self.player.open_clip(None)
            self.clip_title.setText("Select a clip")
            self.details.setText("")
            return
        path = project.store.resolve(self.rel)
        self.player.open_clip(path)
        rels = [d.rel for d in self.queue]
        self.table.blockSignals(True)
        self.table.selectRow(rels.index(self.rel))
        self.table.blockSignals(False)
        self._show_details()
        if self.session.model_path is not None:
            self._request = self.worker.request(self.session.model_path, path, "good")
            self.status.setText("Computing GradCAM (what the model looked at)…")
        else:
            self.worker.cancel()
            self.status.setText("")

    def _show_details(self) -> None:
        item = self._item(self.rel)
        if item is None:
            return
        self.clip_title.setText(f"{Path(item.rel).name} · spread {item.spread:g}")
        rows = []
        for la in item.labels:
            tags = ", ".join(la.issues) or "no tags"
            notes = f" — “{html.escape(la.notes)}”" if la.notes else ""
            rows.append(f"<b>{html.escape(la.rater or '')}</b>: "
                        f"{label_text(la.quality_score)} ({tags}){notes} "
                        f"<span style='color:#7f8a9c'>{la.labeled_at or ''}</span>")
        final = item.adjudication
        if final is not None:
            rows.append(f"<b>Final: {label_text(final.quality_score)}</b> by "
                        f"{html.escape(final.rater or '')} at {final.labeled_at}")
        self.details.setText("<br>".join(rows))

    def _on_gradcam(self, request: int, result: ClipExplanation) -> None:
        if request != self._request or self.rel is None:
            return
        heat = ClipHeatMap(result)
        self.player.set_overlay(heat, caption="GradCAM: where the model looked")
        self.player.set_importance(*heat.importance())
        self.status.setText("")

    # --- the decision ----------------------------------------------------------------------
    def decide(self, score: float) -> bool:
        """Set the shown clip's final label (the label keys on this tab); next open clip."""
        s = self.session
        if self.rel is None or s.project is None or s.blind:
            s.message.emit("Select a clip of the adjudication queue first")
            return False
        if not ask_rater(self):
            return False
        rel = self.rel
        rels = [d.rel for d in self.queue if d.adjudication is None and d.rel != rel]
        if not s.adjudicate(rel, score):
            return False
        s.message.emit(f"Final label of {Path(rel).name}: {label_text(score)}")
        if rels:
            self.show_clip(rels[0])
        return True

    # --- life cycle ------------------------------------------------------------------------
    def showEvent(self, event) -> None:
        super().showEvent(event)
        if self.rel is None and self.queue:
            self.show_clip(self.queue[0].rel)

    def hideEvent(self, event) -> None:
        self.player.pause()
        super().hideEvent(event)

    def shutdown(self) -> None:
        self.worker.stop()
        self.player.shutdown()
