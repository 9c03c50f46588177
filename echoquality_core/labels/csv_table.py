"""The labels CSV as text: read it into a ``CsvTable`` and write the table back.

Reading sniffs the delimiter (``,`` ``;`` or tab: the one the header line holds most often outside
quotes), keeps each record's raw text (a record may span several lines), accepts a decimal comma
in a ``;``-separated file and collects every bad row before raising one ``LabelError``. A cell
may hold up to ``FIELD_LIMIT`` characters (Python's csv default, 128 KiB, refuses long notes;
the limit is raised for the whole process, never lowered). Writing reuses the raw text of each row
nobody changed, so an untouched file comes back byte for byte. The file itself (locking, atomic
saves, merging) belongs to ``labels.LabelStore``.
"""
from __future__ import annotations

import codecs
import csv
import io
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from itertools import repeat

from echoquality_core.labels.values import (
    ISSUES,
    LABELED_AT,
    NOTES,
    PATH,
    RATER,
    SCORE,
    Label,
    LabelError,
    _check_labeled_at,
    _check_score,
    check_issues,
)

Problems = list[tuple[int | None, str]]
FIELD_LIMIT = 64 * 1024 * 1024  # characters in one cell: long notes read, a runaway quote stops
DELIMITERS = (",", ";", "\t")  # by preference when the header holds as many of each

csv.field_size_limit(max(csv.field_size_limit(), FIELD_LIMIT))


@dataclass
class CsvRow:
    """One record of the file: its cells, and its label once read."""

    cells: list[str]
    raw: str | None  # the row's text (line end included) while unchanged since load/save
    key: str | None = None  # canonical relative path; None for a blank row
    label: Label | None = None  # None when unlabelled (empty quality_score) or blank


@dataclass
class CsvTable:
    """The file's header, rows and dialect (BOM, line ending, delimiter); empty by default."""

    header: list[str] = field(default_factory=lambda: [PATH, SCORE])
    header_raw: str | None = None
    rows: list[CsvRow] = field(default_factory=list)
    index: dict[str, int] = field(default_factory=dict)  # key -> position in rows
    bom: bool = False
    newline: str = "\n"
    delimiter: str = ","
    # ``render_parts``'s last answer (header first) and the rows changed since, by key: a save
    # of a big file formats only the rows that changed
    parts: list[str] | None = field(default=None, repr=False)
    dirty: dict[str, CsvRow] = field(default_factory=dict, repr=False)

    def columns(self) -> dict[str, int]:
        """Column name (stripped) -> position."""
        return {name.strip(): i for i, name in enumerate(self.header)}

    def ensure_columns(self, names: list[str]) -> None:
        """Add the columns of ``names`` the table lacks at the end: every row gets empty cells,
        its text only as many delimiters more (no row is formatted again)."""
        known = self.columns()
        new = [name for name in dict.fromkeys(names) if name not in known]
        if not new:
            return
        self.header.extend(new)
        self.header_raw = None
        self.parts = parts = [""]  # the header's is formatted by the next render
        empty, add = [""] * len(new), self.delimiter * len(new)
        for row in self.rows:
            row.cells.extend(empty)
            raw = row.raw
            if raw is None:  # a changed row (in ``dirty``): formatted by the next render
                parts.append("")
                continue
            if raw.endswith("\r\n"):
                row.raw = raw[:-2] + add + "\r\n"
            elif raw.endswith(("\n", "\r")):
                row.raw = raw[:-1] + add + raw[-1]
            else:
                row.raw = raw + add
            parts.append(row.raw)

    def changed(self, row: CsvRow) -> None:
        """``row`` (one with a key) was changed: it is formatted again at the next render."""
        row.raw = None
        self.dirty[row.key] = row

    def append(self, row: CsvRow) -> None:
        """Add a changed row with a key at the end."""
        self.index[row.key] = len(self.rows)
        self.rows.append(row)
        if self.parts is not None:
            self.parts.append("")
        self.changed(row)

    def delete(self, key: str) -> None:
        """Delete the row of ``key`` (only the rows after it are indexed again)."""
        i = self.index.pop(key)
        del self.rows[i]
        self.dirty.pop(key, None)
        if self.parts is not None:
            del self.parts[i + 1]
        rows, index = self.rows, self.index
        for j in range(i, len(rows)):
            if rows[j].key is not None:
                index[rows[j].key] = j


# --- reading ----------------------------------------------------------------------------------
def parse_csv(data: bytes, relative: Callable[[str], str]) -> CsvTable:
    """The table in ``data``; ``relative`` turns a ``video_path`` into its key (or LabelError).

    Raises LabelError naming every bad row."""
    bom = data.startswith(codecs.BOM_UTF8)
    text = _decode(data)
    if not text.strip():
        return CsvTable(bom=bom)
    delimiter = sniff_delimiter(next(iter(io.StringIO(text, newline=""))))
    plain = '"' not in text
    records = _plain_records(text, delimiter) if plain else _records(text, delimiter)
    header, header_raw = _read_header(records)
    read = None
    if plain:
        body = list(records)
        read, records = _read_columns(body, header, relative), iter(body)
    rows, index = read or _read_rows(records, header, relative, decimal_comma=delimiter != ",")
    parts = [header_raw] + [row.raw for row in rows]  # the first save's, made in this thread
    return CsvTable(header, header_raw, rows, index, bom, _line_end(header_raw) or "\n",
                    delimiter, parts)


