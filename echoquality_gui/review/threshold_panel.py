"""The Review tab's threshold and calibration panel: reliability curve with clip counts, score
histograms per label, a threshold slider with live sensitivity/specificity/PPV/NPV and the clips
whose call flips, presets, optional calibration, 95% CIs (computed in a child), and Save.

The state is a core ``ThresholdChoice``; this widget only shows it and forwards the user's
actions. Bootstrap CIs take ~0.5 s of CPU-bound Python, so they run in a child process
(``workers.child_worker``), neither in the GUI thread nor in another of the window's threads.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pyqtgraph as pg
from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QComboBox,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QSlider,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from echoquality_core.decision import labelled_good
from echoquality_core.evaluation.review import confidence_intervals
from echoquality_core.evaluation.threshold import ThresholdChoice
from echoquality_gui.common.theme import YELLOW
from echoquality_gui.common.workers import Latest, child_worker

STEPS = 1000  # slider resolution: thresholds 0.000 .. 1.000
PRESETS = (("youden", "Youden"), ("sensitivity_95", "Sens ≥ 0.95"),
           ("specificity_95", "Spec ≥ 0.95"))
CALIBRATIONS = (("none", "No calibration"), ("temperature", "Temperature scaling"),
                ("platt", "Platt scaling"))
GOOD, POOR = "#66bb6a", "#ef5350"  # histogram colours


def _plot(title: str, x: str, y: str) -> pg.PlotWidget:
    plot = pg.PlotWidget(enableMenu=False)
    plot.setBackground("#15181e")
    plot.setMouseEnabled(False, False)
    plot.hideButtons()
    plot.setTitle(title, size="9pt")
    plot.setLabel("bottom", x)
    plot.setLabel("left", y)
    plot.setMinimumHeight(120)
    return plot


class ThresholdPanel(QWidget):
    """Shows a ThresholdChoice; ``save_requested`` asks the Review tab to save it."""

    save_requested = Signal()
    open_clip = Signal(str)  # a flipped clip was clicked

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.choice: ThresholdChoice | None = None
        self.source = ""
        self._paths: list[Path] | None = None
        self.ci_work = Latest()
        self._build()
        self.set_choice(None)

    def _build(self) -> None:
        """Controls and live figures on top (always in view), the plots and the flipped
        clips below as tabs, one at a time."""
        self.basis = QLabel("")
        self.basis.setWordWrap(True)
        self.basis.setObjectName("clipInfo")
        slider_row, preset_row = self._build_controls()
        self.stats = QLabel("")
        self.stats.setObjectName("clipInfo")
        self.stats.setWordWrap(True)
        self.ci = QLabel("")
        self.ci.setObjectName("clipInfo")
        self.ci.setWordWrap(True)
        self.auc_warning = QLabel("")  # weak held-out scores, said before Save
        self.auc_warning.setWordWrap(True)
        self.auc_warning.setStyleSheet(f"color: {YELLOW};")
        self.flip_title = QLabel("")
        self.flips = QListWidget()
        self.flips.setToolTip("Clips whose call changes from the saved threshold to this one")
        self.flips.itemActivated.connect(
            lambda item: self.open_clip.emit(item.data(Qt.ItemDataRole.UserRole)))
        self.flips.itemClicked.connect(
            lambda item: self.open_clip.emit(item.data(Qt.ItemDataRole.UserRole)))
        flip_page = QWidget()
        flip_layout = QVBoxLayout(flip_page)
        flip_layout.setContentsMargins(2, 2, 2, 2)
        flip_layout.addWidget(self.flip_title)
        flip_layout.addWidget(self.flips, 1)
        self._build_charts()
        self.views = QTabWidget()
        self.views.setDocumentMode(True)
        self.views.addTab(self.histogram, "Scores by label")
        self.views.addTab(self.reliability, "Reliability")
        self.views.addTab(flip_page, "Calls that change")
        layout = QVBoxLayout(self)  # no scroll area: the controls stay in view, the plot
        layout.setContentsMargins(0, 4, 4, 0)  # takes the height that is left
        layout.setSpacing(4)
        layout.addWidget(self.basis)
        layout.addLayout(slider_row)
        layout.addLayout(preset_row)
        layout.addWidget(self.auc_warning)
        layout.addWidget(self.stats)
        layout.addWidget(self.ci)
        layout.addWidget(self.views, 1)

    def _build_charts(self) -> None:
        """The score histograms per label (the threshold marked) and the reliability curve
        (with clip counts); their legends are their titles, off the data."""
        self.histogram = _plot(f'Scores by label: <span style="color:{GOOD}">labelled good'
                               f'</span> · <span style="color:{POOR}">labelled poor</span>',
                               "Score", "Clips")
        self.good_hist = self.histogram.plot(stepMode="center", pen=pg.mkPen(GOOD, width=2),
                                             name="labelled good")
        self.poor_hist = self.histogram.plot(stepMode="center", pen=pg.mkPen(POOR, width=2),
                                             name="labelled poor")
        self.histogram.setXRange(0, 1, padding=0.02)  # scores: 0..1 also with no clips yet
        self.threshold_line = pg.InfiniteLine(angle=90, pen=pg.mkPen("#ffb74d", width=2))
        self.histogram.addItem(self.threshold_line)
        self.reliability = _plot("Reliability (numbers: clips per bin)", "Mean score",
                                 "Share labelled good")
        self.reliability.setRange(xRange=(0, 1), yRange=(0, 1), padding=0.05)
        self.reliability.plot([0, 1], [0, 1], pen=pg.mkPen("#4d5566", style=Qt.PenStyle.DashLine))
        self.reliability_curve = self.reliability.plot(pen=pg.mkPen("#4fc3f7", width=2),
                                                       symbol="o", symbolSize=7,
                                                       symbolBrush="#4fc3f7")
        self._count_items: list[pg.TextItem] = []

    def _build_controls(self) -> tuple[QHBoxLayout, QHBoxLayout]:
        """The threshold slider row with Save; the presets and calibration row."""
        self.slider = QSlider(Qt.Orientation.Horizontal)
        self.slider.setRange(0, STEPS)
        self.slider.setToolTip("Decision threshold: a clip is called good if its score is at "
                               "least this")
        self.slider.valueChanged.connect(self._slider_moved)
        self.slider.sliderReleased.connect(self._start_ci)
        self.value = QLabel("–")
        self.value.setObjectName("counter")
        self.value.setMinimumWidth(48)
        self.save_button = QPushButton("Save threshold")
        self.save_button.setToolTip("Make this threshold (and calibration) the model's and the "
                                    "project's; recorded in the model's MLflow run")
        self.save_button.clicked.connect(self.save_requested)
        slider_row = QHBoxLayout()
        slider_row.addWidget(QLabel("Threshold"))
        slider_row.addWidget(self.slider, 1)
        slider_row.addWidget(self.value)
        slider_row.addWidget(self.save_button)
        self.preset_buttons = []
        preset_row = QHBoxLayout()
        for key, text in PRESETS:
            button = QPushButton(text)
            button.setFocusPolicy(Qt.FocusPolicy.NoFocus)
            button.clicked.connect(lambda _=False, k=key: self.apply_preset(k))
            preset_row.addWidget(button)
            self.preset_buttons.append(button)
        self.calibration = QComboBox()
        for key, text in CALIBRATIONS:
            self.calibration.addItem(text, key)
        self.calibration.setToolTip("Fit a calibration on these held-out scores; it is saved "
                                    "with the model and applied by scoring")
        self.calibration.currentIndexChanged.connect(self._calibration_changed)
        preset_row.addWidget(self.calibration, 1)
        return slider_row, preset_row

    # --- state -----------------------------------------------------------------------------
    def set_choice(self, choice: ThresholdChoice | None, source: str = "",
                   paths: list[Path] | None = None, kind: str = "Scores") -> None:
        """Show ``choice`` (None: nothing to choose on); ``source`` says what the scores are,
        ``kind`` in two words; ``paths`` let the CI worker read the patient keys when the
        choice has no groups."""
        self.choice, self.source, self._paths, self.kind = choice, source, paths, kind
        enabled = choice is not None
        warning = choice.warning() if enabled else None
        self.auc_warning.setText(f"Warning: {warning}" if warning else "")
        self.auc_warning.setVisible(bool(warning))
        for widget in (self.slider, self.calibration, self.save_button, *self.preset_buttons):
            widget.setEnabled(enabled)
        self.threshold_line.setVisible(enabled)
        if choice is None:
            self.ci_work.abort()
            self.basis.setText("No held-out scores: train a model or cross-validate.")
            self.stats.setText("")
            self.ci.setText("")
            self.flips.clear()
            self.flip_title.setText("")
            self.views.setTabText(2, "Calls that change")
            self.value.setText("–")  # the last model's threshold and scores: gone (blind mode)
            self._clear_plots()
            return
        self.calibration.blockSignals(True)
        method = (choice.calibration or {}).get("method", "none")
        self.calibration.setCurrentIndex(max(0, self.calibration.findData(method)))
        self.calibration.blockSignals(False)
        self.basis.setText("")
        self._show_threshold(choice.threshold)
        self._draw()
        self._start_ci()

    def _slider_moved(self, value: int) -> None:
        if self.choice is None:
            return
        self.choice.set_threshold(value / STEPS)
        self._show_live()
        if not self.slider.isSliderDown():
            self._start_ci()

    def set_threshold(self, value: float) -> None:
        """Move the slider (as the user would) to ``value``."""
        self.slider.setValue(round(value * STEPS))

    def apply_preset(self, key: str) -> None:
        if self.choice is None:
            return
        try:
            value = self.choice.preset(key)
        except ValueError as exc:
            self.stats.setText(str(exc))
            return
        self._show_threshold(value)
        self._start_ci()

    def _calibration_changed(self) -> None:
        if self.choice is None:
            return
        try:
            self.choice.set_calibration(self.calibration.currentData())
        except ValueError as exc:
            self.stats.setText(f"Calibration not possible: {exc}")
            return
        self._draw()
        self._show_live()
        self._start_ci()

    def _show_threshold(self, value: float) -> None:
        self.slider.blockSignals(True)
        self.slider.setValue(round(value * STEPS))
        self.slider.blockSignals(False)
        self._show_live()

    # --- drawing ---------------------------------------------------------------------------
    def _show_live(self) -> None:
        c = self.choice
        self.value.setText(f"{c.threshold:.3f}")
        self.threshold_line.setValue(c.threshold)
        m = c.stats()

        def pct(key: str) -> str:
            return "–" if math.isnan(m[key]) else f"{m[key]:.2f}"

        self.stats.setText(f"At {c.threshold:.3f}: sensitivity {pct('sensitivity')} · "
                           f"specificity {pct('specificity')} · PPV {pct('ppv')} · "
                           f"NPV {pct('npv')} · accuracy {pct('accuracy')}"
                           f"   (saved threshold {c.saved:.3f})")
        flips = c.flips()
        self.flip_title.setText(f"Calls that change from {c.saved:.3f} to {c.threshold:.3f}: "
                                f"{len(flips)}")
        self.views.setTabText(2, f"Calls that change ({len(flips)})")
        self.flips.clear()
        for rel, label, score, call in flips:
            item = QListWidgetItem(f"{Path(rel).name}  ·  score {score:.3f}  ·  labelled "
                                   f"{'good' if labelled_good(label) else 'poor'}  ·  now called {call}")
            item.setData(Qt.ItemDataRole.UserRole, rel)
            self.flips.addItem(item)

    def flipped_rels(self) -> list[str]:
        """The clips the flip list shows now."""
        return [self.flips.item(i).data(Qt.ItemDataRole.UserRole)
                for i in range(self.flips.count())]

    def _draw(self) -> None:
        c = self.choice
        curve = c.reliability()
        seen = curve["count"] > 0
        self._clear_plots()
        self.reliability_curve.setData(curve["mean_score"][seen], curve["fraction_good"][seen])
        for x, y, n in zip(curve["mean_score"][seen], curve["fraction_good"][seen],
                           curve["count"][seen]):
            text = pg.TextItem(str(int(n)), color="#c8ced8", anchor=(0.5, 1.2))
            text.setPos(float(x), float(y))
            self.reliability.addItem(text)
            self._count_items.append(text)
        edges, good, poor = c.histograms()
        self.good_hist.setData(edges, good)
        self.poor_hist.setData(edges, poor)

    def _clear_plots(self) -> None:
        self.reliability_curve.setData([], [])
        for item in self._count_items:
            self.reliability.removeItem(item)
        self._count_items = []
        for histogram in (self.good_hist, self.poor_hist):
            histogram.setData([0.0], [])  # step mode: one edge more than counts

    def _start_ci(self) -> None:
        c = self.choice
        if c is None:
            return
        self.ci.setText("95% confidence intervals: computing…")
        self.ci_work.start(child_worker(
            confidence_intervals, list(c.labels), list(c.scores), float(c.threshold), c.groups,
            self._paths, self.kind, name="echoquality-intervals", parent=self).connect(
                returned=self._ci_ready,
                errored=lambda exc: self.ci.setText(f"No confidence intervals: {exc}")))

    def _ci_ready(self, result: tuple[dict[str, Any], str]) -> None:
        estimates, basis = result
        names = (("roc_auc", "ROC AUC"), ("pr_auc", "PR AUC"), ("sensitivity", "Sens"),
                 ("specificity", "Spec"), ("ppv", "PPV"), ("npv", "NPV"), ("brier", "Brier"))
        parts = [f"{name} {estimates[key].text(2)}" for key, name in names]
        self.ci.setText(f"{basis}. " + " · ".join(parts))

    def wait_for_ci(self) -> None:
        """End the CIs being computed (their child killed) and wait for their threads (before
        the widget goes away)."""
        self.ci_work.abort()
        self.ci_work.wait()
