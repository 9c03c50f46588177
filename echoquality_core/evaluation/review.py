"""What the Review tab shows, as plain data: labelled clips with the model's scores, their
confusion-matrix cells, the most confident mistakes first, and the metrics.

Also the words for a score (:func:`assessment`) and the default decision threshold. The rule
is defined here once: a clip is *labelled good* when its label is at least
``labels.GOOD`` (0.5), *called good* when the model's score is at least the threshold, and the
model *disagrees* when the two differ.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from echoquality_core.labels.store import GOOD, REVIEWED, Label
from echoquality_core.evaluation.metrics import metrics_from_scores
from echoquality_core.runs.folder import RunFolder

KINDS = {"tn": "true negative", "fp": "false positive", "fn": "false negative",
         "tp": "true positive"}
CELLS = {(0, 0): "tn", (0, 1): "fp", (1, 0): "fn", (1, 1): "tp"}  # (labelled good, called good)

#: Decision threshold when neither the caller nor the checkpoint gives one: the value the
#: original EchoQuality inference script used to call a clip "pass".
DEFAULT_THRESHOLD = 0.3

#: (lowest score of the band, assessment), best band first: the EchoQuality README's bands.
SCORE_BANDS = (
    (0.8, "Excellent quality"),
    (0.6, "Good quality"),
    (0.4, "Acceptable quality"),
    (0.2, "Poor quality"),
    (0.0, "Very poor quality"),
)


#: The bands that pass and those that fail: with a threshold, assessment() only uses bands of
#: the side of the threshold the score is on, so ``pass`` and ``assessment`` never contradict.
PASS_BANDS = ("Excellent quality", "Good quality", "Acceptable quality")
FAIL_BANDS = ("Poor quality", "Very poor quality")


def assessment(score: float, threshold: float | None = None) -> str:
    """The guide's words for a score in 0..1: "Excellent quality" (>= 0.8) ... "Very poor
    quality" (< 0.2); a band includes its lower bound. With a ``threshold`` the words agree
    with the call: a passing score gets at worst "Acceptable quality", a failing one at best
    "Poor quality"."""
    score = float(score)
    if not 0.0 <= score <= 1.0:
        raise ValueError(f"a quality score lies in 0..1, got {score!r}")
    band = next(text for lower, text in SCORE_BANDS if score >= lower)
    if threshold is None:
        return band
    if score >= float(threshold):
        return band if band in PASS_BANDS else PASS_BANDS[-1]
    return band if band in FAIL_BANDS else FAIL_BANDS[0]


def labelled_good(label: float) -> bool:
    """A label (quality_score 0..1) counts as good from 0.5 up."""
    return label >= GOOD


def called_good(score: float, threshold: float) -> bool:
    """The model calls a clip good when its score reaches the threshold."""
    return score >= threshold


def disagrees(label: float, score: float, threshold: float) -> bool:
    """The model's call differs from the label."""
    return labelled_good(label) != called_good(score, threshold)


@dataclass(frozen=True)
class ReviewClip:
    """One clip with its label (0..1, good >= 0.5) and the model's score."""

    rel: str
    label: float
    score: float
    threshold: float
    reviewed: bool = False

    @property
    def labelled_good(self) -> bool:
        return labelled_good(self.label)

    @property
    def called_good(self) -> bool:
        return called_good(self.score, self.threshold)

    @property
    def wrong(self) -> bool:
        return self.labelled_good != self.called_good

    @property
    def kind(self) -> str:
        """"tp", "tn", "fp" (labelled poor, called good) or "fn" (labelled good, called poor)."""
        return ("f" if self.wrong else "t") + ("p" if self.called_good else "n")

    @property
    def margin(self) -> float:
        """How far the score is from the threshold: how sure the model was of its call."""
        return abs(self.score - self.threshold)


@dataclass
class ReviewSet:
    """The clips under review, their metrics and what they come from."""

    source: str
    threshold: float
    clips: list[ReviewClip]
    metrics: dict
    groups: dict[str, str] | None = None  # anonymous patient per clip (out-of-fold scope)

    def cell(self, kind: str) -> list[ReviewClip]:
        """Clips of one confusion-matrix cell, the model's most confident call first."""
        return sorted((c for c in self.clips if c.kind == kind), key=lambda c: (-c.margin, c.rel))

    def mistakes(self) -> list[ReviewClip]:
        """False positives and negatives, the most confident mistake (score furthest from the
        threshold on the wrong side) first."""
        return sorted((c for c in self.clips if c.wrong), key=lambda c: (-c.margin, c.rel))

    def roc(self) -> tuple[np.ndarray, np.ndarray] | None:
        """(false positive rate, true positive rate) of the ROC curve; None with one class."""
        from sklearn.metrics import roc_curve

        y = [int(c.labelled_good) for c in self.clips]
        if not 0 < sum(y) < len(y):
            return None
        fpr, tpr, _ = roc_curve(y, [c.score for c in self.clips])
        return fpr, tpr


def read_run_predictions(run_dir) -> tuple[dict[str, tuple[float, float]], float | None]:
    """({video_path: (label, score)} of the run's test split, the run's threshold or None)."""
    folder = RunFolder(run_dir)
    return folder.read_predictions(), folder.read_threshold()


def build_review(scored: Mapping[str, tuple[float, float]], threshold: float, source: str,
                 labels: Mapping[str, Label | None]) -> ReviewSet:
    """ReviewSet of clips ``{rel: (label, score)}``; the CSV's label (``labels``), when there is
    one, replaces the given label, and its ``reviewed`` tag marks the clip as reviewed."""
    clips = []
    for rel, (label, score) in scored.items():
        now = labels.get(rel)
        clips.append(ReviewClip(rel, now.quality_score if now else label, score, threshold,
                                bool(now and REVIEWED in now.issues)))
    metrics = metrics_from_scores([c.label for c in clips], [c.score for c in clips], threshold)
    return ReviewSet(source, threshold, clips, metrics)
