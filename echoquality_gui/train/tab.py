"""The Train tab: a form over the training settings, Train / Stop / Cancel, live plots of the
run, its measured duration, its warnings and errors, and a summary when it ends
(``results``). The run itself is the core ``Trainer`` in a child process, relayed by a
``TrainWorker``. The finished model becomes the project's model when the core's adoption rule
(``runs.adoption``: it beats chance and is at least as good as the current model) says so, or
when the user clicks "Use this model".

Stop frees the tab as soon as the training compute has halted: the stopped run saves, tests
and logs its best model in the background (``finishing``) and reports when that is done,
while a new run may already start."""
from __future__ import annotations

import enum
from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtWidgets import QFrame, QHBoxLayout, QScrollArea, QWidget

from echoquality_core.runs.adoption import Verdict, judge_run
from echoquality_core.train.estimate import StepClock
from echoquality_core.train.events import (
    BatchEnd,
    CrossValEnd,
    EpochEnd,
    FoldStart,
    Progress,
    TrainEnd,
    TrainError,
)
from echoquality_gui.common import theme
from echoquality_gui.common.session import Session
from echoquality_gui.common.workers import Latest, child_worker
from echoquality_gui.train.controls import TrainControls
from echoquality_gui.train.crossval_mode import crossval_summary
from echoquality_gui.train.results import RunResults, RunStatus, outcome, summary
from echoquality_gui.train.worker import TrainWorker

CLOSE_LIMIT_MS = 60_000  # closing the window: testing the kept model may take this long, then
# the run is cancelled
STOPPING_TEXT = "Stopping — keeping the best model…"  # shown at once on Stop (issue 22.4)


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


