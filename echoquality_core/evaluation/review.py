"""What the Review tab shows, as plain data: labelled clips with the model's scores, their
confusion-matrix cells, the most confident mistakes first, and the metrics. The calls follow the
model's :class:`~echoquality_core.decision.Decision` (threshold and calibration); the
bootstrap CIs of a score table with the words saying what they rest on
(``confidence_intervals``).
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from echoquality_core.decision import Decision, called_good, labelled_good
from echoquality_core.labels.store import REVIEWED, Label
from echoquality_core.evaluation.metrics import metrics_from_scores
from echoquality_core.evaluation.curves import roc_curve
from echoquality_core.runs.folder import RunFolder

KINDS = {"tn": "true negative", "fp": "false positive", "fn": "false negative",
         "tp": "true positive"}
CELLS = {(0, 0): "tn", (0, 1): "fp", (1, 0): "fn", (1, 1): "tp"}  # (labelled good, called good)


@dataclass(frozen=True)
class ReviewClip:
    """One clip with its label (0..1, see ``decision.labelled_good``) and the model's
    (calibrated) score."""

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
        y = [int(c.labelled_good) for c in self.clips]
        if not 0 < sum(y) < len(y):
            return None
        fpr, tpr, _ = roc_curve(y, [c.score for c in self.clips])
        return fpr, tpr


def read_run_predictions(run_dir) -> tuple[dict[str, tuple[float, float]], float | None]:
    """({video_path: (label, score)} of the run's test split, the run's threshold or None)."""
    folder = RunFolder(run_dir)
    return folder.read_predictions(), folder.read_threshold()


def build_review(scored: Mapping[str, tuple[float, float]], decision: Decision | float,
                 source: str, labels: Mapping[str, Label | None]) -> ReviewSet:
    """ReviewSet of clips ``{rel: (label, raw score)}`` called by the model's ``decision`` (a
    bare threshold: the scores are used as they are); the CSV's label (``labels``), when there
    is one, replaces the given label, and its ``reviewed`` tag marks the clip as reviewed."""
    if not isinstance(decision, Decision):
        decision = Decision(float(decision))
    rels = list(scored)
    verdicts = decision.verdicts([scored[rel][1] for rel in rels])
    clips = []
    for rel, verdict in zip(rels, verdicts, strict=True):
        now = labels.get(rel)
        clips.append(ReviewClip(rel, now.quality_score if now else scored[rel][0], verdict.score,
                                decision.threshold, bool(now and REVIEWED in now.issues)))
    metrics = metrics_from_scores([c.label for c in clips], [c.score for c in clips],
                                  decision.threshold)
    return ReviewSet(source, decision.threshold, clips, metrics)


def confidence_intervals(labels: list[float], scores: list[float], threshold: float, groups,
                         paths: list[Path] | None, source: str) -> tuple[dict[str, Any], str]:
    """Bootstrap 95% CIs of one score table (``stats.metrics_with_ci``) and the text saying what
    they are based on (seconds of CPU-bound Python: the app runs it in a child). Patient keys
    are read from the clips' headers when no groups are given."""
    from echoquality_core.evaluation.stats import describe_basis, metrics_with_ci

    if groups is None and paths is not None:
        from echoquality_core.data.patients import patient_groups

        groups = patient_groups(paths)
    basis = describe_basis(labels, groups, source)
    return metrics_with_ci(labels, scores, groups, threshold), basis
