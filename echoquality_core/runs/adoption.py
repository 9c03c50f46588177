"""Whether a finished run's model replaces the project's model without asking.

The rule (issue 22.2): a new model is adopted on its own only when it beats chance, i.e. the
95% CI of its AUC on the run's held-out test clips (``evaluation.stats.metrics_with_ci``) lies
above 0.5, and, when the project already has a model, it is at least as good (AUC) as that model
on the same clips. Otherwise the user decides ("Use this model"): a run without test clips, or
whose AUC CI includes 0.5, is never adopted on its own. Plain Python; the GUI shows the verdict.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from echoquality_core.data.patients import patient_groups
from echoquality_core.decision import TRAINING_THRESHOLD
from echoquality_core.evaluation.stats import Estimate, metrics_with_ci, point_metrics
from echoquality_core.runs.folder import RunFolder

CHANCE_AUC = 0.5  # the AUC of scores that know nothing about quality
_NOT_ADOPTED = "Not made the project's model on its own"


@dataclass(frozen=True)
class Verdict:
    """A run's model judged on its test clips. ``auc``: its AUC with the 95% CI (None: no test
    clips with both labels); ``current_auc``: the project's current model on the same clips
    (None: no model, or not every clip scored); ``adopt``: replace the project's model without
    asking; ``reason``: one plain sentence saying why (not)."""

    auc: Estimate | None
    current_auc: float | None
    n_clips: int
    adopt: bool
    reason: str

    @property
    def beats_chance(self) -> bool:
        """The AUC's CI lies wholly above chance (0.5)."""
        return self.auc is not None and self.auc.low > CHANCE_AUC

    def text(self) -> str:
        """The Result lines: does it beat chance, and is it adopted."""
        if self.auc is None:
            chance = "Beats chance: not known."
        else:
            chance = (f"Test AUC {self.auc.text(2)} on {self.n_clips} clips: "
                      + ("beats chance." if self.beats_chance else
                         "the CI includes 0.5, so it may be no better than chance."))
        return f"{chance}\n{self.reason}"


def judge(labels: Sequence[float], scores: Sequence[float], *,
          groups: Sequence[object] | None = None,
          current_scores: Sequence[float] | None = None,
          has_current_model: bool = False) -> Verdict:
    """The verdict on a model with ``scores`` for clips labelled ``labels`` (``groups``: their
    patient keys, None: each clip its own patient); ``current_scores``: the project's current
    model on the same clips (None when it has not scored them all)."""
    n = len(labels)
    auc = metrics_with_ci(labels, scores, groups, TRAINING_THRESHOLD)["roc_auc"] if n else None
    if auc is None or math.isnan(auc.value):
        return Verdict(None, None, n, False, f"{_NOT_ADOPTED}: the run has no test clips of "
                       "both labels to show it beats chance.")
    current = None
    if current_scores is not None:
        current = point_metrics(labels, current_scores, TRAINING_THRESHOLD)["roc_auc"]
    if auc.low <= CHANCE_AUC:
        return Verdict(auc, current, n, False, f"{_NOT_ADOPTED}.")
    if not has_current_model:
        return Verdict(auc, None, n, True, "Made the project's model (it had none).")
    if current is None or math.isnan(current):
        return Verdict(auc, None, n, False, f"{_NOT_ADOPTED}: the project's current model has "
                       "not scored these clips, so the two cannot be compared.")
    if auc.value >= current:
        return Verdict(auc, current, n, True, "Made the project's model: at least as good as "
                       f"the previous one on the same clips (AUC {current:.2f}).")
    return Verdict(auc, current, n, False, f"{_NOT_ADOPTED}: the project's current model does "
                   f"better on the same clips (AUC {current:.2f}).")


def judge_run(run_dir: str | Path | None, current_scores: Mapping[str, float] | None = None,
              has_current_model: bool = False, root: str | Path | None = None) -> Verdict:
    """:func:`judge` on a run folder's test predictions; ``current_scores``: the project's
    current model's scores by clip (video_path), if any; ``root``: the project folder, whose
    clips' headers give the patient of each clip for the bootstrap (None: a clip a patient)."""
    folder = RunFolder(run_dir) if run_dir is not None else None
    predictions = (folder.read_predictions() if folder is not None
                   and folder.predictions.is_file() else {})
    rels = sorted(predictions)
    current = None
    if current_scores is not None and rels and all(r in current_scores for r in rels):
        current = [float(current_scores[r]) for r in rels]
    groups = patient_groups([Path(root) / r for r in rels]) if root is not None else None
    return judge([predictions[r][0] for r in rels], [predictions[r][1] for r in rels],
                 groups=groups, current_scores=current, has_current_model=has_current_model)
