"""The open project's state as Qt signals. Widgets subscribe to it and call its methods; the
plain logic (scan, labels, undo) lives in ``echoquality_core.labels.project``.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from PySide6.QtCore import QObject, Signal

from echoquality_core.labels.store import SCALES, Label
from echoquality_core.labels.project import ClipInfo, LabelChange, Project, read_only_note
from echoquality_core.labels.raters import known_raters
from echoquality_gui.common import settings
from echoquality_gui.model.state import ModelState
from echoquality_gui.common.workers import Latest, Worker, retire
from echoquality_gui.label.saver import LabelSaver


class Session(ModelState, QObject):
    """State of the open project: clips, labels, current clip, undo/redo; the model, its
    threshold and scores come from :class:`ModelState` (``model_state.py``)."""

    project_opened = Signal(object)  # Project
    open_failed = Signal(str)  # why a project read in the background could not be opened
    clips_reset = Signal()  # the clip list was replaced
    clips_updated = Signal(list)  # rows whose header arrived
    scan_progress = Signal(int, int)  # done, total (done == -1: cancelled)
    scan_finished = Signal()
    about_to_change_clip = Signal(object)  # ClipInfo | None: write its pending edits now
    current_changed = Signal(object)  # ClipInfo | None
    label_changed = Signal(str)  # rel path of the clip whose label changed
    undo_state_changed = Signal(bool, bool)  # can undo, can redo
    saving = Signal()  # labels are being written (``saved`` follows once they are on disk)
    saved = Signal(str)  # "HH:MM:SS": every label so far is on disk
    message = Signal(str)  # status-bar text
    scale_changed = Signal(str)
    model_changed = Signal(object)  # model path | None (Train / Review tabs)
    scores_changed = Signal()  # model scores per clip replaced
    scoring_progress = Signal(int, int)  # done, total (total 0: loading the model)
    scoring_finished = Signal()  # the project's scoring ended (done, cancelled or failed)
    scoring_failed = Signal(str)  # why the project's model could not load or score
    score_visibility_changed = Signal(bool)  # show the model score while labelling
    raters_changed = Signal()  # the rater, blind mode, the policy or the raters' labels changed

    def __init__(self, parent: QObject | None = None):
        super().__init__(parent)
        self.project: Project | None = None
        self.current: ClipInfo | None = None
        self.blind = False  # several raters: hide others' labels and the model's scores
        self._init_model_state()
        self.scale = "binary"
        self.auto_advance = True
        self.clip_order: Callable[[], list[str]] | None = None  # the clip list's visible order
        self._scan: Worker | None = None
        self._load = Latest()  # a project's labels CSV being read (a newer open drops it)
        self.loading: Path | None = None  # the folder whose labels are being read
        self.saver = LabelSaver(self)  # labels CSV writes off the GUI thread, in order
        self.saver.saved.connect(self.saved)
        self.saver.failed.connect(self.message)
        self.saver.merged.connect(self._merged)

    # --- project ---------------------------------------------------------------------------
    def open_project(self, root: str | Path, csv_path: str | Path | None = None, *,
                     background: bool = False) -> Project | None:
        """Open a dataset folder and its labels CSV, then scan the clips in the background
        (and score them when a model is loaded). ``background``: the labels CSV is read in a
        worker (a 100,000-row one takes a while) and the project opens once it is read, None
        returned (``open_failed`` says why it could not); meanwhile label changes are refused
        with a status-bar line, and a newer open drops this one."""
        self._stop_scan()
        self.saver.flush()
        self._load.abort()
        self.loading = None
        csv = Path(csv_path) if csv_path else None
        if not background:
            return self._opened(Project(Path(root), csv))
        if not Path(root).is_dir():
            raise NotADirectoryError(f"not a folder: {root}")
        self.loading = Path(root)
        self.message.emit(f"Reading the labels of {self.loading.name}…")
        self._load.start(Worker(Project, Path(root), csv, parent=self).connect(
            returned=self._opened, errored=self._open_failed))
        return None

    def _open_failed(self, exc: BaseException) -> None:
        self.loading = None
        self.open_failed.emit(str(exc))

    def refused_while_loading(self) -> bool:
        """True (and a status-bar line) while a project's labels are still being read."""
        if self.loading is None:
            return False
        self.message.emit(f"Not labelled: the labels of {self.loading.name} are still being "
                          "read; press the key again in a moment")
        return True

    def _opened(self, project: Project) -> Project:
        self.loading = None
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
        if project.read_only:
            self.message.emit(read_only_note(project.csv_path))
        self.raters_state_changed()
        self._start_scan(project)
        return project

    def _start_scan(self, project: Project) -> None:
        self._scan = Worker(project.scan_steps, parent=self).connect(
            yielded=self._on_scan_step, returned=lambda _: self._on_scan_done(),
            errored=self._on_scan_failed)
        self._scan.start()

    def _on_scan_step(self, step: tuple) -> None:
        kind = step[0]
        if kind == "found":
            self.project.set_paths(step[1])
            self.clips_reset.emit()
            self.message.emit(f"Found {len(step[1])} clips in {self.project.root.name}")
        elif kind == "headers":
            for row, info in step[1]:
                self.project.clips[row] = info
            self.clips_updated.emit([row for row, _ in step[1]])
        else:
            self.scan_progress.emit(step[1], step[2])

    def _on_scan_done(self) -> None:
        scan, self._scan = self._scan, None
        retire(scan)
        self.scan_finished.emit()
        self.score_project()

    def _on_scan_failed(self, exc: BaseException) -> None:
        self.message.emit(f"Reading the clip list stopped: {exc}")
        self._on_scan_done()

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
            retire(scan)
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
        """Label the current clip (written to the CSV in the background, ``saved`` once it is
        on disk; at once with several raters); then open the next unlabelled clip if
        ``advance`` (default: the auto-advance setting). False if nothing was labelled."""
        if self.refused_while_loading() or self.project is None or self.current is None:
            return False
        rel = self.current.rel
        order = self.visible_order()  # before the label re-sorts or filters the list
        if self.project.rater != (settings.rater() or None):
            self.set_rater(settings.rater())
        project, rater = self.project, settings.rater() or None
        deferred = project.defers_saves(rater)
        change = self._write(lambda: project.set_label(
            rel, score, rater=rater, issues=issues, notes=notes, save=not deferred),
            deferred=deferred)
        if change is None:
            return False
        if self.auto_advance if advance is None else advance:
            self.next_unlabelled(order)
        return True

    def undo(self) -> LabelChange | None:
        """Undo the last label change (written to the CSV, in the background like a label
        where the label was)."""
        if self.refused_while_loading() or self.project is None:
            return None
        self.about_to_change_clip.emit(self.current)
        project = self.project
        deferred = project.defers_undo()
        return self._write(lambda: project.undo(save=not deferred), "Undid", deferred=deferred)

    def redo(self) -> LabelChange | None:
        if self.refused_while_loading() or self.project is None:
            return None
        self.about_to_change_clip.emit(self.current)
        project = self.project
        deferred = project.defers_undo(redo=True)
        return self._write(lambda: project.redo(save=not deferred), "Redid", deferred=deferred)

    def _write(self, action, verb: str | None = None, *,
               deferred: bool = False) -> LabelChange | None:
        """Run a label change; ``deferred``: it is in memory only, and the saver writes it."""
        project = self.project
        if not deferred:
            self.saver.flush()  # the labels before this change go to disk first, in order
        try:
            reloaded = not self.saver.busy and project.reload_if_changed()
            change = action()
        except (OSError, ValueError) as exc:
            self.message.emit(f"Label NOT saved: {exc}")
            return None
        if reloaded:
            self._merged()
        if change is None:
            return None
        for clash in project.clashes:
            self.message.emit(f"Conflict: {clash}")
        if deferred:
            self.saving.emit()
            self.saver.request(project)
        else:
            self.saved.emit(time.strftime("%H:%M:%S"))
        if verb:
            self.message.emit(f"{verb} label change of {change.rel}")
            self.open_clip(change.rel)
        self.label_changed.emit(change.rel)
        self._emit_undo_state()
        self.raters_state_changed()
        return change

    def _merged(self) -> None:
        self.message.emit("The labels CSV was changed by another program: reloaded and merged")
        self.clips_reset.emit()

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

    # --- several raters (echoquality_gui.raters.menu) -------------------------------------------
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
        if self.refused_while_loading() or self.project is None or not settings.rater():
            return False
        return self._write(lambda: self.project.adjudicate(
            rel, score, by=settings.rater(), notes=notes)) is not None

    def raters_state_changed(self) -> None:
        """Blind mode follows the project (stored choice, else on with several raters)."""
        self.set_blind(self.default_blind(), announce=False)

    def default_blind(self) -> bool:
        """The project's stored blind-mode choice; else on when it has more than one rater."""
        project = self.project
        if project is None:
            return False
        stored = settings.project_value(project.root, "blind")
        if stored is not None:
            return stored in (True, "true", "1", 1)
        return len(known_raters(project.store, project.raters, project.rater)) > 1

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

    def close(self) -> None:
        """Write the clip's pending edits and stop background work (call before the window
        goes away)."""
        self.about_to_change_clip.emit(self.current)
        self._load.abort()
        self._load.wait()
        self.saver.flush()
        self._stop_scan()
        self.cancel_scoring()
        self.close_model_process()
        for worker in list(self._background):
            worker.abort()
            worker.wait()
