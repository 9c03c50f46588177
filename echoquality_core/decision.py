"""The one decision rule: when a label counts as good, when the model calls a clip good, and the
words for a score.

A clip is *labelled good* when its label (quality_score 0..1) is at least :data:`GOOD`; the model
*calls it good* when its score, after the model's calibration (``sigmoid(a * logit(s) + b)``,
fitted in ``evaluation.calibration``), reaches the model's threshold. :meth:`Decision.verdicts`
is the one function every surface takes ``pass`` and ``assessment`` from: the scores CSV, the
gradcam command, the Review tab, the pyfunc model, the DICOM SR and the report. Plain numpy (no
torch), below scoring and evaluation.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

#: A label (quality_score) at or above this is "good".
GOOD = 0.5

#: Decision threshold when neither the caller nor the checkpoint gives one: the value the
#: original EchoQuality inference script used to call a clip "pass".
DEFAULT_THRESHOLD = 0.3

#: Threshold of training and evaluation until one is chosen on validation scores, or when none
#: can be (one class): the middle of the score range. A checkpoint keeps the one chosen.
TRAINING_THRESHOLD = 0.5

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

_EPS = 1e-6


def labelled_good(label: Any) -> Any:
    """A label (quality_score 0..1) counts as good from :data:`GOOD` up; element-wise for a
    numpy array or pandas Series."""
    return label >= GOOD


def called_good(score: Any, threshold: float) -> Any:
    """The model calls a clip good when its (calibrated) score reaches the threshold."""
    return score >= threshold


def disagrees(label: float, score: float, threshold: float) -> bool:
    """The model's call differs from the label."""
    return bool(labelled_good(label) != called_good(score, threshold))


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
    if called_good(score, float(threshold)):
        return band if band in PASS_BANDS else PASS_BANDS[-1]
    return band if band in FAIL_BANDS else FAIL_BANDS[0]


def logit(scores: np.ndarray) -> np.ndarray:
    """log(s / (1 - s)), the scores clipped away from 0 and 1."""
    s = np.clip(scores, _EPS, 1 - _EPS)
    return np.log(s / (1 - s))


def apply_calibration(scores: Sequence[float] | np.ndarray,
                      calibration: Mapping[str, Any] | None) -> np.ndarray:
    """Calibrated scores ``sigmoid(a * logit(s) + b)`` (the scores unchanged when
    ``calibration`` is None or empty)."""
    s = np.asarray(scores, dtype=float)
    if not calibration:
        return s
    z = float(calibration["a"]) * logit(s) + float(calibration.get("b", 0.0))
    return 1.0 / (1.0 + np.exp(-z))


def check_threshold(value: float) -> float:
    """``value`` as a float; ValueError unless it lies in 0..1."""
    value = float(value)
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"threshold must lie in 0..1, got {value:g}")
    return value


@dataclass(frozen=True)
class Verdict:
    """The model's verdict on one clip: its calibrated score, pass/fail and the words."""

    score: float
    passed: bool
    assessment: str


@dataclass(frozen=True)
class Decision:
    """A model's decision: threshold and calibration (None: scores used as they are)."""

    threshold: float = DEFAULT_THRESHOLD
    calibration: Mapping[str, Any] | None = None

    @classmethod
    def from_info(cls, info: Mapping[str, Any], threshold: float | None = None,
                  calibration: Mapping[str, Any] | None = None) -> Decision:
        """The decision of a model file's info (``checkpoint.read_info`` or the info a loaded
        model comes with); ``threshold``/``calibration`` given here win. No threshold anywhere:
        :data:`DEFAULT_THRESHOLD`."""
        value = threshold if threshold is not None else info.get("threshold")
        cal = calibration if calibration is not None else info.get("calibration")
        return cls(check_threshold(DEFAULT_THRESHOLD if value is None else value),
                   dict(cal) if cal else None)

    def scores(self, raw: Sequence[float] | np.ndarray) -> np.ndarray:
        """The model's raw scores (sigmoid of the logits) as the decision reads them."""
        return apply_calibration(raw, self.calibration)

    def verdicts(self, raw: Sequence[float] | np.ndarray) -> list[Verdict]:
        """The verdict on each raw score: calibrated, then called at the threshold."""
        return [Verdict(float(s), bool(called_good(float(s), self.threshold)),
                        assessment(float(s), self.threshold)) for s in self.scores(raw)]

    def verdict(self, raw: float) -> Verdict:
        """:meth:`verdicts` of one raw score."""
        return self.verdicts([raw])[0]