def sniff_delimiter(header_line: str) -> str:
    """The delimiter of a CSV from its header line: the one found most often outside quotes
    (a quoted ``"notes, free text"`` column name does not make a ``;`` file ``,``)."""
    bare = re.sub(r'"[^"]*"', "", header_line)
    counts = [bare.count(d) for d in DELIMITERS]
    return DELIMITERS[counts.index(max(counts))] if max(counts) else ","


def _decode(data: bytes) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise LabelError(f"the file is not UTF-8 text (byte {exc.start}); in Excel save it "
                         f"as 'CSV UTF-8'") from None


def _read_header(records: Iterator[tuple[list[str], str]]) -> tuple[list[str], str]:
    """The header's cells and raw text; LabelError if a required column is missing or doubled."""
    try:
        header, header_raw = next(records)
    except csv.Error as exc:
        raise LabelError(f"cannot read the header: {exc}", row=1) from None
    names = [name.strip() for name in header]
    problems: Problems = []
    for required in (PATH, SCORE):
        if required not in names:
            missing = f"missing column {required!r} (header has: {', '.join(names)})"
            problems.append((1, missing))
    for name in sorted({n for n in names if n and names.count(n) > 1}):
        problems.append((1, f"column {name!r} appears more than once"))
    if problems:
        raise LabelError(problems[0][1], problems=problems)
    return header, header_raw


def _read_rows(records: Iterator[tuple[list[str], str]], header: list[str],
               relative: Callable[[str], str],
               decimal_comma: bool) -> tuple[list[CsvRow], dict[str, int]]:
    """The rows after the header and the index of the labelled ones; LabelError naming every
    bad row (the header is row 1)."""
    columns = {name.strip(): i for i, name in enumerate(header)}
    rows: list[CsvRow] = []
    index: dict[str, int] = {}
    first_seen: dict[str, int] = {}
    problems: Problems = []
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
        try:
            row = _read_record(cells, raw, len(header), columns, relative, decimal_comma)
        except LabelError as exc:
            problems.append((row_number, exc.problem))
            continue
        if row.key is not None:
            if row.key in first_seen:
                twice = f"duplicate video_path {row.key!r} (also on row {first_seen[row.key]})"
                problems.append((row_number, twice))
                continue
            first_seen[row.key] = row_number
            index[row.key] = len(rows)
        rows.append(row)
    if problems:
        raise LabelError(problems[0][1], problems=problems)
    return rows, index


def _read_record(cells: list[str], raw: str, n_columns: int, columns: dict[str, int],
                 relative: Callable[[str], str], decimal_comma: bool) -> CsvRow:
    """One record as a row (padded to the header's width); LabelError with the row's problem."""
    if (problem := _broken_record(cells, raw, columns)) is not None:
        raise LabelError(problem)
    if len(cells) > n_columns:
        if any(c.strip() for c in cells[n_columns:]):
            raise LabelError(f"{len(cells)} values but the header has {n_columns} columns")
        cells = cells[:n_columns]
    cells += [""] * (n_columns - len(cells))
    row = CsvRow(cells, raw)
    if any(map(str.strip, cells)):
        row.key, row.label = _read_label(cells, columns, relative, decimal_comma)
    return row


def _read_label(cells: list[str], columns: dict[str, int], relative: Callable[[str], str],
                decimal_comma: bool) -> tuple[str, Label | None]:
    path, score_text = cells[columns[PATH]].strip(), cells[columns[SCORE]].strip()
    optional = {name: cells[columns[name]].strip() if name in columns else ""
                for name in (ISSUES, LABELED_AT, RATER)} if len(columns) > 2 else None
    if not path:
        raise LabelError(f"empty video_path (quality_score {score_text!r})")
    key = relative(path)
    issues = check_issues(optional[ISSUES]) if optional else ()
    labeled_at = _check_labeled_at(optional[LABELED_AT]) if optional else None
    if not score_text:
        return key, None
    if decimal_comma and re.fullmatch(r"\d*,\d+", score_text):
        score_text = score_text.replace(",", ".")  # decimal comma of a ';'-separated file
    score = _check_score(score_text)
    notes = cells[columns[NOTES]] if NOTES in columns else ""
    return key, Label(key, score, (optional[RATER] or None) if optional else None, labeled_at,
                      issues, notes if notes.strip() else None)


