"""The Train tab: a form over the training settings, Train / Stop / Cancel, live plots of the
run, its warnings and errors, and a summary when it ends. The run itself is the core
``Trainer`` in a ``TrainWorker`` thread; the finished model becomes the project's model."""
from __future__ import annotations

import enum
import html
import math
import os
import time
from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtWidgets import (
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QSizePolicy,
    QVBoxLayout,
    QWidget,
)

from echoquality_core.train.events import (
    BatchEnd,
    CrossValEnd,
    EpochEnd,
    FoldStart,
    Progress,
    TrainEnd,
    TrainError,
    summarize,
)
from echoquality_core.labels.project import Project
from echoquality_gui.common import settings as app_settings
from echoquality_gui.common import theme
from echoquality_gui.raters.menu import PolicyLabel
from echoquality_gui.common.session import Session
from echoquality_gui.train.crossval_mode import CrossValMode, crossval_summary, fold_text
from echoquality_gui.train.form import TrainForm
from echoquality_gui.train.plots import TrainPlots
from echoquality_gui.common.garbage import freeze_import
from echoquality_gui.train.worker import TrainWorker, probe_devices
from echoquality_gui.common.widgets import section_title
from echoquality_gui.common.workers import Worker

REDRAW_MS = 100  # batch points are drawn at most this often
CLOSE_LIMIT_MS = 60_000  # closing the window: testing the kept model may take this long, then
# the run is cancelled


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


