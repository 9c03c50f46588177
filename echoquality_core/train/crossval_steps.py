"""The steps of one cross-validation (see ``crossval.py``): clips decoded once, folds, one
Trainer run per fold nested under a parent MLflow run, the out-of-fold table and its metrics.
Each step takes the ``CrossValidator`` (``cv``: its settings, folder, events and stop flags);
this module does not import it, so ``crossval`` -> ``crossval_steps`` -> ``folds`` runs one way."""
from __future__ import annotations

import dataclasses
import logging
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from echoquality_core.data.patients import patient_group
from echoquality_core.labels.folder import OOF_FILE
from echoquality_core.train.events import CrossValEnd, TrainEnd, TrainError
from echoquality_core.decision import TRAINING_THRESHOLD
from echoquality_core.train.folds import make_folds, summary_json, write_fold_split, write_oof

log = logging.getLogger(__name__)


def prepare_records(cv: Any) -> list[dict[str, Any]]:
    """Usable labelled clips (decoded into the shared cache here, once for all folds) with
    their patient keys; unreadable clips are reported (a warning) and left out."""
    from echoquality_core.data.clips import ClipCache, prepare_training_data

    videos = None
    if cv.config.videos_dir:
        videos = Path(cv.config.videos_dir).expanduser()
        videos = videos if videos.is_absolute() else cv.project_dir / videos
    records, failures = prepare_training_data(
        cv.csv_path, videos, ClipCache(cv.cache_dir, cv.config.preprocess),
        lambda done, total, p: cv.progress(done, total, Path(p).name if p else "decoding"),
        lambda: cv._cancel.is_set() or cv._stop.is_set())
    if failures:
        cv._emit(TrainError("data", f"{len(failures)} clip(s) could not be used and were left "
                            "out:\n" + "\n".join(f"  {rel}: {m}" for rel, m in failures),
                            fatal=False))
    return records


def run_crossval(cv: Any) -> CrossValEnd:
    """Prepare, fold, train every fold, write the out-of-fold table; the CrossValEnd."""
    records = prepare_records(cv)
    if cv._cancel.is_set() or cv._stop.is_set():
        return CrossValEnd(None, {}, None, cancelled=cv._cancel.is_set(),
                           stopped=not cv._cancel.is_set(), n_folds=cv.n_folds)
    plans = []
    for repeat in range(1, cv.repeats + 1):
        folds, method = make_folds(records, cv.n_folds, seed=cv.config.seed + repeat - 1)
        plans.append((repeat, folds, method))
    cv.run_dir.mkdir(parents=True, exist_ok=True)
    with _ParentRun(cv, plans[0][2], len(records)) as parent:
        end = _train_folds(cv, records, plans, parent.run_id)
        parent.finish(end)
    return end


def _train_folds(cv: Any, records: list[dict], plans: list,
                 parent_run_id: str | None) -> CrossValEnd:
    scores: dict[int, list[float]] = {}
    first: dict[int, tuple[int, float]] = {}  # clip -> (fold, threshold) of the first repeat
    thresholds, done, stopped = [], 0, False
    by_path = {r["path"]: i for i, r in enumerate(records)}
    for repeat, folds, _ in plans:
        for fold, test in enumerate(folds, start=1):
            name = (f"{cv.run_name}-r{repeat}-f{fold}" if cv.repeats > 1
                    else f"{cv.run_name}-f{fold}")
            split = cv.run_dir / "splits" / f"{name}.csv"
            sizes = write_fold_split(split, records, test, cv.val_fraction,
                                     cv.config.seed + fold)
            cv.fold_started(fold, repeat, sizes)
            end = cv.train_fold(cv.fold_config(split, name, parent_run_id))
            if end.cancelled or cv._cancel.is_set():
                return CrossValEnd(None, {}, parent_run_id, cancelled=True, n_folds=cv.n_folds,
                                   folds_done=done)
            if end.stopped and end.best_checkpoint is None and end.error is None:
                stopped = True  # stopped before this fold's first epoch ended: nothing kept
                break
            if end.error is not None or end.run_dir is None:
                return CrossValEnd(None, {}, parent_run_id, error=end.error or TrainError(
                    "error", f"fold {fold} ended without a model"), n_folds=cv.n_folds,
                    folds_done=done, run_dir=cv.run_dir)
            for rel, score in _fold_scores(end):
                i = by_path[rel]
                scores.setdefault(i, []).append(score)
                first.setdefault(i, (fold, end.threshold))
            thresholds.append(end.threshold)
            done += 1
            if end.stopped or cv._stop.is_set():
                stopped = True
                break
        if stopped:
            break
    return _finish(cv, records, scores, first, thresholds, done, stopped, parent_run_id)


def _fold_scores(end: TrainEnd) -> list[tuple[str, float]]:
    import csv

    path = Path(end.run_dir) / "test_predictions.csv"
    with open(path, newline="", encoding="utf-8") as fh:
        return [(row["video_path"], float(row["score"])) for row in csv.DictReader(fh)]