def _read_columns(records: list[tuple[list[str], str]], header: list[str],
                  relative: Callable[[str], str]) -> tuple[list[CsvRow], dict[str, int]] | None:
    """The rows of a quote-free file read column by column, each distinct value checked once
    (a 100,000-row file in about half the CPU time of row by row); None when any row is not
    plain (a missing value, a blank row, spaces or a decimal comma around a value, a bad or
    doubled path): ``_read_rows`` then reads the file and names every bad row."""
    n = len(header)
    if not all(len(cells) == n for cells, _ in records):
        return None
    columns = {name.strip(): i for i, name in enumerate(header)}
    table = list(zip(*[cells for cells, _ in records])) or [()] * n
    paths, score_texts = table[columns[PATH]], table[columns[SCORE]]
    try:
        if not all(paths):
            return None
        keys = list(map(relative, paths))
        scores = {text: _check_score(text) for text in set(score_texts) if text}
        optional = [table[columns[name]] if name in columns else None
                    for name in (RATER, LABELED_AT, ISSUES, NOTES)]
        raters, stamps, issues, notes = optional
        issue_tags = {text: check_issues(text) for text in set(issues or ())}
        for text in set(stamps or ()):
            _check_labeled_at(text)
    except LabelError:
        return None
    plain = (paths, score_texts, *(column for column in optional if column is not None))
    if any(text != text.strip() for column in plain for text in set(column)):
        return None
    if len(set(keys)) != len(keys):
        return None
    none = [None] * len(keys)
    labels = [Label(key, scores[text], rater or None, stamp or None, issue_tags[tags] if tags
                    else (), note or None) if text else None
              for key, text, rater, stamp, tags, note in zip(
                  keys, score_texts, raters or none, stamps or none, issues or none,
                  notes or none)]
    rows = [CsvRow(cells, raw, key, label)
            for (cells, raw), key, label in zip(records, keys, labels)]
    return rows, {key: i for i, key in enumerate(keys)}


def _plain_records(text: str, delimiter: str) -> Iterator[tuple[list[str], str]]:
    """``_records`` of a text without any quote: each line is one record."""
    for line in io.StringIO(text, newline=""):
        yield line.rstrip("\r\n").split(delimiter), line


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


def _broken_record(cells: list[str], raw: str, columns: dict[str, int]) -> str | None:
    """Why a record cannot be a row of the file (an unbalanced quote, too few values), or None."""
    if '"' in raw and ("\n" in raw.rstrip("\r\n") or not _line_end(raw)):
        try:
            for _ in csv.reader(io.StringIO(raw, newline=""), strict=True):
                pass
        except csv.Error:
            return ('a quote (") opened on this row is never closed, so every later row would '
                    'be read as part of it; fix the quote')
        path = cells[columns[PATH]] if len(cells) > columns[PATH] else ""
        if "\n" in path or "\r" in path:
            return ("video_path runs over several lines: an unbalanced quote (\") swallows the "
                    "rows after it; fix the quote")
    needed = max(columns[PATH], columns[SCORE]) + 1
    if len(cells) < needed and any(map(str.strip, cells)):
        return (f"{len(cells)} value{'s' if len(cells) != 1 else ''} but the header has "
                f"{len(columns)} columns (no {SCORE!r} value); add the missing commas")
    return None


def _line_end(text: str) -> str:
    for end in ("\r\n", "\n", "\r"):
        if text.endswith(end):
            return end
    return ""


# --- writing ----------------------------------------------------------------------------------
def render_parts(table: CsvTable) -> list[str]:
    """The header's and each row's text, formatting the rows changed since the last load/save
    (``raw`` None): a snapshot of the table that ``join_parts`` turns into the file's text."""
    def fmt(cells: list[str]) -> str:
        buf = io.StringIO()
        csv.writer(buf, delimiter=table.delimiter, lineterminator=table.newline).writerow(cells)
        return buf.getvalue()

    if table.header_raw is None:
        table.header_raw = fmt(table.header)
        if table.parts is not None:
            table.parts[0] = table.header_raw
    parts = table.parts
    if parts is None:
        for row in table.rows:
            if row.raw is None:
                row.raw = fmt(row.cells)
        table.parts = parts = [table.header_raw] + [row.raw for row in table.rows]
    else:
        for key, row in table.dirty.items():
            row.raw = fmt(row.cells)
            parts[table.index[key] + 1] = row.raw
    table.dirty.clear()
    return parts.copy()


def join_parts(parts: list[str], newline: str) -> str:
    """The CSV text of ``render_parts``; a part without a line end (the old file's last line)
    gets ``newline`` unless it is the last. Checked and joined in C, not row by row in Python:
    in the saver's thread a Python loop over 100,000 rows would hand the GIL to and fro with
    the GUI thread every few milliseconds, stalling the window on a busy machine."""
    ends = ("\n", "\r")
    if all(map(str.endswith, parts[:-1], repeat(ends))):
        return "".join(parts)
    return "".join([p if p.endswith(ends) else p + newline for p in parts[:-1]] + parts[-1:])
