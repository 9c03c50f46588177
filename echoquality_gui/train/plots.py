"""The Train tab's live plots: batch and epoch losses, validation AUC / accuracy and the
learning rate, with the best epoch marked (pyqtgraph).

Made to read at a glance: the three plots share one x-axis of whole epochs (1…N); tick labels
have at most 4 significant digits (a single loss value gets a readable range around it); each
legend sits in the plot's header row, never on the data; the "best" label stays inside the plot
(left of its line near the right edge); an empty plot says it is waiting for the first epoch.
"""
from __future__ import annotations

import math

import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QGridLayout, QWidget

from echoquality_core.train.events import BatchEnd, EpochEnd
from echoquality_gui.common import theme

SMOOTHING = 0.8  # weight of the past in the smoothed batch-loss curve
EMPTY_TEXT = "waiting for the first epoch"
MIN_LOSS_SPAN = 0.1  # the loss axis spans at least this share of its largest value
METRIC_RANGE = (-0.04, 1.04)
LABEL_PIXELS = 56  # room an epoch tick label needs


def short_number(value: float) -> str:
    """A tick label: at most 4 significant digits (0.7274, 12.5, 1e-05)."""
    text = f"{value:.4g}"
    return "0" if text == "-0" else text


def rate_text(rate: float) -> str:
    """1e-4 rather than 0.0001."""
    mantissa, exponent = f"{rate:.0e}".split("e")
    return f"{mantissa}e{int(exponent)}"


