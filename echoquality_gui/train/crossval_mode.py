"""The Train tab's "Cross-validate" mode: one checkbox and the number of folds.

Checked, the Train button runs a patient-grouped k-fold cross-validation (core
``CrossValidator`` in the training child process) instead of one training run: every labelled
clip gets an out-of-fold score, which the Review tab shows ("All labelled clips, out-of-fold").
"""
from __future__ import annotations

from typing import Any

from PySide6.QtWidgets import QCheckBox, QHBoxLayout, QSpinBox, QWidget

from echoquality_core.train.events import FoldStart


class CrossValMode(QWidget):
    """Checkbox "Cross-validate" + folds; ``values()`` gives the settings it adds."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.enabled = QCheckBox("Cross-validate")
        self.enabled.setToolTip(
            "Train one model per fold (patients kept together, good/poor spread evenly) so that "
            "every labelled clip is scored by a model that never trained on it. Takes as many "
            "trainings as folds; the Review tab then shows all clips with out-of-fold scores "
            "and a list of possible label errors.")
        self.folds = QSpinBox()
        self.folds.setRange(2, 20)
        self.folds.setValue(5)
        self.folds.setSuffix(" folds")
        self.folds.setToolTip("How many parts the patients are split into (5 is usual)")
        self.folds.setEnabled(False)
        self.enabled.toggled.connect(self.folds.setEnabled)
        row = QHBoxLayout(self)
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(self.enabled)
        row.addWidget(self.folds)
        row.addStretch(1)

    def values(self) -> dict[str, Any]:
        """``{"crossval_folds": k}`` when checked, else nothing."""
        return {"crossval_folds": self.folds.value()} if self.enabled.isChecked() else {}


def fold_text(event: FoldStart) -> str:
    """"Fold 2/5" (with the repeat when there are several)."""
    text = f"Fold {event.fold}/{event.n_folds}"
    return text + (f" (repeat {event.repeat}/{event.n_repeats})" if event.n_repeats > 1 else "")


def crossval_summary(end: Any) -> str:
    """Lines about a finished cross-validation for the Train tab's Result box."""
    if end.cancelled:
        return "Cross-validation cancelled: nothing was kept."
    lines = [f"Cross-validation: {end.folds_done} of {end.n_folds} folds done"
             + (" (stopped)" if end.stopped else "") + "."]
    if end.error is not None:
        lines.append(f"Failed ({end.error.kind}): {end.error.message}")
    m, ci = end.test_metrics, end.test_metrics.get("ci", {})
    for key, name in (("roc_auc", "ROC AUC"), ("sensitivity", "Sensitivity"),
                      ("specificity", "Specificity"), ("brier", "Brier")):
        if isinstance(m.get(key), float) and key in ci:
            lines.append(f"{name} {m[key]:.3f} (95% CI {ci[key][0]:.3f}-{ci[key][1]:.3f})")
    if end.oof_csv is not None:
        lines.append(f"Out-of-fold scores of {end.split_sizes.get('out_of_fold', 0)} clips: "
                     f"{end.oof_csv.parent.name} (Review tab, scope 'All labelled clips')")
    if end.run_id:
        lines.append(f"MLflow parent run: {end.run_id}")
    return "\n".join(lines)
