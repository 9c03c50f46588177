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

Every save is atomic (temporary file in the same folder, fsync, ``os.replace``, fsync of the
folder), so a crash or a kill mid-save leaves the old or the new file, never a torn one. A save
refuses to overwrite a file that another program changed since we read it
(``LabelConflictError``); ``merge_from_disk`` reads theirs and re-applies our changes.
"""
from __future__ import annotations

import codecs
import csv
import glob
import hashlib
import io
import math
import os
import posixpath
import re
import secrets
import stat
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    import pandas

ISSUE_TAGS = ("off_axis", "foreshortened", "poor_gain", "dropout", "partial_view")
UNREADABLE = "unreadable"  # issue tag for a clip that cannot be decoded
REVIEWED = "reviewed"  # issue tag: a person looked at the model's disagreement and decided
GOOD = 0.5  # a label (quality_score) at or above this is "good"
SCALES = ("binary", "five_point")  # the label scales a rater can work in
FIVE_POINT_SCORES = (0.0, 0.25, 0.5, 0.75, 1.0)  # 1 (worst) .. 5 (best)

PATH, SCORE, RATER, LABELED_AT, ISSUES, NOTES = (
    "video_path", "quality_score", "rater", "labeled_at", "issues", "notes")
OPTIONAL_COLUMNS = (RATER, LABELED_AT, ISSUES, NOTES)
_TAG = re.compile(r"[a-z0-9_]+")
_STALE_TEMP_SECONDS = 3600  # a temporary file this old is left over from a crash whatever its pid
_MAX_LISTED_PROBLEMS = 5


class LabelError(ValueError):
    """A problem with the labels CSV or a label; names the spreadsheet row (header = row 1).

    ``problems`` lists every (row, problem) found; ``row`` is the first row (None when the
    problem is not tied to a row of the file)."""

    def __init__(self, problem: str, row: int | None = None,
                 problems: list[tuple[int | None, str]] | None = None) -> None:
        self.problems = problems or [(row, problem)]
        self.row, self.problem = self.problems[0]
        shown = "; ".join(_row_text(r, p) for r, p in self.problems[:_MAX_LISTED_PROBLEMS])
        more = len(self.problems) - _MAX_LISTED_PROBLEMS
        super().__init__(shown + (f" (and {more} more problems)" if more > 0 else ""))


class LabelConflictError(LabelError):
    """The CSV was changed by another program since we last read or wrote it."""


def _row_text(row: int | None, problem: str) -> str:
    return problem if row is None else f"row {row}: {problem}"


@dataclass(frozen=True)
class Label:
    """One clip's label as stored in the CSV (video_path relative to the dataset root)."""

    video_path: str
    quality_score: float
    rater: str | None = None
    labeled_at: str | None = None
    issues: tuple[str, ...] = ()
    notes: str | None = None


@dataclass
class _Row:
    cells: list[str]
    raw: str | None  # the row's text (line end included) while unchanged since load/save
    key: str | None = None  # canonical relative path; None for a blank row
    label: Label | None = None  # None when unlabelled (empty quality_score) or blank


class _DiskState(NamedTuple):
    inode: int
    mtime_ns: int
    size: int
    sha1: str


def _now_iso() -> str:
    """The local time now, ISO 8601 with UTC offset, to the second (the ``labeled_at`` format)."""
    return datetime.now().astimezone().isoformat(timespec="seconds")


def _format_score(score: float) -> str:
    """``1``/``0`` for binary scores, the shortest exact decimal otherwise (``0.75``)."""
    return str(int(score)) if float(score).is_integer() else repr(float(score))


def _check_score(score: object) -> float:
    """``score`` as a float in [0, 1], or LabelError."""
    try:
        value = float(score)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise LabelError(f"quality_score {score!r} is not a number") from None
    if not math.isfinite(value):
        raise LabelError(f"quality_score {score!r} is not a number")
    if not 0.0 <= value <= 1.0:
        raise LabelError(f"quality_score {value:g} is out of range (must be between 0 and 1)")
    return value