def _finish(cv: Any, records: list[dict], scores: dict[int, list[float]],
            first: dict[int, tuple[int, float]], thresholds: list[float], done: int,
            stopped: bool, parent_run_id: str | None) -> CrossValEnd:
    from echoquality_core.evaluation.stats import ci_metrics, describe_basis, metrics_with_ci

    group_ids = _anonymous_groups(records)
    rows = [{"video_path": records[i]["path"], "label": float(records[i]["label"]),
             "score": statistics.fmean(scores[i]), "fold": first[i][0],
             "threshold": first[i][1], "group": group_ids[i], "n_scores": len(scores[i])}
            for i in sorted(scores)]
    oof = write_oof(cv.run_dir / OOF_FILE, rows)
    threshold = statistics.median(thresholds) if thresholds else TRAINING_THRESHOLD
    labels = [r["label"] for r in rows]
    metrics: dict[str, Any] = ci_metrics(metrics_with_ci(
        labels, [r["score"] for r in rows], [r["group"] for r in rows], threshold)) if rows else {}
    basis = describe_basis(labels, [r["group"] for r in rows], "Out-of-fold scores")
    summary_json(cv.run_dir / "summary.json", {
        "n_folds": cv.n_folds, "repeats": cv.repeats, "folds_done": done, "stopped": stopped,
        "threshold": threshold, "fold_thresholds": thresholds, "basis": basis,
        "n_clips": len(rows), "n_labelled_usable": len(records), "metrics": metrics,
        "parent_run_id": parent_run_id, "preprocess": dataclasses.asdict(cv.config.preprocess)})
    return CrossValEnd(None, metrics, parent_run_id, stopped=stopped,
                       split_sizes={"out_of_fold": len(rows)}, threshold=threshold,
                       run_dir=cv.run_dir, oof_csv=oof, n_folds=cv.n_folds, folds_done=done)


def _anonymous_groups(records: Sequence[dict]) -> list[str]:
    """p001, p002, ... per patient (numbered in order of the sorted keys; no key leaves)."""
    keys = sorted({patient_group(r) for r in records})
    number = {k: f"p{n:03d}" for n, k in enumerate(keys, start=1)}
    return [number[patient_group(r)] for r in records]


class _ParentRun:
    """The parent MLflow run of a cross-validation (MlflowClient, so that the folds' own
    fluent runs can nest under it); a no-op without MLflow."""

    def __init__(self, cv: Any, method: str, n_clips: int):
        self.cv, self.method, self.n_clips = cv, method, n_clips
        self.run_id: str | None = None
        self.client: Any = None
        self.status = "FINISHED"

    def __enter__(self) -> _ParentRun:
        c = self.cv.config
        if not c.use_mlflow:
            return self
        from mlflow import MlflowClient

        from echoquality_core.runs.tracking import (
            _experiment_id,
            default_artifact_location,
            default_tracking_uri,
            flatten,
            quiet_mlflow,
        )

        quiet_mlflow()
        uri = c.tracking_uri or default_tracking_uri(self.cv.project_dir)
        artifacts = default_artifact_location(self.cv.project_dir) if uri.startswith(
            ("sqlite:", "file:")) or "://" not in uri else None
        self.client = MlflowClient(uri)
        run = self.client.create_run(
            _experiment_id(self.client, c.experiment, artifacts), run_name=self.cv.run_name,
            tags={"echoquality.kind": "crossval", "fold_method": self.method})
        self.run_id = run.info.run_id
        from echoquality_core.train.config import loggable_config

        params = flatten(loggable_config(c)) | {
            "n_folds": str(self.cv.n_folds), "repeats": str(self.cv.repeats),
            "n_clips": str(self.n_clips)}
        for key, value in params.items():
            self.client.log_param(self.run_id, key, value)
        return self

    def finish(self, end: CrossValEnd) -> None:
        self.status = "KILLED" if end.cancelled else "FAILED" if end.error else "FINISHED"
        if self.client is None or end.cancelled:
            return
        ci = end.test_metrics.get("ci", {})
        for key, value in end.test_metrics.items():
            if isinstance(value, float) and value == value:
                self.client.log_metric(self.run_id, f"oof_{key}", value)
                low, high = ci.get(key, (None, None))
                if low is not None and low == low:
                    self.client.log_metric(self.run_id, f"oof_{key}_ci_low", low)
                    self.client.log_metric(self.run_id, f"oof_{key}_ci_high", high)
        self.client.log_metric(self.run_id, "threshold", end.threshold)
        self.client.set_tag(self.run_id, "crossval_dir", self.cv.run_name)
        for name in (OOF_FILE, "summary.json"):
            if (self.cv.run_dir / name).is_file():
                self.client.log_artifact(self.run_id, str(self.cv.run_dir / name))

    def __exit__(self, exc_type, exc, tb) -> None:
        if self.client is None:
            return
        self.client.set_terminated(self.run_id, "FAILED" if exc_type is not None else self.status)
