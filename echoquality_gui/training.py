"""The Train tab: a form over the training settings, Train / Stop / Cancel, live plots of the
run, its warnings and errors, and a summary when it ends. The run itself is the core
``Trainer`` in a ``TrainWorker`` thread; the finished model becomes the project's model."""
from __future__ import annotations

import html
import math
import os
import time
from pathlib import Path
from typing import Any, ClassVar

import pyqtgraph as pg
from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtGui import QDoubleValidator
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFileDialog,
    QFormLayout,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QSizePolicy,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from echoquality_core.events import (
    BatchEnd,
    CrossValEnd,
    EpochEnd,
    FoldStart,
    Progress,
    TrainEnd,
    TrainError,
)
from echoquality_core.project import Project
from echoquality_gui import settings as app_settings
from echoquality_gui.session import Session
from echoquality_gui.crossval_mode import CrossValMode, crossval_summary, fold_text
from echoquality_gui.train_worker import DeviceProbe, TrainWorker

LOSS_CHOICES = {"Binary cross-entropy": "bce", "Focal (hard clips count more)": "focal"}
LEARNING_RATES = ("1e-3", "3e-4", "1e-4", "3e-5", "1e-5")
SMOOTHING = 0.8  # weight of the past in the smoothed batch-loss curve
REDRAW_MS = 100  # batch points are drawn at most this often
CLOSE_LIMIT_MS = 60_000  # closing the window: testing the kept model may take this long, then
# the run is cancelled

_BG, _TEXT, _DIM = "#15181e", "#d8dde6", "#aab3c2"
_COLOURS = {"train": "#4fc3f7", "val": "#ffb74d", "auc": "#81c784", "accuracy": "#ce93d8",
            "lr": "#e0e0e0", "best": "#81c784", "warn": "#ffd54f", "error": "#ff8a80"}

_STYLE = """
QPushButton#trainButton { background-color: #1f4a66; border-color: #2f7fb0; font-weight: bold; }
QPushButton#trainButton:disabled { background-color: #2a303a; border-color: #2b313b; }
QLabel#trainWarning { color: #ffd54f; }
QLabel#trainDevice { color: #4fc3f7; }
QLabel#trainError {
    background-color: #3d2420; color: #ff8a80; border: 1px solid #b0452d; border-radius: 3px;
    padding: 6px;
}
QPlainTextEdit#trainMessages, QPlainTextEdit#trainSummary { background-color: #15181e; }
QCheckBox::indicator { border: 1px solid #5c6473; border-radius: 2px; background: #12151a; }
QCheckBox::indicator:checked { background: #4fc3f7; border-color: #4fc3f7; }
"""


class _DecadeAxis(pg.AxisItem):
    """A log10 axis labelled 1e-4, 1e-3, … at whole decades only."""

    def __init__(self) -> None:
        super().__init__("left")
        self.setTickSpacing(1, 1)

    def tickStrings(self, values, scale, spacing) -> list[str]:
        return [_rate_text(10.0 ** v) for v in values]


def _plot(title: str, y_label: str, legend_columns: int = 0, *, legend_bottom: bool = False,
          left: pg.AxisItem | None = None) -> pg.PlotWidget:
    plot = pg.PlotWidget(background=_BG, axisItems={"left": left} if left else None)
    plot.setTitle(title, color=_TEXT, size="10pt")
    plot.showGrid(x=True, y=True, alpha=0.15)
    for side in ("left", "bottom"):
        axis = plot.getAxis(side)
        axis.setTextPen(_DIM)
        axis.setPen("#3d4554")
        axis.enableAutoSIPrefix(False)
    plot.setLabel("bottom", "epoch", color=_DIM)
    plot.setLabel("left", y_label, color=_DIM)
    plot.setMouseEnabled(x=False, y=False)
    plot.hideButtons()
    if legend_columns:
        plot.addLegend(offset=(-8, -4 if legend_bottom else 4), labelTextColor=_DIM,
                       brush=(21, 24, 30, 220),
                       labelTextSize="9pt", colCount=legend_columns)
    return plot


