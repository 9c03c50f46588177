"""Decision threshold and score calibration: presets, the clips a threshold change flips,
reliability curve, temperature/Platt scaling, and saving the choice with the model.

A calibration maps a model score ``s`` to ``sigmoid(a * logit(s) + b)``: temperature scaling
fits ``a = 1/T`` (``b = 0``), Platt scaling fits both. It is stored in the checkpoint as
``{"method", "a", "b"}`` and ``decision.Decision`` applies it before the threshold, so a saved
threshold always refers to calibrated scores when a calibration is saved with it.
"""
from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from echoquality_core.decision import called_good, check_threshold, labelled_good, logit
from echoquality_core.evaluation.metrics import choose_threshold
from echoquality_core.labels.folder import ProjectFolder

log = logging.getLogger(__name__)

PRESETS = ("youden", "sensitivity_95", "specificity_95")
CALIBRATIONS = ("none", "temperature", "platt")


def _arrays(labels: Sequence[float], scores: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    y = labelled_good(np.asarray(labels, dtype=float))
    s = np.asarray(scores, dtype=float)
    if y.size != s.size:
        raise ValueError(f"{y.size} labels but {s.size} scores")
    return y, s


def threshold_preset(labels: Sequence[float], scores: Sequence[float], preset: str) -> float:
    """A threshold (clip is good if score >= threshold) chosen on labelled scores:
    ``youden`` maximises sensitivity + specificity; ``sensitivity_95`` is the highest threshold
    that still calls >= 95% of good clips good; ``specificity_95`` the lowest one that calls
    >= 95% of poor clips poor. Needs both classes."""
    y, s = _arrays(labels, scores)
    if not 0 < y.sum() < y.size:
        raise ValueError("a threshold preset needs both good and poor clips")
    if preset == "youden":
        return choose_threshold(y.astype(float), s, "youden")
    candidates = np.unique(np.r_[s, 1.0])
    sens = np.array([np.mean(s[y] >= t) for t in candidates])
    spec = np.array([np.mean(s[~y] < t) for t in candidates])
    if preset == "sensitivity_95":
        return float(candidates[sens >= 0.95].max())
    if preset == "specificity_95":
        return float(candidates[spec >= 0.95].min())
    raise ValueError(f"preset must be one of {PRESETS}, got {preset!r}")


def flipped(scores: Sequence[float], old: float, new: float) -> np.ndarray:
    """Indices of the clips whose call (score >= threshold) differs between two thresholds."""
    s = np.asarray(scores, dtype=float)
    return np.flatnonzero(called_good(s, old) != called_good(s, new))


def reliability_curve(labels: Sequence[float], scores: Sequence[float],
                      n_bins: int = 10) -> dict[str, np.ndarray]:
    """Equal-width score bins: ``edges``, mean score, share of good clips and clip count per
    bin (NaN mean/share for an empty bin)."""
    y, s = _arrays(labels, scores)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    which = np.clip(np.digitize(s, edges[1:-1]), 0, n_bins - 1)
    counts = np.bincount(which, minlength=n_bins)
    with np.errstate(invalid="ignore"):
        mean = np.bincount(which, weights=s, minlength=n_bins) / counts
        share = np.bincount(which, weights=y.astype(float), minlength=n_bins) / counts
    return {"edges": edges, "mean_score": mean, "fraction_good": share, "count": counts}


def fit_calibration(labels: Sequence[float], scores: Sequence[float],
                    method: str = "temperature") -> dict[str, Any] | None:
    """Fit ``method`` ("temperature", "platt"; "none" gives None) on held-out scores
    (out-of-fold or validation) by minimising the log loss."""
    if method == "none":
        return None
    if method not in CALIBRATIONS:
        raise ValueError(f"calibration must be one of {CALIBRATIONS}, got {method!r}")
    y, s = _arrays(labels, scores)
    if not 0 < y.sum() < y.size:
        raise ValueError("calibration needs both good and poor clips")
    z = logit(s)
    if method == "temperature":
        from scipy.optimize import minimize_scalar

        result = minimize_scalar(lambda log_a: _log_loss(y, z * math.exp(log_a)),
                                 bounds=(-5.0, 5.0), method="bounded")
        a, b = math.exp(result.x), 0.0
    else:
        from sklearn.linear_model import LogisticRegression

        model = LogisticRegression(C=1e6).fit(z.reshape(-1, 1), y.astype(int))
        a, b = float(model.coef_[0, 0]), float(model.intercept_[0])
    return {"method": method, "a": float(a), "b": float(b), "n": int(y.size)}


def _log_loss(y: np.ndarray, z: np.ndarray) -> float:
    return float(np.mean(np.logaddexp(0, -z) * y + np.logaddexp(0, z) * (~y)))


def save_decision(checkpoint: str | os.PathLike, threshold: float, *,
                  calibration: Mapping[str, Any] | None = None, source: str = "",
                  project_dir: str | os.PathLike | None = None,
                  tracking_uri: str | None = None) -> dict[str, Any]:
    """Make ``threshold`` (and ``calibration``) the model's: rewrite the checkpoint's
    ``threshold``/``calibration`` (atomically), write the project's decision file
    (``ProjectFolder.decision``) and, given a tracking URI and a checkpoint with a run id,
    record both in that MLflow run. Returns the decision written."""
    from echoquality_core.files.atomic import atomic_write
    from echoquality_core.model.checkpoint import write_decision

    path = Path(checkpoint)
    info = write_decision(path, check_threshold(threshold), calibration)
    decision = {"threshold": info["threshold"], "calibration": info["calibration"],
                "source": source, "model": path.name,
                "saved_at": datetime.now().astimezone().isoformat(timespec="seconds")}
    if project_dir is not None:
        target = ProjectFolder(project_dir).decision
        target.parent.mkdir(parents=True, exist_ok=True)
        with atomic_write(target, "w", encoding="utf-8") as fh:
            fh.write(json.dumps(decision, indent=2) + "\n")
    decision["recorded_in_mlflow"] = bool(
        tracking_uri and info.get("run_id")
        and _record_in_mlflow(tracking_uri, str(info["run_id"]), decision))
    return decision


def _record_in_mlflow(tracking_uri: str, run_id: str, decision: Mapping[str, Any]) -> bool:
    """Tag the model's run with the decision; False (logged) when the store or the run is not
    there (e.g. a checkpoint copied from another project): the checkpoint still has it."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    from echoquality_core.runs.tracking import quiet_mlflow

    if tracking_uri.startswith("sqlite:///") and not Path(tracking_uri[10:]).is_file():
        log.warning("threshold not recorded in MLflow: no store at %s", tracking_uri)
        return False
    quiet_mlflow()
    client = MlflowClient(tracking_uri)
    try:
        client.get_run(run_id)
    except MlflowException as exc:
        log.warning("threshold not recorded in MLflow: run %s not found (%s)", run_id,
                    str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
        return False
    client.set_tag(run_id, "saved_threshold", f"{decision['threshold']:.6f}")
    client.set_tag(run_id, "saved_threshold_source", decision["source"] or "manual")
    calibration = decision.get("calibration")
    client.set_tag(run_id, "calibration", json.dumps(calibration) if calibration else "none")
    return True


def read_project_decision(project_dir: str | os.PathLike) -> dict[str, Any] | None:
    """The project's saved decision (threshold, calibration, ...) or None."""
    path = ProjectFolder(project_dir).decision
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
