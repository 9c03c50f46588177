"""The Review tab: how good is the current model, and which clips does it get wrong?

Metrics, ROC curve and a clickable confusion matrix come from the training run's test split
(``test_predictions.csv`` of ``session.run_dir``) or, for a model loaded from a file, from the
model's scores on the labelled clips. The disagreements are listed most confident mistake first;
the selected clip plays with its GradCAM heat map following playback. The label keys relabel
it (through the session: written at once, undoable) and "Confirm label" marks a disagreement as
reviewed with the issue tag ``reviewed`` in the labels CSV.
"""
from __future__ import annotations

import importlib
import json
import math
import threading
from pathlib import Path

import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtGui import QBrush, QColor
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QGridLayout,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QSplitter,
    QTabWidget,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from echoquality_core.scoring.heatmap import ClipExplanation, ClipHeatMap
from echoquality_core.labels.store import REVIEWED, LabelError
from echoquality_core.model.file_kind import is_export
from echoquality_core.evaluation.review import (
    CELLS,
    KINDS,
    ReviewClip,
    ReviewSet,
    build_review,
    read_run_predictions,
)
from echoquality_core.runs.folder import RunFolder
from echoquality_gui.common import theme
from echoquality_gui.label.clip_list import label_text
from echoquality_gui.model.gradcam_worker import GradcamWorker
from echoquality_gui.window.keybinds import FIVE_POINT, keybind
from echoquality_gui.label.panel import ask_rater
from echoquality_gui.review.model_vs_raters import ModelVsRaters
from echoquality_gui.player.view import CinePlayer
from echoquality_gui.review.label_issues_panel import LabelIssuesPanel
from echoquality_gui.review.hooks import save_panel_threshold, show_scope_panels
from echoquality_gui.review.scope import ReviewScope
from echoquality_gui.common.session import Session
from echoquality_gui.common.widgets import section_title
from echoquality_gui.common.workers import Worker, retire
from echoquality_gui.review.threshold_panel import ThresholdPanel

METRICS = (("accuracy", "Accuracy"), ("precision", "Precision"), ("recall", "Recall"),
           ("f1", "F1"), ("roc_auc", "ROC AUC"), ("pr_auc", "PR AUC"),
           ("brier", "Brier"), ("threshold", "Threshold"), ("n", "Clips"))


def collect_review(session: Session, oof: Path | None = None) -> ReviewSet | None:
    """What the Review tab shows: with ``oof`` (a cross-validation's out-of-fold table) all
    labelled clips with their out-of-fold scores; else, for the session's model, the run's test
    split when the model came from a training run, else its scores on the labelled clips."""
    project, run_dir = session.project, session.run_dir
    if project is None or (session.model_path is None and oof is None):
        return None

    def rel(path: str) -> str | None:
        try:
            return project.store.relative(path)
        except LabelError:
            return None

    if oof is not None:
        from echoquality_gui.review.scope import oof_scored

        scored, groups = oof_scored(oof, rel)
        threshold = session.threshold if session.model_path is not None else _oof_threshold(oof)
        source = (f"All {len(scored)} labelled clips · out-of-fold scores of cross-validation "
                  f"{oof.parent.name} (each scored by a model that never trained on it)")
        rs = build_review(scored, threshold, source, {r: project.label(r) for r in scored})
        rs.groups = groups
        return rs

    if run_dir is not None and RunFolder(run_dir).predictions.is_file():
        recorded, threshold = read_run_predictions(Path(run_dir))
        scored = {r: v for p, v in recorded.items() if (r := rel(p)) is not None}
        threshold = session.threshold if threshold is None else threshold
        source = (f"Run {Path(run_dir).name} · test split, {len(scored)} clips it never trained "
                  "on (scores from the run, labels as in the CSV now)")
    else:
        scored = {r: (project.label(r).quality_score, s) for r, s in session.scores.items()
                  if project.label(r) is not None}
        threshold = session.threshold
        source = (f"Model {session.model_path.name} · its scores on the {len(scored)} labelled "
                  "clips (no training run: these may include clips it was trained on)")
    labels = {r: project.label(r) for r in scored}
    return build_review(scored, threshold, source, labels)


