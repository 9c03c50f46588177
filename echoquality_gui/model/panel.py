"""Model files from the GUI: "Load model…" (a file dialog → the session's current model) and
"Score a folder…" (a dialog that scores every clip under a folder into a resumable CSV, in the
background, with progress and Cancel; closing the dialog leaves it running, its progress in the
status bar)."""
from __future__ import annotations

from pathlib import Path

from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QGridLayout,
    QLabel,
    QLineEdit,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from echoquality_core.jobs.model_process import Cancelled, Done, Failed, Loaded, ScoredClips
from echoquality_core.model.file_kind import is_export
from echoquality_core.train.events import Progress
from echoquality_gui.common.session import Session
from echoquality_gui.common.workers import ProcessRelay
from echoquality_gui.model.score_worker import score_relay

MODEL_FILES = "Model weights or checkpoint (*.pt *.pth *.ckpt);;All files (*)"
OUTPUT_NAME = "scores.csv"


def choose_model(parent: QWidget, session: Session) -> None:
    """Ask for a weights/checkpoint file and make it the session's model (scores the clips)."""
    start = str(session.model_path or (session.project.root if session.project else ""))
    path, _ = QFileDialog.getOpenFileName(parent, "Load a quality model", start, MODEL_FILES)
    if path and is_export(path):
        answer = QMessageBox.warning(
            parent, "Run a TorchScript model?",
            f"{Path(path).name} is a TorchScript export: loading it runs code from the file, "
            "with your permissions. Load it only if you trust where it came from.",
            QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.Cancel,
            QMessageBox.StandardButton.Cancel)
        if answer != QMessageBox.StandardButton.Yes:
            return
        session.trusted_exports.add(Path(path))
    if path:
        session.set_model(path)


