"""The Review tab: how good is the current model, and which clips does it get wrong?

Metrics, ROC curve and a clickable confusion matrix (``charts``) come from the training run's
test split (``test_predictions.csv`` of ``session.run_dir``) or, for a model loaded from a file,
from the model's scores on the labelled clips (``collect``). The disagreements are listed most
confident mistake first (``clip_table``); the selected clip plays with its GradCAM heat map
following playback (``clip_panel``). The label keys relabel it (through the session: written at
once, undoable) and "Confirm label" marks a disagreement as reviewed with the issue tag
``reviewed`` in the labels CSV. This module composes the parts and owns relabel and confirm.
"""
from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QLabel, QSplitter, QVBoxLayout, QWidget

from echoquality_core.evaluation.review import ReviewClip, ReviewSet
from echoquality_core.labels.store import REVIEWED
from echoquality_core.scoring.heatmap import ClipHeatMap
from echoquality_gui.common.session import Session
from echoquality_gui.common.widgets import section_title
from echoquality_gui.common.workers import Worker
from echoquality_gui.label.panel import ask_rater
from echoquality_gui.review.charts import ReviewCharts
from echoquality_gui.review.clip_panel import ClipPanel
from echoquality_gui.review.clip_table import ClipTable
from echoquality_gui.review.collect import collect_review, has_run_test_split
from echoquality_gui.review.lists import ReviewLists
from echoquality_gui.review.model_vs_raters import ModelVsRaters
from echoquality_gui.review.scope import ReviewScope


