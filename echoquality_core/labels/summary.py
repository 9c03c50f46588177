"""Counts of a labels table (labelled clips, non-binary scores, labels per rater), kept up to
date label by label."""
from __future__ import annotations

from collections.abc import Iterable

from echoquality_core.labels.values import Label


class LabelSummary:
    """Counts of a store's labels (labelled clips, non-binary scores, labels per rater), kept
    up to date label by label: a label in a 100,000-row table does not count them all again."""

    def __init__(self, labels: Iterable[Label | None]) -> None:
        self.labelled = self.continuous = 0
        self.raters: dict[str, int] = {}
        for label in labels:
            if label is not None:
                self._add(label, 1)

    def replace(self, old: Label | None, new: Label | None) -> None:
        """One row's label went from ``old`` to ``new`` (None: unlabelled)."""
        if old is not None:
            self._add(old, -1)
        if new is not None:
            self._add(new, 1)

    def _add(self, label: Label, n: int) -> None:
        self.labelled += n
        self.continuous += n if label.quality_score not in (0.0, 1.0) else 0
        if label.rater:
            count = self.raters.get(label.rater, 0) + n
            if count:
                self.raters[label.rater] = count
            else:
                del self.raters[label.rater]

    def rater_names(self) -> list[str]:
        return list(self.raters)
