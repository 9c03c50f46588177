"""The labels CSV: one row per clip, ``video_path,quality_score`` as in the training guide.

The file is the user's, so it is read and written back faithfully:

* Columns we do not know, the column order and the row order are kept. A row nobody changed is
  written back exactly as it was read (same bytes, same quoting); so is the header, the line
  ending (``\\n``, ``\\r\\n``) and a UTF-8 byte-order mark (Excel's "CSV UTF-8").
* Scores are binary (``1``/``0``) or continuous (``0.75``) between 0 and 1. A row whose
  ``quality_score`` is empty is an unlabelled clip that stays listed; ``remove`` deletes a row
  unless it holds values in other columns, which it then keeps (score and our columns cleared).
* Optional columns ``rater``, ``labeled_at`` (ISO 8601 local time with offset, to the second),
  ``issues`` (tags of ``[a-z0-9_]`` joined by ``;``; ``ISSUE_TAGS`` are the suggested ones) and
  ``notes`` are added to the file the first time they are used.
* ``video_path`` is relative to the dataset root with ``/`` separators (``\\`` is read as a
  separator too); an absolute path is accepted if it lies inside the root and is kept as written.

Every save is atomic (``atomic.write_atomic``: temporary file in the same folder, fsync,
``os.replace``, fsync of the folder), so a crash or a kill mid-save leaves the old or the new
file, never a torn one. Saves of several processes are serialised by the project's label lock
(``labels.folder``: ``.labels.csv.lock`` beside the CSV, one lock for every label file, held only
while a file is read, merged and replaced). ``save``
refuses to overwrite a file that another program changed since we read it
(``LabelConflictError``); ``merge_from_disk`` reads theirs and re-applies our changes;
``save_merged`` does both under the lock and returns the clips both sides changed
(``LabelClash``), where ours were kept.
"""
from __future__ import annotations

import codecs
import contextlib
import hashlib
import math
import os
import posixpath
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

from echoquality_core.files.atomic import write_atomic
from echoquality_core.labels.csv_table import (
    CsvRow,
    CsvTable,
    join_parts,
    parse_csv,
    render_parts,
)
from echoquality_core.labels.folder import ProjectFolder
from echoquality_core.labels.summary import LabelSummary
from echoquality_core.labels.values import (
    FIVE_POINT_SCORES,
    GOOD,
    ISSUE_TAGS,
    ISSUES,
    LABELED_AT,
    NOTES,
    OPTIONAL_COLUMNS,
    PATH,
    RATER,
    REVIEWED,
    SCALES,
    SCORE,
    UNREADABLE,
    Label,
    LabelClash,
    LabelConflictError,
    LabelError,
    _check_labeled_at,
    _check_score,
    _format_score,
    _now_iso,
    check_issues,
)

if TYPE_CHECKING:
    import pandas

# the label vocabulary and values live in label_values, the CSV text in label_csv; this module
# stays their public home (``from echoquality_core.labels.store import Label, ISSUE_TAGS, ...``)
__all__ = ["FIVE_POINT_SCORES", "GOOD", "ISSUES", "ISSUE_TAGS", "LABELED_AT", "NOTES",
           "OPTIONAL_COLUMNS", "PATH", "RATER", "REVIEWED", "SCALES", "SCORE", "UNREADABLE",
           "Label", "LabelClash", "LabelConflictError", "LabelError", "LabelStore",
           "check_issues"]


class _DiskState(NamedTuple):
    inode: int
    mtime_ns: int
    size: int
    sha1: str


class SaveSnapshot(NamedTuple):
    """The file as it stood when ``LabelStore.snapshot`` was taken, for ``write_snapshot``."""

    parts: list[str]  # the header's and each row's text
    newline: str
    bom: bool
    disk: _DiskState | None  # the file the store last read or wrote
    pending: dict[str, Label | None]  # the changes it holds