class ReviewTab(QWidget):
    """Metrics, ROC, confusion matrix and the model's mistakes, each playable with GradCAM."""

    def __init__(self, session: Session, parent: QWidget | None = None):
        super().__init__(parent)
        self.session = session
        self.scope = ReviewScope()
        self.scope.changed.connect(self.refresh)
        self.review_set: ReviewSet | None = None
        self.save_worker: Worker | None = None  # the last threshold save
        self._stale = False  # the session changed while the tab was hidden
        self._build()
        for signal in (session.model_changed, session.label_changed, session.scores_changed,
                       session.project_opened, session.raters_changed):
            signal.connect(self._session_changed)
        self.refresh()

    def _build(self) -> None:
        self.source = QLabel("")
        self.source.setWordWrap(True)
        self.source.setObjectName("clipInfo")
        self.charts = ReviewCharts()
        self.charts.cell_clicked.connect(self.show_cell)
        self.clips = ClipTable()
        self.clips.clip_chosen.connect(self.show_clip)
        self.lists = ReviewLists(self.clips)
        self.lists.threshold_panel.open_clip.connect(self.show_clip)
        self.lists.threshold_panel.save_requested.connect(self.save_threshold)
        self.lists.label_issues.open_clip.connect(self.show_clip)
        self.lists.label_issues.keep.connect(lambda rel: self._resolve(rel, flip=False))
        self.lists.label_issues.flip.connect(lambda rel: self._resolve(rel, flip=True))
        self.lists.currentChanged.connect(lambda _: self.charts.show_plots(
            self.lists.currentWidget() is not self.lists.threshold_panel))
        self.model_vs_raters = ModelVsRaters(self.session)
        self.side = ClipPanel(self.session, self)
        self.side.relabel.connect(self.relabel)
        self.side.confirm.connect(self.confirm)
        # the parts tests and the window reach by their old names
        self.metric_labels, self.confusion = self.charts.metric_labels, self.charts.confusion
        self.table, self.hide_reviewed = self.clips.table, self.clips.hide_reviewed
        self.mistakes_button = self.clips.mistakes_button
        self.threshold_panel = self.lists.threshold_panel
        self.label_issues = self.lists.label_issues
        self.player, self.worker = self.side.player, self.side.worker

        left = QWidget()
        column = QVBoxLayout(left)
        column.setContentsMargins(6, 4, 6, 4)
        column.addWidget(section_title("Model quality"))
        column.addWidget(self.scope)
        column.addWidget(self.source)
        column.addWidget(self.charts)
        column.addWidget(self.lists, 1)
        column.addWidget(self.model_vs_raters)
        splitter = QSplitter(Qt.Orientation.Horizontal)
        splitter.addWidget(left)
        splitter.addWidget(self.side)
        splitter.setStretchFactor(0, 0)
        splitter.setStretchFactor(1, 1)
        splitter.setSizes([500, 860])
        splitter.setObjectName("reviewSplitter")
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(splitter)

    @property
    def rel(self) -> str | None:
        """The clip in the player."""
        return self.side.rel

    @property
    def heat_map(self) -> ClipHeatMap | None:
        """The GradCAM maps of the clip in the player, once computed."""
        return self.side.heat_map

    # --- what is shown ---------------------------------------------------------------------
    def _session_changed(self, *_args) -> None:
        """Refresh now when shown; else once shown (a finished training run changes model and
        scores several times in a row: ~50 ms each, for a tab nobody looks at). In blind mode
        at once: the last model's figures go, shown or not."""
        if self.isVisible() or self.session.blind:
            self.refresh()
        else:
            self._stale = True

    def refresh(self) -> None:
        """Recompute from the session's model, run and labels (after any of them changed)."""
        self._stale = False
        blind = self.session.blind  # several raters label blind: no model score anywhere
        project = self.session.project
        self.scope.update_entries(project.folder.path if project else None,
                                  has_run_test_split(self.session))
        self.review_set = None if blind else collect_review(self.session, self.scope.oof_csv())
        rs = self.review_set
        self.lists.show_scope(rs, self.session)
        if blind:
            self.source.setText("Blind mode is on: the model's scores are hidden "
                                "(Rater ▸ Blind mode).")
        elif rs is None:
            self.source.setText("No model yet: train one (Train tab) or load one to review "
                                "its mistakes." if self.session.project else
                                "Open a project and load or train a model.")
        else:
            self.source.setText(rs.source)
        self.charts.show_review(rs)
        self.clips.set_review(rs)
        if rs is None and self.rel is not None:
            self.show_clip(None)
        elif (clip := self._clip(self.rel)) is not None:
            self.side.show_title(clip)

    def listed(self) -> list[ReviewClip]:
        """The clips the table lists now (a confusion cell, or the disagreements)."""
        return self.clips.listed()

    def show_cell(self, kind: str | None) -> None:
        """List the clips of confusion cell ``kind`` ("tn", "fp", "fn", "tp"); None lists the
        disagreements."""
        self.clips.show_cell(kind)

    def select(self, rel: str) -> bool:
        """Select clip ``rel`` in the table (playing it); False if it is not listed."""
        return self.clips.select(rel)

    def _clip(self, rel: str | None) -> ReviewClip | None:
        rs = self.review_set
        return next((c for c in rs.clips if c.rel == rel), None) if rs and rel else None

    def show_clip(self, rel: str | None) -> None:
        """Play clip ``rel`` and compute its GradCAM maps in the background."""
        clip = self._clip(rel)
        project = self.session.project
        if clip is None or project is None:
            self.side.show_clip(None, None)
        else:
            self.side.show_clip(clip, project.store.resolve(clip.rel))
        self.clips.current = self.rel

    def toggle_overlay(self) -> None:
        """Show or hide the GradCAM heat map (key G)."""
        self.player.toggle_overlay()

    # --- relabel and confirm ---------------------------------------------------------------
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
        nxt = self.clips.next_after(rel)
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
        """Save the threshold panel's choice into the model (by a child process) and rescore."""
        self.save_worker = self.lists.save_threshold(self.session) or self.save_worker

    def _play_first(self) -> None:
        """Play the first listed clip when none is chosen yet."""
        if self.rel is None and self.table.rowCount():
            self.table.selectRow(0)

    # --- life cycle ------------------------------------------------------------------------
    def showEvent(self, event) -> None:  # noqa: N802 (Qt's name)
        super().showEvent(event)
        if self._stale:
            self.refresh()
        self.model_vs_raters.refresh_if_stale()
        self._play_first()

    def hideEvent(self, event) -> None:  # noqa: N802 (Qt's name)
        self.player.pause()
        super().hideEvent(event)

    def shutdown(self) -> None:
        """Stop the GradCAM thread and the player (before the widget is destroyed)."""
        self.lists.wait()
        self.model_vs_raters.shutdown()
        self.side.shutdown()

    def closeEvent(self, event) -> None:  # noqa: N802 (Qt's name)
        self.shutdown()
        super().closeEvent(event)
