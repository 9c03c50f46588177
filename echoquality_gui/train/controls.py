"""The Train tab's left column: the settings form (its starting weights remembered per
project), the project's data, the cross-validation mode, Train / Stop / Cancel and the run's
status, with the next run's duration at the speed the last run here measured; the device probe
(a short-lived child process) runs the first time the column is shown."""
from __future__ import annotations

from typing import Any

from PySide6.QtWidgets import QHBoxLayout, QLabel, QPushButton, QVBoxLayout, QWidget

from echoquality_core.labels.project import Project
from echoquality_core.jobs.devices import probe
from echoquality_core.train.estimate import RunEstimate, expected_run
from echoquality_gui.common import settings as app_settings
from echoquality_gui.common.session import Session
from echoquality_gui.common.widgets import section_title
from echoquality_gui.common.workers import Worker
from echoquality_gui.raters.menu import PolicyLabel
from echoquality_gui.train.crossval_mode import CrossValMode
from echoquality_gui.train.form import TrainForm
from echoquality_gui.train.results import RunStatus


class TrainControls(QWidget):
    """Settings, data and the run buttons over ``status``; the Train tab connects the
    buttons."""

    def __init__(self, session: Session, status: RunStatus, parent: QWidget | None = None):
        super().__init__(parent)
        self.session = session
        self.status = status
        self.running = False
        self._restoring = False  # a project's choice is being shown, not made
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
            errored=lambda exc: self.form.device_info.setText(f"unavailable ({exc})"))
        form = self.form
        for spin in (form.epochs, form.batch_size, form.n_frames, self.crossval_mode.folds):
            spin.valueChanged.connect(self.show_expected)
        form.device.currentIndexChanged.connect(self.show_expected)
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
                "n_frames": form.n_frames.value(), **self.crossval_mode.values(),
                **(form.device.currentData() or {"device": "auto"})}

    @staticmethod
    def _speed_key(settings: dict[str, Any]) -> str:
        device = str(settings.get("device", "auto")).replace(":", "_")
        return f"train_speed_{device}_{settings.get('ranks') or 1}"

    def remember_speed(self, estimate: RunEstimate, settings: dict[str, Any]) -> None:
        """Keep the speed a run with ``settings`` measured, for the next runs' estimates."""
        project = self.session.project
        if project is not None:
            app_settings.set_project_value(project.root, self._speed_key(settings),
                                           estimate.clip_frame_seconds(settings))

    def show_expected(self) -> None:
        """While idle: the next run's duration at the speed an earlier run here measured on
        the same device (nothing before any run)."""
        project = self.session.project
        if project is None or self.running:
            return
        settings = self._next_run()
        speed = app_settings.project_value(project.root, self._speed_key(settings), None)
        if speed is None:
            self.status.estimate.setVisible(False)
        else:
            self.status.show_estimate(expected_run(settings, len(project.store), float(speed)))

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
        """Find the training device the first time the tab is shown."""
        if not self._probe.isRunning() and self.form.device_info.text() == "finding…":
            self._probe.start()
        super().showEvent(event)

    def _devices_found(self, found: tuple[str, list]) -> None:
        auto, choices = found
        self.form.device_info.setText(auto)
        self.form.set_device_choices(choices)

    def shutdown(self) -> None:
        """Wait for the device probe and the weights picker's threads."""
        self._probe.abort()  # its child is killed at once
        self._probe.wait()
        self.form.weights.shutdown()
