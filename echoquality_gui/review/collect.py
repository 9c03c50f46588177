"""What the Review tab reviews: the session's model on the run's test split, on the labelled
clips, or a cross-validation's out-of-fold scores (a core ``ReviewSet``; its metrics are
numpy, no scikit-learn in the window)."""
from __future__ import annotations

import json
from pathlib import Path

from echoquality_core.decision import TRAINING_THRESHOLD, Decision
from echoquality_core.evaluation.review import ReviewSet, build_review, read_run_predictions
from echoquality_core.labels.store import LabelError
from echoquality_core.runs.folder import RunFolder
from echoquality_gui.common.session import Session
from echoquality_gui.review.scope import oof_scored


def has_run_test_split(session: Session) -> bool:
    """True when the session's model came from a training run whose test split was recorded
    (then the model's scope is that split, else its scores on the labelled clips)."""
    return session.run_dir is not None and RunFolder(session.run_dir).predictions.is_file()


def collect_review(session: Session, oof: Path | None = None) -> ReviewSet | None:
    """What the Review tab shows: with ``oof`` (a cross-validation's out-of-fold table) all
    labelled clips with their out-of-fold scores; else, for the session's model, the run's test
    split when the model came from a training run, else its scores on the labelled clips."""
    project, run_dir = session.project, session.run_dir
    if project is None or (session.model_path is None and oof is None):
        return None

    def rel(path: str) -> str | None:
        try:
            return project.store.relative(path)
        except LabelError:
            return None

    if oof is not None:
        scored, groups = oof_scored(oof, rel)
        decision = (Decision(session.threshold, session.calibration)  # raw scores, read as the
                    if session.model_path is not None  # model's decision reads its own
                    else Decision(_oof_threshold(oof)))
        source = (f"All {len(scored)} labelled clips · out-of-fold scores of cross-validation "
                  f"{oof.parent.name} (each scored by a model that never trained on it)")
        rs = build_review(scored, decision, source, {r: project.label(r) for r in scored})
        rs.groups = groups
        return rs

    if has_run_test_split(session):
        recorded, threshold = read_run_predictions(Path(run_dir))
        scored = {r: v for p, v in recorded.items() if (r := rel(p)) is not None}
        decision = (Decision(session.threshold, session.calibration)  # the run's raw scores
                    if session.calibration  # as the calibrated model reads them
                    else Decision(session.threshold if threshold is None else threshold))
        source = (f"Run {Path(run_dir).name} · test split, {len(scored)} clips it never trained "
                  "on (scores from the run, labels as in the CSV now)")
    else:
        scored = {r: (project.label(r).quality_score, s) for r, s in session.scores.items()
                  if project.label(r) is not None}
        decision = Decision(session.threshold)  # the app's scores come calibrated
        source = (f"Model {session.model_path.name} · its scores on the {len(scored)} labelled "
                  "clips (no training run: these may include clips it was trained on)")
    labels = {r: project.label(r) for r in scored}
    return build_review(scored, decision, source, labels)


def _oof_threshold(oof: Path) -> float:
    """The cross-validation's threshold (median of its folds'), else the training default."""
    try:
        return float(json.loads((oof.parent / "summary.json").read_text())["threshold"])
    except (OSError, ValueError, KeyError, TypeError):
        return TRAINING_THRESHOLD
