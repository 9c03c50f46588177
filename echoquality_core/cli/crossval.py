"""CLI of cross-validation and its uses: ``echoquality crossval``, ``label-issues`` and
``threshold``."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from echoquality_core.cli.common import fail

_CV_OPTIONS = ("epochs", "batch_size", "learning_rate", "num_unfrozen_layers", "n_frames",
               "stride", "size", "device", "seed", "tracking_uri", "experiment", "use_mlflow",
               "augment", "loss", "class_weighting", "scheduler")



def add_parsers(sub: argparse._SubParsersAction) -> None:
    """Add ``crossval``, ``label-issues`` and ``threshold`` to the echoquality command."""
    _add_crossval(sub)
    _add_label_issues(sub)
    _add_threshold(sub)


def _add_crossval(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "crossval", help="patient-grouped k-fold cross-validation: an out-of-fold score per clip",
        description="Train one model per fold (patients grouped, labels stratified), each an "
        "MLflow run nested under one parent run; writes <project>/crossval/<run>/oof_scores.csv "
        "and prints metrics with patient-level bootstrap 95% CIs.")
    p.add_argument("--csv", type=Path, required=True, help="labels CSV (video_path, quality_score)")
    p.add_argument("--videos", type=Path, help="folder with the clips")
    p.add_argument("--weights", type=Path, help="starting weights, e.g. video_quality_model.pt")
    p.add_argument("--config", type=Path, help="TOML file with training settings")
    p.add_argument("--folds", type=int, default=5, help="number of folds (default 5)")
    p.add_argument("--repeats", type=int, default=1,
                   help="repeat with other fold assignments; scores are averaged (default 1)")
    p.add_argument("--val-fraction", type=float, default=0.2,
                   help="share of each fold's training patients used for validation (0.2)")
    p.add_argument("--name", help="run name (default cv-<date>-<time>-<id>)")
    p.add_argument("--epochs", type=int)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--lr", type=float, dest="learning_rate")
    p.add_argument("--layers", type=int, dest="num_unfrozen_layers")
    p.add_argument("--frames", type=int, dest="n_frames")
    p.add_argument("--stride", type=int)
    p.add_argument("--size", type=int, help="model input size (default 112)")
    p.add_argument("--loss", choices=("bce", "focal"))
    p.add_argument("--class-weighting", action="store_true", default=None)
    p.add_argument("--scheduler", choices=("plateau", "cosine_restarts", "none"))
    p.add_argument("--augment", action="store_true", default=None)
    p.add_argument("--device")
    p.add_argument("--seed", type=int)
    p.add_argument("--tracking-uri")
    p.add_argument("--experiment")
    p.add_argument("--no-mlflow", action="store_false", dest="use_mlflow", default=None)
    p.set_defaults(run=run_crossval)


def _add_crossval_source(p: argparse.ArgumentParser) -> None:
    """``--crossval RUN`` and ``--project``: where the out-of-fold scores are."""
    p.add_argument("--crossval", required=True, metavar="RUN",
                   help="cross-validation run name (under <project>/crossval), its folder, "
                   "or its oof_scores.csv")
    p.add_argument("--project", type=Path, default=Path("."), help="project folder (default .)")


def _add_label_issues(sub: argparse._SubParsersAction) -> None:
    q = sub.add_parser(
        "label-issues", help="labelled clips whose label the out-of-fold score disputes",
        description="Rank labelled clips by cleanlab's label quality of their out-of-fold "
        "scores (most likely mislabelled first); cleanlab's find_label_issues flags the ones "
        "it estimates to be label errors.")
    _add_crossval_source(q)
    q.add_argument("--out", type=Path, required=True, help="CSV to write the ranked queue to")
    q.add_argument("--top", type=int, default=10, help="rows to print (default 10)")
    q.set_defaults(run=run_label_issues)


def _add_threshold(sub: argparse._SubParsersAction) -> None:
    t = sub.add_parser(
        "threshold", help="make a threshold (and calibration) the model's, from held-out scores",
        description="Choose the decision threshold on out-of-fold scores (a preset or a "
        "number), optionally fit a calibration, and save both into the checkpoint, the "
        "project (.echoquality/decision.json) and the model's MLflow run; score uses them.")
    _add_crossval_source(t)
    t.add_argument("--model", type=Path, required=True, help="checkpoint (best.pt) to update")
    t.add_argument("--preset", default="youden",
                   help="youden, sensitivity_95, specificity_95, or a number in 0..1")
    t.add_argument("--calibrate", choices=("none", "temperature", "platt"), default="none")
    t.add_argument("--tracking-uri", help="MLflow store of the model's run (default: project's)")
    t.add_argument("--force", action="store_true",
                   help="save even when the scores were made with other preprocessing "
                   "settings (frames, size, ...) than the model's")
    t.set_defaults(run=run_threshold)


def run_crossval(args: argparse.Namespace) -> int:
    from echoquality_core.jobs.launch import make_trainer
    from echoquality_core.train.trainer import TrainConfig

    options = {k: getattr(args, k) for k in _CV_OPTIONS if getattr(args, k, None) is not None}
    paths = {"annotations_csv": args.csv, "videos_dir": args.videos, "model_weights": args.weights}
    options |= {k: str(v.resolve()) for k, v in paths.items() if v is not None}
    if args.name:
        options["run_name"] = args.name
    if not args.csv.is_file():
        return fail("crossval", f"labels CSV not found: {args.csv}")
    try:
        config = (TrainConfig.from_toml(args.config, **options) if args.config
                  else TrainConfig(**options))
        cv = make_trainer(config, _printer(), folds=args.folds, repeats=args.repeats,
                          val_fraction=args.val_fraction)
    except (OSError, ValueError, TypeError) as exc:
        return fail("crossval", exc)
    end = cv.run()
    if end.error is not None and end.folds_done == 0 and end.error.kind == "data":
        return fail("crossval", end.error.message)
    if end.cancelled:
        print("Cross-validation cancelled; nothing was kept.")
        return 1
    if end.error is not None:
        print(f"Error ({end.error.kind}): {end.error.message}", file=sys.stderr)
    if end.oof_csv is None:
        return 1
    print(_oof_report(end.oof_csv, end.threshold))
    print(f"Out-of-fold scores: {end.oof_csv}")
    if end.run_id:
        print(f"MLflow parent run {end.run_id} ({end.folds_done} fold run(s) nested under it)")
    return 0 if end.error is None else 1


def _printer():
    from echoquality_core.train.events import EpochEnd, FoldStart, TrainError

    where = {"fold": ""}

    def show(event: Any) -> None:
        if isinstance(event, FoldStart):
            rep = f" (repeat {event.repeat}/{event.n_repeats})" if event.n_repeats > 1 else ""
            where["fold"] = f"fold {event.fold}/{event.n_folds}{rep}"
            print(f"{where['fold']}: train {event.sizes.get('train')}, val "
                  f"{event.sizes.get('val')}, held out {event.sizes.get('test')} clips",
                  file=sys.stderr)
        elif isinstance(event, EpochEnd):
            print(f"{where['fold']}, epoch {event.epoch}: train loss {event.train_loss:.4f}, "
                  f"val loss {event.val_loss:.4f}", file=sys.stderr)
        elif isinstance(event, TrainError) and not event.fatal:  # fatal: reported at the end
            print(f"Warning: {event.message}", file=sys.stderr)

    return show


def _oof_report(oof_csv: Path, threshold: float) -> str:
    from echoquality_core.evaluation.stats import format_with_ci
    from echoquality_core.train.folds import read_oof

    rows = read_oof(oof_csv)
    return format_with_ci([r["label"] for r in rows], [r["score"] for r in rows],
                          [r["group"] for r in rows], threshold, "Out-of-fold scores")


def run_label_issues(args: argparse.Namespace) -> int:
    from echoquality_core.evaluation.label_issues import rank_label_issues, write_label_issues
    from echoquality_core.labels.folder import ProjectFolder
    from echoquality_core.train.folds import read_oof

    try:
        oof = ProjectFolder(args.project).find_crossval(args.crossval)
        issues = rank_label_issues(read_oof(oof))
    except (OSError, ValueError) as exc:
        return fail("label-issues", exc)
    write_label_issues(args.out, issues)
    flagged = sum(r["flagged"] for r in issues)
    print(f"{len(issues)} labelled clip(s) ranked; cleanlab flags {flagged} as likely "
          "label error(s)")
    print(f"{'rank':>4}  {'label':>5}  {'oof score':>9}  {'quality':>7}  flag  clip")
    for r in issues[:max(0, args.top)]:
        print(f"{r['rank']:>4}  {r['label']:>5g}  {r['score']:>9.3f}  {r['label_quality']:>7.3f}"
              f"  {'yes ' if r['flagged'] else '    '}  {r['video_path']}")
    print(f"Queue: {args.out.resolve()}")
    return 0


def run_threshold(args: argparse.Namespace) -> int:
    from echoquality_core.decision import apply_calibration
    from echoquality_core.evaluation.calibration import (
        fit_calibration,
        save_decision,
        threshold_preset,
    )
    from echoquality_core.evaluation.stats import format_with_ci
    from echoquality_core.evaluation.threshold import weak_auc_warning
    from echoquality_core.labels.folder import ProjectFolder
    from echoquality_core.runs.tracking import default_tracking_uri
    from echoquality_core.train.folds import preprocess_mismatch, read_oof

    try:
        oof = ProjectFolder(args.project).find_crossval(args.crossval)
        mismatch = preprocess_mismatch(oof, args.model)
        if mismatch and not args.force:
            return fail("threshold", f"{mismatch}; --force saves it anyway")
        rows = read_oof(oof)
        labels = [r["label"] for r in rows]
        for warning in (mismatch, weak_auc_warning(labels, [r["score"] for r in rows])):
            if warning:
                print(f"Warning: {warning}", file=sys.stderr)
        calibration = fit_calibration(labels, [r["score"] for r in rows], args.calibrate)
        scores = apply_calibration([r["score"] for r in rows], calibration)
        try:
            value = float(args.preset)
        except ValueError:
            value = threshold_preset(labels, scores, args.preset)
        uri = args.tracking_uri or default_tracking_uri(args.project)
        decision = save_decision(args.model, value, calibration=calibration,
                                 source=f"crossval {args.crossval}: {args.preset}",
                                 project_dir=args.project, tracking_uri=uri)
    except (OSError, ValueError, KeyError) as exc:
        return fail("threshold", exc)
    cal = decision["calibration"]
    print(f"Threshold {decision['threshold']:.3f} saved in {args.model.name}"
          + (f" with {cal['method']} calibration (a={cal['a']:.3f}, b={cal['b']:.3f})"
             if cal else ""))
    print(format_with_ci(labels, scores, [r["group"] for r in rows], decision["threshold"],
                         "Out-of-fold scores" + (" (calibrated)" if cal else "")))
    return 0


