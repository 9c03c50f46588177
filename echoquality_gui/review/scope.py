"""What the Review tab measures: the model run's own test split (for a model without a run, its
scores on the labelled clips), or all labelled clips with out-of-fold scores from a
cross-validation of the project (one entry per ``crossval/<run>``). The choice is always named
in words, so test-split numbers and out-of-fold numbers are never mistaken for each other."""
from __future__ import annotations

import math
from pathlib import Path

from PySide6.QtCore import Signal
from PySide6.QtWidgets import QComboBox, QHBoxLayout, QLabel, QWidget

from echoquality_core.labels.folder import ProjectFolder
from echoquality_core.train.folds import read_oof

MODEL_SCOPE = "Test split of the model's run"
MODEL_SCOPE_NO_RUN = "Labelled clips, scored by the model (no training run)"


def oof_scored(oof_csv: Path, relative) -> tuple[dict[str, tuple[float, float]], dict[str, str]]:
    """({rel: (label, out-of-fold score)}, {rel: anonymous patient group}) of an out-of-fold
    table; ``relative(path)`` maps its video_path to the project's rel path (None: skip)."""
    scored, groups = {}, {}
    for row in read_oof(oof_csv):
        rel = relative(row["video_path"])
        if rel is not None and math.isfinite(row["score"]):
            scored[rel] = (row["label"], row["score"])
            groups[rel] = row["group"]
    return scored, groups


class ReviewScope(QWidget):
    """A combo box: the model's test split, or one cross-validation's out-of-fold scores."""

    changed = Signal()

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.combo = QComboBox()
        self.combo.setToolTip("Which clips the numbers, plots and lists below are about")
        self.combo.addItem(MODEL_SCOPE, None)
        self.combo.currentIndexChanged.connect(lambda _: self.changed.emit())
        row = QHBoxLayout(self)
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(QLabel("Scope"))
        row.addWidget(self.combo, 1)

    def update_entries(self, project_dir: Path | None, run_test_split: bool) -> None:
        """List the model's scope (named for a run's test split, or for the labelled clips
        when the model has no run) and the project's cross-validations (keeping the current
        choice if it is there)."""
        current = self.oof_csv()
        self.combo.blockSignals(True)
        self.combo.clear()
        self.combo.addItem(MODEL_SCOPE if run_test_split else MODEL_SCOPE_NO_RUN, None)
        for oof in ProjectFolder(project_dir).crossvals() if project_dir is not None else []:
            self.combo.addItem(f"All labelled clips · out-of-fold scores of cross-validation "
                               f"{oof.parent.name}", str(oof))
        index = self.combo.findData(str(current)) if current is not None else 0
        self.combo.setCurrentIndex(max(0, index))
        self.combo.blockSignals(False)
        if current is not None and index < 0:
            self.changed.emit()

    def oof_csv(self) -> Path | None:
        """The chosen out-of-fold table; None for the model's test split."""
        data = self.combo.currentData()
        return Path(data) if data else None

    def choose(self, oof_csv: Path | None) -> None:
        index = self.combo.findData(str(oof_csv)) if oof_csv is not None else 0
        self.combo.setCurrentIndex(max(0, index))
