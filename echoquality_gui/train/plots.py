"""The Train tab's live plots: batch and epoch losses, validation AUC / accuracy and the
learning rate, with the best epoch marked (pyqtgraph)."""
from __future__ import annotations

import math

import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QGridLayout, QWidget

from echoquality_core.train.events import BatchEnd, EpochEnd
from echoquality_gui.common import theme

SMOOTHING = 0.8  # weight of the past in the smoothed batch-loss curve


class _DecadeAxis(pg.AxisItem):
    """A log10 axis labelled 1e-4, 1e-3, … at whole decades only."""

    def __init__(self) -> None:
        super().__init__("left")
        self.setTickSpacing(1, 1)

    def tickStrings(self, values, scale, spacing) -> list[str]:
        return [rate_text(10.0 ** v) for v in values]


def _plot(title: str, y_label: str, legend_columns: int = 0, *, legend_bottom: bool = False,
          left: pg.AxisItem | None = None) -> pg.PlotWidget:
    plot = pg.PlotWidget(background=theme.BACKGROUND, axisItems={"left": left} if left else None)
    plot.setTitle(title, color=theme.TEXT, size="10pt")
    plot.showGrid(x=True, y=True, alpha=0.15)
    for side in ("left", "bottom"):
        axis = plot.getAxis(side)
        axis.setTextPen(theme.DIM)
        axis.setPen(theme.AXIS)
        axis.enableAutoSIPrefix(False)
    plot.setLabel("bottom", "epoch", color=theme.DIM)
    plot.setLabel("left", y_label, color=theme.DIM)
    plot.setMouseEnabled(x=False, y=False)
    plot.hideButtons()
    if legend_columns:
        plot.addLegend(offset=(-8, -4 if legend_bottom else 4), labelTextColor=theme.DIM,
                       brush=(21, 24, 30, 220),
                       labelTextSize="9pt", colCount=legend_columns)
    return plot


def _epoch_curve(plot: pg.PlotWidget, name: str, colour: str, symbol: str = "o"):
    return plot.plot([], [], name=name, pen=pg.mkPen(colour, width=2), symbol=symbol,
                     symbolSize=7, symbolBrush=colour, symbolPen=None, connect="finite")


def rate_text(rate: float) -> str:
    """1e-4 rather than 0.0001."""
    mantissa, exponent = f"{rate:.0e}".split("e")
    return f"{mantissa}e{int(exponent)}"


