"""The Train tab's report of a run: its status (progress bar, stage line, the measured duration,
error banner) and its results (live plots, the Messages log, the Result summary and its "Use this
model" button), plus the words for a TrainEnd."""
from __future__ import annotations

import html
import math
import os
import time
from pathlib import Path

from PySide6.QtCore import Qt, QTimer
from PySide6.QtWidgets import (
    QGridLayout,
    QLabel,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QSizePolicy,
    QVBoxLayout,
    QWidget,
)

from echoquality_core.train.estimate import RunEstimate
from echoquality_core.train.events import (
    BatchEnd,
    EpochEnd,
    FoldStart,
    Progress,
    TrainEnd,
    summarize,
)
from echoquality_gui.common import theme
from echoquality_gui.common.widgets import section_title
from echoquality_gui.train.crossval_mode import fold_text
from echoquality_gui.train.plots import TrainPlots

REDRAW_MS = 100  # batch points are drawn at most this often


def duration(seconds: float) -> str:
    """m:ss, or h:mm:ss from an hour on."""
    seconds = max(0, round(seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}" if seconds >= 3600 \
        else f"{seconds // 60}:{seconds % 60:02d}"


def outcome(end: TrainEnd) -> str:
    """How a run ended, in one sentence."""
    if end.cancelled:
        return "Cancelled: nothing was kept."
    if end.error is not None:
        return "Failed (see Messages)."
    if end.stopped:
        return f"Stopped; kept the best model (epoch {end.best_epoch})."
    return f"Finished; best model from epoch {end.best_epoch}."


def summary(end: TrainEnd, project_root: Path | None = None) -> str:
    """The Result text of a run: outcome, metrics, MLflow run; paths under ``project_root``
    are shown relative to it."""
    lines = [outcome(end)] + ([] if end.cancelled else [summarize(end)])
    if end.run_id and not end.cancelled:
        lines.append(f"MLflow run: {end.run_id}")
    text = "\n".join(line for line in lines if line)
    return text.replace(f"{project_root}{os.sep}", "") if project_root else text


class RunStatus(QWidget):
    """Where the run is: a progress bar (busy while no fraction is known), the stage line and
    a banner for a fatal error."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.epochs = 1
        self.fold = ""  # "Fold 2/5 · " in a cross-validation
        self._first_batch_at: float | None = None
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
        self.estimate = QLabel("")  # the run's duration from its measured step time
        self.estimate.setWordWrap(True)
        self.estimate.setVisible(False)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(6)
        layout.addWidget(self.progress)
        layout.addWidget(self.stage)
        layout.addWidget(self.estimate)
        layout.addWidget(self.error_banner)

    def set_stage(self, text: str, fraction: float | None = None, busy: bool = False) -> None:
        """Show ``text``; the bar at ``fraction`` (0-1), or busy."""
        self.stage.setText(text)
        if busy:
            self.progress.setRange(0, 0)
        else:
            self.progress.setRange(0, 1000)
            if fraction is not None:
                self.progress.setValue(int(1000 * min(max(fraction, 0.0), 1.0)))

    def show_error(self, message: str | None) -> None:
        """Show ``message`` in the banner (None hides it)."""
        self.error_banner.setText(message or "")
        self.error_banner.setVisible(message is not None)

    def begin(self, epochs: int) -> None:
        """A run of ``epochs`` epochs starts: no error, no time estimate yet."""
        self.epochs, self.fold, self._first_batch_at = epochs, "", None
        self.show_error(None)
        self.estimate.setVisible(False)
        self.set_stage("Starting (loading the training code)…", busy=True)

    def show_progress(self, event: Progress) -> None:
        """Preparing clips, building the model, saving and testing."""
        if event.stage == "finish":
            self.set_stage("Training halted: saving the best model…", busy=True)
        elif event.stage == "test":
            self.set_stage(f"Testing the best model on {event.total} test clips…", busy=True)
        elif event.total and event.done >= event.total:
            self.set_stage("Building the model and opening the MLflow run…", busy=True)
        else:
            self.set_stage(f"Preparing clips {event.done}/{event.total}",
                           event.done / event.total if event.total else 0.0)

    def show_estimate(self, estimate: RunEstimate) -> None:
        """The run's expected duration, as a warning when it is long."""
        self.estimate.setText(estimate.text())
        self.estimate.setStyleSheet(f"color: {theme.YELLOW};" if estimate.long else "")
        self.estimate.setVisible(True)

    def show_note(self, text: str) -> None:
        """A plain line where the estimate goes (e.g. while the speed is measured)."""
        self.estimate.setText(text)
        self.estimate.setStyleSheet("")
        self.estimate.setVisible(True)

    def start_fold(self, event: FoldStart) -> None:
        """A cross-validation fold starts: the stage line names it."""
        self.fold, self._first_batch_at = fold_text(event) + " · ", None

    def show_batch(self, event: BatchEnd, *, halting: bool = False) -> None:
        """Epoch, batch, loss and the time left; with ``halting`` only the estimate's clock
        starts ("Stopping…" / "Cancelling…" stays up)."""
        now = time.perf_counter()
        if self._first_batch_at is None:
            self._first_batch_at = now - event.seconds
        if halting:
            return
        done = (event.epoch - 1 + event.step / max(event.n_steps, 1)) / self.epochs
        eta = (now - self._first_batch_at) * (1 - done) / done if done > 0 else 0.0
        self.set_stage(f"{self.fold}Epoch {event.epoch}/{self.epochs} · batch {event.step}/"
                       f"{event.n_steps} · loss {event.loss:.3f} · about {duration(eta)} left",
                       done)


class RunResults(QWidget):
    """The live plots above the Messages log and the Result summary."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.plots = TrainPlots()
        self.messages = QPlainTextEdit(readOnly=True)
        self.messages.setObjectName("trainMessages")
        self.messages.setPlaceholderText("Warnings and errors of the run appear here.")
        self.summary = QPlainTextEdit(readOnly=True)
        self.summary.setObjectName("trainSummary")
        self.summary.setPlaceholderText("The result of the run appears here when it ends.")
        self.use_button = QPushButton("Use this model")
        self.use_button.setToolTip("Make this run's model the project's model and score all "
                                   "clips with it")
        self.use_button.setVisible(False)
        bottom = QGridLayout()
        bottom.setSpacing(6)
        bottom.addWidget(section_title("Messages"), 0, 0)
        bottom.addWidget(section_title("Result"), 0, 1)
        bottom.addWidget(self.messages, 1, 0)
        bottom.addWidget(self.summary, 1, 1)
        bottom.addWidget(self.use_button, 2, 1, Qt.AlignmentFlag.AlignRight)
        bottom.setColumnStretch(0, 1)
        bottom.setColumnStretch(1, 1)
        for box in (self.messages, self.summary):
            box.setMinimumHeight(120)
            box.setMaximumHeight(200)
            box.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(4)
        layout.addWidget(self.plots, 1)
        layout.addLayout(bottom)
        self._redraw_timer = QTimer(self)
        self._redraw_timer.setSingleShot(True)
        self._redraw_timer.setInterval(REDRAW_MS)
        self._redraw_timer.timeout.connect(self.plots.redraw)

    def clear(self, epochs: int) -> None:
        """Empty the plots (axes for ``epochs`` epochs), the log and the summary."""
        self.epochs = epochs
        self.plots.clear(epochs)
        self.messages.clear()
        self.summary.clear()
        self.use_button.setVisible(False)

    def add_batch(self, event: BatchEnd) -> None:
        """Plot a batch's loss: the first at once, then at most every ``REDRAW_MS``."""
        self.plots.add_batch(event)
        if len(self.plots.batches["loss"]) == 1:
            self.plots.redraw()
        elif not self._redraw_timer.isActive():
            self._redraw_timer.start()

    def add_epoch(self, event: EpochEnd) -> None:
        """Plot an epoch and log its losses and AUC."""
        self._redraw_timer.stop()
        self.plots.add_epoch(event)
        auc = event.metrics.get("roc_auc")
        auc_text = f", AUC {auc:.2f}" if isinstance(auc, float) and math.isfinite(auc) else ""
        self.log(f"Epoch {event.epoch}: train loss {event.train_loss:.3f}, validation loss "
                 f"{event.val_loss:.3f}{auc_text} ({duration(event.seconds)})"
                 + (" — best so far, saved" if event.best else ""))

    def start_fold(self, event: FoldStart) -> None:
        """A cross-validation fold starts: fresh plots and a line saying what it trains on."""
        self.plots.clear(self.epochs)
        self.log(f"{fold_text(event)}: training on {event.sizes.get('train')} clips, "
                 f"validating on {event.sizes.get('val')}, scoring the "
                 f"{event.sizes.get('test')} held-out clips")

    def flush(self) -> None:
        """Draw the points still waiting for the redraw timer."""
        self._redraw_timer.stop()
        self.plots.redraw()

    def add_summary(self, text: str) -> None:
        """Add a line to the summary, keeping its top (the outcome) in view."""
        self.summary.appendPlainText(text)
        self.summary.verticalScrollBar().setValue(0)

    def log(self, text: str, colour: str | None = None) -> None:
        """A time-stamped line in Messages (``colour``: a theme colour)."""
        body = html.escape(text).replace("\n", "<br>")
        stamp = time.strftime("%H:%M:%S")
        style = f' style="color:{colour}"' if colour else ""
        self.messages.appendHtml(f'<span style="color:{theme.DIM}">{stamp}</span> '
                                 f"<span{style}>{body}</span>")