class RunState(enum.Enum):
    """Where the Train tab's run is (the window closing is tracked apart from it)."""

    IDLE = "idle"  # no run, nothing pending (a stopped run may still be finishing)
    RUNNING = "running"
    STOPPING = "stopping"  # Stop clicked: the batch is abandoned, then the run is finishing
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
        self.finishing: TrainWorker | None = None  # a stopped run saving its model
        self.last_end: TrainEnd | None = None
        self.verdict: Verdict | None = None  # the last run's model judged (runs.adoption)
        self._judging = Latest()  # the run's model being judged
        self._clock: StepClock | None = None
        self._project_root: Path | None = None
        self.state = RunState.IDLE
        self._closing = False  # the window is closing: a finished model is not adopted
        self._close_requested = False  # closed_down is owed once the run has ended

        self.status = RunStatus()
        self.results = RunResults()
        self.controls = TrainControls(session, self.status)
        c = self.controls  # the parts tests and the window reach by their old names
        self.form, self.crossval_mode, self.data_label = c.form, c.crossval_mode, c.data_label
        self.train_button, self.stop_button = c.train_button, c.stop_button
        self.cancel_button = c.cancel_button
        self.stage, self.progress = self.status.stage, self.status.progress
        self.error_banner = self.status.error_banner
        self.plots = self.results.plots
        self.messages, self.summary = self.results.messages, self.results.summary
        self.train_button.clicked.connect(self.start)
        self.stop_button.clicked.connect(self.stop)
        self.cancel_button.clicked.connect(self.cancel)
        self.results.use_button.clicked.connect(self.use_model)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(10, 8, 10, 8)
        layout.setSpacing(12)
        side = QScrollArea()  # a short screen (150-200 % scaling) scrolls the column, never
        side.setWidget(self.controls)  # squashes its boxes below their size
        side.setWidgetResizable(True)
        side.setFrameShape(QFrame.Shape.NoFrame)
        side.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        side.setFixedWidth(self.controls.width() + side.verticalScrollBar().sizeHint().width())
        layout.addWidget(side)
        layout.addWidget(self.results, 1)

        self.setStyleSheet(_STYLE)
        self._close_limit = QTimer(self)
        self._close_limit.setSingleShot(True)
        self._close_limit.setInterval(CLOSE_LIMIT_MS)
        self._close_limit.timeout.connect(self.cancel)
        session.scores_changed.connect(self._scores_arrived)
        session.scoring_failed.connect(self._scoring_failed)

    def settings(self) -> dict[str, Any]:
        """TrainConfig fields of the next run: the form, the open project's labels, ``extra``."""
        return self.controls.settings(self.extra)

    @property
    def running(self) -> bool:
        return self.worker is not None

    def _set_running(self, running: bool) -> None:
        self.controls.set_running(running)

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
        epochs = int(config.get("epochs", 1))
        self.results.clear(epochs)
        self.status.begin(epochs)
        self.last_end, self.verdict = None, None
        self._judging.abort()  # the last run's verdict no longer matters
        self.controls.stop_measuring()  # the run measures its own batches
        self._clock = StepClock.for_settings(config, self.controls.stored_speed(config))
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
        self.worker = worker
        self._set_running(True)
        self.results.log(f"Training on the labels in {Path(config['annotations_csv']).name}: "
                         f"{epochs} epoch{'s' * (epochs != 1)}, "
                         f"batch size {config.get('batch_size')}, "
                         f"learning rate {config.get('learning_rate'):g}.")
        if not config.get("model_weights"):
            self.results.log(self.form.weights_warning.text(), theme.YELLOW)
        worker.start()
        self.started.emit()
        return True

    def stop(self) -> None:
        """Halt the training now, keeping (and testing) the best model so far; the tab is free
        again as soon as the compute has halted."""
        if self.worker is not None:
            self.worker.stop()
            if self.state is not RunState.CANCELLING:
                self.state = RunState.STOPPING
            self.stop_button.setEnabled(False)
            self.status.set_stage(STOPPING_TEXT, busy=True)

    def cancel(self) -> None:
        """Abandon the run (or a stopped one still finishing) at once; nothing is kept."""
        worker = self.worker or self.finishing
        if worker is not None:
            worker.cancel()
            self.state = RunState.CANCELLING
            self.stop_button.setEnabled(False)
            self.cancel_button.setEnabled(False)
            self.status.set_stage("Cancelling after this batch…", busy=True)

    @property
    def cancelling(self) -> bool:
        return self.state is RunState.CANCELLING

    def halt_for_close(self) -> bool:
        """The window wants to close: the first call stops the run (its best model is tested
        and kept, at most ``CLOSE_LIMIT_MS``, then the run is cancelled) and ``closed_down``
        follows once the run and its process have ended; a second call cancels it and says
        to close now (``shutdown`` waits for it). False if no run is going (close now)."""
        worker = self.worker or self.finishing
        if worker is None:
            return self._close_requested  # the run ended, its process is still exiting
        if not self._closing:
            worker.finished.connect(self._run_closed_down)
            if worker.isFinished():  # only its end is still queued: nothing to wait for
                return False
            self._closing = self._close_requested = True
            if not self.cancelling:
                self.stop()
                self.status.set_stage("Finishing training: the best model is being tested…"
                                      if self.plots.best_epoch is not None else
                                      "Finishing training (no epoch ended yet: no model is "
                                      "kept)…", busy=True)
                self._close_limit.start()
        else:  # closed again: cancel, and close now
            if not self.cancelling:
                self.cancel()
            return False
        return True

    def _run_closed_down(self) -> None:
        if self._close_requested:
            self._close_requested = False
            self.closed_down.emit()

    def shutdown(self) -> None:
        """Stop a running training (keeping its best model on disk) and wait for it and for a
        stopped run still finishing; call before the window closes. The model is not made the
        project's model."""
        self._closing, self._close_requested = True, False
        self.controls.shutdown()
        self._judging.abort()
        self._judging.wait()
        for worker in (self.worker, self.finishing):
            if worker is not None:
                worker.stop()
                worker.end()

    # --- events ----------------------------------------------------------------------------
    def _from_finishing(self) -> bool:
        """Whether the event being handled comes from a stopped run that is finishing in the
        background (its progress is no longer shown; its error and end are reported)."""
        return self.finishing is not None and self.sender() is self.finishing

    def _on_progress(self, event: Progress) -> None:
        if self._from_finishing():
            return
        if event.stage == "setup":  # precision and frozen-trunk cache: one line in the log
            self.results.log(event.message)
            return
        if (event.stage in ("finish", "test") and self.state is RunState.STOPPING
                and not self._closing):  # closing waits for the whole run
            self._finish_in_background()
        else:
            self.status.show_progress(event)

    def _finish_in_background(self) -> None:
        """Stop has halted the compute: the run saves, tests and logs its best model in its
        own process while the tab takes a new run; ``_on_end`` reports when it is done."""
        self.worker, self.finishing = None, self.worker
        self.results.flush()
        self.state = RunState.IDLE
        self._set_running(False)
        self.status.set_stage(f"Stopped; keeping the best model (epoch {self.plots.best_epoch})"
                              ": saving, testing and logging it in the background…", busy=True)

    def _on_batch(self, event: BatchEnd) -> None:
        if self._from_finishing():
            return
        self.results.add_batch(event)
        estimate = self._clock.add(event) if self._clock is not None else None
        if estimate is not None:
            self.status.show_estimate(estimate)
            if self._clock.speed is not None:  # rescaled to this run's own batches
                self.controls.remember_speed(self._clock.speed, self._clock.settings)
            self.results.log(estimate.text(), theme.YELLOW if estimate.long else None)
            if estimate.long:
                self.session.message.emit(estimate.text())
        self.status.show_batch(event, halting=self.state in (RunState.STOPPING,
                                                             RunState.CANCELLING))

    def _on_epoch(self, event: EpochEnd) -> None:
        if not self._from_finishing():
            self.results.add_epoch(event)

    def _on_fold(self, event: FoldStart) -> None:
        if not self._from_finishing():
            self.status.start_fold(event)
            self.results.start_fold(event)

    def _on_error(self, event: TrainError) -> None:
        if self._from_finishing() and self.worker is not None:  # a newer run owns the tab
            self.results.log(f"The stopped run: {event.message}", theme.RED)
        elif event.fatal:
            self._show_fatal(event.message)
        else:
            self.results.log(event.message, theme.YELLOW)

    def _show_fatal(self, message: str) -> None:
        self.status.show_error(message)
        self.results.log(message, theme.RED)
        self.session.message.emit(f"Training failed: {message.splitlines()[0]}")

    def _on_end(self, end: TrainEnd) -> None:
        if not self._from_finishing():
            worker, self.worker = self.worker, None
            self._show_end(worker, end)
            return
        worker, self.finishing = self.finishing, None  # the stopped run is done
        if self.worker is None:
            self._show_end(worker, end)
            return
        self.session.keep_alive(worker)  # a newer run owns the tab: a line in Messages
        self.results.log(f"The stopped run: {outcome(end)}"
                         + (f" Its model: {end.best_checkpoint}" if end.best_checkpoint else ""))
        self.ended.emit(end)

    def _show_end(self, worker: TrainWorker | None, end: TrainEnd) -> None:
        self._close_limit.stop()
        if worker is not None:  # its thread ends once the child process has exited
            self.session.keep_alive(worker)
        self.results.flush()
        self.last_end = end
        self.state = RunState.IDLE
        self._set_running(False)
        if isinstance(end, CrossValEnd):
            self.status.set_stage(crossval_summary(end).splitlines()[0], 1.0)
            self.summary.setPlainText(crossval_summary(end))
            self.ended.emit(end)
            return
        self.status.set_stage(outcome(end), 1.0)
        self.summary.setPlainText(summary(end, self._project_root))
        if self._adoptable(end):
            self._judge(end)
        self.ended.emit(end)

    def _adoptable(self, end: TrainEnd | None) -> bool:
        """Whether ``end``'s model may become the project's (it was trained on the project
        still open, the window is not closing)."""
        return (end is not None and not self._closing and end.error is None
                and end.best_checkpoint is not None and self.session.project is not None
                and self.session.project.root == self._project_root)

    def _judge(self, end: TrainEnd) -> None:
        """Judge the run's model in a child (a 1000-resample bootstrap: ``child_worker``);
        ``_judged`` adopts it or offers "Use this model"."""
        self._judging.start(child_worker(
            judge_run, end.run_dir, dict(self.session.scores),
            self.session.model_path is not None,
            self.session.project.root if self.session.project is not None else None,
            name="echoquality-verdict", parent=self).connect(
                returned=lambda verdict: self._judged(end, verdict),
                errored=lambda exc: self._judged(end, None, str(exc))))

    def _judged(self, end: TrainEnd, verdict: Verdict | None, failure: str = "") -> None:
        if end is not self.last_end or self.running:  # a newer run owns the tab
            return
        self.verdict = verdict
        self.results.add_summary("\n" + verdict.text() if verdict is not None else
                                 f"It could not be judged ({failure}).")
        if verdict is not None and verdict.adopt:
            self.use_model()
        else:
            self.results.add_summary("Click “Use this model” to use it anyway.")
            self.results.use_button.setVisible(True)

    def use_model(self) -> None:
        """Make the last run's model the project's model and score all clips with it (the
        adoption rule's choice, or the user's through "Use this model")."""
        end = self.last_end
        self.results.use_button.setVisible(False)
        if not self._adoptable(end) or self.running:
            return
        self.state = RunState.SCORING
        self.session.set_model(end.best_checkpoint, run_dir=end.run_dir, threshold=end.threshold)
        self.results.add_summary("This is now the project's model; scoring all clips…")

    def _scores_arrived(self) -> None:
        if self.state is RunState.SCORING and self.session.scores:
            self.state = RunState.IDLE
            self.results.add_summary(f"Scored {len(self.session.scores)} clips: see the Model "
                                     "column of the clip list.")

    def _scoring_failed(self, text: str) -> None:
        if self.state is RunState.SCORING:
            self.state = RunState.IDLE
            self.results.add_summary(f"Scoring the clips failed: {text}")
            self.results.log(text, theme.RED)
