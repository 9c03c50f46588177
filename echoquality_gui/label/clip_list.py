"""The clip list: a table of the project's clips (header fields, label, model score) with
sorting, filters, a "37 / 120 labelled" counter, and the header-scan and scoring progress."""
from __future__ import annotations

from collections import Counter

from PySide6.QtCore import (
    QAbstractTableModel,
    QModelIndex,
    QSortFilterProxyModel,
    Qt,
    Signal,
)
from PySide6.QtGui import QBrush, QColor
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QTableView,
    QVBoxLayout,
    QWidget,
)

from echoquality_core.labels.project import ClipInfo
from echoquality_core.decision import assessment, called_good, labelled_good
from echoquality_gui.common import theme
from echoquality_gui.label.clip_filter import MODES, ClipFilter, FilterRow, class_counts
from echoquality_gui.label.columns import column_texts, fit_columns
from echoquality_gui.raters.menu import raters_text
from echoquality_gui.common.session import Session

COLUMNS = ("File", "Frames", "FPS", "Label", "Issues", "Rater", "Model")
SORT_ROLE = Qt.ItemDataRole.UserRole + 1
REL_ROLE = Qt.ItemDataRole.UserRole + 2  # the clip's path relative to the project
FILTERS = MODES
_ERROR_BRUSH = QBrush(QColor(theme.ERROR))
_GOOD_BRUSH = QBrush(QColor(theme.GOOD_LABEL))
_POOR_BRUSH = QBrush(QColor(theme.POOR_LABEL))


def label_text(score: float) -> str:
    """'good' / 'poor' for binary scores, the number otherwise."""
    return {1.0: "good", 0.0: "poor"}.get(float(score), f"{score:.2f}")


def short_names(rels) -> dict[str, str]:
    """rel path -> what the File column shows: the file name where it is unique in the
    project (the folder is in the tooltip), else the whole relative path."""
    names = {r: r.rsplit("/", 1)[-1] for r in rels}  # rel paths use "/" on every system
    counts = Counter(names.values())
    return {r: name if counts[name] == 1 else r for r, name in names.items()}