def epoch_ticks(epochs: int, pixels: float) -> list[int]:
    """Whole epochs to label on an axis ``pixels`` wide: 1 and every step-th epoch up to
    ``epochs`` (steps 1, 2, 5, 10, 20, 50, …: as many as fit)."""
    fit = max(1, int(pixels // LABEL_PIXELS))
    step = 1
    while epochs // step + (step > 1) > fit:
        step = next(s * 10 ** k for k in range(12) for s in (1, 2, 5) if s * 10 ** k > step)
    return sorted({1, *range(step, epochs + 1, step)})


class _ShortAxis(pg.AxisItem):
    """Tick labels with at most 4 significant digits."""

    def tickStrings(self, values, scale, spacing) -> list[str]:  # noqa: N802 (pyqtgraph)
        return [short_number(v * scale) for v in values]


class _EpochAxis(pg.AxisItem):
    """An x-axis labelled at whole epochs 1…``epochs`` only."""

    def __init__(self) -> None:
        super().__init__("bottom")
        self.epochs = 1

    def tickValues(self, minVal, maxVal, size) -> list:  # noqa: N802,N803 (pyqtgraph)
        return [(1.0, [float(e) for e in epoch_ticks(self.epochs, size)])]

    def tickStrings(self, values, scale, spacing) -> list[str]:  # noqa: N802 (pyqtgraph)
        return [str(round(v)) for v in values]


class _DecadeAxis(pg.AxisItem):
    """A log10 axis labelled 1e-4, 1e-3, … at whole decades only."""

    def __init__(self) -> None:
        super().__init__("left")
        self.setTickSpacing(1, 1)

    def tickStrings(self, values, scale, spacing) -> list[str]:  # noqa: N802 (pyqtgraph)
        return [rate_text(10.0 ** v) for v in values]


class Chart(pg.GraphicsLayoutWidget):
    """One plot under a header row holding its title and its legend (off the data)."""

    def __init__(self, title: str, y_label: str, left: pg.AxisItem | None = None,
                 legend_columns: int = 0):
        super().__init__()
        self.setBackground(theme.BACKGROUND)
        self.ci.setContentsMargins(4, 2, 8, 2)
        self.ci.setSpacing(0)
        self.title = self.addLabel(title, row=0, col=0, color=theme.TEXT, size="10pt",
                                   justify="left")
        self.legend = pg.LegendItem(labelTextColor=theme.DIM, labelTextSize="9pt",
                                    colCount=max(legend_columns, 1), frame=False)
        self.has_legend = legend_columns > 0
        if self.has_legend:
            self.addItem(self.legend, row=0, col=1)
        self.x_axis = _EpochAxis()
        self.plot = self.addPlot(row=1, col=0, colspan=2, axisItems={
            "left": left or _ShortAxis("left"), "bottom": self.x_axis})
        self.plot.showGrid(x=True, y=True, alpha=0.15)
        for side in ("left", "bottom"):
            axis = self.plot.getAxis(side)
            axis.setTextPen(theme.DIM)
            axis.setPen(theme.AXIS)
            axis.enableAutoSIPrefix(False)
        self.plot.setLabel("bottom", "epoch", color=theme.DIM)
        self.plot.setLabel("left", y_label, color=theme.DIM)
        self.plot.setMouseEnabled(x=False, y=False)
        self.plot.hideButtons()
        self.empty = pg.TextItem(EMPTY_TEXT, color=theme.DIM, anchor=(0.5, 0.5))
        self.plot.addItem(self.empty, ignoreBounds=True)
        self.best_label = pg.TextItem("best", color=theme.SERIES["best"])
        self.best_label.setVisible(False)
        self.plot.addItem(self.best_label, ignoreBounds=True)

    def curve(self, name: str, **style) -> pg.PlotDataItem:
        """A curve with its legend entry."""
        item = self.plot.plot([], [], **style)
        if self.has_legend:
            self.legend.addItem(item, name)
        return item

    def set_epochs(self, epochs: int) -> None:
        """Whole epochs 1…``epochs`` on the x-axis (0 at the left: batches of epoch 1)."""
        self.x_axis.epochs = epochs
        self.plot.setXRange(0, epochs, padding=0.04)

    def set_y_range(self, low: float, high: float) -> None:
        self.plot.setYRange(low, high, padding=0)

    def show_state(self, empty: bool, best: float | None) -> None:
        """The "waiting" text while ``empty``; the "best" label at epoch ``best`` (None: no
        label), inside the plot: right of its line, or left of it in the right half."""
        (x0, x1), (y0, y1) = self.plot.viewRange()
        self.empty.setVisible(empty)
        self.empty.setPos((x0 + x1) / 2, (y0 + y1) / 2)
        self.best_label.setVisible(best is not None)
        if best is not None:
            self.best_label.setAnchor((1, -0.1) if best > (x0 + x1) / 2 else (0, -0.1))
            self.best_label.setPos(best, y1)


def _epoch_style(colour: str, symbol: str = "o") -> dict:
    return {"pen": pg.mkPen(colour, width=2), "symbol": symbol, "symbolSize": 7,
            "symbolBrush": colour, "symbolPen": None, "connect": "finite"}


class TrainPlots(QWidget):
    """Loss per batch (raw, faint, and smoothed) and per epoch, validation loss, validation
    AUC / accuracy and the learning rate, with the best epoch marked."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.loss_chart = Chart("Loss", "loss", legend_columns=4)
        self.metric_chart = Chart("Validation AUC and accuracy", "", legend_columns=2)
        self.lr_chart = Chart("Learning rate", "", left=_DecadeAxis())  # y = log10(rate)
        self.charts = (self.loss_chart, self.metric_chart, self.lr_chart)
        self.loss_plot, self.metric_plot, self.lr_plot = (c.plot for c in self.charts)
        self.metric_chart.set_y_range(*METRIC_RANGE)
        raw = pg.mkColor(theme.SERIES["train"])
        raw.setAlpha(70)
        loss, metric = self.loss_chart, self.metric_chart
        self.curves = {
            "batch": loss.curve("train, per batch", pen=pg.mkPen(raw)),
            "smooth": loss.curve("train, smoothed", pen=pg.mkPen(theme.SERIES["train"], width=2)),
            "train": loss.curve("train, per epoch", **_epoch_style(theme.SERIES["train"], "s")),
            "val": loss.curve("validation", **_epoch_style(theme.SERIES["val"])),
            "auc": metric.curve("AUC", **_epoch_style(theme.SERIES["auc"])),
            "accuracy": metric.curve("accuracy", **_epoch_style(theme.SERIES["accuracy"], "t")),
            "lr": self.lr_chart.curve("learning rate", **_epoch_style(theme.SERIES["lr"], "d")),
        }
        self.best_lines = []
        for plot in (self.loss_plot, self.metric_plot):
            line = pg.InfiniteLine(angle=90, movable=False, pen=pg.mkPen(
                theme.SERIES["best"], width=1, style=Qt.PenStyle.DashLine))
            line.setVisible(False)
            plot.addItem(line, ignoreBounds=True)
            self.best_lines.append(line)
        self.best_marker = pg.ScatterPlotItem(size=16, symbol="star", pen=None,
                                              brush=theme.SERIES["best"])
        self.best_marker.setZValue(-1)  # under the validation point it marks
        self.loss_plot.addItem(self.best_marker)

        grid = QGridLayout(self)
        grid.setContentsMargins(0, 0, 0, 0)
        grid.setSpacing(6)
        grid.addWidget(self.loss_chart, 0, 0, 1, 2)
        grid.addWidget(self.metric_chart, 1, 0)
        grid.addWidget(self.lr_chart, 1, 1)
        grid.setRowStretch(0, 3)
        grid.setRowStretch(1, 2)
        self.clear()

    def clear(self, epochs: int = 1) -> None:
        """Forget the plotted run; the epoch axes show epochs 1…``epochs``."""
        self.n_epochs = max(1, epochs)
        for chart in self.charts:
            chart.set_epochs(self.n_epochs)
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
        self._set_loss_range()
        if rates:  # at least two decades, so the axis shows two or more labels
            lo, hi = (f(math.log10(r) for _, r in rates) for f in (min, max))
            middle, half = (lo + hi) / 2, max((hi - lo) / 2 + 0.3, 1.15)
            self.lr_chart.set_y_range(middle - half, middle + half)
        self.loss_chart.show_state(not b["x"] and not e["x"], best)
        self.metric_chart.show_state(not e["x"], best)
        self.lr_chart.show_state(not rates, None)

    def _set_loss_range(self) -> None:
        """The loss axis: all losses with a margin (room for the star), at least
        ``MIN_LOSS_SPAN`` of the largest loss wide, so one value reads as a few short ticks."""
        values = [v for v in (self.batches["loss"] + self.epochs["train"] + self.epochs["val"])
                  if math.isfinite(v)]
        if not values:
            self.loss_chart.set_y_range(0.0, 1.0)
            return
        lo, hi = min(values), max(values)
        span = max(hi - lo, MIN_LOSS_SPAN * max(abs(hi), abs(lo), 1e-3))
        middle = (lo + hi) / 2
        self.loss_chart.set_y_range(middle - 0.6 * span, middle + 0.6 * span)

    def point_counts(self) -> dict[str, int]:
        """How many points each curve shows (for a quick look at a run's progress)."""
        return {name: len(curve.getData()[0] if curve.getData()[0] is not None else [])
                for name, curve in self.curves.items()}