def _epoch_curve(plot: pg.PlotWidget, name: str, colour: str, symbol: str = "o"):
    return plot.plot([], [], name=name, pen=pg.mkPen(colour, width=2), symbol=symbol,
                     symbolSize=7, symbolBrush=colour, symbolPen=None, connect="finite")


def _duration(seconds: float) -> str:
    seconds = max(0, round(seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}" if seconds >= 3600 \
        else f"{seconds // 60}:{seconds % 60:02d}"


def _rate_text(rate: float) -> str:
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
        raw = pg.mkColor(_COLOURS["train"])
        raw.setAlpha(70)
        self.curves = {
            "batch": self.loss_plot.plot([], [], name="train, per batch", pen=pg.mkPen(raw)),
            "smooth": self.loss_plot.plot([], [], name="train, smoothed",
                                          pen=pg.mkPen(_COLOURS["train"], width=2)),
            "train": _epoch_curve(self.loss_plot, "train, per epoch", _COLOURS["train"], "s"),
            "val": _epoch_curve(self.loss_plot, "validation", _COLOURS["val"]),
            "auc": _epoch_curve(self.metric_plot, "AUC", _COLOURS["auc"]),
            "accuracy": _epoch_curve(self.metric_plot, "accuracy", _COLOURS["accuracy"], "t"),
            "lr": _epoch_curve(self.lr_plot, "learning rate", _COLOURS["lr"], "d"),
        }
        self.best_lines = []
        for plot in (self.loss_plot, self.metric_plot):
            line = pg.InfiniteLine(angle=90, movable=False, label="best",
                                   pen=pg.mkPen(_COLOURS["best"], width=1,
                                                style=Qt.PenStyle.DashLine),
                                   labelOpts={"position": 0.12, "color": _COLOURS["best"]})
            line.setVisible(False)
            plot.addItem(line, ignoreBounds=True)
            self.best_lines.append(line)
        self.best_marker = pg.ScatterPlotItem(size=16, symbol="star", pen=None,
                                              brush=_COLOURS["best"])
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


class TrainForm(QWidget):
    """The training settings a user picks; ``values()`` gives them as TrainConfig fields."""

    DEFAULTS: ClassVar[dict[str, Any]] = {"epochs": 20, "batch_size": 8, "learning_rate": 1e-4,
                                          "num_unfrozen_layers": 2, "n_frames": 16,
                                          "loss": "bce", "augment": False}  # TrainConfig's

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        d = self.DEFAULTS
        self.epochs = self._spin(1, 1000, d["epochs"],
                                 "How many times training goes through all training clips.")
        self.batch_size = self._spin(
            1, 256, d["batch_size"],
            "Clips the model looks at before each update. Lower it if the GPU runs out of memory.")
        self.learning_rate = QComboBox(editable=True)
        self.learning_rate.addItems(LEARNING_RATES)
        self.learning_rate.setCurrentText(_rate_text(d["learning_rate"]))
        validator = QDoubleValidator(1e-9, 1.0, 9, self.learning_rate)
        validator.setNotation(QDoubleValidator.Notation.ScientificNotation)
        self.learning_rate.setValidator(validator)
        self.learning_rate.setToolTip(
            "How big each update step is. Too high and the loss jumps or becomes NaN; too low "
            "and training is slow. 1e-4 is a safe start for fine-tuning.")
        self.layers = self._spin(
            1, 6, d["num_unfrozen_layers"],
            "How many of the network's last blocks learn: 1 = only the final layer, 2 = also "
            "the last block (layer 4), … 6 = the whole network. Fewer is faster and needs fewer "
            "labelled clips.")
        self.n_frames = self._spin(
            2, 64, d["n_frames"],
            "Frames taken from each clip (every 2nd frame by default). The quality model was "
            "built for 16; fewer is faster.")
        self.loss = QComboBox()
        self.loss.addItems(list(LOSS_CHOICES))
        self.loss.setCurrentIndex(list(LOSS_CHOICES.values()).index(d["loss"]))
        self.loss.setToolTip(
            "How mistakes are counted. Binary cross-entropy is the usual choice; focal loss "
            "gives more weight to clips the model finds hard (helps with few poor clips).")
        self.augment = QCheckBox("Vary the training clips", checked=d["augment"])
        self.augment.setToolTip(
            "Each time a training clip is used, change its brightness, contrast, angle, "
            "position and zoom a little and add noise, so the model does not learn the clips "
            "by heart. Slower, usually better with few clips.")
        self.weights = QLineEdit(placeholderText="none")
        self.weights.setToolTip(
            "A model file (.pt) to start from, e.g. the EchoPrime quality model "
            "video_quality_model.pt. Without one the model starts from random weights.")
        browse = QPushButton("Browse…")
        browse.setToolTip("Choose a starting model file")
        browse.clicked.connect(self.choose_weights)
        weights_row = QHBoxLayout()
        weights_row.setSpacing(4)
        weights_row.addWidget(self.weights, 1)
        weights_row.addWidget(browse)
        self.weights_warning = QLabel(
            "No starting weights: the model learns from scratch and will score poorly unless "
            "you have many labelled clips.")
        self.weights_warning.setObjectName("trainWarning")
        self.weights_warning.setWordWrap(True)
        self.weights.textChanged.connect(
            lambda text: self.weights_warning.setVisible(not text.strip()))
        self.device = QLabel("finding…")
        self.device.setObjectName("trainDevice")
        self.device.setWordWrap(True)
        self.device.setToolTip("Where training runs; a GPU is many times faster than the CPU. "
                               "On the CPU one core is left free so the app stays responsive.")

        form = QFormLayout(self)
        form.setContentsMargins(0, 0, 0, 0)
        form.setVerticalSpacing(5)
        form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        for text, field in (("Epochs", self.epochs), ("Batch size", self.batch_size),
                            ("Learning rate", self.learning_rate),
                            ("Layers to fine-tune", self.layers),
                            ("Frames per clip", self.n_frames), ("Loss", self.loss),
                            ("Augmentation", self.augment)):
            form.addRow(text, field)
            form.labelForField(field).setToolTip(field.toolTip())
        form.addRow("Starting weights", weights_row)
        form.addRow(self.weights_warning)
        form.addRow("Device", self.device)

    @staticmethod
    def _spin(lo: int, hi: int, value: int, tip: str) -> QSpinBox:
        spin = QSpinBox()
        spin.setRange(lo, hi)
        spin.setValue(value)
        spin.setToolTip(tip)
        return spin

    def choose_weights(self) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self, "Starting model weights", self.weights.text() or str(Path.home()),
            "PyTorch model (*.pt *.pth *.ckpt);;All files (*)")
        if path:
            self.weights.setText(path)

    def values(self) -> dict[str, Any]:
        """The form as TrainConfig fields; ValueError names a field that is not a number."""
        try:
            learning_rate = float(self.learning_rate.currentText().strip())
        except ValueError:
            raise ValueError(
                f"Learning rate {self.learning_rate.currentText()!r} is not a number") from None
        return {
            "epochs": self.epochs.value(),
            "batch_size": self.batch_size.value(),
            "learning_rate": learning_rate,
            "num_unfrozen_layers": self.layers.value(),
            "n_frames": self.n_frames.value(),
            "loss": LOSS_CHOICES[self.loss.currentText()],
            "augment": self.augment.isChecked(),
            "model_weights": self.weights.text().strip() or None,
        }


class TrainPanel(QWidget):
    """The Train tab. ``extra`` holds TrainConfig overrides applied on top of the form (e.g.
    ``{"stride": 1, "device": "cpu"}``)."""

    started = Signal()
    ended = Signal(object)  # TrainEnd
    closed_down = Signal()  # a run halted by ``halt_for_close`` is over, its process too

    def __init__(self, session: Session, parent: QWidget | None = None):
        super().__init__(parent)
        self.session = session
        self.extra: dict[str, Any] = {}
        self.worker: TrainWorker | None = None
        self.last_end: TrainEnd | None = None
        self._project_root: Path | None = None
        self._epochs = 1
        self._first_batch_at: float | None = None
        self._closing = False
        self._close_requested = False
        self._cancelling = False
        self._halting = False
        self._awaiting_scores = False

        self.form = TrainForm()
        self.form.weights.editingFinished.connect(self._remember_weights)
        self.data_label = QLabel("Open a project to train on its labels.")
        self.data_label.setWordWrap(True)
        self.train_button = QPushButton("Train")
        self.train_button.setObjectName("trainButton")
        self.train_button.setToolTip("Train a model on this project's labelled clips")
        self.stop_button = QPushButton("Stop")
        self.stop_button.setToolTip("Finish now and keep the best model so far (it is tested)")
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setToolTip("Abandon this run; nothing is kept")
        self.train_button.clicked.connect(self.start)
        self.stop_button.clicked.connect(self.stop)
        self.cancel_button.clicked.connect(self.cancel)
        self.crossval_mode = CrossValMode()
        buttons = QHBoxLayout()
        for button in (self.train_button, self.stop_button, self.cancel_button):
            buttons.addWidget(button)
        self.progress = QProgressBar()
        self.progress.setRange(0, 1000)
        self.progress.setValue(0)
        self.progress.setTextVisible(False)
        self.stage = QLabel("Not started")
        self.stage.setObjectName("trainStage")
        self.stage.setWordWrap(True)
        self.error_banner = QLabel("")
        self.error_banner.setObjectName("trainError")
        self.error_banner.setWordWrap(True)
        self.error_banner.setVisible(False)
        self.error_banner.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)

        left = QVBoxLayout()
        left.setSpacing(6)
        left.addWidget(self._title("Settings"))
        left.addWidget(self.form)
        left.addWidget(self._title("Data"))
        left.addWidget(self.data_label)
        left.addSpacing(4)
        left.addWidget(self.crossval_mode)
        left.addLayout(buttons)
        left.addWidget(self.progress)
        left.addWidget(self.stage)
        left.addWidget(self.error_banner)
        left.addStretch(1)
        side = QWidget()
        side.setLayout(left)
        side.setFixedWidth(340)

        self.plots = TrainPlots()
        self.messages = QPlainTextEdit(readOnly=True)
        self.messages.setObjectName("trainMessages")
        self.messages.setPlaceholderText("Warnings and errors of the run appear here.")
        self.summary = QPlainTextEdit(readOnly=True)
        self.summary.setObjectName("trainSummary")
        self.summary.setPlaceholderText("The result of the run appears here when it ends.")
        bottom = QGridLayout()
        bottom.setSpacing(6)
        bottom.addWidget(self._title("Messages"), 0, 0)
        bottom.addWidget(self._title("Result"), 0, 1)
        bottom.addWidget(self.messages, 1, 0)
        bottom.addWidget(self.summary, 1, 1)
        bottom.setColumnStretch(0, 1)
        bottom.setColumnStretch(1, 1)
        for box in (self.messages, self.summary):
            box.setMinimumHeight(120)
            box.setMaximumHeight(200)
            box.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        right = QVBoxLayout()
        right.setSpacing(4)
        right.addWidget(self.plots, 1)
        right.addLayout(bottom)

        layout = QHBoxLayout(self)
        layout.setContentsMargins(10, 8, 10, 8)
        layout.setSpacing(12)
        layout.addWidget(side)
        layout.addLayout(right, 1)

        self.setStyleSheet(_STYLE)
        self._redraw_timer = QTimer(self)
        self._redraw_timer.setSingleShot(True)
        self._redraw_timer.setInterval(REDRAW_MS)
        self._redraw_timer.timeout.connect(self.plots.redraw)
        self._close_limit = QTimer(self)
        self._close_limit.setSingleShot(True)
        self._close_limit.setInterval(CLOSE_LIMIT_MS)
        self._close_limit.timeout.connect(self.cancel)
        session.project_opened.connect(self._project_opened)
        session.label_changed.connect(lambda _rel: self._show_data())
        session.scores_changed.connect(self._scores_arrived)
        self._probe = DeviceProbe(parent=self)
        self._probe.found.connect(self.form.device.setText)
        self._probe.start()
        if session.project is not None:
            self._project_opened(session.project)
        self._set_running(False)

    @staticmethod
    def _title(text: str) -> QLabel:
        label = QLabel(text)
        label.setObjectName("sectionTitle")
        return label

    # --- project ---------------------------------------------------------------------------
    def _project_opened(self, project: Project) -> None:
        weights = app_settings.project_value(project.root, "train_weights", "")
        self.form.weights.setText(str(weights or ""))
        self._show_data()

    def _remember_weights(self) -> None:
        project = self.session.project
        if project is not None:
            app_settings.set_project_value(project.root, "train_weights",
                                           self.form.weights.text().strip())

    def _show_data(self) -> None:
        project = self.session.project
        if project is None:
            return
        self.data_label.setText(f"{len(project.store)} labelled clips in "
                                f"{project.csv_path.name} ({project.root.name})")
        self.train_button.setEnabled(not self.running)

    # --- settings --------------------------------------------------------------------------
    def settings(self) -> dict[str, Any]:
        """TrainConfig fields of the next run: the form, the open project's labels, ``extra``."""
        project = self.session.project
        if project is None:
            raise ValueError("Open a project first")
        return {**self.form.values(), "annotations_csv": str(project.csv_path),
                "videos_dir": str(project.root), **self.crossval_mode.values(), **self.extra}

    @property
    def running(self) -> bool:
        return self.worker is not None

    def _set_running(self, running: bool) -> None:
        self.form.setEnabled(not running)
        self.crossval_mode.setEnabled(not running)
        self.train_button.setEnabled(not running and self.session.project is not None)
        self.stop_button.setEnabled(running)
        self.cancel_button.setEnabled(running)

    # --- control ---------------------------------------------------------------------------
    def start(self) -> bool:
        """Start a run with ``settings()``; False (with the reason shown) if it cannot."""
        if self.running:
            return False
        try:
            config = self.settings()
        except ValueError as exc:
            self._show_fatal(str(exc))
            return False
        self.plots.clear(int(config.get("epochs", 1)))
        self.messages.clear()
        self.summary.clear()
        self.error_banner.setVisible(False)
        self.last_end = None
        self._epochs = int(config.get("epochs", 1))
        self._first_batch_at = None
        self._halting = self._awaiting_scores = self._cancelling = False
        self._project_root = self.session.project.root
        worker = TrainWorker(config, self)
        worker.device.connect(self.form.device.setText)
        worker.progress.connect(self._on_progress)
        worker.batch_end.connect(self._on_batch)
        worker.epoch_end.connect(self._on_epoch)
        worker.error.connect(self._on_error)
        worker.ended.connect(self._on_end)
        worker.fold_start.connect(self._on_fold)
        self._fold = ""
        self.worker = worker
        self._set_running(True)
        self._set_stage("Starting (loading the training code)…", busy=True)
        self._log(f"Training on the labels in {Path(config['annotations_csv']).name}: "
                  f"{self._epochs} epoch{'s' * (self._epochs != 1)}, "
                  f"batch size {config.get('batch_size')}, "
                  f"learning rate {config.get('learning_rate'):g}.")
        if not config.get("model_weights"):
            self._log(self.form.weights_warning.text(), _COLOURS["warn"])
        worker.start()
        self.started.emit()
        return True

    def stop(self) -> None:
        """Finish after the current batch, keeping (and testing) the best model so far."""
        if self.worker is not None:
            self.worker.stop()
            self._halting = True
            self.stop_button.setEnabled(False)
            self._set_stage("Stopping after this batch, then testing the best model…", busy=True)

    def cancel(self) -> None:
        """Abandon the run after the current batch; nothing is kept."""
        if self.worker is not None:
            self.worker.cancel()
            self._halting = self._cancelling = True
            self.stop_button.setEnabled(False)
            self.cancel_button.setEnabled(False)
            self._set_stage("Cancelling after this batch…", busy=True)

    @property
    def cancelling(self) -> bool:
        return self._cancelling

    def halt_for_close(self) -> bool:
        """The window wants to close: the first call stops the run (its best model is tested
        and kept, at most ``CLOSE_LIMIT_MS``, then the run is cancelled), a second call cancels
        it. False if no run is going (close now); else ``closed_down`` follows once the run and
        its process have ended."""
        worker = self.worker
        if worker is None:
            return self._close_requested  # the run ended, its process is still exiting
        if not self._closing:
            worker.finished.connect(self._run_closed_down)
            if worker.isFinished():  # only its end is still queued: nothing to wait for
                return False
            self._closing = self._close_requested = True
            if not self._cancelling:
                self.stop()
                self._set_stage("Finishing training: the best model is being tested…"
                                if self.plots.best_epoch is not None else
                                "Finishing training (no epoch ended yet: no model is kept)…",
                                busy=True)
                self._close_limit.start()
        elif not self._cancelling:
            self.cancel()
        return True

    def _run_closed_down(self) -> None:
        if self._close_requested:
            self._close_requested = False
            self.closed_down.emit()

    def shutdown(self) -> None:
        """Stop a running training (keeping its best model on disk) and wait for it; call
        before the window closes. The model is not made the project's model."""
        self._closing, self._close_requested = True, False
        self._probe.wait()
        if self.worker is not None:
            self.worker.stop()
            self.worker.wait()

    # --- events ----------------------------------------------------------------------------
    def _set_stage(self, text: str, fraction: float | None = None, busy: bool = False) -> None:
        self.stage.setText(text)
        if busy:
            self.progress.setRange(0, 0)
        else:
            self.progress.setRange(0, 1000)
            if fraction is not None:
                self.progress.setValue(int(1000 * min(max(fraction, 0.0), 1.0)))

    def _on_progress(self, event: Progress) -> None:
        if event.stage == "finish":
            self._set_stage("Training halted: saving the best model…", busy=True)
        elif event.stage == "test":
            self._set_stage(f"Testing the best model on {event.total} test clips…", busy=True)
        elif event.total and event.done >= event.total:
            self._set_stage("Building the model and opening the MLflow run…", busy=True)
        else:
            self._set_stage(f"Preparing clips {event.done}/{event.total}",
                            event.done / event.total if event.total else 0.0)

    def _on_batch(self, event: BatchEnd) -> None:
        now = time.perf_counter()
        if self._first_batch_at is None:
            self._first_batch_at = now - event.seconds
        self.plots.add_batch(event)
        if len(self.plots.batches["loss"]) == 1:
            self.plots.redraw()  # the first point shows at once
        elif not self._redraw_timer.isActive():
            self._redraw_timer.start()
        if self._halting:
            return  # "Stopping…" / "Cancelling…" stays up
        done = (event.epoch - 1 + event.step / max(event.n_steps, 1)) / self._epochs
        eta = (now - self._first_batch_at) * (1 - done) / done if done > 0 else 0.0
        self._set_stage(f"{self._fold}Epoch {event.epoch}/{self._epochs} · batch {event.step}/"
                        f"{event.n_steps} · loss {event.loss:.3f} · about {_duration(eta)} left",
                        done)

    def _on_fold(self, event: FoldStart) -> None:
        self._fold = fold_text(event) + " · "
        self._first_batch_at = None
        self.plots.clear(self._epochs)
        self._log(f"{fold_text(event)}: training on {event.sizes.get('train')} clips, "
                  f"validating on {event.sizes.get('val')}, scoring the "
                  f"{event.sizes.get('test')} held-out clips")

    def _on_epoch(self, event: EpochEnd) -> None:
        self._redraw_timer.stop()
        self.plots.add_epoch(event)
        auc = event.metrics.get("roc_auc")
        auc_text = f", AUC {auc:.2f}" if isinstance(auc, float) and math.isfinite(auc) else ""
        self._log(f"Epoch {event.epoch}: train loss {event.train_loss:.3f}, validation loss "
                  f"{event.val_loss:.3f}{auc_text} ({_duration(event.seconds)})"
                  + (" — best so far, saved" if event.best else ""))

    def _on_error(self, event: TrainError) -> None:
        if event.fatal:
            self._show_fatal(event.message)
        else:
            self._log(event.message, _COLOURS["warn"])

    def _show_fatal(self, message: str) -> None:
        self.error_banner.setText(message)
        self.error_banner.setVisible(True)
        self._log(message, _COLOURS["error"])
        self.session.message.emit(f"Training failed: {message.splitlines()[0]}")

    def _on_end(self, end: TrainEnd) -> None:
        worker, self.worker = self.worker, None
        self._close_limit.stop()
        if worker is not None:  # its thread ends once the child process has exited
            self.session.keep_alive(worker)
        self._redraw_timer.stop()
        self.plots.redraw()
        self.last_end = end
        self._set_running(False)
        if isinstance(end, CrossValEnd):
            self._set_stage(crossval_summary(end).splitlines()[0], 1.0)
            self.summary.setPlainText(crossval_summary(end))
            self.ended.emit(end)
            return
        self._set_stage(self._outcome(end), 1.0)
        self.summary.setPlainText(self._summary(end).replace(f"{self._project_root}{os.sep}", ""))
        if (not self._closing and end.error is None and end.best_checkpoint is not None
                and self.session.project is not None
                and self.session.project.root == self._project_root):
            self._awaiting_scores = True
            self.session.set_model(end.best_checkpoint, run_dir=end.run_dir,
                                   threshold=end.threshold)
            self._add_summary("\nThis is now the project's model; scoring all clips…")
        self.ended.emit(end)

    @staticmethod
    def _outcome(end: TrainEnd) -> str:
        if end.cancelled:
            return "Cancelled: nothing was kept."
        if end.error is not None:
            return "Failed (see Messages)."
        if end.stopped:
            return f"Stopped; kept the best model (epoch {end.best_epoch})."
        return f"Finished; best model from epoch {end.best_epoch}."

    @staticmethod
    def _summary(end: TrainEnd) -> str:
        from echoquality_core.train import summarize

        lines = [TrainPanel._outcome(end)] + ([] if end.cancelled else [summarize(end)])
        if end.run_id and not end.cancelled:
            lines.append(f"MLflow run: {end.run_id}")
        return "\n".join(line for line in lines if line)

    def _scores_arrived(self) -> None:
        if self._awaiting_scores and self.session.scores:
            self._awaiting_scores = False
            self._add_summary(f"Scored {len(self.session.scores)} clips: see the Model column "
                              "of the clip list.")

    def _add_summary(self, text: str) -> None:
        """Add a line to the summary, keeping its top (the outcome) in view."""
        self.summary.appendPlainText(text)
        self.summary.verticalScrollBar().setValue(0)

    def _log(self, text: str, colour: str | None = None) -> None:
        body = html.escape(text).replace("\n", "<br>")
        stamp = time.strftime("%H:%M:%S")
        style = f' style="color:{colour}"' if colour else ""
        self.messages.appendHtml(f'<span style="color:{_DIM}">{stamp}</span> '
                                 f"<span{style}>{body}</span>")
