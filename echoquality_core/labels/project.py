"""An open labelling project without any GUI: the dataset folder, its clips (headers only),
the labels CSV and an undo/redo history of label changes.

Every label change is written to the CSV at once, as one read-merge-replace of every label file
it touches under the project's one label lock (``labels.folder``): a CSV changed on disk by
another program is read back in first (its rows win for clips we did not touch), so nothing
written elsewhere is lost, and the training table always follows the per-rater file. With
``set_label(..., save=False)`` (a one-rater project) the caller saves in another thread instead
(the GUI: ``LabelStore.snapshot`` / ``write_snapshot``, under the same lock).
"""
from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from echoquality_core.dicom import DicomReadError, find_clips, read_clip
from echoquality_core.labels.folder import ProjectFolder
from echoquality_core.labels.raters import (
    RATER,
    RaterStore,
    needs_raters,
    rater_name,
    read_policy,
    sync_training_table,
    write_policy,
    write_rater_label,
)
from echoquality_core.labels.store import Label, LabelClash, LabelError, LabelStore


@dataclass
class ClipInfo:
    """One clip of the project as the clip list shows it (header fields only, no PHI)."""

    path: Path
    rel: str
    n_frames: int | None = None
    height: int | None = None
    width: int | None = None
    fps: float | None = None
    fps_source: str | None = None
    error: str | None = None  # why the clip cannot be read, if it cannot

    @property
    def scanned(self) -> bool:
        """True once the header was read (or failed to read)."""
        return self.n_frames is not None or self.error is not None


def read_header(path: str | os.PathLike, rel: str) -> ClipInfo:
    """ClipInfo from a clip's DICOM header; a read failure is recorded in ``error``."""
    path = Path(path)
    try:
        clip = read_clip(path)
    except DicomReadError as exc:
        return ClipInfo(path, rel, error=exc.reason)
    except (OSError, ValueError) as exc:
        return ClipInfo(path, rel, error=f"{type(exc).__name__}: {exc}")
    return ClipInfo(path, rel, n_frames=clip.n_frames, height=clip.height, width=clip.width,
                    fps=float(clip.fps), fps_source=clip.fps_source)


@dataclass(frozen=True)
class LabelChange:
    """One undoable label change: the clip's label before and after (None = unlabelled)."""

    rel: str
    before: Label | None
    after: Label | None
    rater: str | None = None  # set: before/after are this rater's own labels (per-rater file)
    role: str = RATER


