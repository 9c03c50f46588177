"""The label-noise queue: labelled clips whose label the model's out-of-fold score disputes.

cleanlab does the work (the standard library for finding label errors, "confident learning"):
``get_label_quality_scores`` ranks every clip (lowest quality = most likely mislabelled; the
self-confidence of the given label) and ``find_label_issues`` flags the clips it estimates to be
label errors from the out-of-fold probabilities. Scores must be out-of-fold (or at least
held-out): a model's scores on its own training clips agree with their labels, wrong or not.
"""
from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from echoquality_core.decision import labelled_good

log = logging.getLogger(__name__)

ISSUE_COLUMNS = ("rank", "video_path", "label", "score", "label_quality", "flagged")


def rank_label_issues(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Rows with ``video_path``, ``label`` (0..1, binarised at 0.5) and ``score`` (the
    out-of-fold probability of "good") ranked most-likely-mislabelled first; each result has
    :data:`ISSUE_COLUMNS` (``rank`` 1-based, ``flagged``: cleanlab's find_label_issues)."""
    from cleanlab.filter import find_label_issues
    from cleanlab.rank import get_label_quality_scores

    if not rows:
        return []
    labels = np.array([labelled_good(float(r["label"])) for r in rows], dtype=int)
    scores = np.clip(np.array([float(r["score"]) for r in rows]), 0.0, 1.0)
    if labels.min() == labels.max():
        raise ValueError("the label-noise queue needs both good and poor labelled clips")
    pred_probs = np.column_stack([1.0 - scores, scores])
    quality = get_label_quality_scores(labels, pred_probs, method="self_confidence")
    # n_jobs=1: cleanlab's default forks a process pool; forked from the app (threads running)
    # the child can hang on a lock it copied held, and a few hundred clips need no pool
    flagged = find_label_issues(labels, pred_probs, filter_by="prune_by_noise_rate", n_jobs=1)
    order = np.argsort(quality, kind="mergesort")
    return [{"rank": rank, "video_path": rows[i]["video_path"], "label": float(rows[i]["label"]),
             "score": float(scores[i]), "label_quality": float(quality[i]),
             "flagged": bool(flagged[i])}
            for rank, i in enumerate(order, start=1)]


def write_label_issues(path: str | os.PathLike, issues: Sequence[Mapping[str, Any]]) -> Path:
    """Write the ranked queue as CSV (atomically)."""
    from echoquality_core.files.atomic import write_csv_rows

    return write_csv_rows(path, ISSUE_COLUMNS, (
        {**row, "label": f"{row['label']:g}", "score": f"{row['score']:.6f}",
         "label_quality": f"{row['label_quality']:.6f}",
         "flagged": "yes" if row["flagged"] else "no"} for row in issues))


REVIEWED_TAG = "reviewed"


def resolve_issue(target: Any, rel: str, *, flip: bool, rater: str | None) -> float:
    """Keep (``flip=False``) or flip a disputed label: it is written again with the rater, the
    time and the issue tag ``reviewed``. ``target``: a Project (undoable) or a LabelStore.
    Returns the label now."""
    label = target.label(rel) if hasattr(target, "set_label") else target.get(rel)
    if label is None:
        raise ValueError(f"{rel}: not labelled")
    score = float(label.quality_score)
    new = (0.0 if labelled_good(score) else 1.0) if flip else score
    issues = tuple(label.issues) + (() if REVIEWED_TAG in label.issues else (REVIEWED_TAG,))
    if hasattr(target, "set_label"):
        target.set_label(rel, new, rater=rater, issues=issues, notes=label.notes)
    else:
        target.set(rel, new, rater=rater, issues=issues, notes=label.notes)
    return new
