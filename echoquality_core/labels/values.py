"""The label values of the labels CSV: the vocabulary (columns, issue tags, scales), ``Label``,
the errors that name a spreadsheet row, and the checks of a single value (score, tags, time).

No file handling here: ``label_csv`` reads and writes the CSV text, ``labels.LabelStore`` owns the
file. Every name is re-exported by ``echoquality_core.labels.store``.
"""
from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from echoquality_core.decision import GOOD  # noqa: F401 (labels.store re-exports it)

ISSUE_TAGS = ("off_axis", "foreshortened", "poor_gain", "dropout", "partial_view")
UNREADABLE = "unreadable"  # issue tag for a clip that cannot be decoded
REVIEWED = "reviewed"  # issue tag: a person looked at the model's disagreement and decided
SCALES = ("binary", "five_point")  # the label scales a rater can work in
FIVE_POINT_SCORES = (0.0, 0.25, 0.5, 0.75, 1.0)  # 1 (worst) .. 5 (best)

PATH, SCORE, RATER, LABELED_AT, ISSUES, NOTES = (
    "video_path", "quality_score", "rater", "labeled_at", "issues", "notes")
OPTIONAL_COLUMNS = (RATER, LABELED_AT, ISSUES, NOTES)
_TAG = re.compile(r"[a-z0-9_]+")
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


@dataclass(frozen=True)
class LabelClash:
    """A clip labelled both here and by another program since we read the CSV: their label
    (None = they removed it) and ours (None = we removed it); ``save_merged`` keeps ours."""

    video_path: str
    theirs: Label | None
    ours: Label | None

    def __str__(self) -> str:
        def text(label: Label | None) -> str:
            return "unlabelled" if label is None else _format_score(label.quality_score)
        return (f"{self.video_path}: also changed by another program ({text(self.theirs)}); "
                f"yours ({text(self.ours)}) was kept")


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
    if not issues:
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
