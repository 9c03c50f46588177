"""The Train tab's left column: the settings form (its starting weights remembered per
project), the project's data, the cross-validation mode, Train / Stop / Cancel and the run's
status, with the next run's duration at this computer's measured speed. The device probe (a
short-lived child process) runs the first time the column is shown; after it, when no speed is
stored for this kind of run (device, layers, precision), one training step is timed in another
child (``jobs.devices.measure_speed``), which a run's start or the window's closing kills."""
from __future__ import annotations

import dataclasses
from typing import Any

from PySide6.QtWidgets import QHBoxLayout, QLabel, QPushButton, QVBoxLayout, QWidget

from echoquality_core.labels.project import Project
from echoquality_core.jobs.devices import measure_speed, probe
from echoquality_core.train.config import TrainConfig
from echoquality_core.train.estimate import StepSpeed, expected_run
from echoquality_gui.common import settings as app_settings
from echoquality_gui.common.session import Session
from echoquality_gui.common.widgets import section_title
from echoquality_gui.common.workers import Latest, Worker
from echoquality_gui.raters.menu import PolicyLabel
from echoquality_gui.train.crossval_mode import CrossValMode
from echoquality_gui.train.form import TrainForm
from echoquality_gui.train.results import RunStatus

_DEFAULTS = {f.name: f.default for f in dataclasses.fields(TrainConfig)}