@dataclass
class Project:
    """A dataset folder plus its labels CSV (default ``<root>/labels.csv``, created if absent)."""

    root: Path
    csv_path: Path | None = None
    clips: list[ClipInfo] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.root = Path(self.root).resolve()
        if not self.root.is_dir():
            raise NotADirectoryError(f"not a folder: {self.root}")
        csv_path = self.csv_path or ProjectFolder(self.root).labels_csv
        self.folder = ProjectFolder.of_labels(Path(csv_path).resolve())
        self.csv_path = self.folder.labels_csv
        self.store = LabelStore(self.csv_path, root=self.root)
        self.read_only = not _writable(self.csv_path)
        if not self.csv_path.exists() and not self.read_only:
            self.store.save_merged()  # another program may create it at the same moment
        self.clashes: list[LabelClash] = []  # of the last save: clips another program changed too
        self.raters = RaterStore(self.folder.rater_csv, self.store.relative)
        self._rater: str | None = None
        self._per_rater = False
        self._undo: list[LabelChange] = []
        self._redo: list[LabelChange] = []
        self._rows: dict[str, int] = {}

    # --- clips -----------------------------------------------------------------------------
    def find_paths(self) -> list[Path]:
        """All DICOM files under the root, by content (can take a while on big folders)."""
        return find_clips(self.root)

    def set_paths(self, paths: Iterable[os.PathLike]) -> None:
        """Replace the clip list with ``paths`` (headers not read yet)."""
        self.clips = [ClipInfo(Path(p), self.store.relative(p)) for p in paths]
        self._rows = {info.rel: i for i, info in enumerate(self.clips)}

    def scan(self) -> None:
        """Find the clips and read every header (blocking; the GUI does this in a thread)."""
        self.set_paths(self.find_paths())
        for i, info in enumerate(self.clips):
            self.clips[i] = read_header(info.path, info.rel)

    def scan_steps(self, batch_seconds: float = 0.1) -> Iterator[tuple | None]:
        """The scan as steps for a background worker, without touching the clip list:
        ``("found", paths)``, then ``("headers", [(row, ClipInfo), ...])`` every
        ``batch_seconds`` and ``("progress", done, total)`` after each batch; ``None`` after
        the other clips (a point where the worker can stop)."""
        paths = self.find_paths()
        yield ("found", paths)
        batch: list[tuple[int, ClipInfo]] = []
        last = time.perf_counter()
        for row, path in enumerate(paths):
            batch.append((row, read_header(path, self.store.relative(path))))
            if time.perf_counter() - last > batch_seconds:
                yield ("headers", batch)
                yield ("progress", row + 1, len(paths))
                batch, last = [], time.perf_counter()
            else:
                yield None
        if batch:
            yield ("headers", batch)
        yield ("progress", len(paths), len(paths))

    def row(self, rel: str) -> int | None:
        """Index of clip ``rel`` in ``clips``."""
        return self._rows.get(rel)

    @property
    def cache_dir(self) -> Path:
        """Where preprocessed clips are cached (the trainer's default for this project)."""
        return self.folder.cache

    # --- labels ----------------------------------------------------------------------------
    @property
    def rater(self) -> str | None:
        """Who labels now; with several raters ``label`` gives this rater's own labels."""
        return self._rater

    @rater.setter
    def rater(self, name: str | None) -> None:
        self._rater = rater_name(name)
        self._per_rater = bool(self._rater) and needs_raters(self.store, self.raters, self._rater)

    def label(self, rel: str) -> Label | None:
        """The clip's label: the current rater's own when the project has (or, with this
        rater, gets) several raters, else the training table's."""
        if self._per_rater:
            return self.raters.get(rel, self._rater)
        return self.store.get(rel)

    def counts(self) -> tuple[int, int]:
        """(labelled clips, clips) among the clips found in the folder."""
        return sum(self.label(c.rel) is not None for c in self.clips), len(self.clips)

    # --- several raters (echoquality_core.labels.raters) --------------------------------------------
    @property
    def policy(self) -> str:
        """How the training table's score follows the raters' labels."""
        return read_policy(self.csv_path)

    def set_policy(self, policy: str) -> list[str]:
        """Store the policy and rewrite the training table to follow it; the clips changed."""
        with self._editing():
            write_policy(self.csv_path, policy)
            self.reload_if_changed(strict=True)
            changed = sync_training_table(self.store, self.raters, policy)
            if changed:
                self._save()
        return changed

    def adjudicate(self, rel: str, score: float, *, by: str, notes: str | None = None
                   ) -> LabelChange:
        """Record ``by``'s final label of a clip the raters labelled (who and when); the
        training table takes it under every policy. Undoable. LabelError, with nothing
        written, for a clip no rater labelled (or not in the project at all), or without ``by``."""
        by = rater_name(by)
        rel = self.store.relative(rel)
        if not by:
            raise LabelError("an adjudication needs the adjudicator's name")
        with self._editing():
            self.reload_if_changed(strict=True)
            if not self.raters.labels(rel):
                if not self.store.resolve(rel).is_file():
                    raise LabelError(f"{rel} is not a clip of the project ({self.root})")
                raise LabelError(f"no rater labelled {rel}: there is nothing to adjudicate")
            return self._change(rel, Label(rel, float(score), by, None, (), notes or None),
                                by, "adjudicator")

    def search_order(self, after: str | None = None,
                     order: Sequence[str] | None = None) -> tuple[list[str], list[str]]:
        """The clips N and U go through, leaving out ``after`` (the clip on screen): first
        ``order`` (e.g. the clip list's sorted, filtered rows; default the project's order)
        from just after ``after``, wrapping round; then, in the project's order, the clips that
        ``order`` leaves out."""
        known = [rel for rel in (order if order is not None else
                                 [c.rel for c in self.clips]) if rel in self._rows]
        shown = set(known)
        rest = [c.rel for c in self.clips if c.rel not in shown]
        return _after(known, after), _after(rest, after, self._rows)

    def next_unlabelled(self, after: str | None = None,
                        order: Sequence[str] | None = None) -> str | None:
        """The first unlabelled clip after ``after`` in ``order`` (default: list order),
        wrapping round, then among the clips ``order`` leaves out; None if all are labelled."""
        for group in self.search_order(after, order):
            for rel in group:
                if self.label(rel) is None:
                    return rel
        return None

    def most_uncertain(self, scores: Mapping[str, float], threshold: float,
                       after: str | None = None,
                       order: Sequence[str] | None = None) -> str | None:
        """The unlabelled clip whose model score is closest to ``threshold`` (the one the model
        is least sure about), leaving out ``after`` (the clip on screen); looked for among the
        clips of ``order`` first (default: all, in list order), then among the others. Ties go
        to the first after ``after`` in that order. None if no unlabelled clip has a score."""
        for group in self.search_order(after, order):
            best: tuple[float, int, str] | None = None
            for k, rel in enumerate(group):
                score = scores.get(rel)
                if score is None or self.label(rel) is not None:
                    continue
                candidate = (abs(float(score) - threshold), k, rel)
                if best is None or candidate < best:
                    best = candidate
            if best is not None:
                return best[2]
        return None

    def reload_if_changed(self, strict: bool = False) -> bool:
        """Read the label files again if another program changed them (keeping any change of
        ours not yet saved); True if it did. ``strict``: compare their bytes (under the lock)."""
        theirs = self.raters.reload_if_changed(strict)
        if self.store.changed_on_disk(strict):
            self.store.merge_from_disk()
            theirs = True
        if theirs:
            self.rater = self._rater
        return theirs

    def _editing(self) -> contextlib.AbstractContextManager[None]:
        """The label lock, held for one whole change; LabelError at once (nothing changed)
        when the labels CSV cannot be written where it is."""
        if self.read_only:
            raise LabelError(read_only_note(self.csv_path))
        return self.store.locked()

    def _save(self) -> None:
        """Save the training table (under the lock), merging what another program wrote
        meanwhile; clips that both changed keep ours and are listed in ``clashes`` (for the
        window to show)."""
        self.clashes = self.store.save_merged()

    def defers_saves(self, rater: str | None) -> bool:
        """Whether ``set_label(..., rater=rater, save=False)`` leaves the saving to the caller
        (a writable one-rater project; with several raters every label is saved at once)."""
        per_rater = (self._per_rater or self.raters.exists if rater == self._rater
                     else needs_raters(self.store, self.raters, rater))
        return not (self.read_only or per_rater)

    def set_label(self, rel: str, score: float, *, rater: str | None = None,
                  issues: Iterable[str] = (), notes: str | None = None,
                  save: bool = True) -> LabelChange:
        """Write one label to the CSV now and record it for undo. With several raters it is
        ``rater``'s own label and the training table takes the consensus. ``save=False`` where
        ``defers_saves(rater)``: the label is changed in memory only, and the caller saves it
        (``store.snapshot``, ``store.write_snapshot`` in another thread, ``store.saved``)."""
        rater = rater_name(rater)
        if not save and self.defers_saves(rater):
            before = self.store.get(rel)
            self.store.set(rel, float(score), rater=rater, issues=tuple(issues),
                           notes=notes or None, save=False)
        else:
            with self._editing():
                self.reload_if_changed(strict=True)
                if needs_raters(self.store, self.raters, rater):
                    return self._change(rel, Label(rel, float(score), rater, None,
                                                   tuple(issues), notes or None),
                                        rater or "", RATER)
                before = self.store.get(rel)
                self.store.set(rel, float(score), rater=rater, issues=tuple(issues),
                               notes=notes or None, save=False)
                self._save()
        change = LabelChange(rel, before, self.store.get(rel))
        self._undo.append(change)
        self._redo.clear()
        return change

    def _change(self, rel: str, label: Label, rater: str, role: str) -> LabelChange:
        """A rater's (or adjudicator's) label: call it holding the label lock."""
        rel = self.store.relative(rel)
        before = self.raters.get(rel, rater, role)
        write_rater_label(self.store, self.raters, self.policy, rel, rater, label, role)
        self._save()
        self.rater = self._rater
        change = LabelChange(rel, before, self.raters.get(rel, rater, role), rater, role)
        self._undo.append(change)
        self._redo.clear()
        return change

    def _apply(self, rel: str, label: Label | None, change: LabelChange, save: bool) -> None:
        if not save and change.rater is None and self.defers_saves(self._rater):
            self._put(rel, label)  # in memory only: the caller saves, as after set_label
            return
        with self._editing():
            self.reload_if_changed(strict=True)
            self._apply_locked(rel, label, change)

    def _apply_locked(self, rel: str, label: Label | None, change: LabelChange) -> None:
        if change.rater is not None:
            write_rater_label(self.store, self.raters, self.policy, rel, change.rater, label,
                              change.role)
            self._save()
            return
        self._put(rel, label)
        self._save()

    def _put(self, rel: str, label: Label | None) -> None:
        if label is None:
            self.store.remove(rel, save=False)
        else:
            self.store.set(rel, label.quality_score, rater=label.rater, issues=label.issues,
                           notes=label.notes, labeled_at=label.labeled_at, save=False)

    def undo(self, save: bool = True) -> LabelChange | None:
        """Put back the label before the last change (on disk too); None if nothing to undo.
        ``save=False``: as ``set_label``'s, the caller saves a training-table change (a
        one-rater project's); a rater's own label is saved at once."""
        if not self._undo:
            return None
        change = self._undo.pop()
        self._apply(change.rel, change.before, change, save)
        self._redo.append(change)
        return change

    def redo(self, save: bool = True) -> LabelChange | None:
        """Re-apply the last undone change (on disk too, unless ``save=False`` as in ``undo``);
        None if nothing to redo."""
        if not self._redo:
            return None
        change = self._redo.pop()
        self._apply(change.rel, change.after, change, save)
        self._undo.append(change)
        return change

    def defers_undo(self, redo: bool = False) -> bool:
        """Whether ``undo(save=False)`` (``redo(save=False)`` with ``redo``) leaves the saving
        to the caller: a training-table change of a project where ``defers_saves``."""
        stack = self._redo if redo else self._undo
        return bool(stack) and stack[-1].rater is None and self.defers_saves(self._rater)

    @property
    def can_undo(self) -> bool:
        return bool(self._undo)

    @property
    def can_redo(self) -> bool:
        return bool(self._redo)


def read_only_note(csv_path: Path) -> str:
    """What to tell the user when the labels CSV cannot be written where it is."""
    return (f"Read-only: labels cannot be saved to {csv_path}; choose a labels CSV in a "
            f"writable folder (File > Labels CSV…) to label this folder")


def _writable(csv_path: Path) -> bool:
    """True if the CSV can be replaced atomically: its folder is writable (and the file, if it
    exists, too)."""
    folder_ok = os.access(csv_path.parent, os.W_OK | os.X_OK)
    return folder_ok and (not csv_path.exists() or os.access(csv_path, os.W_OK))


def _after(rels: list[str], after: str | None, rows: Mapping[str, int] | None = None) -> list[str]:
    """``rels`` rotated to start just after ``after``, without it. An ``after`` not in ``rels``
    starts at the first clip, or with ``rows`` (project rows) after its place in the project."""
    if after in rels:
        i = rels.index(after)
        return rels[i + 1:] + rels[:i]
    if rows is not None and after in rows:
        i = next((k for k, rel in enumerate(rels) if rows[rel] > rows[after]), len(rels))
        return rels[i:] + rels[:i]
    return list(rels)
