"""Which clips the clip list shows (plain Python: ``ClipFilter``), the per-class label count
("12 good · 7 poor") and the second filter row (issue tag, model-score range)."""
from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

from PySide6.QtCore import Signal
from PySide6.QtWidgets import QComboBox, QDoubleSpinBox, QHBoxLayout, QLabel, QWidget

from echoquality_core.labels.store import ISSUE_TAGS, UNREADABLE, Label
from echoquality_core.labels.project import ClipInfo
from echoquality_core.decision import labelled_good

MODES = {
    "All clips": "all",
    "Unlabelled": "unlabelled",
    "Labelled": "labelled",
    "Good": "good",
    "Poor": "poor",
    "Disagree with model": "disagree",
    "Unreadable": "unreadable",
}
ANY_TAG = "Any tag"
TAGS = (*ISSUE_TAGS, UNREADABLE, "reviewed")


@dataclass
class ClipFilter:
    """A clip passes when it matches the mode, carries ``tag`` (if set), has a model score in
    [score_min, score_max] (when the range is narrowed) and ``text`` is in its path."""

    mode: str = "all"
    tag: str = ""
    score_min: float = 0.0
    score_max: float = 1.0
    text: str = ""

    @property
    def score_range_on(self) -> bool:
        return self.score_min > 0.0 or self.score_max < 1.0

    def accepts(self, info: ClipInfo, label: Label | None, score: float | None,
                disagrees: bool) -> bool:
        if self.text and self.text not in info.rel.lower():
            return False
        if self.tag and (label is None or self.tag not in label.issues):
            return False
        if self.score_range_on and (score is None or
                                    not self.score_min <= score <= self.score_max):
            return False
        return {
            "all": True,
            "unlabelled": label is None,
            "labelled": label is not None,
            "good": label is not None and labelled_good(label.quality_score),
            "poor": label is not None and not labelled_good(label.quality_score),
            "disagree": disagrees,
            "unreadable": info.error is not None,
        }[self.mode]


def class_counts(labels: Iterable[Label | None], five_point: bool = False) -> str:
    """"12 good · 7 poor" (binary), or per score on the five-point scale ("1: 3 · 2: 0 …")."""
    scores = [lab.quality_score for lab in labels if lab is not None]
    if not five_point:
        good = sum(labelled_good(s) for s in scores)
        return f"{good} good · {len(scores) - good} poor"
    counts = Counter(round(s * 4) + 1 for s in scores)
    return " · ".join(f"{k}: {counts.get(k, 0)}" for k in range(1, 6))


class FilterRow(QWidget):
    """Issue-tag and model-score-range filters; ``changed(tag, lo, hi)``."""

    changed = Signal(str, float, float)

    def __init__(self, parent=None):
        super().__init__(parent)
        self.tag_box = QComboBox()
        self.tag_box.addItems([ANY_TAG, *(t.replace("_", " ") for t in TAGS)])
        self.tag_box.setToolTip("Only clips with this issue tag")
        self.low = self._spin(0.0, "Lowest model score shown")
        self.high = self._spin(1.0, "Highest model score shown")
        row = QHBoxLayout(self)
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(self.tag_box, 1)
        row.addWidget(QLabel("Score"))
        row.addWidget(self.low)
        row.addWidget(QLabel("–"))
        row.addWidget(self.high)
        self.tag_box.currentIndexChanged.connect(self._emit)
        self.low.valueChanged.connect(self._emit)
        self.high.valueChanged.connect(self._emit)

    @staticmethod
    def _spin(value: float, tip: str) -> QDoubleSpinBox:
        spin = QDoubleSpinBox(minimum=0.0, maximum=1.0, singleStep=0.05, decimals=2, value=value)
        spin.setToolTip(tip)
        spin.setKeyboardTracking(False)
        return spin

    def tag(self) -> str:
        i = self.tag_box.currentIndex()
        return "" if i <= 0 else TAGS[i - 1]

    def _emit(self, *_args) -> None:
        self.changed.emit(self.tag(), self.low.value(), self.high.value())