def check_issues(issues: Iterable[str] | str | None) -> tuple[str, ...]:
    """Issue tags as a tuple (a string is split on ';'), each of lowercase letters, digits, _."""
    if issues is None:
        return ()
    items = issues.split(";") if isinstance(issues, str) else list(issues)
    tags = []
    for item in items:
        tag = str(item).strip()
        if not tag:
            continue
        if not _TAG.fullmatch(tag):
            raise LabelError(f"issue tag {tag!r} is not valid: use lowercase letters, digits and _ "
                             f"(e.g. {', '.join(ISSUE_TAGS)})")
        if tag not in tags:
            tags.append(tag)
    return tuple(tags)


def _check_labeled_at(text: str | None) -> str | None:
    """``text`` if it is an ISO 8601 date-time (None stays None), else LabelError."""
    if text is None or not str(text).strip():
        return None
    text = str(text).strip()
    try:
        datetime.fromisoformat(text)
    except ValueError:
        raise LabelError(f"labeled_at {text!r} is not an ISO 8601 date-time "
                         f"(e.g. 2025-01-31T14:05:09+01:00)") from None
    return text


class LabelStore:
    """The labels CSV of one dataset: read, query, change and save it atomically."""

    def __init__(self, csv_path: str | os.PathLike, root: str | os.PathLike | None = None) -> None:
        self.csv_path = Path(os.path.abspath(csv_path))
        self.root = Path(os.path.abspath(root if root is not None else self.csv_path.parent))
        self._real_root = self.root.resolve()
        self._set_empty()
        self._disk: _DiskState | None = None
        self._pending: dict[str, Label | None] = {}  # changes since the last load/save
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
            self._set_empty()
            self._disk = None
            self._pending = {}
            return
        self._parse(data)
        self._disk = _DiskState(st.st_ino, st.st_mtime_ns, st.st_size,
                                hashlib.sha1(data).hexdigest())
        self._pending = {}

    def _set_empty(self) -> None:
        self._header = [PATH, SCORE]
        self._header_raw: str | None = None
        self._rows: list[_Row] = []
        self._index: dict[str, int] = {}
        self._bom = False
        self._newline = "\n"
        self._delimiter = ","

    def _parse(self, data: bytes) -> None:
        bom = data.startswith(codecs.BOM_UTF8)
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise LabelError(f"the file is not UTF-8 text (byte {exc.start}); in Excel save it "
                             f"as 'CSV UTF-8'") from None
        if not text.strip():
            self._set_empty()
            self._bom = bom
            return
        first_line = next(iter(io.StringIO(text, newline="")))
        delimiter = next((d for d in (",", ";", "\t") if d in first_line), ",")
        records = _records(text, delimiter)
        try:
            header, header_raw = next(records)
        except csv.Error as exc:
            raise LabelError(f"cannot read the header: {exc}", row=1) from None
        names = [name.strip() for name in header]
        problems: list[tuple[int | None, str]] = []
        for required in (PATH, SCORE):
            if required not in names:
                missing = f"missing column {required!r} (header has: {', '.join(names)})"
                problems.append((1, missing))
        for name in sorted({n for n in names if n and names.count(n) > 1}):
            problems.append((1, f"column {name!r} appears more than once"))
        if problems:
            raise LabelError(problems[0][1], problems=problems)
        columns = {name: i for i, name in enumerate(names)}

        rows: list[_Row] = []
        index: dict[str, int] = {}
        first_seen: dict[str, int] = {}
        row_number = 1
        while True:
            row_number += 1
            try:
                cells, raw = next(records)
            except StopIteration:
                break
            except csv.Error as exc:
                problems.append((row_number, f"cannot read the row: {exc}"))
                break
            if len(cells) > len(names):
                if any(c.strip() for c in cells[len(names):]):
                    extra = f"{len(cells)} values but the header has {len(names)} columns"
                    problems.append((row_number, extra))
                    continue
                cells = cells[:len(names)]
            cells += [""] * (len(names) - len(cells))
            row = _Row(cells, raw)
            if any(c.strip() for c in cells):
                try:
                    row.key, row.label = self._read_row(cells, columns, delimiter != ",")
                except LabelError as exc:
                    problems.append((row_number, exc.problem))
                    continue
                if row.key in first_seen:
                    twice = f"duplicate video_path {row.key!r} (also on row {first_seen[row.key]})"
                    problems.append((row_number, twice))
                    continue
                first_seen[row.key] = row_number
                index[row.key] = len(rows)
            rows.append(row)
        if problems:
            raise LabelError(problems[0][1], problems=problems)

        self._header, self._header_raw = header, header_raw
        self._rows, self._index = rows, index
        self._bom, self._delimiter = bom, delimiter
        self._newline = _line_end(header_raw) or "\n"

    def _read_row(self, cells: list[str], columns: dict[str, int],
                  decimal_comma: bool) -> tuple[str, Label | None]:
        def cell(name: str) -> str:
            return cells[columns[name]].strip() if name in columns else ""

        if not cell(PATH):
            raise LabelError(f"empty video_path (quality_score {cell(SCORE)!r})")
        key = self.relative(cell(PATH))
        issues = check_issues(cell(ISSUES))
        labeled_at = _check_labeled_at(cell(LABELED_AT))
        score_text = cell(SCORE)
        if not score_text:
            return key, None
        if decimal_comma and re.fullmatch(r"\d*,\d+", score_text):
            score_text = score_text.replace(",", ".")  # decimal comma of a ';'-separated file
        score = _check_score(score_text)
        notes = cells[columns[NOTES]] if NOTES in columns else ""
        return key, Label(key, score, cell(RATER) or None, labeled_at, issues,
                          notes if notes.strip() else None)

    # --- queries ------------------------------------------------------------------------------
    def get(self, path: str | os.PathLike) -> Label | None:
        """The label of clip ``path`` (absolute or relative to the root); None if unlabelled."""
        i = self._index.get(self.relative(path))
        return None if i is None else self._rows[i].label

    def paths(self) -> list[str]:
        """Relative paths of the labelled clips, in CSV order."""
        return [row.key for row in self._rows if row.label is not None]

    def __len__(self) -> int:
        return sum(row.label is not None for row in self._rows)

    def is_continuous(self) -> bool:
        """True if any score is neither 0 nor 1."""
        return any(row.label.quality_score not in (0.0, 1.0)
                   for row in self._rows if row.label is not None)

    def resolve(self, rel: str | os.PathLike) -> Path:
        """Absolute path of clip ``rel`` (relative to the root, or already absolute)."""
        return self.root / self.relative(rel)

    def relative(self, path: str | os.PathLike) -> str:
        """``path`` relative to the root with '/' separators; LabelError if outside the root."""
        text = os.fspath(path)
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
        return rel

    def to_frame(self, include_unlabelled: bool = False) -> pandas.DataFrame:
        """The rows as a table in the file's column order: video_path relative to the root,
        quality_score as float (NaN when unlabelled), every other column as text."""
        import pandas

        names = [name.strip() for name in self._header]
        records = []
        for row in self._rows:
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
                self._ensure_column(name)
        columns = self._columns()
        i = self._index.get(label.video_path)
        if i is None:
            cells = [""] * len(self._header)
            cells[columns[PATH]] = label.video_path
            self._index[label.video_path] = len(self._rows)
            self._rows.append(_Row(cells, None, label.video_path))
            i = len(self._rows) - 1
        row = self._rows[i]
        old_score = row.label.quality_score if row.label else None
        if old_score != label.quality_score:
            row.cells[columns[SCORE]] = _format_score(label.quality_score)
        for name, value in values.items():
            if name in columns:
                row.cells[columns[name]] = value
        row.label, row.raw = label, None

    def _drop(self, key: str) -> None:
        columns = self._columns()
        i = self._index[key]
        row = self._rows[i]
        ours = {PATH, SCORE, *OPTIONAL_COLUMNS}
        if any(row.cells[j].strip() for name, j in columns.items() if name not in ours):
            for name in (SCORE, *OPTIONAL_COLUMNS):
                if name in columns:
                    row.cells[columns[name]] = ""
            row.label, row.raw = None, None
            return
        del self._rows[i]
        self._index = {row.key: j for j, row in enumerate(self._rows) if row.key is not None}

    def _columns(self) -> dict[str, int]:
        return {name.strip(): i for i, name in enumerate(self._header)}

    def _ensure_column(self, name: str) -> None:
        if name in self._columns():
            return
        self._header.append(name)
        self._header_raw = None
        for row in self._rows:
            row.cells.append("")
            row.raw = None

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
        pending = dict(self._pending)
        self.load()
        for key, label in pending.items():
            if label is None:
                if self.get(key) is not None:
                    self._drop(key)
            else:
                self._put(label)
        self._pending = pending
        return list(pending)

    def save(self, force: bool = False) -> None:
        """Write the CSV atomically. Raises LabelConflictError if another program changed it
        since we last read or wrote it, unless ``force`` (which overwrites their changes)."""
        if not force and self.changed_on_disk():
            raise LabelConflictError(
                f"{self.csv_path.name} was changed by another program since it was last read; "
                f"merge it (merge_from_disk) before saving")
        text = self._render()
        data = (codecs.BOM_UTF8 if self._bom else b"") + text.encode("utf-8")
        self._disk = _write_atomic(self.csv_path, data)
        self._pending = {}

    def _render(self) -> str:
        """The CSV text; rows changed since the last load/save are formatted anew."""
        def fmt(cells: list[str]) -> str:
            buf = io.StringIO()
            csv.writer(buf, delimiter=self._delimiter, lineterminator=self._newline).writerow(cells)
            return buf.getvalue()

        if self._header_raw is None:
            self._header_raw = fmt(self._header)
        for row in self._rows:
            if row.raw is None:
                row.raw = fmt(row.cells)
        parts = [self._header_raw] + [row.raw for row in self._rows]
        for i in range(len(parts) - 1):
            if not _line_end(parts[i]):
                parts[i] += self._newline  # the old last line had no line end
        return "".join(parts)


