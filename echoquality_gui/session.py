"""The open project's state as Qt signals. Widgets subscribe to it and call its methods; the
plain logic (scan, labels, undo) lives in ``echoquality_core.project``.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from PySide6.QtCore import QObject, QThread, Signal

from echoquality_core.labels import Label
from echoquality_core.project import ClipInfo, LabelChange, Project, read_header
from echoquality_core.scoring import DEFAULT_THRESHOLD, ClipInput
from echoquality_gui import settings
from echoquality_gui.score_worker import ScoreWorker, scores_by_clip

SCALES = ("binary", "five_point")


class ScanWorker(QThread):
    """Finds the clips under a folder and reads their headers, reporting progress; cancellable."""

    found = Signal(int, list)  # scan id, list[Path]
    headers = Signal(int, list)  # scan id, list[(row, ClipInfo)]
    progress = Signal(int, int, int)  # scan id, done, total (done == -1: cancelled)
    done = Signal(int)  # scan id

    _ids = 0

    BATCH_SECONDS = 0.1

    def __init__(self, project: Project, parent: QObject | None = None):
        super().__init__(parent)
        ScanWorker._ids += 1
        self.id = ScanWorker._ids
        self._project = project
        self._cancelled = False

    def cancel(self) -> None:
        self._cancelled = True

    def run(self) -> None:
        paths = self._project.find_paths()
        self.found.emit(self.id, paths)
        batch: list[tuple[int, ClipInfo]] = []
        last = time.perf_counter()
        relative = self._project.store.relative
        for row, path in enumerate(paths):
            if self._cancelled:
                break
            batch.append((row, read_header(path, relative(path))))
            if time.perf_counter() - last > self.BATCH_SECONDS:
                self.headers.emit(self.id, batch)
                self.progress.emit(self.id, row + 1, len(paths))
                batch, last = [], time.perf_counter()
        if batch:
            self.headers.emit(self.id, batch)
        self.progress.emit(self.id, -1 if self._cancelled else len(paths), len(paths))
        self.done.emit(self.id)


class Session(QObject):
    """State of the open project: clips, labels, current clip, model scores, undo/redo."""

    project_opened = Signal(object)  # Project
    clips_reset = Signal()  # the clip list was replaced
    clips_updated = Signal(list)  # rows whose header arrived
    scan_progress = Signal(int, int)  # done, total (done == -1: cancelled)
    scan_finished = Signal()
    about_to_change_clip = Signal(object)  # ClipInfo | None: write its pending edits now
    current_changed = Signal(object)  # ClipInfo | None
    label_changed = Signal(str)  # rel path of the clip whose label changed
    undo_state_changed = Signal(bool, bool)  # can undo, can redo
    saved = Signal(str)  # "HH:MM:SS"
    message = Signal(str)  # status-bar text
    scale_changed = Signal(str)
    model_changed = Signal(object)  # model path | None (Train / Review tabs)
    scores_changed = Signal()  # model scores per clip replaced
    scoring_progress = Signal(int, int)  # done, total (total 0: loading the model)
    scoring_finished = Signal()  # the project's scoring ended (done, cancelled or failed)
    score_visibility_changed = Signal(bool)  # show the model score while labelling
    raters_changed = Signal()  # the rater, blind mode, the policy or the raters' labels changed

    def __init__(self, parent: QObject | None = None):
        super().__init__(parent)
        self.project: Project | None = None
        self.current: ClipInfo | None = None
        self.scores: dict[str, float] = {}
        self.threshold = DEFAULT_THRESHOLD
        self.model_path: Path | None = None
        self.run_dir: Path | None = None  # training run folder (summary.json, ...) if known
        self.show_scores = settings.show_model_score()
        self.blind = False  # several raters: hide others' labels and the model's scores
        self.scale = "binary"
        self.auto_advance = True
        self.clip_order: Callable[[], list[str]] | None = None  # the clip list's visible order
        self._scan: ScanWorker | None = None
        self._scoring: ScoreWorker | None = None
        self._background: set[ScoreWorker] = set()  # cancelled or not the project's
        self._given_threshold: float | None = None
        self._confirmed: tuple[Path | None, Path | None, float] = (None, None, self.threshold)

    # --- project ---------------------------------------------------------------------------
    def open_project(self, root: str | Path, csv_path: str | Path | None = None) -> Project:
        """Open a dataset folder and its labels CSV, then scan the clips in the background
        (and score them when a model is loaded)."""
        self._stop_scan()
        project = Project(Path(root), Path(csv_path) if csv_path else None)
        self.about_to_change_clip.emit(self.current)
        self.cancel_scoring()
        self.project, self.current, self.scores = project, None, {}
        project.rater = settings.rater() or None
        stored = settings.project_value(project.root, "scale")
        self.scale = stored if stored in SCALES else (
            "five_point" if project.store.is_continuous() else "binary")
        settings.add_recent_project(project.root)
        self.project_opened.emit(project)
        self.scale_changed.emit(self.scale)
        self.current_changed.emit(None)
        self._emit_undo_state()
        self.raters_state_changed()
        self._start_scan(project)
        return project

    def _start_scan(self, project: Project) -> None:
        worker = ScanWorker(project, self)
        worker.found.connect(self._on_found)
        worker.headers.connect(self._on_headers)
        worker.progress.connect(self._on_progress)
        worker.done.connect(self._on_scan_done)
        self._scan = worker
        worker.start()

    def _is_current_scan(self, scan_id: int) -> bool:
        """Signals of a cancelled or replaced scan may still be queued: ignore them."""
        return self._scan is not None and self._scan.id == scan_id

    def _on_found(self, scan_id: int, paths: list[Path]) -> None:
        if not self._is_current_scan(scan_id):
            return
        self.project.set_paths(paths)
        self.clips_reset.emit()
        self.message.emit(f"Found {len(paths)} clips in {self.project.root.name}")

    def _on_headers(self, scan_id: int, batch: list[tuple[int, ClipInfo]]) -> None:
        if not self._is_current_scan(scan_id):
            return
        for row, info in batch:
            self.project.clips[row] = info
        self.clips_updated.emit([row for row, _ in batch])

    def _on_progress(self, scan_id: int, done: int, total: int) -> None:
        if self._is_current_scan(scan_id):
            self.scan_progress.emit(done, total)

    def _on_scan_done(self, scan_id: int) -> None:
        if self._is_current_scan(scan_id):
            scan, self._scan = self._scan, None
            scan.wait()
            scan.deleteLater()
            self.scan_finished.emit()
            self.score_project()

    @property
    def scanning(self) -> bool:
        return self._scan is not None

    def cancel_scan(self) -> None:
        """Stop reading headers (clips already read stay in the list, and are scored)."""
        self._stop_scan()
        self.score_project()

    def _stop_scan(self) -> None:
        if self._scan is not None:
            scan, self._scan = self._scan, None
            scan.cancel()
            scan.wait()
            scan.deleteLater()
            self.scan_finished.emit()

    def set_scale(self, scale: str) -> None:
        """"binary" (1 good / 0 poor) or "five_point" (1-5 -> 0, 0.25, ..., 1); per project."""
        if scale not in SCALES:
            raise ValueError(f"label scale must be one of {SCALES}, got {scale!r}")
        self.scale = scale
        if self.project is not None:
            settings.set_project_value(self.project.root, "scale", scale)
        self.scale_changed.emit(scale)

    # --- navigation ------------------------------------------------------------------------
    def open_clip(self, rel: str | None) -> None:
        """Make clip ``rel`` (relative path) the current one (``about_to_change_clip`` first,
        so that edits of the clip on screen are written)."""
        self.about_to_change_clip.emit(self.current)
        info = None
        if rel is not None and self.project is not None:
            row = self.project.row(rel)
            info = self.project.clips[row] if row is not None else None
        self.current = info
        self.current_changed.emit(info)

    def visible_order(self) -> list[str] | None:
        """Clip rel paths in the clip list's sorted, filtered order (None: project order)."""
        return self.clip_order() if self.clip_order is not None else None

    def next_unlabelled_rel(self, order: list[str] | None = None) -> str | None:
        """The unlabelled clip after the current one in ``order`` (default: the clip list's
        order), then among the clips filtered out of the list; None if all are labelled."""
        if self.project is None:
            return None
        return self.project.next_unlabelled(self.current.rel if self.current else None,
                                            self.visible_order() if order is None else order)

    def next_unlabelled(self, order: list[str] | None = None) -> bool:
        """Open the next unlabelled clip (see ``next_unlabelled_rel``); False (with a message)
        when all are labelled."""
        if self.project is None:
            return False
        rel = self.next_unlabelled_rel(order)
        if rel is None:
            self.message.emit(f"All {len(self.project.clips)} clips are labelled")
            return False
        self.open_clip(rel)
        return True

    # --- labels ----------------------------------------------------------------------------
    def label(self, rel: str) -> Label | None:
        return self.project.label(rel) if self.project else None

    def label_current(self, score: float, issues=(), notes: str | None = None, *,
                      advance: bool | None = None) -> bool:
        """Write the current clip's label to the CSV now; then open the next unlabelled clip
        if ``advance`` (default: the auto-advance setting). False if nothing was written."""
        if self.project is None or self.current is None:
            return False
        rel = self.current.rel
        order = self.visible_order()  # before the label re-sorts or filters the list
        if self.project.rater != (settings.rater() or None):
            self.set_rater(settings.rater())
        change = self._write(lambda: self.project.set_label(
            rel, score, rater=settings.rater() or None, issues=issues, notes=notes))
        if change is None:
            return False
        if self.auto_advance if advance is None else advance:
            self.next_unlabelled(order)
        return True

    def undo(self) -> LabelChange | None:
        """Undo the last label change (written to the CSV)."""
        if self.project is None:
            return None
        self.about_to_change_clip.emit(self.current)
        return self._write(self.project.undo, "Undid")

    def redo(self) -> LabelChange | None:
        if self.project is None:
            return None
        self.about_to_change_clip.emit(self.current)
        return self._write(self.project.redo, "Redid")

    def _write(self, action, verb: str | None = None) -> LabelChange | None:
        project = self.project
        try:
            reloaded = project.reload_if_changed()
            change = action()
        except (OSError, ValueError) as exc:
            self.message.emit(f"Label NOT saved: {exc}")
            return None
        if reloaded:
            self.message.emit("The labels CSV was changed by another program: reloaded and merged")
            self.clips_reset.emit()
        if change is None:
            return None
        stamp = time.strftime("%H:%M:%S")
        self.saved.emit(stamp)
        if verb:
            self.message.emit(f"{verb} label change of {change.rel}")
            self.open_clip(change.rel)
        self.label_changed.emit(change.rel)
        self._emit_undo_state()
        self.raters_state_changed()
        return change

    def _emit_undo_state(self) -> None:
        p = self.project
        self.undo_state_changed.emit(bool(p and p.can_undo), bool(p and p.can_redo))

    def next_most_uncertain(self) -> bool:
        """Open the unlabelled clip whose model score is closest to the threshold; False (with
        a message) without scores or when every scored clip is labelled."""
        if self.project is None:
            return False
        if not self.scores:
            self.message.emit("No model scores yet: load a model (File > Load model…)"
                              if self.model_path is None else "The model is still scoring…")
            return False
        rel = self.project.most_uncertain(self.scores, self.threshold,
                                          self.current.rel if self.current else None,
                                          self.visible_order())
        if rel is None:
            self.message.emit("Every clip the model scored is labelled")
            return False
        self.open_clip(rel)
        return True

    # --- model -----------------------------------------------------------------------------
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
        self._start_scoring([ClipInput(c.path, c.rel) for c in project.clips])
        return True

    def _start_scoring(self, clips: list[ClipInput]) -> None:
        self.cancel_scoring()
        worker = ScoreWorker(clips, self.model_path, threshold=self._given_threshold,
                             cache_dir=self.project.cache_dir if self.project else None,
                             parent=self)
        worker.loaded.connect(self._on_model_loaded)
        worker.progress.connect(self._on_scoring_progress)
        worker.finished_scoring.connect(self._on_scored)
        worker.failed.connect(self._on_scoring_failed)
        worker.cancelled.connect(self._on_scoring_ended)
        worker.finished.connect(self._on_worker_finished)
        self._scoring = worker
        self.scoring_progress.emit(0, 0)
        worker.start()

    @property
    def scoring(self) -> bool:
        return self._scoring is not None

    def cancel_scoring(self) -> None:
        """Stop the project's scoring (the worker finishes its batch in the background)."""
        worker, self._scoring = self._scoring, None
        if worker is not None:
            worker.cancel()
            self._background.add(worker)
            self.scoring_finished.emit()

    def keep_alive(self, worker: QThread) -> None:
        """Own a background worker with ``cancel()`` (e.g. Score a folder, a training run
        that is finishing) until its thread ends; ``close`` cancels and waits for it."""
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

    def _is_current_scoring(self, worker_id: int) -> bool:
        return self._scoring is not None and self._scoring.id == worker_id

    def _on_model_loaded(self, worker_id: int, threshold: float) -> None:
        if self._is_current_scoring(worker_id):
            self.threshold = threshold
            self._confirmed = (self.model_path, self.run_dir, threshold)
            if self.scores:
                self.set_scores({})

    def _on_scoring_progress(self, worker_id: int, done: int, total: int) -> None:
        if self._is_current_scoring(worker_id):
            self.scoring_progress.emit(done, total)

    def _on_scored(self, worker_id: int, table) -> None:
        if not self._is_current_scoring(worker_id):
            return
        scores = scores_by_clip(table)
        self._on_scoring_ended(worker_id)
        if not table.empty:
            unreadable = len(table) - len(scores)
            self.message.emit(f"Scored {len(scores)} clips with {self.model_path.name}"
                              + (f" ({unreadable} unreadable)" if unreadable else ""))
            self.set_scores(scores, table.attrs["threshold"])

    def _on_scoring_failed(self, worker_id: int, text: str) -> None:
        if not self._is_current_scoring(worker_id):
            return
        self._on_scoring_ended(worker_id)
        self.message.emit(text)
        if self._confirmed[0] != self.model_path:  # the model did not load: put the last back
            self.model_path, self.run_dir, self.threshold = self._confirmed
            self._given_threshold = self.threshold if self.model_path else None
            self.model_changed.emit(self.model_path)
            if self.model_path is not None and not self.scores:
                self.score_project()

    def _on_scoring_ended(self, worker_id: int) -> None:
        if self._is_current_scoring(worker_id):
            worker, self._scoring = self._scoring, None
            worker.wait()
            worker.deleteLater()
            self.scoring_finished.emit()

    def set_show_scores(self, on: bool) -> None:
        """Show or hide the model's score while labelling (and in the clip list); remembered."""
        settings.set_show_model_score(bool(on))
        self.show_scores = bool(on) and not self.blind
        self.score_visibility_changed.emit(self.show_scores)

    # --- several raters (echoquality_gui.raters_menu) -------------------------------------------
    def set_rater(self, name: str) -> None:
        """Who labels from now on (remembered); with several raters the labels shown are
        theirs."""
        self.about_to_change_clip.emit(self.current)
        settings.set_rater(name)
        if self.project is not None:
            self.project.rater = name.strip() or None
        self.message.emit(f"Rater: {name.strip()}")
        self.clips_reset.emit()
        self.raters_state_changed()
        if self.current is not None:
            self.label_changed.emit(self.current.rel)

    def adjudicate(self, rel: str, score: float, notes: str | None = None) -> bool:
        """Record the current rater's final label of a clip the raters disagree about."""
        if self.project is None or not settings.rater():
            return False
        return self._write(lambda: self.project.adjudicate(
            rel, score, by=settings.rater(), notes=notes)) is not None

    def raters_state_changed(self) -> None:
        """Blind mode follows the project (stored choice, else on with several raters)."""
        from echoquality_gui.raters_menu import default_blind

        self.set_blind(default_blind(self), announce=False)

    def set_blind(self, on: bool, *, announce: bool = True) -> None:
        """Blind labelling: no other rater's label and no model score in any widget."""
        if announce and self.project is not None:
            settings.set_project_value(self.project.root, "blind", bool(on))
        changed, self.blind = self.blind != bool(on), bool(on)
        self.show_scores = settings.show_model_score() and not self.blind
        if changed:
            self.score_visibility_changed.emit(self.show_scores)
            self.clips_reset.emit()
        self.raters_changed.emit()

    def set_scores(self, scores: dict[str, float], threshold: float | None = None) -> None:
        """Model scores by clip rel path (shown in the list; 'disagreements' filter)."""
        self.scores = dict(scores)
        if threshold is not None:
            self.threshold = float(threshold)
        self.scores_changed.emit()

    def disagrees(self, rel: str) -> bool:
        """True if the clip is labelled and the model's call (score >= threshold) differs."""
        label, score = self.label(rel), self.scores.get(rel)
        if label is None or score is None or self.blind:
            return False
        return (score >= self.threshold) != (label.quality_score >= 0.5)

    def close(self) -> None:
        """Write the clip's pending edits and stop background work (call before the window
        goes away)."""
        self.about_to_change_clip.emit(self.current)
        self._stop_scan()
        self.cancel_scoring()
        for worker in list(self._background):
            worker.cancel()
            worker.wait()
