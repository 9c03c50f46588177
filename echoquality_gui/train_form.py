"""The Train tab's settings form: the few TrainConfig fields a user picks, with the core's
defaults."""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, ClassVar

from PySide6.QtGui import QDoubleValidator
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QWidget,
)

from echoquality_core.train_config import TrainConfig
from echoquality_gui.train_plots import rate_text

LOSS_CHOICES = {"Binary cross-entropy": "bce", "Focal (hard clips count more)": "focal"}
LEARNING_RATES = ("1e-3", "3e-4", "1e-4", "3e-5", "1e-5")


class TrainForm(QWidget):
    """The training settings a user picks; ``values()`` gives them as TrainConfig fields."""

    DEFAULTS: ClassVar[dict[str, Any]] = {
        f.name: f.default for f in dataclasses.fields(TrainConfig)
        if f.name in ("epochs", "batch_size", "learning_rate", "num_unfrozen_layers", "n_frames",
                      "loss", "augment")}  # the settings the form shows, TrainConfig's defaults

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
        self.learning_rate.setCurrentText(rate_text(d["learning_rate"]))
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
