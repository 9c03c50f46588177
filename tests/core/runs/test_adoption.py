"""The adoption rule: a run's model replaces the project's only when its test AUC's CI is above
chance and it is at least as good as the current model on the same clips."""
from __future__ import annotations

import numpy as np

from echoquality_core.runs.adoption import judge, judge_run
from echoquality_core.runs.folder import RunFolder

# 24 test clips: 12 good, 12 poor
LABELS = [1.0] * 12 + [0.0] * 12
GOOD_SCORES = list(np.linspace(0.6, 0.95, 12)) + list(np.linspace(0.05, 0.5, 12))
CHANCE_SCORES = list(np.tile([0.2, 0.8], 6)) + list(np.tile([0.8, 0.2], 6))


def test_a_clear_model_is_adopted_when_the_project_has_none():
    verdict = judge(LABELS, GOOD_SCORES)
    assert verdict.adopt and verdict.beats_chance and verdict.auc.value == 1.0
    assert verdict.auc.low > 0.5 and "beats chance" in verdict.text()


def test_a_ci_that_includes_chance_is_never_adopted_on_its_own():
    verdict = judge(LABELS, CHANCE_SCORES)
    assert not verdict.adopt and not verdict.beats_chance
    assert verdict.auc.low <= 0.5 <= verdict.auc.high
    assert "includes 0.5" in verdict.text()
    # not even against a worse current model
    assert not judge(LABELS, CHANCE_SCORES, current_scores=[0.5] * 24,
                     has_current_model=True).adopt


def test_compared_with_the_current_model_on_the_same_clips():
    better_current = judge(LABELS, GOOD_SCORES[:11] + [0.3] + GOOD_SCORES[12:],
                           current_scores=GOOD_SCORES, has_current_model=True)
    assert better_current.beats_chance and not better_current.adopt
    assert better_current.current_auc == 1.0 and "does better" in better_current.reason
    tie = judge(LABELS, GOOD_SCORES, current_scores=GOOD_SCORES, has_current_model=True)
    assert tie.adopt and tie.current_auc == 1.0
    unscored = judge(LABELS, GOOD_SCORES, current_scores=None, has_current_model=True)
    assert not unscored.adopt and "cannot be compared" in unscored.reason


def test_no_test_clips_or_one_class_is_not_adopted(tmp_path):
    assert not judge_run(None).adopt
    assert not judge_run(tmp_path).adopt and judge_run(tmp_path).auc is None
    one_class = judge([1.0, 1.0, 1.0], [0.9, 0.8, 0.7])
    assert not one_class.adopt and "not known" in one_class.text()


def test_judge_run_reads_the_run_folder(tmp_path):
    folder = RunFolder(tmp_path)
    names = [f"p{i:02d}.dcm" for i in range(24)]
    folder.write_predictions([{"path": f"/clips/{n}", "label": y, "score": s}
                              for n, y, s in zip(names, LABELS, GOOD_SCORES)], {})
    assert judge_run(tmp_path).adopt
    current = dict(zip(names, GOOD_SCORES[::-1]))  # an inverted model: worse
    verdict = judge_run(tmp_path, current, has_current_model=True)
    assert verdict.adopt and verdict.current_auc == 0.0
    verdict = judge_run(tmp_path, {names[0]: 0.5}, has_current_model=True)  # not all scored
    assert not verdict.adopt and verdict.current_auc is None
