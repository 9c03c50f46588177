"""The Review tab's numbers: the metrics grid, the ROC curve (a dot at the threshold) and the
clickable confusion matrix of a ``ReviewSet``."""
from __future__ import annotations

import math

import pyqtgraph as pg
from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QBrush, QColor
from PySide6.QtWidgets import (
    QAbstractItemView,
    QGridLayout,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from echoquality_core.evaluation.review import CELLS, KINDS, ReviewSet
from echoquality_gui.common import theme

METRICS = (("accuracy", "Accuracy"), ("precision", "Precision"), ("recall", "Recall"),
           ("f1", "F1"), ("roc_auc", "ROC AUC"), ("pr_auc", "PR AUC"),
           ("brier", "Brier"), ("threshold", "Threshold"), ("n", "Clips"))

_WRONG_BRUSH = QBrush(QColor(theme.WRONG_ROW))
_RIGHT_BRUSH = QBrush(QColor(theme.RIGHT_ROW))


def fmt(value: float | int | None) -> str:
    """A metric as shown: integers as they are, else three decimals ("–" when missing)."""
    if isinstance(value, int):
        return str(value)
    return "–" if value is None or not math.isfinite(float(value)) else f"{float(value):.3f}"


class ReviewCharts(QWidget):
    """Metrics, ROC and confusion matrix; ``cell_clicked`` names the confusion cell clicked
    ("tn", "fp", "fn", "tp")."""

    cell_clicked = Signal(str)

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
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
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(metrics)
        self.charts_box = self._build_charts()
        layout.addWidget(self.charts_box)

    def _build_charts(self) -> QWidget:
        """The ROC curve (a dot at the threshold) beside the clickable confusion matrix."""
        self.roc_plot = pg.PlotWidget(enableMenu=False)
        self.roc_plot.setBackground(theme.BACKGROUND)
        self.roc_plot.setMouseEnabled(False, False)
        self.roc_plot.hideButtons()
        self.roc_plot.setLabel("bottom", "False positive rate")
        self.roc_plot.setLabel("left", "True positive rate")
        self.roc_plot.setRange(xRange=(0, 1), yRange=(0, 1), padding=0.03)
        self.roc_plot.plot([0, 1], [0, 1],
                           pen=pg.mkPen(theme.GRID_DASH, style=Qt.PenStyle.DashLine))
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
        self.confusion.cellClicked.connect(
            lambda row, col: self.cell_clicked.emit(CELLS[(row, col)]))
        self.confusion.setMinimumWidth(220)
        charts_box = QWidget()
        charts_box.setFixedHeight(185)
        charts = QHBoxLayout(charts_box)
        charts.setContentsMargins(0, 4, 0, 4)
        charts.addWidget(self.roc_plot, 1)
        charts.addWidget(self.confusion, 1)
        return charts_box

    def show_plots(self, shown: bool) -> None:
        """Show or hide the ROC and the confusion matrix (the metrics stay): the threshold
        panel needs the column's height for its own plots."""
        self.charts_box.setVisible(shown)

    def show_review(self, rs: ReviewSet | None) -> None:
        """Show the metrics, confusion counts and ROC of ``rs`` (None: empty)."""
        metrics = rs.metrics if rs else {}
        for key, label in self.metric_labels.items():
            label.setText(fmt(metrics.get(key)))
        self._fill_confusion(rs)
        self._draw_roc(rs)

    def _fill_confusion(self, rs: ReviewSet | None) -> None:
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

    def _draw_roc(self, rs: ReviewSet | None) -> None:
        roc = rs.roc() if rs else None
        if roc is None:
            self.roc_curve.setData([], [])
            self.roc_point.setData([], [])
            self.roc_plot.setTitle("ROC: needs good and poor clips" if rs else "ROC", size="9pt")
            return
        self.roc_curve.setData(*roc)
        (tn, fp), (fn, tp) = rs.metrics["confusion_matrix"]
        self.roc_point.setData([fp / max(tn + fp, 1)], [tp / max(tp + fn, 1)])
        self.roc_plot.setTitle(f"ROC (AUC {fmt(rs.metrics['roc_auc'])})", size="9pt")