class ScoreFolderDialog(QDialog):
    """Score every clip under a folder with a model; rows go to a CSV (resumed if it exists).
    Scoring the open project's folder makes that model the project's model, with these scores
    in the clip list. Closing the dialog does not stop the scoring: only Cancel does."""

    def __init__(self, session: Session, parent: QWidget | None = None):
        super().__init__(parent)
        self.session = session
        self.worker: ProcessRelay | None = None
        self.setWindowTitle("Score a folder")
        self.folder = QLineEdit(placeholderText="Folder of DICOM clips (searched recursively)")
        self.model = QLineEdit(placeholderText="Weights or checkpoint file")
        self.output = QLineEdit(placeholderText=f"<folder>/{OUTPUT_NAME}")
        self._output_edited = False
        self.folder.textEdited.connect(self._folder_edited)
        self.output.textEdited.connect(lambda _t: setattr(self, "_output_edited", True))
        grid = QGridLayout()
        for row, (text, edit, browse) in enumerate((
                ("Folder", self.folder, self._browse_folder),
                ("Model", self.model, self._browse_model),
                ("Scores CSV", self.output, self._browse_output))):
            button = QPushButton("Browse…")
            button.clicked.connect(browse)
            grid.addWidget(QLabel(text), row, 0)
            grid.addWidget(edit, row, 1)
            grid.addWidget(button, row, 2)
        self.progress = QProgressBar(textVisible=True)
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        self.progress.setFormat("")
        self.status = QLabel("Clips already in the CSV are skipped, so a stopped run resumes.")
        self.status.setWordWrap(True)
        self.buttons = QDialogButtonBox()
        self.start_button = self.buttons.addButton("Score",
                                                   QDialogButtonBox.ButtonRole.ActionRole)
        self.cancel_button = self.buttons.addButton(QDialogButtonBox.StandardButton.Cancel)
        self.close_button = self.buttons.addButton(QDialogButtonBox.StandardButton.Close)
        self.start_button.clicked.connect(self.start)
        self.cancel_button.clicked.connect(self.cancel)
        self.close_button.clicked.connect(self.close)
        self.cancel_button.setEnabled(False)
        layout = QVBoxLayout(self)
        layout.addLayout(grid)
        layout.addWidget(self.progress)
        layout.addWidget(self.status)
        layout.addWidget(self.buttons)
        self.resize(620, 220)
        self.reset_fields()

    # --- fields ----------------------------------------------------------------------------
    def reset_fields(self) -> None:
        """Default folder = the open project, model = the current model."""
        session = self.session
        if not self.folder.text() and session.project is not None:
            self.set_folder(session.project.root)
        if session.model_path is not None and self.worker is None:
            self.model.setText(str(session.model_path))

    def set_folder(self, folder: str | Path) -> None:
        self.folder.setText(str(folder))
        self._folder_edited(str(folder))

    def _folder_edited(self, text: str) -> None:
        if not self._output_edited and text.strip():
            self.output.setText(str(Path(text.strip()) / OUTPUT_NAME))

    def _browse_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Folder of clips to score",
                                                  self.folder.text())
        if folder:
            self.set_folder(folder)

    def _browse_model(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Model to score with", self.model.text(),
                                              MODEL_FILES)
        if path:
            self.model.setText(path)

    def _browse_output(self) -> None:
        path, _ = QFileDialog.getSaveFileName(
            self, "Scores CSV (an existing one is resumed)", self.output.text(),
            "CSV files (*.csv)", options=QFileDialog.Option.DontConfirmOverwrite)
        if path:
            self.output.setText(path)
            self._output_edited = True

    # --- running ---------------------------------------------------------------------------
    @property
    def running(self) -> bool:
        return self.worker is not None

    def _project_folder(self, folder: Path) -> bool:
        project = self.session.project
        return project is not None and folder.resolve() == project.root

    def start(self) -> bool:
        """Score the folder in the background; False (with the reason shown) if the fields
        are not usable."""
        if self.running:
            return False
        folder = Path(self.folder.text().strip())
        model = Path(self.model.text().strip())
        output = Path(self.output.text().strip() or folder / OUTPUT_NAME)
        problem = ("Choose a folder of clips" if not self.folder.text().strip()
                   or not folder.is_dir() else
                   "Choose a model file" if not self.model.text().strip() or not model.exists()
                   else None)
        if problem:
            self.status.setText(problem)
            return False
        in_project = self._project_folder(folder)
        same_model = self.session.model_path is not None and model == self.session.model_path
        worker = score_relay(
            folder, model, out_csv=output,
            threshold=self.session.threshold if same_model else None,
            cache_dir=self.session.project.cache_dir if in_project else None)
        worker.on(Loaded, lambda _: self._progress(Progress("scoring", 0, 0)))
        worker.on(Progress, self._progress).on(Done, self._finished)
        worker.on(Failed, self._failed).on(Cancelled, self._cancelled)
        self.session.keep_alive(worker)
        self.worker = worker
        self._output_path, self._done = output, 0
        self._model_path, self._folder_name = model, folder.name
        self._project_root = self.session.project.root if in_project else None
        self._set_running(True)
        self.status.setText(f"Loading {model.name}…")
        self.progress.setRange(0, 0)
        worker.start()
        return True

    def cancel(self) -> None:
        """Stop after the clips being scored (they are written to the CSV)."""
        if self.worker is not None:
            self.worker.cancel()
            self.cancel_button.setEnabled(False)
            self.status.setText("Stopping after the clips being scored…")

    def _set_running(self, on: bool) -> None:
        self.start_button.setEnabled(not on)
        self.cancel_button.setEnabled(on)
        for edit in (self.folder, self.model, self.output):
            edit.setEnabled(not on)

    def _progress(self, progress: Progress) -> None:
        done, total = progress.done, progress.total
        self._done = done
        self.progress.setRange(0, total)
        self.progress.setValue(done)
        self.progress.setFormat(f"%v / {total} clips" if total else "Finding clips…")
        if total:
            self.status.setText(f"Scoring… {done} / {total}")
            self.session.message.emit(f"Scoring the folder {self._folder_name}: {done} / "
                                      f"{total} clips (File > Score a folder…)")

    def _ended(self, text: str) -> None:
        self.worker = None
        self._set_running(False)
        self.status.setText(text)
        self.session.message.emit(f"Score a folder ({self._folder_name}): {text}")

    def _finished(self, done: Done) -> None:
        result: ScoredClips = done.value
        scores, clips, skipped = result.scores, result.clips, result.skipped
        unreadable = clips - len(scores)
        self.progress.setRange(0, max(clips, 1))
        self.progress.setValue(clips)
        self.progress.setFormat(f"%v / {clips} clips")
        self._ended(f"Done: {clips} clips in {self._output_path.name}"
                    + (f" ({unreadable} unreadable)" if unreadable else "")
                    + (f", {skipped} already there" if skipped else ""))
        project = self.session.project
        if project is not None and project.root == self._project_root:
            self.session.adopt_scores(self._model_path, scores, result.threshold)
            self.status.setText(f"{self.status.text()}. {self._model_path.name} is now the "
                                "project's model (its scores are in the clip list).")

    def _failed(self, failed: Failed) -> None:
        self.progress.setRange(0, 1)
        self._ended(failed.message)

    def _cancelled(self, _cancelled: Cancelled) -> None:
        self._ended(f"Cancelled after {self._done} clips; they are in {self._output_path.name}."
                    " Score again to resume.")
