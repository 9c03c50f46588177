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
file, never a torn one. Saves of several processes are serialised by an advisory lock file beside
the CSV (``.labels.csv.lock``, held only while the file is read, merged and replaced). ``save``
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
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

from filelock import FileLock, Timeout

from echoquality_core.files.atomic import write_atomic
from echoquality_core.labels.csv_table import CsvRow, CsvTable, parse_csv, render_csv
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

_LOCK_TIMEOUT = 15.0  # seconds to wait for another program's save (it takes milliseconds)


class _DiskState(NamedTuple):
    inode: int
    mtime_ns: int
    size: int
    sha1: str


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
        self._relatives: dict[str, str] = {}  # relative()'s answers: the clip list asks often
        self.lock_path = self.csv_path.with_name(f".{self.csv_path.name}.lock")
        self._lock = FileLock(self.lock_path, timeout=_LOCK_TIMEOUT)
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
            self._forget_changes()
            return
        self._table = parse_csv(data, self.relative)
        self._disk = _DiskState(st.st_ino, st.st_mtime_ns, st.st_size,
                                hashlib.sha1(data).hexdigest())
        self._forget_changes()

    def _forget_changes(self) -> None:
        self._pending, self._base, self._clashes = {}, {}, []

    # --- queries ------------------------------------------------------------------------------
    def get(self, path: str | os.PathLike) -> Label | None:
        """The label of clip ``path`` (absolute or relative to the root); None if unlabelled."""
        i = self._table.index.get(self.relative(path))
        return None if i is None else self._table.rows[i].label

    def paths(self) -> list[str]:
        """Relative paths of the labelled clips, in CSV order."""
        return [row.key for row in self._table.rows if row.label is not None]

    def __len__(self) -> int:
        return sum(row.label is not None for row in self._table.rows)

    def is_continuous(self) -> bool:
        """True if any score is neither 0 nor 1."""
        return any(row.label.quality_score not in (0.0, 1.0)
                   for row in self._table.rows if row.label is not None)

    def resolve(self, rel: str | os.PathLike) -> Path:
        """Absolute path of clip ``rel`` (relative to the root, or already absolute)."""
        return self.root / self.relative(rel)

    def relative(self, path: str | os.PathLike) -> str:
        """``path`` relative to the root with '/' separators; LabelError if outside the root."""
        text = os.fspath(path)
        if (known := self._relatives.get(text)) is not None:
            return known
        if not text.strip():
            raise LabelError("empty video_path")
        text = text.replace("\\", "/")
        if Path(text).is_absolute() or text.startswith("/"):
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
        self._relatives[text] = rel
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
        for name, value in values.items():
            if value:
                self._table.ensure_column(name)
        columns = self._table.columns()
        i = self._table.index.get(label.video_path)
        if i is None:
            cells = [""] * len(self._table.header)
            cells[columns[PATH]] = label.video_path
            self._table.index[label.video_path] = len(self._table.rows)
            self._table.rows.append(CsvRow(cells, None, label.video_path))
            i = len(self._table.rows) - 1
        row = self._table.rows[i]
        old_score = row.label.quality_score if row.label else None
        if old_score != label.quality_score:
            row.cells[columns[SCORE]] = _format_score(label.quality_score)
        for name, value in values.items():
            if name in columns:
                row.cells[columns[name]] = value
        row.label, row.raw = label, None

    def _drop(self, key: str) -> None:
        columns = self._table.columns()
        i = self._table.index[key]
        row = self._table.rows[i]
        ours = {PATH, SCORE, *OPTIONAL_COLUMNS}
        if any(row.cells[j].strip() for name, j in columns.items() if name not in ours):
            for name in (SCORE, *OPTIONAL_COLUMNS):
                if name in columns:
                    row.cells[columns[name]] = ""
            row.label, row.raw = None, None
            return
        del self._table.rows[i]
        rows = self._table.rows
        self._table.index = {row.key: j for j, row in enumerate(rows) if row.key is not None}

    # --- saving -------------------------------------------------------------------------------
    def changed_on_disk(self) -> bool:
        """True if the file on disk differs from what we last read or wrote (another program
        wrote, replaced, created or deleted it). Only the file's status is read unless it
        changed; a file rewritten with the same bytes does not count."""
        try:
            st = os.stat(self.csv_path)
        except FileNotFoundError:
            return self._disk is not None
        disk = self._disk
        if disk is None:
            return True
        if (st.st_ino, st.st_mtime_ns, st.st_size) == (disk.inode, disk.mtime_ns, disk.size):
            return False
        if st.st_size != disk.size:
            return True
        try:
            digest = hashlib.sha1(self.csv_path.read_bytes()).hexdigest()
        except FileNotFoundError:
            return True
        if digest != disk.sha1:
            return True
        self._disk = _DiskState(st.st_ino, st.st_mtime_ns, st.st_size, digest)
        return False

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

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the advisory lock that serialises saves of this CSV across processes."""
        try:
            self._lock.acquire()
        except Timeout:
            raise LabelError(f"{self.csv_path.name} is being saved by another program (its lock "
                             f"{self.lock_path.name} was held for over {_LOCK_TIMEOUT:g} s); "
                             f"try again") from None
        try:
            yield
        finally:
            self._lock.release()

    def save_merged(self) -> list[LabelClash]:
        """Save, first merging what another program wrote since we read the CSV (theirs win for
        every clip we did not change, ours for the clips we did), all under the lock so that no
        other save can slip in between. Returns the clips both changed (``LabelClash``): show
        them to the user; nothing of the other program's was lost silently."""
        with self.locked():
            if self.changed_on_disk():
                self.merge_from_disk()
            clashes = self._clashes
            self._write()
        return clashes

    def save(self, force: bool = False) -> None:
        """Write the CSV atomically. Raises LabelConflictError if another program changed it
        since we last read or wrote it, unless ``force`` (which overwrites their changes)."""
        with self.locked():
            if not force and self.changed_on_disk():
                raise LabelConflictError(
                    f"{self.csv_path.name} was changed by another program since it was last "
                    f"read; merge it (merge_from_disk) before saving")
            self._write()

    def _write(self) -> None:
        text = render_csv(self._table)
        data = (codecs.BOM_UTF8 if self._table.bom else b"") + text.encode("utf-8")
        st = write_atomic(self.csv_path, data)
        self._disk = _DiskState(st.st_ino, st.st_mtime_ns, st.st_size,
                                hashlib.sha1(data).hexdigest())
        self._forget_changes()
