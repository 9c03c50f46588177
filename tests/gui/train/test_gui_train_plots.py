"""The Train tab's plots read well (issue 22.3): short tick labels even for one point, one
whole-epoch x-axis (1…N) for the three plots, legends off the data, the "best" label inside
the plot, and empty plots that say what they wait for. Fed the core's own events.

Screenshots: tests/artifacts/train_plots_<scale>.png; run once more with QT_SCALE_FACTOR=2
for the 200 % picture."""
from __future__ import annotations

import re

import pytest
from PySide6.QtWidgets import QApplication

from echoquality_core.train.events import BatchEnd, EpochEnd
from echoquality_gui.train.plots import EMPTY_TEXT, TrainPlots, epoch_ticks, short_number

EPOCHS = 2


@pytest.fixture
def plots(qtbot):
    widget = TrainPlots()
    qtbot.addWidget(widget)
    widget.resize(1000, 560)
    widget.show()
    qtbot.waitExposed(widget)
    widget.clear(EPOCHS)
    return widget


def settle() -> None:
    for _ in range(3):
        QApplication.processEvents()


def tick_texts(plot, side: str) -> list[str]:
    """The tick labels an axis draws now (for its current range and size)."""
    axis = plot.getAxis(side)
    lo, hi = axis.range
    length = axis.height() if side in ("left", "right") else axis.width()
    texts = []
    for spacing, values in axis.tickValues(lo, hi, length):
        texts += axis.tickStrings(values, axis.scale, spacing)
    return texts


def significant_digits(text: str) -> int:
    mantissa = re.split("e", text.lstrip("-"))[0]
    return len(mantissa.replace(".", "").lstrip("0")) or 1


def one_epoch(plots: TrainPlots) -> None:
    """What a run shows after its first epoch: 3 batches and one epoch point (the best)."""
    for step, loss in enumerate((0.7412, 0.7301, 0.727399051189424), start=1):
        plots.add_batch(BatchEnd(1, step, 3, loss))
    plots.add_epoch(EpochEnd(1, 0.727399051189424, 0.69113, {"roc_auc": 0.61, "accuracy": 0.55},
                             1e-4, best=True))
    settle()


def test_empty_plots_wait_for_the_first_epoch(plots, screenshot):
    settle()
    for chart in plots.charts:
        assert chart.empty.isVisible() and chart.empty.toPlainText() == EMPTY_TEXT
    assert not any(line.isVisible() for line in plots.best_lines)
    scale = round(plots.devicePixelRatioF() * 100)
    screenshot(plots, f"train_plots_empty_{scale}.png")


def test_one_epoch_reads_well(plots, screenshot):
    one_epoch(plots)
    assert not any(chart.empty.isVisible() for chart in plots.charts)

    # at most 4 significant digits on every value axis, even around a single point
    for plot in (plots.loss_plot, plots.metric_plot):
        texts = tick_texts(plot, "left")
        assert len(texts) >= 2, texts
        assert all(significant_digits(t) <= 4 for t in texts), texts
    assert short_number(0.727399051189424) == "0.7274"

    # one whole-epoch x-axis, the same for the three plots: ticks 1…N
    ranges = {tuple(round(v, 6) for v in p.viewRange()[0])
              for p in (plots.loss_plot, plots.metric_plot, plots.lr_plot)}
    assert len(ranges) == 1
    (x0, x1), = ranges
    assert x0 <= 0 and EPOCHS <= x1 < EPOCHS + 0.5
    for plot in (plots.loss_plot, plots.metric_plot, plots.lr_plot):
        assert tick_texts(plot, "bottom") == [str(e) for e in range(1, EPOCHS + 1)]

    # legends are off the data; the best label is inside the plot
    for chart in (plots.loss_chart, plots.metric_chart):
        view = chart.plot.vb.sceneBoundingRect()
        assert not chart.legend.sceneBoundingRect().intersects(view)
        assert chart.legend.sceneBoundingRect().height() > 0
        assert chart.best_label.isVisible()
        assert view.contains(chart.best_label.sceneBoundingRect()), chart.title.text
    star_x, star_y = plots.best_marker.getData()
    (_, _), (y0, y1) = plots.loss_plot.viewRange()
    assert list(star_x) == [1] and y0 < star_y[0] < y1

    scale = round(plots.devicePixelRatioF() * 100)
    screenshot(plots, f"train_plots_{scale}.png")


def test_best_label_stays_inside_at_the_last_epoch(plots):
    plots.clear(1)  # one epoch: the best line sits on the right edge
    for step in (1, 2):
        plots.add_batch(BatchEnd(1, step, 2, 0.7))
    plots.add_epoch(EpochEnd(1, 0.7, 0.6, {"roc_auc": 0.5, "accuracy": 0.5}, 1e-3, best=True))
    settle()
    for chart in (plots.loss_chart, plots.metric_chart):
        assert chart.plot.vb.sceneBoundingRect().contains(chart.best_label.sceneBoundingRect())


def test_epoch_ticks_thin_out_on_a_narrow_axis():
    assert epoch_ticks(5, 1000) == [1, 2, 3, 4, 5]
    assert epoch_ticks(100, 560) == [1, 20, 40, 60, 80, 100]
    assert len(epoch_ticks(1000, 300)) <= 300 // 56 + 1
