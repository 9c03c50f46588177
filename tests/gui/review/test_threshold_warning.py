"""Issue 21.6: the threshold panel says, before Save, when the held-out scores barely separate
good from poor clips (ROC AUC below 0.6), and says nothing when they do."""
from __future__ import annotations

import numpy as np

from echoquality_core.evaluation.threshold import MIN_AUC, ThresholdChoice, weak_auc_warning
from echoquality_gui.review.threshold_panel import ThresholdPanel

LABELS = [1, 0, 1, 0, 1, 0, 1, 0, 1, 0]
WEAK = [.61, .60, .42, .45, .55, .58, .40, .35, .52, .50]  # AUC 0.52
STRONG = [.9, .1, .8, .3, .7, .2, .95, .4, .6, .35]  # AUC 1


def test_weak_auc_is_named_and_a_good_one_is_not():
    text = weak_auc_warning(LABELS, WEAK)
    assert text is not None and "0.520" in text and f"{MIN_AUC:g}" in text
    assert weak_auc_warning(LABELS, STRONG) is None
    assert weak_auc_warning([1] * 4, [.1, .2, .3, .4]) is None  # one class: no AUC to judge


def test_panel_shows_the_warning_above_save_only_for_weak_scores(qtbot):
    panel = ThresholdPanel()
    qtbot.addWidget(panel)
    panel.show()
    rels = [f"c{i}.dcm" for i in range(10)]
    panel.set_choice(ThresholdChoice(rels, LABELS, WEAK, 0.5), "Out-of-fold scores")
    assert panel.auc_warning.isVisible() and "0.520" in panel.auc_warning.text()
    assert panel.save_button.isEnabled()  # warned, not forbidden
    panel.set_choice(ThresholdChoice(rels, LABELS, STRONG, 0.5), "Out-of-fold scores")
    assert not panel.auc_warning.isVisible() and panel.auc_warning.text() == ""
    panel.set_choice(None)
    assert not panel.auc_warning.isVisible()
    panel.wait_for_ci()
    assert np.isfinite(ThresholdChoice(rels, LABELS, WEAK, 0.5).stats()["accuracy"])
