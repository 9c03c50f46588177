"""The scores CSV, one row per clip: ``video_path,score,pass,assessment,frames,fps,error``
(:data:`COLUMNS`), opened for appending (:class:`ScoresFile`) or read back typed
(:func:`read_scores`).

``score`` is the model's score in 0..1 after its calibration, ``pass`` and ``assessment`` its
``decision.Verdict``; an unreadable clip has an empty score and its ``error``. The file is
written so that a crash loses at most the batch being written: the header atomically, each
batch's rows in one write followed by fsync, a torn last line (power loss, full disk) cut off the
next time the file is opened, and rows replaced by rewriting the whole file atomically.
"""
from __future__ import annotations

import csv
import io
import logging
import math
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from echoquality_core.files.atomic import append_atomic, atomic_write

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)

COLUMNS = ("video_path", "score", "pass", "assessment", "frames", "fps", "error")


class ScoresFile:
    """The scores CSV opened for appending: header written atomically, rows appended per batch
    with one write + fsync, a torn last line cut off on open.

    ``done``: clips with a score in the file; ``unreadable``: clips whose rows have none (their
    error row is to be replaced, see :meth:`drop`)."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.done: set[str] = set()
        self.unreadable: set[str] = set()
        if self.path.exists() and self.path.stat().st_size > 0:
            self._repair()
            try:
                with open(self.path, newline="", encoding="utf-8-sig") as fh:
                    rows = [row for row in csv.DictReader(fh) if row.get("video_path") is not None]
            except csv.Error as exc:  # e.g. a field over the csv module's size limit
                raise ValueError(f"{self.path.name}: not a readable scores CSV ({exc})") from exc
            self.done = {row["video_path"] for row in rows if _is_score(row.get("score"))}
            self.unreadable = {row["video_path"] for row in rows} - self.done
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._write_header()

    def _write_header(self) -> None:
        with atomic_write(self.path, "w", newline="", encoding="utf-8") as fh:
            fh.write(",".join(COLUMNS) + "\n")

    def _repair(self) -> None:
        with open(self.path, "rb") as fh:
            data = fh.read()
        header = data.split(b"\n", 1)[0].decode("utf-8", "replace").strip().lstrip("\ufeff")
        if [c.strip() for c in header.split(",")] != list(COLUMNS):
            raise ValueError(
                f"{self.path.name}: exists but is not a scores CSV (expected the columns "
                f"{','.join(COLUMNS)}); choose another output file"
            )
        if not data.endswith(b"\n"):
            keep = data.rfind(b"\n") + 1
            log.warning("%s: cutting off an incomplete last line left by an interrupted run",
                        self.path.name)
            with open(self.path, "r+b") as fh:
                fh.truncate(keep)
                fh.flush()
                os.fsync(fh.fileno())

    def drop(self, names: Iterable[str]) -> None:
        """Remove every row of the clips ``names`` by rewriting the file atomically (a crash
        leaves the old file or the new one)."""
        names = set(names)
        if not names:
            return
        with open(self.path, newline="", encoding="utf-8-sig") as fh:
            rows = list(csv.reader(fh))[1:]
        with atomic_write(self.path, "w", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh, lineterminator="\n")
            writer.writerow(COLUMNS)
            writer.writerows(row for row in rows if row and row[0] not in names)
        self.done -= names
        self.unreadable -= names

    def append(self, rows: Iterable[Mapping[str, Any]]) -> None:
        """Append rows in one write; on failure the file is cut back to where it was."""
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        for row in rows:
            writer.writerow([_cell(row.get(c)) for c in COLUMNS])
        data = buffer.getvalue().encode("utf-8")
        if data:
            append_atomic(self.path, data)  # a full disk: cut back, "disk full" error


def _is_score(text: str | None) -> bool:
    """True when a score cell holds a number (what :func:`read_scores` reads as not NaN)."""
    try:
        return not math.isnan(float(text))
    except (TypeError, ValueError):
        return False


def _cell(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, bool):
        return "True" if value else "False"
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def read_scores(path: str | os.PathLike) -> pd.DataFrame:
    """A scores CSV as a typed DataFrame (score/fps float, pass boolean, frames Int64)."""
    import pandas as pd  # not on the command's path (``score_into_csv``): 0.2-0.3 s to import

    table = pd.read_csv(path, dtype=str, keep_default_na=False)
    return _typed(table)


def rows_table(rows: Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    """Rows (as written to the file) as :func:`read_scores` would read them back."""
    import pandas as pd

    return _typed(pd.DataFrame([{k: _cell(r[k]) for k in COLUMNS} for r in rows],
                               columns=list(COLUMNS)))


def _typed(table: pd.DataFrame) -> pd.DataFrame:
    import pandas as pd

    table = table.reindex(columns=list(COLUMNS))
    out = pd.DataFrame({
        "video_path": table["video_path"].fillna("").astype(str),
        "score": pd.to_numeric(table["score"].replace("", None), errors="coerce").astype(float),
        "pass": table["pass"].map({"True": True, "False": False}).astype("boolean"),
        "assessment": table["assessment"].fillna("").astype(str),
        "frames": pd.to_numeric(table["frames"].replace("", None), errors="coerce")
        .astype("Int64"),
        "fps": pd.to_numeric(table["fps"].replace("", None), errors="coerce").astype(float),
        "error": table["error"].fillna("").astype(str),
    })
    return out
