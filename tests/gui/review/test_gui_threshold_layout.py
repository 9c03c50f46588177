"""Review ▸ Threshold & calibration fits its column (issue 22.5): in the 1366×768 window the
slider, the live figures and Save are in view without scrolling, the plots show one at a time
(tabs) at a readable size, and the histogram's legend is its title, off the bars. The panel
shows a core ThresholdChoice over 40 scored clips (no model needed for the layout)."""
from __future__ import annotations

import numpy as np
from PySide6.QtWidgets import QApplication

from echoquality_core.evaluation.threshold import ThresholdChoice


def fully_visible(widget) -> bool:
    """Shown and not clipped by a parent (a scroll area's viewport, the window)."""
    return widget.isVisible() and widget.visibleRegion().boundingRect() == widget.rect()


def test_slider_figures_and_save_fit_at_1366x768(qtbot, studio_window, screenshot):
    rng = np.random.default_rng(4)
    labels = [1.0] * 20 + [0.0] * 20
    scores = np.clip(np.array(labels) * 0.4 + rng.uniform(0.1, 0.6, 40), 0, 1)
    choice = ThresholdChoice([f"clips/c{i:02d}.dcm" for i in range(40)], labels,
                             list(scores), 0.5, [f"p{i // 2}" for i in range(40)])
    review = studio_window.review
    studio_window.tabs.setCurrentWidget(review)
    qtbot.wait(100)
    panel = review.threshold_panel
    review.lists.setCurrentWidget(panel)
    panel.set_choice(None)
    QApplication.processEvents()
    low, high = panel.histogram.getViewBox().viewRange()[0]
    assert -0.05 < low < 0 and 1 < high < 1.05  # the score axis, even with no scores yet
    assert not panel.threshold_line.isVisible()  # no threshold to mark
    panel.set_choice(choice, "Held-out scores of a test", None, "Held-out scores")
    panel.set_threshold(0.6)
    for _ in range(3):
        QApplication.processEvents()
    assert studio_window.size().width() == 1366 and studio_window.size().height() == 768

    for widget in (panel.slider, panel.value, panel.save_button, panel.stats,
                   *panel.preset_buttons, panel.calibration, panel.views):
        assert fully_visible(widget), widget
    assert "sensitivity" in panel.stats.text() and panel.save_button.isEnabled()
    plot = panel.views.currentWidget()
    assert plot is panel.histogram and fully_visible(plot) and plot.height() >= 120
    title = panel.histogram.getPlotItem().titleLabel
    assert "labelled good" in title.text and "labelled poor" in title.text
    assert title.sceneBoundingRect().right() <= panel.histogram.sceneRect().right() + 1
    assert "(" in panel.views.tabText(2)  # the number of calls that change
    assert panel.histogram.getViewBox().viewRange()[0] == [low, high]
    assert panel.threshold_line.isVisible() and panel.threshold_line.value() == 0.6
    screenshot(studio_window, "review_threshold_panel_1366x768.png")

    panel.views.setCurrentWidget(panel.reliability)
    assert fully_visible(panel.reliability) and fully_visible(panel.save_button)
