"""``echoquality evaluate``: metrics, confidence intervals and plots of a model on the labelled
clips of a CSV (a run's test split by default)."""
from __future__ import annotations

import argparse
import math
from pathlib import Path

from echoquality_core.cli.common import add_trust, clip_progress, fail
from echoquality_core.cli.progress import finish


def add_parsers(sub: argparse._SubParsersAction) -> None:
    """Add ``evaluate`` to the echoquality command."""
    p = sub.add_parser(
        "evaluate", help="metrics and plots of a model on labelled clips",
        description="Score the labelled clips of a CSV and report accuracy, precision, recall, "
        "F1, ROC/PR AUC, Brier score and the confusion matrix; plots go to --out.",
    )
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--run", dest="run_id", metavar="RUN_ID",
                        help="MLflow run whose best checkpoint to use")
    source.add_argument("--model", type=Path, help="weights, checkpoint or TorchScript export")
    add_trust(p)
    p.add_argument("--tracking-uri", help="MLflow tracking URI (default: SQLite next to the CSV)")
    p.add_argument("--csv", type=Path, required=True, help="labels CSV (video_path, quality_score)")
    p.add_argument("--videos", type=Path, help="folder the CSV's paths are relative to "
                   "(default: the CSV's folder)")
    p.add_argument("--out", type=Path, default=Path("evaluation"),
                   help="folder for plots, metrics.json and predictions.csv (default evaluation)")
    p.add_argument("--threshold", type=float, help="default: the checkpoint's, else 0.3")
    p.add_argument("--all-clips", action="store_true",
                   help="with --run: every labelled clip, not only the run's test split "
                   "(training clips included: not a test measurement)")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--device", default="auto")
    p.add_argument("--cache", type=Path, metavar="DIR", help="cache of preprocessed clips")
    p.set_defaults(run=run_evaluate)


def run_evaluate(args: argparse.Namespace) -> int:
    import json
    import tempfile

    from echoquality_core.files.atomic import atomic_write
    from echoquality_core.evaluation.evaluate import evaluate_labels, save_evaluation_plots
    from echoquality_core.labels.store import LabelError
    from echoquality_core.runs.tracking import default_tracking_uri, download_checkpoint

    if not args.csv.is_file():
        return fail("evaluate", f"labels CSV not found: {args.csv}")
    with tempfile.TemporaryDirectory(prefix="echoquality-eval-") as tmp:
        try:
            uri = args.tracking_uri or default_tracking_uri(args.csv.resolve().parent)
            model = args.model or download_checkpoint(args.run_id, uri, tmp)
            only, source = _evaluation_scope(args, uri, Path(tmp))
            bar, progress = clip_progress("Scoring labelled clips")
            try:
                metrics, table = evaluate_labels(
                    args.csv, model, videos_dir=args.videos, threshold=args.threshold,
                    device=args.device, batch_size=args.batch_size, num_workers=args.workers,
                    cache_dir=args.cache, progress=progress,
                    trust_exported=args.trust_exported, only=only)
            except BaseException:
                finish(bar, failed=True)
                raise
            finally:
                finish(bar)
        except (OSError, ValueError, LabelError) as exc:
            return fail("evaluate", exc)
    from echoquality_core.data.patients import patient_groups
    from echoquality_core.evaluation.stats import ci_metrics, format_with_ci, metrics_with_ci

    records = metrics["records"]
    labels, scores = [r["label"] for r in records], [r["score"] for r in records]
    groups = patient_groups([r["file"] for r in records])
    estimates = metrics_with_ci(labels, scores, groups, metrics["threshold"])
    metrics |= ci_metrics(estimates)
    args.out.mkdir(parents=True, exist_ok=True)
    plots = save_evaluation_plots(metrics, args.out)
    with atomic_write(args.out / "predictions.csv", "w", newline="", encoding="utf-8") as fh:
        table.to_csv(fh, index=False)
    summary = {k: _no_nan(v) for k, v in metrics.items() if k != "records"}
    with atomic_write(args.out / "metrics.json", "w", encoding="utf-8") as fh:
        fh.write(json.dumps(summary, indent=2) + "\n")

    failed = int((table["error"] != "").sum())
    print(f"Evaluated {metrics['n']} labelled clip(s) ({source})"
          + (f" ({failed} unreadable, left out: see predictions.csv)" if failed else ""))
    print(format_with_ci(labels, scores, groups, metrics["threshold"],
                         source[0].upper() + source[1:], estimates))
    print(f"  {'f1':<21} {metrics['f1']:.3f}")
    (tn, fp), (fn, tp) = metrics["confusion_matrix"]
    print("Confusion matrix (rows: label, columns: predicted)")
    print(f"  {'':<6}{'poor':>8}{'good':>8}")
    print(f"  {'poor':<6}{tn:>8}{fp:>8}")
    print(f"  {'good':<6}{fn:>8}{tp:>8}")
    print(f"Plots, metrics.json and predictions.csv in {args.out.resolve()}")
    print("  " + ", ".join(p.name for p in plots))
    return 0


def _no_nan(value: object) -> object:
    """``value`` with NaN made None (NaN is not JSON), inside dicts and lists too."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _no_nan(v) for k, v in value.items()}
    return [_no_nan(v) for v in value] if isinstance(value, list) else value


def _evaluation_scope(args: argparse.Namespace, uri: str,
                      folder: Path) -> tuple[set[str] | None, str]:
    """(clip names to evaluate or None for all, plain words for what they are)."""
    if args.model:
        return None, "labelled clips of the CSV: make sure the model never trained on them"
    if args.all_clips:
        return None, ("ALL labelled clips, including the run's training and validation clips: "
                      "NOT a test measurement")
    from echoquality_core.runs.test_split import run_test_split

    return run_test_split(args.run_id, uri, folder), f"test split of run {args.run_id}"
