"""The Train tab's settings form: the few TrainConfig fields a user picks, with the core's
defaults."""
from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

from PySide6.QtGui import QDoubleValidator
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFormLayout,
    QLabel,
    QSpinBox,
    QWidget,
)

from echoquality_core.train.config import TrainConfig
from echoquality_gui.train.plots import rate_text
from echoquality_gui.train.weights_picker import WeightsPicker

LOSS_CHOICES = {"Binary cross-entropy": "bce", "Focal (hard clips count more)": "focal"}
LEARNING_RATES = ("1e-3", "3e-4", "1e-4", "3e-5", "1e-5")


class TrainForm(QWidget):
    """The training settings a user picks; ``values()`` gives them as TrainConfig fields (and
    ``ranks`` for "All GPUs", which the training child takes)."""

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
        self.weights = WeightsPicker()
        self.weights_warning = QLabel()
        self.weights_warning.setObjectName("trainWarning")
        self.weights_warning.setWordWrap(True)
        self.weights.changed.connect(self._show_weights_warning)
        self.device = QComboBox()
        self.device.setToolTip(
            "Where training runs; a GPU is many times faster than the CPU. \"All GPUs\" trains "
            "on every GPU of this computer at once. On the CPU one core is left free so the app "
            "stays responsive.")
        self.set_device_choices([("Auto", {"device": "auto"})])
        self.device_info = QLabel("finding…")
        self.device_info.setObjectName("trainDevice")
        self.device_info.setWordWrap(True)

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
        form.addRow("Starting weights", self.weights)
        form.addRow(self.weights_warning)
        form.addRow("Device", self.device)
        form.labelForField(self.device).setToolTip(self.device.toolTip())
        form.addRow(self.device_info)
        self._show_weights_warning()

    def set_device_choices(self, choices: list[tuple[str, dict[str, Any]]]) -> None:
        """Fill the Device list with (label, settings) from ``jobs.devices.device_choices``,
        keeping the current choice when it is still there."""
        current = self.device.currentText()
        self.device.clear()
        for label, settings in choices:
            self.device.addItem(label, dict(settings))
        self.device.setCurrentIndex(max(0, self.device.findText(current)))

    def _show_weights_warning(self) -> None:
        text = self.weights.warning_text()
        self.weights_warning.setText(text)
        self.weights_warning.setVisible(bool(text))

    @staticmethod
    def _spin(lo: int, hi: int, value: int, tip: str) -> QSpinBox:
        spin = QSpinBox()
        spin.setRange(lo, hi)
        spin.setValue(value)
        spin.setToolTip(tip)
        return spin

    def values(self) -> dict[str, Any]:
        """The form as TrainConfig fields; ValueError names a field that is not a number."""
        try:
            learning_rate = float(self.learning_rate.currentText().strip())
        except ValueError:
            raise ValueError(
                f"Learning rate {self.learning_rate.currentText()!r} is not a number") from None
        if not self.weights.ready():
            raise ValueError(self.weights.warning_text())
        return {
            "epochs": self.epochs.value(),
            "batch_size": self.batch_size.value(),
            "learning_rate": learning_rate,
            "num_unfrozen_layers": self.layers.value(),
            "n_frames": self.n_frames.value(),
            "loss": LOSS_CHOICES[self.loss.currentText()],
            "augment": self.augment.isChecked(),
            "model_weights": self.weights.spec(),
            **(self.device.currentData() or {"device": "auto"}),
        }
