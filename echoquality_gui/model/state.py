"""The session's model: which model is current (and the training run it came from), its
decision threshold, its scores of the project's clips, and the scoring worker's life cycle
with roll-back to the last model that loaded. A mixin of ``Session``, whose signals it emits
(``model_changed``, ``scores_changed``, ``scoring_progress``, ``scoring_finished``,
``scoring_failed``, ``score_visibility_changed``, ``message``).

The project's scorings share one warm child process (core ``ModelProcess``): loading a model
and scoring the clips with it pay for torch and the model file once, outside the app."""
from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QThread

from echoquality_core.decision import DEFAULT_THRESHOLD, disagrees
from echoquality_core.jobs.model_process import (
    FORWARD_TIMEOUT,
    Cancelled,
    Done,
    Failed,
    Loaded,
    ModelProcess,
    ScoredClips,
)
from echoquality_core.train.events import Progress
from echoquality_gui.common import settings
from echoquality_gui.common.workers import ProcessRelay
from echoquality_gui.model.score_worker import score_relay


class ModelState:
    """Model, threshold and scores of a Session (see the module docstring)."""

    def _init_model_state(self) -> None:
        self.scores: dict[str, float] = {}
        self.threshold = DEFAULT_THRESHOLD
        self.calibration: dict | None = None  # the model's (its scores come calibrated)
        self.model_path: Path | None = None
        self.trusted_exports: set[Path] = set()  # TorchScript files the user chose to run
        self.run_dir: Path | None = None  # training run folder (summary.json, ...) if known
        self.show_scores = settings.show_model_score()
        self._scoring: ProcessRelay | None = None
        self._model_process: ModelProcess | None = None  # started with the first scoring
        self._gradcam_process: ModelProcess | None = None  # Review's and Adjudicate's
        self.forward_timeout = FORWARD_TIMEOUT  # seconds a model call may take (then killed)
        self._background: set[QThread] = set()  # aborted, or not the project's
        self._given_threshold: float | None = None
        self._confirmed: tuple[Path | None, Path | None, float] = (None, None, self.threshold)

    def set_model(self, path: str | Path | None, *, run_dir: str | Path | None = None,
                  threshold: float | None = None) -> None:
        """Make ``path`` (weights, checkpoint or TorchScript export) the current model and score
        every clip of the project in the background; ``None`` clears model and scores.

        ``threshold`` defaults to the checkpoint's saved one, else the core's default. The model
        is loaded in the background: if it cannot be used, ``message`` says why and the previous
        model is put back.
        """
        self.cancel_scoring()
        if path is None:
            self.model_path, self.run_dir, self._given_threshold = None, None, None
            self.calibration = None
            self._confirmed = (None, None, self.threshold)
            self.model_changed.emit(None)
            self.set_scores({})
            return
        path = Path(path)
        if not path.exists():
            self.message.emit(f"Cannot use the model {path.name}: file not found")
            return
        self.model_path, self.run_dir = path, Path(run_dir) if run_dir else None
        self._given_threshold = None if threshold is None else float(threshold)
        if threshold is not None:
            self.threshold = float(threshold)
        self.model_changed.emit(path)
        self.score_project(loading=True)

    def adopt_scores(self, model: str | Path, scores: dict[str, float],
                     threshold: float) -> None:
        """Scores of the project's clips made with ``model`` elsewhere (Score a folder): that
        model becomes the current one, with these scores (nothing is scored again)."""
        model = Path(model)
        self.cancel_scoring()
        if model != self.model_path:
            self.model_path, self.run_dir, self._given_threshold = model, None, None
            self.calibration = None  # not known here (its scores come calibrated)
            self.model_changed.emit(model)
        self.threshold = float(threshold)
        self._confirmed = (self.model_path, self.run_dir, self.threshold)
        self.set_scores(scores, threshold)

    def score_project(self, *, loading: bool = False) -> bool:
        """Score every clip of the project with the current model in the background (after
        the header scan, if one is running); False if there is nothing to do."""
        project = self.project
        if project is None or self.model_path is None or self.scanning or not project.clips:
            if loading:  # nothing to score: still check that the model loads
                self._start_scoring([])
            return False
        self._start_scoring([(c.path, c.rel) for c in project.clips])
        return True

    def _start_scoring(self, clips: list[tuple[Path, str]]) -> None:
        self.cancel_scoring()
        worker = score_relay(clips, self.model_path, threshold=self._given_threshold,
                             cache_dir=self.project.cache_dir if self.project else None,
                             trust_exported=self.model_path in self.trusted_exports,
                             process=self.model_process(), parent=self)
        worker.on(Loaded, self._on_model_loaded).on(Progress, self._on_scoring_progress)
        worker.on(Done, self._on_scored).on(Failed, self._on_scoring_failed)
        worker.on(Cancelled, lambda _: self._on_scoring_ended())
        worker.finished.connect(self._on_worker_finished)
        self._scoring = worker
        self.scoring_progress.emit(0, 0)
        worker.start()

    def model_process(self) -> ModelProcess:
        """The warm child process the project's scorings run in (one job at a time)."""
        if self._model_process is None:
            self._model_process = ModelProcess(forward_timeout=self.forward_timeout)
        return self._model_process

    def gradcam_process(self) -> ModelProcess:
        """The warm child process the GradCAM views share (its own: a GradCAM never waits for
        the scoring of a project)."""
        if self._gradcam_process is None:
            self._gradcam_process = ModelProcess(forward_timeout=self.forward_timeout)
        return self._gradcam_process

    def close_model_process(self) -> None:
        """Kill the scoring and GradCAM children now (running jobs end as cancelled)."""
        for process in (self._model_process, self._gradcam_process):
            if process is not None:
                process.close()

    @property
    def scoring(self) -> bool:
        return self._scoring is not None

    def cancel_scoring(self) -> None:
        """Stop the project's scoring (the child finishes its batch in the background; its
        results are dropped)."""
        worker, self._scoring = self._scoring, None
        if worker is not None:
            worker.abort()
            self._background.add(worker)
            self.scoring_finished.emit()

    def keep_alive(self, worker: QThread) -> None:
        """Own a background worker with ``cancel()`` and ``abort()`` (e.g. Score a folder, a
        training run that is finishing) until its thread ends; ``close`` aborts and waits for
        it."""
        worker.setParent(self)
        self._background.add(worker)
        worker.finished.connect(self._on_worker_finished)
        if worker.isFinished():  # ended before we connected
            self._background.discard(worker)
            worker.deleteLater()

    def _on_worker_finished(self) -> None:
        worker = self.sender()
        if worker in self._background:
            self._background.discard(worker)
            worker.deleteLater()

    def _on_model_loaded(self, loaded: Loaded) -> None:
        self.threshold, self.calibration = loaded.threshold, loaded.calibration
        self._confirmed = (self.model_path, self.run_dir, loaded.threshold)
        if self.scores:
            self.set_scores({})
        self.scoring_progress.emit(0, 0)

    def _on_scoring_progress(self, progress: Progress) -> None:
        self.scoring_progress.emit(progress.done, progress.total)

    def _on_scored(self, done: Done) -> None:
        result: ScoredClips = done.value
        scores = result.scores
        self._on_scoring_ended()
        if result.clips:
            unreadable = result.clips - len(scores)
            self.message.emit(f"Scored {len(scores)} clips with {self.model_path.name}"
                              + (f" ({unreadable} unreadable)" if unreadable else ""))
            self.set_scores(scores, result.threshold)

    def _on_scoring_failed(self, failed: Failed) -> None:
        text = failed.message
        self._on_scoring_ended()
        self.message.emit(text)
        self.scoring_failed.emit(text)
        if self._confirmed[0] != self.model_path:  # the model did not load: put the last back
            self.model_path, self.run_dir, self.threshold = self._confirmed
            self._given_threshold = self.threshold if self.model_path else None
            self.model_changed.emit(self.model_path)
            if self.model_path is not None and not self.scores:
                self.score_project()

    def _on_scoring_ended(self) -> None:
        if self._scoring is not None:  # an aborted relay delivers nothing: this is the current
            worker, self._scoring = self._scoring, None
            worker.wait()
            worker.deleteLater()
            self.scoring_finished.emit()

    def set_show_scores(self, on: bool) -> None:
        """Show or hide the model's score while labelling (and in the clip list); remembered."""
        settings.set_show_model_score(bool(on))
        self.show_scores = bool(on) and not getattr(self, "blind", False)
        self.score_visibility_changed.emit(self.show_scores)

    def set_scores(self, scores: dict[str, float], threshold: float | None = None) -> None:
        """Model scores by clip rel path (shown in the list; 'disagreements' filter)."""
        self.scores = dict(scores)
        if threshold is not None:
            self.threshold = float(threshold)
        self.scores_changed.emit()

    def disagrees(self, rel: str) -> bool:
        """True if the clip is labelled and the model's call (score >= threshold) differs."""
        label, score = self.label(rel), self.scores.get(rel)
        if label is None or score is None or getattr(self, "blind", False):
            return False
        return disagrees(label.quality_score, score, self.threshold)