def _duration(seconds: float) -> str:
    seconds = max(0, round(seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}" if seconds >= 3600 \
        else f"{seconds // 60}:{seconds % 60:02d}"


class RunState(enum.Enum):
    """Where the Train tab's run is (the window closing is tracked apart from it)."""

    IDLE = "idle"  # no run, nothing pending
    RUNNING = "running"
    STOPPING = "stopping"  # Stop clicked: the batch ends, the best model is tested and kept
    CANCELLING = "cancelling"  # Cancel clicked: the batch ends, nothing is kept
    SCORING = "scoring"  # the run's model became the project's; its scores are awaited


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
        self.state = RunState.IDLE
        self._closing = False  # the window is closing: a finished model is not adopted
        self._close_requested = False  # closed_down is owed once the run has ended

        side = self._build_side()
        right = self._build_results()

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
        session.scoring_failed.connect(self._scoring_failed)
        self._probe = Worker(probe_devices, parent=self).connect(  # started when the tab
            returned=self._devices_found,  # is first shown: it imports torch
            errored=lambda exc: self.form.device_info.setText(f"unavailable ({exc})"))
        if session.project is not None:
            self._project_opened(session.project)
        self._set_running(False)

    def _build_side(self) -> QWidget:
        """The left column: settings, data, cross-validation, Train/Stop/Cancel, progress."""
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
        left.addWidget(section_title("Settings"))
        left.addWidget(self.form)
        left.addWidget(section_title("Data"))
        left.addWidget(self.data_label)
        left.addWidget(PolicyLabel(self.session))
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
        return side

    def _build_results(self) -> QVBoxLayout:
        """The right column: the live plots above the messages and the result."""
        self.plots = TrainPlots()
        self.messages = QPlainTextEdit(readOnly=True)
        self.messages.setObjectName("trainMessages")
        self.messages.setPlaceholderText("Warnings and errors of the run appear here.")
        self.summary = QPlainTextEdit(readOnly=True)
        self.summary.setObjectName("trainSummary")
        self.summary.setPlaceholderText("The result of the run appears here when it ends.")
        bottom = QGridLayout()
        bottom.setSpacing(6)
        bottom.addWidget(section_title("Messages"), 0, 0)
        bottom.addWidget(section_title("Result"), 0, 1)
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
        return right

    # --- project ---------------------------------------------------------------------------
    def _project_opened(self, project: Project) -> None:
        weights = app_settings.project_value(project.root, "train_weights", None)
        self.form.weights.set_spec(self.form.weights.default_spec() if weights is None
                                   else str(weights))
        self._show_data()

    def _remember_weights(self) -> None:
        project = self.session.project
        if project is not None:
            app_settings.set_project_value(project.root, "train_weights",
                                           self.form.weights.spec() or "none")

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
        self.state = RunState.RUNNING
        self._project_root = self.session.project.root
        worker = TrainWorker(config, self)
        worker.device.connect(self.form.device_info.setText)
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
            self._log(self.form.weights_warning.text(), theme.YELLOW)
        worker.start()
        self.started.emit()
        return True

    def stop(self) -> None:
        """Finish after the current batch, keeping (and testing) the best model so far."""
        if self.worker is not None:
            self.worker.stop()
            if self.state is not RunState.CANCELLING:
                self.state = RunState.STOPPING
            self.stop_button.setEnabled(False)
            self._set_stage("Stopping after this batch, then testing the best model…", busy=True)

    def cancel(self) -> None:
        """Abandon the run after the current batch; nothing is kept."""
        if self.worker is not None:
            self.worker.cancel()
            self.state = RunState.CANCELLING
            self.stop_button.setEnabled(False)
            self.cancel_button.setEnabled(False)
            self._set_stage("Cancelling after this batch…", busy=True)

    @property
    def cancelling(self) -> bool:
        return self.state is RunState.CANCELLING

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
            if not self.cancelling:
                self.stop()
                self._set_stage("Finishing training: the best model is being tested…"
                                if self.plots.best_epoch is not None else
                                "Finishing training (no epoch ended yet: no model is kept)…",
                                busy=True)
                self._close_limit.start()
        elif not self.cancelling:
            self.cancel()
        return True

    def _run_closed_down(self) -> None:
        if self._close_requested:
            self._close_requested = False
            self.closed_down.emit()

    def showEvent(self, event) -> None:  # noqa: N802 (Qt's name)
        """Find the training device the first time the tab is shown."""
        if not self._probe.isRunning() and self.form.device_info.text() == "finding…":
            self._probe.start()
        super().showEvent(event)

    def _devices_found(self, found: tuple[str, list]) -> None:
        freeze_import()  # torch's ~200k objects: out of the window's garbage collections
        auto, choices = found
        self.form.device_info.setText(auto)
        self.form.set_device_choices(choices)

    def shutdown(self) -> None:
        """Stop a running training (keeping its best model on disk) and wait for it; call
        before the window closes. The model is not made the project's model."""
        self._closing, self._close_requested = True, False
        self._probe.wait()
        self.form.weights.shutdown()
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
        if event.stage == "setup":  # precision and frozen-trunk cache: one line in the log
            self._log(event.message)
        elif event.stage == "finish":
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
        if self.state in (RunState.STOPPING, RunState.CANCELLING):
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
            self._log(event.message, theme.YELLOW)

    def _show_fatal(self, message: str) -> None:
        self.error_banner.setText(message)
        self.error_banner.setVisible(True)
        self._log(message, theme.RED)
        self.session.message.emit(f"Training failed: {message.splitlines()[0]}")

    def _on_end(self, end: TrainEnd) -> None:
        worker, self.worker = self.worker, None
        self._close_limit.stop()
        if worker is not None:  # its thread ends once the child process has exited
            self.session.keep_alive(worker)
        self._redraw_timer.stop()
        self.plots.redraw()
        self.last_end = end
        self.state = RunState.IDLE
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
            self.state = RunState.SCORING
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
        lines = [TrainPanel._outcome(end)] + ([] if end.cancelled else [summarize(end)])
        if end.run_id and not end.cancelled:
            lines.append(f"MLflow run: {end.run_id}")
        return "\n".join(line for line in lines if line)

    def _scores_arrived(self) -> None:
        if self.state is RunState.SCORING and self.session.scores:
            self.state = RunState.IDLE
            self._add_summary(f"Scored {len(self.session.scores)} clips: see the Model column "
                              "of the clip list.")

    def _scoring_failed(self, text: str) -> None:
        if self.state is RunState.SCORING:
            self.state = RunState.IDLE
            self._add_summary(f"Scoring the clips failed: {text}")
            self._log(text, theme.RED)

    def _add_summary(self, text: str) -> None:
        """Add a line to the summary, keeping its top (the outcome) in view."""
        self.summary.appendPlainText(text)
        self.summary.verticalScrollBar().setValue(0)

    def _log(self, text: str, colour: str | None = None) -> None:
        body = html.escape(text).replace("\n", "<br>")
        stamp = time.strftime("%H:%M:%S")
        style = f' style="color:{colour}"' if colour else ""
        self.messages.appendHtml(f'<span style="color:{theme.DIM}">{stamp}</span> '
                                 f"<span{style}>{body}</span>")