class TrainPlots(QWidget):
    """Loss per batch (raw, faint, and smoothed) and per epoch, validation loss, validation
    AUC / accuracy and the learning rate, with the best epoch marked."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.loss_plot = _plot("Loss", "loss", legend_columns=4)
        self.metric_plot = _plot("Validation AUC and accuracy", "", legend_columns=2,
                                 legend_bottom=True)
        self.metric_plot.setYRange(-0.03, 1.12, padding=0)
        self.lr_plot = _plot("Learning rate", "", left=_DecadeAxis())  # y = log10(rate)
        raw = pg.mkColor(theme.SERIES["train"])
        raw.setAlpha(70)
        self.curves = {
            "batch": self.loss_plot.plot([], [], name="train, per batch", pen=pg.mkPen(raw)),
            "smooth": self.loss_plot.plot([], [], name="train, smoothed",
                                          pen=pg.mkPen(theme.SERIES["train"], width=2)),
            "train": _epoch_curve(self.loss_plot, "train, per epoch", theme.SERIES["train"], "s"),
            "val": _epoch_curve(self.loss_plot, "validation", theme.SERIES["val"]),
            "auc": _epoch_curve(self.metric_plot, "AUC", theme.SERIES["auc"]),
            "accuracy": _epoch_curve(self.metric_plot, "accuracy", theme.SERIES["accuracy"], "t"),
            "lr": _epoch_curve(self.lr_plot, "learning rate", theme.SERIES["lr"], "d"),
        }
        self.best_lines = []
        for plot in (self.loss_plot, self.metric_plot):
            line = pg.InfiniteLine(angle=90, movable=False, label="best",
                                   pen=pg.mkPen(theme.SERIES["best"], width=1,
                                                style=Qt.PenStyle.DashLine),
                                   labelOpts={"position": 0.12, "color": theme.SERIES["best"]})
            line.setVisible(False)
            plot.addItem(line, ignoreBounds=True)
            self.best_lines.append(line)
        self.best_marker = pg.ScatterPlotItem(size=16, symbol="star", pen=None,
                                              brush=theme.SERIES["best"])
        self.loss_plot.addItem(self.best_marker)

        grid = QGridLayout(self)
        grid.setContentsMargins(0, 0, 0, 0)
        grid.setSpacing(6)
        grid.addWidget(self.loss_plot, 0, 0, 1, 2)
        grid.addWidget(self.metric_plot, 1, 0)
        grid.addWidget(self.lr_plot, 1, 1)
        grid.setRowStretch(0, 3)
        grid.setRowStretch(1, 2)
        self.clear()

    def clear(self, epochs: int = 1) -> None:
        """Forget the plotted run; the epoch axes show ``epochs`` epochs."""
        self.loss_plot.setXRange(0, epochs, padding=0.02)
        for plot in (self.metric_plot, self.lr_plot):
            plot.setXRange(0.5, epochs + 0.5, padding=0)
        self.batches: dict[str, list[float]] = {"x": [], "loss": [], "smooth": []}
        self.epochs: dict[str, list[float]] = {k: [] for k in
                                               ("x", "train", "val", "auc", "accuracy", "lr")}
        self.best_epoch: int | None = None
        self._ema = 0.0
        self.redraw()

    def add_batch(self, event: BatchEnd) -> None:
        """Remember one batch's loss (drawn at the next ``redraw``)."""
        n = len(self.batches["loss"]) + 1
        self._ema = SMOOTHING * self._ema + (1 - SMOOTHING) * event.loss
        self.batches["x"].append(event.epoch - 1 + event.step / max(event.n_steps, 1))
        self.batches["loss"].append(event.loss)
        self.batches["smooth"].append(self._ema / (1 - SMOOTHING ** n))

    def add_epoch(self, event: EpochEnd) -> None:
        """Add one epoch's points and draw everything."""
        nan = float("nan")
        values = {"x": event.epoch, "train": event.train_loss, "val": event.val_loss,
                  "auc": event.metrics.get("roc_auc", nan),
                  "accuracy": event.metrics.get("accuracy", nan), "lr": event.lr}
        for key, value in values.items():
            self.epochs[key].append(float(value))
        if event.best:
            self.best_epoch = event.epoch
        self.redraw()

    def redraw(self) -> None:
        b, e = self.batches, self.epochs
        self.curves["batch"].setData(b["x"], b["loss"])
        self.curves["smooth"].setData(b["x"], b["smooth"])
        for key in ("train", "val", "auc", "accuracy"):
            self.curves[key].setData(e["x"], e[key])
        rates = [(x, r) for x, r in zip(e["x"], e["lr"], strict=True) if r > 0]
        self.curves["lr"].setData([x for x, _ in rates], [math.log10(r) for _, r in rates])
        best = self.best_epoch
        for line in self.best_lines:
            line.setVisible(best is not None)
            if best is not None:
                line.setValue(best)
        if best is not None:
            i = e["x"].index(best)
            self.best_marker.setData([best], [e["val"][i]])
        else:
            self.best_marker.setData([], [])
        if rates:  # at least two decades, so the axis shows two or more labels
            lo, hi = (f(math.log10(r) for _, r in rates) for f in (min, max))
            middle, half = (lo + hi) / 2, max((hi - lo) / 2 + 0.3, 1.0)
            self.lr_plot.setYRange(middle - half, middle + half, padding=0)

    def point_counts(self) -> dict[str, int]:
        """How many points each curve shows (for a quick look at a run's progress)."""
        return {name: len(curve.getData()[0] if curve.getData()[0] is not None else [])
                for name, curve in self.curves.items()}