_METRICS_READY = threading.Event()


def _import_metrics() -> None:
    """Load scikit-learn's metrics (``metrics_from_scores``) ahead of the first review."""
    importlib.import_module("sklearn.metrics")
    _METRICS_READY.set()


def _oof_threshold(oof: Path) -> float:
    """The cross-validation's threshold (median of its folds'), else 0.5."""
    try:
        return float(json.loads((oof.parent / "summary.json").read_text())["threshold"])
    except (OSError, ValueError, KeyError, TypeError):
        return 0.5


# --- the tab -----------------------------------------------------------------------------------

_WRONG_BRUSH = QBrush(QColor(theme.WRONG_ROW))
_RIGHT_BRUSH = QBrush(QColor(theme.RIGHT_ROW))
_DONE_BRUSH = QBrush(QColor(theme.DONE_ROW))


def _fmt(value) -> str:
    if isinstance(value, int):
        return str(value)
    return "–" if value is None or not math.isfinite(float(value)) else f"{float(value):.3f}"


class ReviewTab(QWidget):
    """Metrics, ROC, confusion matrix and the model's mistakes, each playable with GradCAM."""

    def __init__(self, session: Session, parent: QWidget | None = None):
        super().__init__(parent)
        self.session = session
        self.scope = ReviewScope()
        self.scope.changed.connect(self.refresh)
        self.review_set: ReviewSet | None = None
        self.rel: str | None = None  # the clip in the player
        self.heat_map: ClipHeatMap | None = None
        self._cell: str | None = None  # confusion cell listed; None: the mistakes
        self._request = 0
        self._score_buttons: list[QPushButton] = []
        self.worker = GradcamWorker(session.gradcam_process(), self)
        self.worker.ready.connect(self._on_gradcam)
        self.worker.failed.connect(self._on_gradcam_failed)
        self._warm_up = Worker(_import_metrics, parent=self).connect(  # scikit-learn takes
            returned=lambda _: self.refresh(), errored=lambda _: self.refresh())  # seconds
        self._warm_up.start()  # to import: not in the GUI thread (refresh waits for it)
        self._build()
        session.model_changed.connect(self._warm_gradcam)
        for signal in (session.model_changed, session.label_changed, session.scores_changed,
                       session.project_opened, session.raters_changed):
            signal.connect(lambda *_: self.refresh())
        session.scale_changed.connect(self._build_score_buttons)
        self._build_score_buttons(session.scale)
        self.refresh()

    # --- layout ----------------------------------------------------------------------------
    def _build(self) -> None:
        self.source = QLabel("")
        self.source.setWordWrap(True)
        self.source.setObjectName("clipInfo")
        metrics = QGridLayout()
        metrics.setHorizontalSpacing(10)
        metrics.setVerticalSpacing(2)
        self.metric_labels: dict[str, QLabel] = {}
        for i, (key, name) in enumerate(METRICS):
            value = QLabel("–")
            value.setObjectName("counter")
            value.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
            metrics.addWidget(QLabel(name), i // 3, 2 * (i % 3))
            metrics.addWidget(value, i // 3, 2 * (i % 3) + 1)
            self.metric_labels[key] = value
        charts_box = self._build_charts()
        list_bar = self._build_table()

        left = QWidget()
        column = QVBoxLayout(left)
        column.setContentsMargins(6, 4, 6, 4)
        column.addWidget(section_title("Model quality"))
        column.addWidget(self.scope)
        column.addWidget(self.source)
        column.addLayout(metrics)
        column.addWidget(charts_box)
        column.addWidget(self._build_lists(list_bar), 1)
        self.model_vs_raters = ModelVsRaters(self.session)
        column.addWidget(self.model_vs_raters)
        right = self._build_side()

        splitter = QSplitter(Qt.Orientation.Horizontal)
        splitter.addWidget(left)
        splitter.addWidget(right)
        splitter.setStretchFactor(0, 0)
        splitter.setStretchFactor(1, 1)
        splitter.setSizes([500, 860])
        splitter.setObjectName("reviewSplitter")
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(splitter)

    def _build_charts(self) -> QWidget:
        """The ROC curve (a dot at the threshold) beside the clickable confusion matrix."""
        self.roc_plot = pg.PlotWidget(enableMenu=False)
        self.roc_plot.setBackground(theme.BACKGROUND)
        self.roc_plot.setMouseEnabled(False, False)
        self.roc_plot.hideButtons()
        self.roc_plot.setLabel("bottom", "False positive rate")
        self.roc_plot.setLabel("left", "True positive rate")
        self.roc_plot.setRange(xRange=(0, 1), yRange=(0, 1), padding=0.03)
        self.roc_plot.plot([0, 1], [0, 1], pen=pg.mkPen(theme.GRID_DASH, style=Qt.PenStyle.DashLine))
        self.roc_curve = self.roc_plot.plot(pen=pg.mkPen(theme.BLUE, width=2))
        self.roc_point = self.roc_plot.plot(pen=None, symbol="o", symbolSize=8,
                                            symbolBrush=theme.ORANGE, symbolPen=None)
        self.roc_plot.setMinimumWidth(190)
        self.roc_plot.setToolTip("ROC curve; the dot is the model at its threshold")

        self.confusion = QTableWidget(2, 2)
        self.confusion.setHorizontalHeaderLabels(["Called\npoor", "Called\ngood"])
        self.confusion.setVerticalHeaderLabels(["Labelled\npoor", "Labelled\ngood"])
        self.confusion.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.confusion.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.confusion.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.confusion.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Stretch)
        self.confusion.verticalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Stretch)
        self.confusion.verticalHeader().setDefaultAlignment(Qt.AlignmentFlag.AlignCenter)
        self.confusion.setToolTip("Click a cell to list its clips")
        self.confusion.cellClicked.connect(lambda row, col: self.show_cell(CELLS[(row, col)]))
        self.confusion.setMinimumWidth(220)
        charts_box = QWidget()
        charts_box.setFixedHeight(185)
        charts = QHBoxLayout(charts_box)
        charts.setContentsMargins(0, 4, 0, 4)
        charts.addWidget(self.roc_plot, 1)
        charts.addWidget(self.confusion, 1)
        return charts_box

    def _build_table(self) -> QHBoxLayout:
        """The clip table of the disagreements (or of a confusion cell); returns its title bar."""
        self.list_title = section_title("Disagreements")
        self.hide_reviewed = QCheckBox("Hide reviewed")
        self.hide_reviewed.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.hide_reviewed.toggled.connect(lambda _: self._fill_table())
        self.mistakes_button = QPushButton("Show disagreements")
        self.mistakes_button.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.mistakes_button.clicked.connect(lambda: self.show_cell(None))
        list_bar = QHBoxLayout()
        list_bar.addWidget(self.list_title, 1)
        list_bar.addWidget(self.hide_reviewed)
        list_bar.addWidget(self.mistakes_button)
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
        return list_bar

    def _build_side(self) -> QWidget:
        """The right side: the clip's title, the player with the heat map, relabel/confirm."""
        self.clip_title = QLabel("Select a clip to see where the model looked")
        self.clip_title.setObjectName("currentLabel")
        self.clip_title.setWordWrap(True)
        self.player = CinePlayer(parent=self)
        self.player.set_empty_text("Select a clip on the left to play it with the model's "
                                   "heat map")
        self.scores_row = QHBoxLayout()
        self.confirm_button = QPushButton(f"Confirm label  [{keybind('confirm_label').key}]")
        self.confirm_button.setToolTip("The label is right and the model is wrong: mark the "
                                       "clip as reviewed (tag 'reviewed' in the labels CSV)")
        self.confirm_button.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.confirm_button.clicked.connect(self.confirm)
        actions = QHBoxLayout()
        actions.addWidget(QLabel("Relabel"))
        actions.addLayout(self.scores_row)
        actions.addStretch(1)
        actions.addWidget(self.confirm_button)
        self.status = QLabel("")
        self.status.setObjectName("clipInfo")
        self.status.setWordWrap(True)
        right = QWidget()
        side = QVBoxLayout(right)
        side.setContentsMargins(6, 4, 6, 4)
        side.addWidget(self.clip_title)
        side.addWidget(self.player, 1)
        side.addLayout(actions)
        side.addWidget(self.status)
        return right

    def _build_lists(self, list_bar: QHBoxLayout) -> QTabWidget:
        """Tabs: the disagreements, the threshold panel, the possible label errors."""
        disagreements = QWidget()
        page = QVBoxLayout(disagreements)
        page.setContentsMargins(0, 4, 0, 0)
        page.addLayout(list_bar)
        page.addWidget(self.table, 1)
        self.threshold_panel = ThresholdPanel()
        self.threshold_panel.open_clip.connect(self.show_clip)
        self.threshold_panel.save_requested.connect(self.save_threshold)
        self.label_issues = LabelIssuesPanel()
        self.label_issues.open_clip.connect(self.show_clip)
        self.label_issues.keep.connect(lambda rel: self._resolve(rel, flip=False))
        self.label_issues.flip.connect(lambda rel: self._resolve(rel, flip=True))
        self.lists = QTabWidget()
        self.lists.addTab(disagreements, "Disagreements")
        self.lists.addTab(self.threshold_panel, "Threshold && calibration")
        self.lists.addTab(self.label_issues, "Possible label errors")
        return self.lists

    def _build_score_buttons(self, scale: str) -> None:
        for button in self._score_buttons:
            button.hide()  # gone now, not only when the event loop deletes it
            button.deleteLater()
        self._score_buttons = []
        if scale == "five_point":
            items = [(score, key, None) for key, score in FIVE_POINT.items()]
        else:
            items = [(1.0, f"Good  [{keybind('label_good').key}]", "goodButton"),
                     (0.0, f"Poor  [{keybind('label_poor').key}]", "poorButton")]
        for score, text, name in items:
            button = QPushButton(text)
            button.setFocusPolicy(Qt.FocusPolicy.NoFocus)
            if name:
                button.setObjectName(name)
            button.setToolTip(f"Relabel the clip: score {score:g} (written now; Ctrl+Z undoes)")
            button.clicked.connect(lambda _=False, s=score: self.relabel(s))
            self.scores_row.addWidget(button)
            self._score_buttons.append(button)

    # --- what is shown ---------------------------------------------------------------------
    def refresh(self) -> None:
        """Recompute from the session's model, run and labels (after any of them changed)."""
        if not _METRICS_READY.is_set() and self._warm_up.isRunning():
            return  # again once scikit-learn is loaded
        blind = self.session.blind  # several raters label blind: no model score anywhere
        project = self.session.project
        self.scope.update_entries(project.root if project else None)
        self.review_set = None if blind else collect_review(self.session, self.scope.oof_csv())
        rs = self.review_set
        show_scope_panels(self, rs)
        if blind:
            self.source.setText("Blind mode is on: the model's scores are hidden "
                                "(Rater ▸ Blind mode).")
        elif rs is None:
            self.source.setText("No model yet: train one (Train tab) or load one to review "
                                "its mistakes." if self.session.project else
                                "Open a project and load or train a model.")
        else:
            self.source.setText(rs.source)
        metrics = rs.metrics if rs else {}
        for key, label in self.metric_labels.items():
            label.setText(_fmt(metrics.get(key)))
        self._fill_confusion()
        self._draw_roc()
        self._fill_table()
        if rs is None and self.rel is not None:
            self.show_clip(None)
        elif self.rel is not None:
            self._show_title()

    def _fill_confusion(self) -> None:
        rs = self.review_set
        for (row, col), kind in CELLS.items():
            count = len(rs.cell(kind)) if rs else 0
            item = QTableWidgetItem(f"{count}\n{'disagree' if kind in ('fp', 'fn') else 'agree'}")
            item.setTextAlignment(Qt.AlignmentFlag.AlignCenter)
            font = item.font()
            font.setBold(True)
            item.setFont(font)
            item.setBackground(_WRONG_BRUSH if kind in ("fp", "fn") else _RIGHT_BRUSH)
            item.setToolTip(f"{count} {KINDS[kind]}s: click to list them")
            self.confusion.setItem(row, col, item)

    def _draw_roc(self) -> None:
        rs = self.review_set
        roc = rs.roc() if rs else None
        if roc is None:
            self.roc_curve.setData([], [])
            self.roc_point.setData([], [])
            self.roc_plot.setTitle("ROC: needs good and poor clips" if rs else "ROC", size="9pt")
            return
        self.roc_curve.setData(*roc)
        (tn, fp), (fn, tp) = rs.metrics["confusion_matrix"]
        self.roc_point.setData([fp / max(tn + fp, 1)], [tp / max(tp + fn, 1)])
        self.roc_plot.setTitle(f"ROC (AUC {_fmt(rs.metrics['roc_auc'])})", size="9pt")

    def listed(self) -> list[ReviewClip]:
        """The clips the table lists now (a confusion cell, or the disagreements)."""
        rs = self.review_set
        if rs is None:
            return []
        clips = rs.mistakes() if self._cell is None else rs.cell(self._cell)
        if self.hide_reviewed.isChecked():
            clips = [c for c in clips if not c.reviewed]
        return clips

    def show_cell(self, kind: str | None) -> None:
        """List the clips of confusion cell ``kind`` ("tn", "fp", "fn", "tp"); None lists the
        disagreements."""
        self._cell = kind
        self._fill_table()

    def _fill_table(self) -> None:
        clips = self.listed()
        if self._cell is None:
            left = sum(not c.reviewed for c in clips)
            self.list_title.setText(f"Disagreements · {left} to review · most confident first")
        else:
            self.list_title.setText(f"{KINDS[self._cell].capitalize()}s · {len(clips)}")
        self.mistakes_button.setVisible(self._cell is not None)
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
            if clip.rel == self.rel:
                selected = row
        self.table.clearSelection()
        if selected is not None:
            self.table.selectRow(selected)
        self.table.blockSignals(False)

    def _selection_changed(self) -> None:
        rows = self.table.selectionModel().selectedRows()
        if rows:
            rel = self.table.item(rows[0].row(), 0).data(Qt.ItemDataRole.UserRole)
            if rel != self.rel:
                self.show_clip(rel)

    def select(self, rel: str) -> bool:
        """Select clip ``rel`` in the table (playing it); False if it is not listed."""
        for row in range(self.table.rowCount()):
            if self.table.item(row, 0).data(Qt.ItemDataRole.UserRole) == rel:
                self.table.selectRow(row)
                return True
        return False

    def _clip(self, rel: str | None) -> ReviewClip | None:
        rs = self.review_set
        return next((c for c in rs.clips if c.rel == rel), None) if rs and rel else None

    def show_clip(self, rel: str | None) -> None:
        """Play clip ``rel`` and compute its GradCAM maps in the background."""
        self.rel, self.heat_map = rel, None
        self.player.set_overlay(None)
        self.player.set_importance(None)
        clip = self._clip(rel)
        if rel is None or clip is None or self.session.project is None:
            self.rel = None
            self.worker.cancel()
            self.player.open_clip(None)
            self.clip_title.setText("Select a clip to see where the model looked")
            self.status.setText("")
            return
        path = self.session.project.store.resolve(rel)
        self.player.open_clip(path)
        self._show_title()
        explain = "good" if clip.called_good else "poor"
        self._request = self.worker.request(self.session.model_path, path, explain)
        self.status.setText(f"Computing GradCAM (what made the model call it {explain})…")

    def _show_title(self) -> None:
        clip = self._clip(self.rel)
        if clip is None:
            return
        done = " · reviewed ✓" if clip.reviewed else ""
        self.clip_title.setText(
            f"{Path(clip.rel).name} · labelled {label_text(clip.label)} · model {clip.score:.3f}"
            f" ({'good' if clip.called_good else 'poor'}) · {KINDS[clip.kind]}{done}")

    def _warm_gradcam(self, path: Path | None) -> None:
        """Load a new model into the GradCAM process now (not for exports: GradCAM needs the
        checkpoint's layers)."""
        if path is not None and not is_export(path):
            self.worker.warm(path)

    def _on_gradcam(self, request: int, result: ClipExplanation) -> None:
        if request != self._request or self.rel is None:
            return
        self.heat_map = ClipHeatMap(result)
        caption = (f"GradCAM: what made the model call it {result.explain} "
                   f"(score {result.score:.3f})")
        self.player.set_overlay(self.heat_map, caption=caption)
        self.player.set_importance(*self.heat_map.importance())
        self.status.setText("Heat map: bright = where the model looked for its call; the curve "
                            "under the scrub bar = how much each frame mattered.")

    def _on_gradcam_failed(self, request: int, reason: str) -> None:
        if request == self._request:
            self.status.setText(reason)

    def toggle_overlay(self) -> None:
        """Show or hide the GradCAM heat map (key G)."""
        self.player.toggle_overlay()

    # --- relabel and confirm ---------------------------------------------------------------
    def _next_after(self, rel: str) -> str | None:
        """The next clip to review after ``rel`` in the list (not yet reviewed)."""
        rels = [c.rel for c in self.listed()]
        start = rels.index(rel) + 1 if rel in rels else 0
        for clip in self.listed()[start:] + self.listed()[:start]:
            if clip.rel != rel and not clip.reviewed:
                return clip.rel
        return None

    def _write(self, score: float | None) -> bool:
        """Write the shown clip's label (``score`` None: keep it) tagged reviewed."""
        s, rel = self.session, self.rel
        if rel is None or s.project is None:
            s.message.emit("Select a clip in the Review tab first")
            return False
        if s.project.row(rel) is None:
            s.message.emit(f"{rel} is not a clip of the open project")
            return False
        label = s.label(rel)
        if score is None and label is None:
            s.message.emit(f"{rel} is not labelled: give it a label instead")
            return False
        if not ask_rater(self):
            return False
        nxt = self._next_after(rel)
        if s.current is None or s.current.rel != rel:
            s.open_clip(rel)
        issues = tuple(label.issues) if label else ()
        written = s.label_current(label.quality_score if score is None else score,
                                  issues + (() if REVIEWED in issues else (REVIEWED,)),
                                  label.notes if label else None, advance=False)
        if written and nxt is not None:
            self.select(nxt)
        return written

    def relabel(self, score: float) -> bool:
        """Give the shown clip a new label (same keys as labelling), marked reviewed; then go
        to the next clip to review."""
        return self._write(float(score))

    def confirm(self) -> bool:
        """The label stands (the model is wrong): mark the clip reviewed; next clip."""
        clip = self._clip(self.rel)
        if clip is not None and clip.reviewed:
            self.session.message.emit(f"{Path(clip.rel).name} is already confirmed")
            return False
        return self._write(None)

    def _resolve(self, rel: str, *, flip: bool) -> bool:
        """Label-noise queue: keep (confirm) or flip the label of ``rel``, marked reviewed."""
        clip = self._clip(rel)
        if clip is None:
            return False
        if self.rel != rel:
            self.show_clip(rel)
        if flip:
            return self.relabel(0.0 if clip.labelled_good else 1.0)
        return self.confirm()

    def save_threshold(self) -> None:
        """Save the threshold panel's choice into the model (in a thread) and rescore."""
        save_panel_threshold(self)

    # --- life cycle ------------------------------------------------------------------------
    def showEvent(self, event) -> None:
        super().showEvent(event)
        self.model_vs_raters.refresh_if_stale()
        if self.rel is None and self.table.rowCount():
            self.table.selectRow(0)

    def hideEvent(self, event) -> None:
        self.player.pause()
        super().hideEvent(event)

    def shutdown(self) -> None:
        """Stop the GradCAM thread and the player (before the widget is destroyed)."""
        self.threshold_panel.wait_for_ci()
        self.label_issues.wait()
        self.worker.stop()
        retire(self._warm_up)
        self.model_vs_raters.shutdown()
        self.player.shutdown()

    def closeEvent(self, event) -> None:
        self.shutdown()
        super().closeEvent(event)