class ClipTableModel(QAbstractTableModel):
    """One row per clip of the session's project, in the project's order."""

    def __init__(self, session: Session, parent=None):
        super().__init__(parent)
        self.session = session
        self._names: dict[str, str] = {}
        self._names_key: tuple | None = None
        session.clips_reset.connect(self._reset)
        session.project_opened.connect(self._reset)
        session.scores_changed.connect(self._reset)
        session.clips_updated.connect(self._rows_changed)
        session.label_changed.connect(self._label_changed)

    def _clips(self) -> list[ClipInfo]:
        return self.session.project.clips if self.session.project else []

    def _reset(self, *_args) -> None:
        self.beginResetModel()
        clips = self._clips()
        key = (id(clips), len(clips), clips[0].rel if clips else "", clips[-1].rel if clips
               else "")
        if self._names_key != key:  # not again for every batch of new scores
            self._names, self._names_key = short_names(c.rel for c in clips), key
        self.endResetModel()

    def _rows_changed(self, rows: list[int]) -> None:
        if rows:
            self.dataChanged.emit(self.index(min(rows), 0),
                                  self.index(max(rows), len(COLUMNS) - 1))

    def _label_changed(self, rel: str) -> None:
        row = self.session.project.row(rel) if self.session.project else None
        if row is not None:
            self._rows_changed([row])

    def rowCount(self, parent=QModelIndex()) -> int:  # noqa: B008 (Qt's signature)
        return 0 if parent.isValid() else len(self._clips())

    def columnCount(self, parent=QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(COLUMNS)

    def headerData(self, section, orientation, role=Qt.ItemDataRole.DisplayRole):
        if orientation == Qt.Orientation.Horizontal and role == Qt.ItemDataRole.DisplayRole:
            return COLUMNS[section]
        return None

    def clip(self, row: int) -> ClipInfo:
        return self._clips()[row]

    def data(self, index, role=Qt.ItemDataRole.DisplayRole):
        if not index.isValid():
            return None
        info = self._clips()[index.row()]
        col = COLUMNS[index.column()]
        if role == Qt.ItemDataRole.DisplayRole:
            return self._display(info, col)
        if role == SORT_ROLE:
            return self._sort_key(info, col)
        if role == REL_ROLE:
            return info.rel
        if role == Qt.ItemDataRole.ToolTipRole:
            if col == "Model" and info.rel in self.session.scores and self.session.show_scores:
                return self._score_tip(self.session.scores[info.rel])
            if col == "Issues" and self._display(info, col):
                return self._display(info, col)
            return f"{info.rel}\n{info.error}" if info.error else info.rel
        if role == Qt.ItemDataRole.ForegroundRole:
            if info.error:
                return _ERROR_BRUSH
            label = self.session.label(info.rel)
            if col == "Label" and label is not None:
                return _GOOD_BRUSH if labelled_good(label.quality_score) else _POOR_BRUSH
        if role == Qt.ItemDataRole.TextAlignmentRole and col in ("Frames", "FPS", "Model"):
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        return None

    def _display(self, info: ClipInfo, col: str) -> str:
        label = self.session.label(info.rel)
        if col in ("Label", "Rater", "Model") and self.session.project is not None:
            text = raters_text(self.session, info.rel, label, col)
            if text is not None:
                return text
        if col == "File":
            return self._names.get(info.rel, info.rel)
        if col == "Frames":
            return "error" if info.error else ("…" if info.n_frames is None
                                                    else str(info.n_frames))
        if col == "FPS":
            return "" if info.fps is None else f"{info.fps:.1f}"
        if col == "Label":
            return "" if label is None else label_text(label.quality_score)
        if col == "Issues":
            return "" if label is None else ", ".join(label.issues)
        if col == "Rater":
            return "" if label is None or not label.rater else label.rater
        score = self.session.scores.get(info.rel)
        return "" if score is None else f"{score:.2f}"

    def _score_tip(self, score: float) -> str:
        threshold = self.session.threshold
        verdict = "good" if called_good(score, threshold) else "poor"
        return (f"Model score {score:.3f}: {assessment(score, threshold)}; {verdict} at threshold "
                f"{threshold:.2f}")

    def _sort_key(self, info: ClipInfo, col: str):
        label = self.session.label(info.rel)
        if col == "Frames":
            return -1 if info.n_frames is None else info.n_frames
        if col == "FPS":
            return -1.0 if info.fps is None else info.fps
        if col == "Label":
            return -1.0 if label is None else label.quality_score
        if col == "Model":
            return self.session.scores.get(info.rel, -1.0)
        return self._display(info, col).lower()


class ClipFilterProxy(QSortFilterProxyModel):
    """Sorts by each column's natural order and keeps the rows of one filter + a name search."""

    def __init__(self, session: Session, parent=None):
        super().__init__(parent)
        self.session = session
        self.filter = ClipFilter()
        self.setSortRole(SORT_ROLE)
        self.setDynamicSortFilter(True)

    def set_mode(self, mode: str) -> None:
        if mode not in FILTERS.values():
            raise ValueError(f"unknown clip filter {mode!r}; known: {sorted(FILTERS.values())}")
        self._refilter("mode", mode)

    def set_text(self, text: str) -> None:
        self._refilter("text", text.strip().lower())

    def set_tag_and_scores(self, tag: str, low: float, high: float) -> None:
        """Only clips with issue tag ``tag`` ('' any) and a model score in [low, high]."""
        self._refilter("tag", tag)
        self._refilter("score_min", low)
        self._refilter("score_max", high)

    @property
    def mode(self) -> str:
        return self.filter.mode

    def _refilter(self, name: str, value) -> None:
        if hasattr(self, "beginFilterChange"):  # Qt >= 6.10 (invalidateRowsFilter deprecated)
            self.beginFilterChange()
            setattr(self.filter, name, value)
            self.endFilterChange(QSortFilterProxyModel.Direction.Rows)
        else:
            setattr(self.filter, name, value)
            self.invalidateRowsFilter()

    def filterAcceptsRow(self, row: int, parent) -> bool:
        info = self.sourceModel().clip(row)
        return self.filter.accepts(info, self.session.label(info.rel),
                                   self.session.scores.get(info.rel),
                                   self.filter.mode == "disagree"
                                   and self.session.disagrees(info.rel))


class ClipListPanel(QWidget):
    """Filter bar, counter, scan progress and the clip table; emits ``open_requested(rel)``
    on double-click or Enter."""

    open_requested = Signal(str)

    def __init__(self, session: Session, parent=None):
        super().__init__(parent)
        self.session = session
        self.model = ClipTableModel(session, self)
        self.proxy = ClipFilterProxy(session, self)
        self.proxy.setSourceModel(self.model)

        self.filter_box = QComboBox()
        self.filter_box.addItems(list(FILTERS))
        self.filter_box.currentTextChanged.connect(lambda t: self.proxy.set_mode(FILTERS[t]))
        self.search = QLineEdit(placeholderText="Find file…", clearButtonEnabled=True)
        self.search.textChanged.connect(self.proxy.set_text)
        self.filter_row = FilterRow()
        self.filter_row.changed.connect(self.proxy.set_tag_and_scores)
        self.counter = QLabel("No project open")
        self.counter.setObjectName("counter")
        self.class_counter = QLabel("")
        self.class_counter.setObjectName("classCounter")
        self.class_counter.setToolTip("Labelled clips per class")
        self.progress = QProgressBar(textVisible=True, visible=False)
        self.cancel_button = QPushButton("Cancel", visible=False)
        self.cancel_button.clicked.connect(session.cancel_scan)
        self.scoring_bar = QProgressBar(textVisible=True, visible=False)
        self.scoring_cancel = QPushButton("Cancel", visible=False)
        self.scoring_cancel.setToolTip("Stop scoring the clips with the model")
        self.scoring_cancel.clicked.connect(session.cancel_scoring)
        self.scoring_error = QLabel(visible=False, wordWrap=True)  # why the model failed
        self.scoring_error.setStyleSheet(f"color: {theme.ERROR}")
        self._build_view()
        self._lay_out()

        session.scan_progress.connect(self._scan_progress)
        session.scan_finished.connect(self._scan_finished)
        for signal in (session.clips_reset, session.clips_updated, session.label_changed,
                       session.project_opened, session.scale_changed):
            signal.connect(self._update_counter)
        session.current_changed.connect(self._select_current)
        session.scoring_progress.connect(self._scoring_progress)
        session.scoring_finished.connect(self._scoring_finished)
        session.scoring_failed.connect(self._scoring_failed)
        session.scores_changed.connect(lambda: self.session.scores and self.scoring_error.hide())
        session.project_opened.connect(lambda *_: self.scoring_error.hide())
        for signal in (session.scores_changed, session.score_visibility_changed,
                       session.project_opened):
            signal.connect(self._show_model_column)
        self._show_model_column()
        for signal in (session.label_changed, session.project_opened, session.raters_changed):
            signal.connect(self._show_rater_column)
        self._show_rater_column()
        for signal in (session.project_opened, session.raters_changed, session.scale_changed):
            signal.connect(self._fit_columns)
        self._fit_columns()

    def _build_view(self) -> None:
        """The clip table (sortable, one row selected, the name elided in the middle)."""
        self.view = QTableView()
        self.view.setModel(self.proxy)
        self.view.setSortingEnabled(True)
        self.view.sortByColumn(0, Qt.SortOrder.AscendingOrder)
        self.view.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.view.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.view.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.view.verticalHeader().hide()
        self.view.verticalHeader().setDefaultSectionSize(22)
        self.view.setWordWrap(False)
        self.view.setTextElideMode(Qt.TextElideMode.ElideMiddle)  # start and end of the name
        header = self.view.horizontalHeader()
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        header.setMinimumSectionSize(36)
        for col in range(1, len(COLUMNS)):
            header.setSectionResizeMode(col, QHeaderView.ResizeMode.Interactive)
        header.sortIndicatorChanged.connect(self._fit_columns)
        self.view.activated.connect(self._activated)
        self.view.selectionModel().selectionChanged.connect(self._selection_changed)

    def _lay_out(self) -> None:
        top = QHBoxLayout()
        top.addWidget(self.filter_box)
        top.addWidget(self.search, 1)
        scan = QHBoxLayout()
        scan.addWidget(self.progress, 1)
        scan.addWidget(self.cancel_button)
        scoring = QHBoxLayout()
        scoring.addWidget(self.scoring_bar, 1)
        scoring.addWidget(self.scoring_cancel)
        scoring.addWidget(self.scoring_error, 1)
        scoring.addWidget(self.scoring_error, 1)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addLayout(top)
        layout.addWidget(self.filter_row)
        counts = QHBoxLayout()
        counts.addWidget(self.counter)
        counts.addStretch(1)
        counts.addWidget(self.class_counter)
        layout.addLayout(counts)
        layout.addLayout(scan)
        layout.addLayout(scoring)
        layout.addWidget(self.view, 1)

    def _fit_columns(self, *_args) -> None:
        """Every column but File fits its texts; File takes the rest (``columns.py``)."""
        fit_columns(self.view, COLUMNS, column_texts(self.session))

    def _show_model_column(self, *_args) -> None:
        """The Model column appears once a model has scored clips (unless scores are hidden)."""
        self.view.setColumnHidden(COLUMNS.index("Model"),
                                  not (self.session.scores and self.session.show_scores))

    def _show_rater_column(self, *_args) -> None:
        """The Rater column appears once a label carries a rater's name (room for the file
        names in a one-person project that never named its rater)."""
        project = self.session.project
        named = project is not None and (project.raters.exists
                                         or bool(project.store.rater_names()))
        self.view.setColumnHidden(COLUMNS.index("Rater"), not named)

    def _scoring_progress(self, done: int, total: int) -> None:
        self.scoring_bar.show()
        self.scoring_cancel.show()
        self.scoring_bar.setRange(0, total)  # 0..0: busy while the model loads
        self.scoring_bar.setValue(done)
        name = self.session.model_path.name if self.session.model_path else "model"
        self.scoring_bar.setFormat(f"Scoring with {name} %v / {total}" if total
                                   else f"Scoring with {name}…")

    def _scoring_finished(self) -> None:
        self.scoring_bar.hide()
        self.scoring_cancel.hide()

    def _scoring_failed(self, text: str) -> None:
        self.scoring_error.setText(text)
        self.scoring_error.show()

    def _activated(self, index) -> None:
        self.open_requested.emit(self.model.clip(self.proxy.mapToSource(index).row()).rel)

    def _selection_changed(self, *_args) -> None:
        """A row the user highlights (click, arrow keys) opens at once, in the same event: the
        label keys then act on the clip the list shows selected (issue 21.1)."""
        rel, current = self.highlighted(), self.session.current
        if rel is not None and (current is None or current.rel != rel):
            self.open_requested.emit(rel)

    def highlighted(self) -> str | None:
        """The rel path of the row the list shows selected (None: no row)."""
        rows = self.view.selectionModel().selectedRows()
        if len(rows) != 1:
            return None
        return self.model.clip(self.proxy.mapToSource(rows[0]).row()).rel

    def _scan_progress(self, done: int, total: int) -> None:
        if done < 0:
            self.progress.hide()
            return
        self.progress.setVisible(done < total)
        self.cancel_button.setVisible(done < total)
        self.progress.setRange(0, max(total, 1))
        self.progress.setValue(done)
        self.progress.setFormat(f"Reading headers %v / {total}")

    def _scan_finished(self) -> None:
        self.progress.hide()
        self.cancel_button.hide()

    def _update_counter(self, *_args) -> None:
        project = self.session.project
        if project is None:
            return
        labelled, total = project.counts()
        per_class = class_counts((self.session.label(c.rel) for c in project.clips),
                                 self.session.scale == "five_point")
        self.counter.setText(f"{labelled} / {total} labelled")
        self.class_counter.setText(per_class)

    def _select_current(self, info: ClipInfo | None) -> None:
        row = self.session.project.row(info.rel) if info and self.session.project else None
        if row is None:
            self.view.clearSelection()
            return
        index = self.proxy.mapFromSource(self.model.index(row, 0))
        if index.isValid():
            self.view.setCurrentIndex(index)
            self.view.scrollTo(index)

    def visible_rels(self) -> list[str]:
        """Clip rel paths in the table's current (sorted, filtered) order."""
        return [self.model.clip(self.proxy.mapToSource(self.proxy.index(r, 0)).row()).rel
                for r in range(self.proxy.rowCount())]

    def neighbour(self, step: int) -> str | None:
        """The clip ``step`` rows from the current one in the table's order (for Up/Down and
        for prefetching the next clip)."""
        rels = self.visible_rels()
        if not rels:
            return None
        current = self.session.current.rel if self.session.current else None
        if current not in rels:
            return rels[0] if step > 0 else rels[-1]
        i = rels.index(current) + step
        return rels[i] if 0 <= i < len(rels) else None