class LabelStore:
    """The labels CSV of one dataset: read, query, change and save it atomically."""

    def __init__(self, csv_path: str | os.PathLike, root: str | os.PathLike | None = None) -> None:
        self.csv_path = Path(os.path.abspath(csv_path))
        self.root = Path(os.path.abspath(root if root is not None else self.csv_path.parent))
        self._real_root = self.root.resolve()
        self._table = CsvTable()
        self._disk: _DiskState | None = None
        self._pending: dict[str, Label | None] = {}  # changes since the last load/save
        self._base: dict[str, Label | None] = {}  # the pending clips' labels as last read
        self._clashes: list[LabelClash] = []
        self._version = 0  # counts changes of the table (for the ``labels`` cache)
        self._labels: tuple[int, list[Label]] = (-1, [])
        self._summary = LabelSummary(())
        self.folder = ProjectFolder.of_labels(self.csv_path)
        self.lock_path = self.folder.lock_file
        self._relatives: dict[str, str] = {}  # relative()'s answers: the clip list asks often
        self.load()

    # --- reading ------------------------------------------------------------------------------
    def load(self) -> None:
        """Read the CSV (a missing or empty file is an empty store); unsaved changes are dropped.

        Raises LabelError naming every bad row; the store is then left as it was."""
        try:
            with open(self.csv_path, "rb") as f:
                data = f.read()
                st = os.fstat(f.fileno())
        except FileNotFoundError:
            self._table = CsvTable()
            self._disk = None
        else:
            self._table = parse_csv(data, self.relative)
            self._disk = _DiskState(st.st_ino, st.st_mtime_ns, st.st_size,
                                    hashlib.sha1(data).hexdigest())
        self._summary = LabelSummary(row.label for row in self._table.rows)  # then label by label
        self._forget_changes()

    def _forget_changes(self) -> None:
        self._version += 1
        self._pending, self._base, self._clashes = {}, {}, []

    # --- queries ------------------------------------------------------------------------------
    def get(self, path: str | os.PathLike) -> Label | None:
        """The label of clip ``path`` (absolute or relative to the root); None if unlabelled."""
        index = self._table.index
        i = index.get(path) if isinstance(path, str) else None  # a key already: no parsing
        if i is None:
            i = index.get(self.relative(path))
        return None if i is None else self._table.rows[i].label

    def labels(self) -> list[Label]:
        """Every label, in CSV order (kept until the table changes: do not modify it)."""
        if self._labels[0] != self._version:
            self._labels = (self._version, [row.label for row in self._table.rows
                                            if row.label is not None])
        return self._labels[1]

    def rater_names(self) -> list[str]:
        """The ``rater`` names of the labels: in CSV order as read, a name given since at the
        end (kept across label changes, not counted again from the whole table)."""
        return self._summary.rater_names()

    def paths(self) -> list[str]:
        """Relative paths of the labelled clips, in CSV order."""
        return [row.key for row in self._table.rows if row.label is not None]

    def __len__(self) -> int:
        return self._summary.labelled

    def is_continuous(self) -> bool:
        """True if any score is neither 0 nor 1."""
        return self._summary.continuous > 0

    def resolve(self, rel: str | os.PathLike) -> Path:
        """Absolute path of clip ``rel`` (relative to the root, or already absolute)."""
        return self.root / self.relative(rel)

    def relative(self, path: str | os.PathLike) -> str:
        """``path`` relative to the root with '/' separators; LabelError if outside the root."""
        text = os.fspath(path)
        if _plain_relative(text):
            return text  # most rows of a big CSV: nothing to normalise
        if (known := self._relatives.get(text)) is not None:
            return known
        if not text.strip():
            raise LabelError("empty video_path")
        if "\0" in text:
            raise LabelError(f"video_path {text.replace(chr(0), '<NUL>')!r} holds a NUL byte, "
                             "which no file name can; fix or remove the row")
        text = text.replace("\\", "/")
        if os.path.isabs(text) or text.startswith("/"):
            absolute = Path(os.path.normpath(text))
            try:
                rel = absolute.relative_to(self.root).as_posix()
            except ValueError:
                try:
                    rel = absolute.resolve().relative_to(self._real_root).as_posix()
                except ValueError:
                    raise LabelError(f"video_path {os.fspath(path)!r} is outside the dataset "
                                     f"folder {self.root}") from None
        else:
            rel = posixpath.normpath(text)
        if rel == ".." or rel.startswith("../"):
            raise LabelError(f"video_path {os.fspath(path)!r} is outside the dataset folder "
                             f"{self.root}")
        if rel == ".":
            raise LabelError(f"video_path {os.fspath(path)!r} names the dataset folder, not a clip")
        self._relatives[os.fspath(path)] = rel
        return rel

    def to_frame(self, include_unlabelled: bool = False) -> pandas.DataFrame:
        """The rows as a table in the file's column order: video_path relative to the root,
        quality_score as float (NaN when unlabelled), every other column as text."""
        import pandas

        names = [name.strip() for name in self._table.header]
        records = []
        for row in self._table.rows:
            if row.key is None or (row.label is None and not include_unlabelled):
                continue
            record = dict(zip(names, row.cells))
            record[PATH] = row.key
            record[SCORE] = row.label.quality_score if row.label else math.nan
            records.append(record)
        frame = pandas.DataFrame.from_records(records, columns=names)
        return frame.astype({SCORE: float})

    # --- changes ------------------------------------------------------------------------------
    def set(self, path: str | os.PathLike, score: float, *, rater: str | None = None,
            issues: Iterable[str] | str | None = None, notes: str | None = None,
            labeled_at: str | None = None, save: bool = True) -> Label | None:
        """Label clip ``path`` (replacing its whole label; ``labeled_at`` defaults to now) and
        save unless ``save=False``. Returns the previous label. The change is made in memory
        before saving, so after a LabelConflictError ``merge_from_disk`` + ``save`` keep it."""
        key = self.relative(path)
        label = Label(key, _check_score(score), (rater or "").strip() or None,
                      _check_labeled_at(labeled_at) or _now_iso(), check_issues(issues),
                      notes if notes and notes.strip() else None)
        previous = self.get(key)
        self._base.setdefault(key, previous)
        self._put(label)
        self._pending[key] = label
        if save:
            self.save()
        return previous

    def remove(self, path: str | os.PathLike, *, save: bool = True) -> Label | None:
        """Unlabel clip ``path`` and save unless ``save=False``; returns the removed label.

        The row is deleted, unless it holds values in columns we do not know: then only its
        score and our optional columns are cleared (it stays listed, unlabelled)."""
        key = self.relative(path)
        previous = self.get(key)
        if previous is None:
            return None
        self._base.setdefault(key, previous)
        self._drop(key)
        self._pending[key] = None
        if save:
            self.save()
        return previous

    def _put(self, label: Label) -> None:
        values = {RATER: label.rater or "", LABELED_AT: label.labeled_at or "",
                  ISSUES: ";".join(label.issues), NOTES: label.notes or ""}
        self._table.ensure_columns([name for name, value in values.items() if value])
        columns = self._table.columns()
        i = self._table.index.get(label.video_path)
        if i is None:
            cells = [""] * len(self._table.header)
            cells[columns[PATH]] = label.video_path
            self._table.append(CsvRow(cells, None, label.video_path))
            i = len(self._table.rows) - 1
        row = self._table.rows[i]
        old_score = row.label.quality_score if row.label else None
        if old_score != label.quality_score:
            row.cells[columns[SCORE]] = _format_score(label.quality_score)
        for name, value in values.items():
            if name in columns:
                row.cells[columns[name]] = value
        self._summary.replace(row.label, label)
        row.label = label
        self._table.changed(row)
        self._version += 1

    def _drop(self, key: str) -> None:
        self._version += 1
        columns = self._table.columns()
        i = self._table.index[key]
        row = self._table.rows[i]
        ours = {PATH, SCORE, *OPTIONAL_COLUMNS}
        self._summary.replace(row.label, None)
        if any(row.cells[j].strip() for name, j in columns.items() if name not in ours):
            for name in (SCORE, *OPTIONAL_COLUMNS):
                if name in columns:
                    row.cells[columns[name]] = ""
            row.label = None
            self._table.changed(row)
            return
        self._table.delete(key)

    # --- saving -------------------------------------------------------------------------------
    def changed_on_disk(self, strict: bool = False) -> bool:
        """True if the file on disk differs from what we last read or wrote (another program
        wrote, replaced, created or deleted it). Only the file's status is read unless it
        changed, or ``strict`` (under the lock: a replaced file can get the inode just freed
        and the same time stamp within the clock's tick); a file rewritten with the same bytes
        does not count."""
        changed, disk = _compare(self.csv_path, self._disk, strict)
        if not changed:
            self._disk = disk
        return changed

    def merge_from_disk(self) -> list[str]:
        """Read the CSV again and re-apply the changes made here since the last load/save (ours
        win for the clips we changed, theirs for every other row). Returns the paths re-applied.
        Call ``save`` afterwards to write the merged result."""
        pending, base, clashes = dict(self._pending), dict(self._base), list(self._clashes)
        self.load()
        read = {key: self.get(key) for key in pending}  # theirs: the new base of our changes
        for key, label in pending.items():
            if read[key] != base.get(key) and read[key] != label:
                clashes = [c for c in clashes if c.video_path != key]
                clashes.append(LabelClash(key, read[key], label))
            if label is None:
                if read[key] is not None:
                    self._drop(key)
            else:
                self._put(label)
        self._pending, self._base, self._clashes = pending, read, clashes
        return list(pending)

    def locked(self) -> contextlib.AbstractContextManager[None]:
        """Hold the project's label lock (every label file's; re-entrant in this process)."""
        return self.folder.locked()

    def save_merged(self) -> list[LabelClash]:
        """Save, first merging what another program wrote since we read the CSV (theirs win for
        every clip we did not change, ours for the clips we did), all under the lock so that no
        other save can slip in between. Returns the clips both changed (``LabelClash``): show
        them to the user; nothing of the other program's was lost silently."""
        with self.locked():
            if self.changed_on_disk(strict=True):
                self.merge_from_disk()
            clashes = self._clashes
            self._write()
        return clashes

    def save(self, force: bool = False) -> None:
        """Write the CSV atomically. Raises LabelConflictError if another program changed it
        since we last read or wrote it, unless ``force`` (which overwrites their changes)."""
        with self.locked():
            if not force and self.changed_on_disk(strict=True):
                raise LabelConflictError(
                    f"{self.csv_path.name} was changed by another program since it was last "
                    f"read; merge it (merge_from_disk) before saving")
            self._write()

    def _write(self) -> None:
        self._disk = self._write_data(self.snapshot())
        self._forget_changes()

    # --- saving from another thread -------------------------------------------------------------
    def snapshot(self) -> SaveSnapshot:
        """The table as it stands, to be written by ``write_snapshot`` in another thread while
        this one goes on changing the store (only the changed rows are formatted here)."""
        table = self._table
        return SaveSnapshot(render_parts(table), table.newline, table.bom, self._disk,
                            dict(self._pending))

    def write_snapshot(self, snap: SaveSnapshot) -> _DiskState | None:
        """Write ``snap`` atomically under the lock; safe in another thread (it reads nothing
        of the store but its paths). None, writing nothing, if the file is no longer the one
        the snapshot's store last read or wrote: merge (``merge_from_disk``) and save again."""
        with self.locked():
            if _compare(self.csv_path, snap.disk, strict=True)[0]:
                return None
            return self._write_data(snap)

    def saved(self, snap: SaveSnapshot, disk: _DiskState) -> None:
        """``write_snapshot(snap)`` wrote ``disk``: the changes it held are saved (call in the
        thread that changes the store; changes made after the snapshot stay pending)."""
        self._disk = disk
        for key, label in snap.pending.items():
            if key in self._pending and self._pending[key] is label:
                del self._pending[key]
                self._base.pop(key, None)
        self._clashes = []

    def _write_data(self, snap: SaveSnapshot) -> _DiskState:
        text = join_parts(snap.parts, snap.newline)
        data = (codecs.BOM_UTF8 if snap.bom else b"") + text.encode("utf-8")
        st = write_atomic(self.csv_path, data)
        return _DiskState(st.st_ino, st.st_mtime_ns, st.st_size, hashlib.sha1(data).hexdigest())


def _plain_relative(text: str) -> bool:
    """True if ``text`` is a relative path that ``relative`` would return unchanged: no
    backslash, drive, leading or trailing '/' or space, '.' part or empty part."""
    return (bool(text) and "\\" not in text and ":" not in text and "\0" not in text
            and text[0] not in "/. "
            and text[-1] not in "/ " and "/." not in text and "//" not in text
            and text.strip() == text)


def _compare(path: Path, disk: _DiskState | None,
             strict: bool = False) -> tuple[bool, _DiskState | None]:
    """(whether file ``path`` differs from ``disk``, its state where it does not); ``strict``
    compares the bytes even when the file's status is unchanged."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return disk is not None, None
    if disk is None:
        return True, None
    if (st.st_ino, st.st_mtime_ns, st.st_size) == (disk.inode, disk.mtime_ns,
                                                    disk.size) and not strict:
        return False, disk
    if st.st_size != disk.size:
        return True, None
    try:
        digest = hashlib.sha1(path.read_bytes()).hexdigest()
    except FileNotFoundError:
        return True, None
    if digest != disk.sha1:
        return True, None
    return False, _DiskState(st.st_ino, st.st_mtime_ns, st.st_size, digest)