class TrainControls(QWidget):
    """Settings, data and the run buttons over ``status``; the Train tab connects the
    buttons."""

    def __init__(self, session: Session, status: RunStatus, parent: QWidget | None = None):
        super().__init__(parent)
        self.session = session
        self.status = status
        self.running = False
        self._restoring = False  # a project's choice is being shown, not made
        self._shown = False  # the column has been shown: measuring may start
        self._probing = False  # the device probe's child runs
        self._closed = False  # shut down: no new child (a run ending after asks for an estimate)
        self._measuring = Latest()  # one training step timed in a child (kind in _measuring_kind)
        self._measuring_kind: str | None = None
        self._unmeasurable: set[str] = set()  # kinds whose measurement failed (not retried)
        self.form = TrainForm()
        self.form.weights.changed.connect(self._remember_weights)
        self.data_label = QLabel("Open a project to train on its labels.")
        self.data_label.setWordWrap(True)
        self.train_button = QPushButton("Train")
        self.train_button.setObjectName("trainButton")
        self.train_button.setToolTip("Train a model on this project's labelled clips")
        self.stop_button = QPushButton("Stop")
        self.stop_button.setToolTip("Finish now and keep the best model so far (it is tested)")
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setToolTip("Abandon this run; nothing is kept")
        self.crossval_mode = CrossValMode()
        buttons = QHBoxLayout()
        for button in (self.train_button, self.stop_button, self.cancel_button):
            buttons.addWidget(button)
        left = QVBoxLayout(self)
        left.setContentsMargins(0, 0, 0, 0)
        left.setSpacing(4)
        left.addWidget(section_title("Settings"))
        left.addWidget(self.form)
        left.addWidget(section_title("Data"))
        left.addWidget(self.data_label)
        left.addWidget(PolicyLabel(session))
        left.addSpacing(4)
        left.addWidget(self.crossval_mode)
        left.addLayout(buttons)
        left.addWidget(status)
        left.addStretch(1)
        self.setFixedWidth(340)
        session.project_opened.connect(self._project_opened)
        session.label_changed.connect(lambda _rel: self._show_data())
        self._probe = Worker(lambda: probe(self._probe.cancelled), parent=self).connect(
            returned=self._devices_found,  # started when the tab is first shown (a child)
            errored=self._devices_unknown)
        form = self.form
        for spin in (form.epochs, form.batch_size, form.n_frames, form.layers,
                     self.crossval_mode.folds):
            spin.valueChanged.connect(self.show_expected)
        form.device.currentIndexChanged.connect(self.show_expected)
        form.augment.toggled.connect(self.show_expected)
        self.crossval_mode.enabled.toggled.connect(self.show_expected)
        if session.project is not None:
            self._project_opened(session.project)
        self.set_running(False)

    def settings(self, extra: dict[str, Any]) -> dict[str, Any]:
        """TrainConfig fields of the next run: the form, the open project's labels, ``extra``;
        ValueError without a project."""
        project = self.session.project
        if project is None:
            raise ValueError("Open a project first")
        return {**self.form.values(), "annotations_csv": str(project.csv_path),
                "videos_dir": str(project.root), **self.crossval_mode.values(), **extra}

    def set_running(self, running: bool) -> None:
        """While a run goes, the settings are locked and only Stop / Cancel act."""
        self.running = running
        self.form.setEnabled(not running)
        self.crossval_mode.setEnabled(not running)
        self.train_button.setEnabled(not running and self.session.project is not None)
        self.stop_button.setEnabled(running)
        self.cancel_button.setEnabled(running)
        self.show_expected()

    def _next_run(self) -> dict[str, Any]:
        """The form's fields that set the next run's duration (they are always valid)."""
        form = self.form
        return {"epochs": form.epochs.value(), "batch_size": form.batch_size.value(),
                "n_frames": form.n_frames.value(), "num_unfrozen_layers": form.layers.value(),
                "augment": form.augment.isChecked(), **self.crossval_mode.values(),
                **(form.device.currentData() or {"device": "auto"})}

    @staticmethod
    def _speed_kind(settings: dict[str, Any]) -> str:
        """What a measured speed holds for: the device, its ranks, the trainable layers, the
        input size and mixed precision (batch size and frames scale it)."""
        s = {**_DEFAULTS, **settings}
        device = str(s["device"]).replace(":", "_")
        return (f"{device}_{s.get('ranks') or 1}_{s['num_unfrozen_layers']}_{s['size']}_"
                f"{'amp' if s['amp'] else 'fp32'}")

    def stored_speed(self, settings: dict[str, Any]) -> StepSpeed | None:
        """The speed measured on this computer for a run of ``settings``, if any."""
        return StepSpeed.from_text(app_settings.train_speed(self._speed_kind(settings)))

    def remember_speed(self, speed: StepSpeed, settings: dict[str, Any]) -> None:
        """Keep the speed measured for a run of ``settings``, for the next runs' estimates."""
        app_settings.set_train_speed(self._speed_kind(settings), speed.to_text())

    def show_expected(self) -> None:
        """While idle: the next run's duration at the speed measured on this computer; with
        none stored, the measurement starts (once the column has been shown)."""
        project = self.session.project
        if project is None or self.running:
            return
        settings = self._next_run()
        speed = self.stored_speed(settings)
        if speed is not None:
            self.status.show_estimate(expected_run(settings, len(project.store), speed))
        elif self._measure(settings):
            self.status.show_note("Estimating the run's duration: timing one training step on "
                                  "this computer…")
        else:
            self.status.estimate.setVisible(False)

    def _measure(self, settings: dict[str, Any]) -> bool:
        """Time one step for ``settings``' kind in a child, unless that cannot be done now;
        whether it is being measured."""
        kind = self._speed_kind(settings)
        if not self._shown or self._probing or self._closed or kind in self._unmeasurable:
            return False
        if self._measuring.worker is not None and self._measuring_kind == kind:
            return True
        worker = Worker(lambda: measure_speed(settings, worker.cancelled), parent=self)
        worker.connect(returned=lambda speed: self._measured(speed, settings),
                       errored=lambda _exc: self._measure_failed(kind))
        self._measuring_kind = kind
        self._measuring.start(worker)
        return True

    def _measured(self, speed: StepSpeed, settings: dict[str, Any]) -> None:
        self._measuring_kind = None
        self.remember_speed(speed, settings)
        self.show_expected()

    def _measure_failed(self, kind: str) -> None:
        self._measuring_kind = None
        self._unmeasurable.add(kind)
        self.show_expected()

    def stop_measuring(self) -> None:
        """Kill the measurement's child (a run measures its own batches)."""
        self._measuring.abort()
        self._measuring_kind = None

    def _project_opened(self, project: Project) -> None:
        weights = app_settings.project_value(project.root, "train_weights", None)
        self._restoring = True  # the default is not remembered: it follows the cache
        try:
            self.form.weights.set_spec(self.form.weights.default_spec() if weights is None
                                       else str(weights))
        finally:
            self._restoring = False
        self._show_data()
        self.show_expected()

    def _remember_weights(self) -> None:
        project = self.session.project
        if project is not None and not self._restoring:
            app_settings.set_project_value(project.root, "train_weights",
                                           self.form.weights.spec() or "none")

    def _show_data(self) -> None:
        project = self.session.project
        if project is None:
            return
        self.data_label.setText(f"{len(project.store)} labelled clips in "
                                f"{project.csv_path.name} ({project.root.name})")
        self.train_button.setEnabled(not self.running)

    def showEvent(self, event) -> None:  # noqa: N802 (Qt's name)
        """Find the training device the first time the tab is shown, then its speed."""
        self._shown = True
        if (not self._closed and not self._probe.isRunning()
                and self.form.device_info.text() == "finding…"):
            self._probing = True  # one torch child at a time: the measurement waits
            self._probe.start()
        super().showEvent(event)

    def _devices_found(self, found: tuple[str, list]) -> None:
        self._probing = False
        auto, choices = found
        self.form.device_info.setText(auto)
        self.form.set_device_choices(choices)
        self.show_expected()

    def _devices_unknown(self, exc: BaseException) -> None:
        self._probing = False
        self.form.device_info.setText(f"unavailable ({exc})")
        self.show_expected()

    def shutdown(self) -> None:
        """Wait for the device probe, the measurement and the weights picker's threads; start
        no other child after."""
        self._closed = True
        self._probe.abort()  # its child is killed at once
        self.stop_measuring()  # so is this one's
        self._probe.wait()
        self._measuring.wait()
        self.form.weights.shutdown()