def _records(text: str, delimiter: str) -> Iterator[tuple[list[str], str]]:
    """(cells, raw text) of each CSV record; a record may span several lines (quoted newlines)."""
    consumed: list[str] = []

    def lines() -> Iterator[str]:
        for line in io.StringIO(text, newline=""):
            consumed.append(line)
            yield line

    for cells in csv.reader(lines(), delimiter=delimiter):
        raw = "".join(consumed)
        consumed.clear()
        yield cells, raw


def _line_end(text: str) -> str:
    for end in ("\r\n", "\n", "\r"):
        if text.endswith(end):
            return end
    return ""


def _write_atomic(path: Path, data: bytes) -> _DiskState:
    """Replace ``path`` by ``data`` so that readers see the old or the new file, never a part."""
    target = Path(os.path.realpath(path))
    folder = target.parent
    _remove_stale_temps(folder, target.name)
    tmp = folder / f".{target.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}"
    try:
        with open(tmp, "xb") as f:
            f.write(data)
            f.flush()
            if target.exists():
                os.chmod(tmp, stat.S_IMODE(os.stat(target).st_mode))
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        try:
            tmp.unlink()
        except OSError:
            pass
        raise
    if os.name == "posix":
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    st = os.stat(target)
    return _DiskState(st.st_ino, st.st_mtime_ns, st.st_size, hashlib.sha1(data).hexdigest())


def _remove_stale_temps(folder: Path, name: str) -> None:
    """Delete temporary files of saves that died (their process is gone, or they are old)."""
    now = time.time()
    for tmp in folder.glob(f".{glob.escape(name)}.tmp-*"):
        pid_text = tmp.name.rsplit(".tmp-", 1)[1].split("-", 1)[0]
        try:
            stale = (now - tmp.stat().st_mtime > _STALE_TEMP_SECONDS
                     or (pid_text.isdigit() and not _process_alive(int(pid_text))))
            if stale:
                tmp.unlink()
        except OSError:
            pass  # gone already, or not ours to delete


def _process_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    if os.name != "posix":
        return True  # no safe probe on Windows; the age rule cleans up instead
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
