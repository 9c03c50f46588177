"""The `echoquality` command: demo, train, evaluate, score, gradcam, export (the desktop app is
`echoquality-gui`; the core never imports the GUI).

Each subcommand is a pair `_add_<name>(subparsers)` / `_run_<name>(args)`; heavy imports happen
inside `_run_*` so `echoquality --help` stays fast.
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from echoquality_core.progress import finish, progress_bar, working


def _add_demo(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="write a synthetic demo project (DICOM clips + labels CSV)")
    p.add_argument("path", type=Path, help="folder to write the demo project into")
    p.add_argument("--clips", type=int, default=40, help="number of clips (default 40)")
    p.add_argument("--frames", type=int, default=48, help="frames per clip (default 48)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--force", action="store_true", help="rewrite an existing demo project (its labels are lost)"
    )
    p.set_defaults(run=_run_demo)


def _run_demo(args: argparse.Namespace) -> int:
    from echoquality_core.demo import write_demo_project

    existing = args.path / "labels.csv"
    if existing.exists() and not args.force:
        print(f"Demo project already exists at {args.path.resolve()} (labels kept; --force rewrites it)")
        print(f"Labels CSV: {existing.resolve()}")
        return 0
    bar, progress = _clip_progress("Writing demo clips")
    try:
        csv_path = write_demo_project(args.path, n_clips=args.clips, n_frames=args.frames,
                                      seed=args.seed, progress=progress)
    finally:
        bar.close()
    print(f"Demo project written to {args.path.resolve()}")
    print(f"Labels CSV: {csv_path.resolve()}")
    return 0


def _add_train(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        help="fine-tune the quality model on labelled clips (tracked in MLflow)",
        description="Fine-tune the quality model. Settings come from --config (TOML, keys as in "
        "TrainConfig), then the options given here.",
    )
    p.add_argument("--csv", type=Path, help="labels CSV (video_path, quality_score)")
    p.add_argument("--videos", type=Path, help="folder with the clips (VIDEOS_DIR)")
    p.add_argument("--weights", metavar="NAME|FILE",
                   help="starting weights: echoprime-quality, kinetics400, none, or a weights "
                   "file (see `echoquality weights list`; a named one is downloaded if needed)")
    p.add_argument("--config", type=Path, help="TOML file with training settings")
    p.add_argument("--save-dir", type=Path, help="where runs are saved (default trained_models)")
    p.add_argument("--epochs", type=int)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--lr", type=float, dest="learning_rate", help="learning rate")
    p.add_argument("--weight-decay", type=float)
    p.add_argument("--layers", type=int, dest="num_unfrozen_layers",
                   help="number of final blocks to train (fc, layer4, layer3, ...)")
    p.add_argument("--unfreeze", dest="unfreeze_schedule",
                   help='progressive unfreezing, e.g. "fc@0,layer4@3,layer3@6"')
    p.add_argument("--loss", choices=("bce", "focal"))
    p.add_argument("--class-weighting", action="store_true", default=None)
    p.add_argument("--scheduler", choices=("plateau", "cosine_restarts", "none"))
    p.add_argument("--cosine-t0", dest="cosine_t0", type=int,
                   help="cosine_restarts: epochs until the first restart (default 5)")
    p.add_argument("--cosine-t-mult", dest="cosine_t_mult", type=int,
                   help="cosine_restarts: growth of the restart period (default 2)")
    p.add_argument("--accum", type=int, dest="grad_accum_steps", help="gradient accumulation steps")
    p.add_argument("--no-amp", action="store_false", dest="amp", default=None)
    p.add_argument("--patience", type=int, dest="early_stopping_patience",
                   help="early stopping after N epochs without improvement (0 = off)")
    p.add_argument("--augment", action="store_true", default=None)
    p.add_argument("--synthetic-pairs", action="store_true", default=None)
    p.add_argument("--frames", type=int, dest="n_frames", help="frames per clip (default 16)")
    p.add_argument("--stride", type=int)
    p.add_argument("--mask", choices=("sector", "region", "none"))
    p.add_argument("--device", help="auto, cpu, cuda, cuda:1, mps")
    p.add_argument("--seed", type=int)
    p.add_argument("--workers", type=int, dest="num_workers")
    p.add_argument("--tracking-uri", help="MLflow tracking URI (default: SQLite next to the CSV)")
    p.add_argument("--experiment")
    p.add_argument("--no-mlflow", action="store_false", dest="use_mlflow", default=None)
    p.add_argument("--print-config", action="store_true",
                   help="print the settings as a commented train.toml and exit")
    p.set_defaults(run=_run_train)


_TRAIN_OPTIONS = (
    "epochs", "batch_size", "learning_rate", "weight_decay", "num_unfrozen_layers",
    "unfreeze_schedule", "loss", "class_weighting", "scheduler", "cosine_t0", "cosine_t_mult",
    "grad_accum_steps", "amp",
    "early_stopping_patience", "augment", "synthetic_pairs", "n_frames", "stride", "mask",
    "device", "seed", "num_workers", "tracking_uri", "experiment", "use_mlflow",
)


class _TrainPrinter:
    """The trainer's events on the terminal: a tqdm bar for clip preparation and each epoch's
    batches, one line per epoch, warnings and errors on stderr."""

    def __init__(self) -> None:
        self.bar = None

    def close_bar(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def __call__(self, event) -> None:
        from tqdm import tqdm

        from echoquality_core.events import BatchEnd, EpochEnd, Progress, TrainError
        if isinstance(event, Progress) and event.stage in ("finish", "test"):
            self.close_bar()
            if event.stage == "test":
                print(f"Testing the best model on {event.total} clips", file=sys.stderr)
        elif isinstance(event, Progress):
            if self.bar is None:
                self.bar = progress_bar(event.total, "Preparing clips", "clip")
            self.bar.n = event.done
            self.bar.refresh()
        elif isinstance(event, BatchEnd):
            if event.step == 1:
                self.close_bar()
                self.bar = progress_bar(event.n_steps, f"Epoch {event.epoch}", "batch")
            self.bar.update(1)
            self.bar.set_postfix(loss=f"{event.loss:.4f}")
        elif isinstance(event, EpochEnd):
            self.close_bar()
            auc = event.metrics.get("roc_auc")
            tqdm.write(
                f"epoch {event.epoch}: train loss {event.train_loss:.4f}, "
                f"val loss {event.val_loss:.4f}"
                + (f", val AUC {auc:.3f}" if isinstance(auc, float) else "")
                + f", lr {event.lr:.2g}" + (" (best)" if event.best else "")
            )
        elif isinstance(event, TrainError):
            label = "Warning" if not event.fatal else "Error"
            tqdm.write(f"{label}: {event.message}", file=sys.stderr)


def _run_train(args: argparse.Namespace) -> int:
    from echoquality_core.cli_weights import prepare_train_weights
    from echoquality_core.weights import REGISTRY

    weights = args.weights
    if weights and weights not in REGISTRY:
        weights = str(Path(weights).expanduser().resolve())
    if weights and not args.print_config:  # checked before torch is even imported
        try:
            prepare_train_weights(weights, Path.cwd())
        except (OSError, ValueError) as exc:
            return _fail("train", exc)

    import shlex

    from echoquality_core.distributed import is_main
    from echoquality_core.events import summarize
    from echoquality_core.tracking import mlflow_ui_command
    from echoquality_core.train import SetupError
    from echoquality_core.train_config import TrainConfig
    from echoquality_core.train_distributed import make_trainer
    from echoquality_core.train_process import end_on_sigterm

    options = {k: getattr(args, k) for k in _TRAIN_OPTIONS if getattr(args, k) is not None}
    paths = {"annotations_csv": args.csv, "videos_dir": args.videos, "save_dir": args.save_dir}
    options |= {k: str(v.resolve()) for k, v in paths.items() if v is not None}
    if weights:
        options["model_weights"] = weights
    try:
        config = (TrainConfig.from_toml(args.config, **options) if args.config
                  else TrainConfig(**options))
    except (OSError, ValueError, TypeError) as exc:  # missing/bad TOML, invalid settings
        return _fail("train", exc)
    if args.print_config:
        from echoquality_core.train_toml import config_toml

        print(config_toml(config), end="")
        return 0

    show = _TrainPrinter()
    trainer = make_trainer(config, callback=show)  # DDP when torchrun started this process
    end_on_sigterm()
    try:
        trainer.preflight()  # labels CSV and starting weights, before any clip is read
    except SetupError as exc:
        return _fail("train", exc)
    try:
        end = trainer.run()
    finally:
        show.close_bar()
    if not is_main():
        return 0 if end.error is None and not end.cancelled else 1
    print(summarize(end))
    if end.run_id and config.use_mlflow:
        uri = trainer.tracking_uri
        print(f"MLflow run {end.run_id} in {uri}")
        print("Open the MLflow UI with:  " + shlex.join(mlflow_ui_command(uri)[2:]))
    return 0 if end.error is None and not end.cancelled else 1


def _fail(command: str, error: BaseException | str) -> int:
    """Print one clear line for a user error and return exit code 2."""
    text = " ".join(str(error).split()) or type(error).__name__
    print(f"echoquality {command}: error: {text}", file=sys.stderr)
    return 2


def _add_score(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "score",
        help="score clips with a quality model and write a CSV (resumable)",
        description="Score DICOM clips (folders are searched recursively; a CSV with a "
        "video_path column works too). Clips already scored in --out are skipped (unreadable ones are tried again). The threshold "
        "defaults to the checkpoint's, else 0.3 (the original inference script's).",
    )
    p.add_argument("paths", nargs="*", type=Path, metavar="PATH",
                   help="folders, DICOM files or CSVs with a video_path column")
    p.add_argument("--model", type=Path, required=True,
                   help="weights, checkpoint (best.pt) or TorchScript export (file or folder)")
    p.add_argument("--out", type=Path, required=True, help="scores CSV to write or resume")
    p.add_argument("--threshold", type=float, help="pass if score >= threshold")
    p.add_argument("--gradcam", type=Path, metavar="DIR",
                   help="write GradCAM strips of the clips that fail into DIR")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--workers", type=int, default=2, help="clip loading processes (default 2)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, mps")
    p.add_argument("--cache", type=Path, metavar="DIR", help="cache of preprocessed clips")
    _add_trust(p)
    from echoquality_core.cli_distributed import add_score_options

    add_score_options(p)
    p.set_defaults(run=_run_score)


def _run_score(args: argparse.Namespace) -> int:
    from echoquality_core import cli_distributed

    if cli_distributed.wants_distributed(args):
        return cli_distributed.run_score_rank(args, _fail)
    from echoquality_core.scoring import score_clips

    bar, progress = _clip_progress("Scoring")
    try:
        result = score_clips(
            cli_distributed.score_inputs(args), args.model, out_csv=args.out,
            threshold=args.threshold,
            device=args.device, batch_size=args.batch_size, num_workers=args.workers,
            cache_dir=args.cache, gradcam_dir=args.gradcam, progress=progress,
            trust_exported=args.trust_exported,
        )
    except (OSError, ValueError) as exc:
        finish(bar, failed=True)
        return _fail("score", exc)
    finally:
        finish(bar)
    info = result.attrs
    print(f"Scored {info['scored']} clip(s): {info['passed']} pass, "
          f"{info['scored'] - info['passed']} below the threshold {info['threshold']:.2f}"
          + (f"; {info['failed']} unreadable (see the error column)." if info["failed"] else "."))
    if info["skipped"]:
        print(f"Skipped {info['skipped']} clip(s) already in {args.out.name}.")
    print(f"Scores: {args.out.resolve()}")
    return 0


def _clip_progress(desc: str):
    """A progress bar (or plain lines) and the ``progress(done, total, name)`` that moves it."""
    bar = progress_bar(None, desc, "clip")

    def progress(done: int, total: int, name: str) -> None:
        bar.total = total
        bar.n = done
        bar.refresh()

    return bar, progress


def _add_trust(p: argparse.ArgumentParser) -> None:
    p.add_argument("--trust-exported", action="store_true",
                   help="accept a TorchScript export as --model: loading it runs code from the "
                        "file, so only for files from a source you trust")


def _add_evaluate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "evaluate", help="metrics and plots of a model on labelled clips",
        description="Score the labelled clips of a CSV and report accuracy, precision, recall, "
        "F1, ROC/PR AUC, Brier score and the confusion matrix; plots go to --out.",
    )
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--run", dest="run_id", metavar="RUN_ID",
                        help="MLflow run whose best checkpoint to use")
    source.add_argument("--model", type=Path, help="weights, checkpoint or TorchScript export")
    _add_trust(p)
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
    p.set_defaults(run=_run_evaluate)




def _run_evaluate(args: argparse.Namespace) -> int:
    import json
    import math
    import tempfile

    from echoquality_core.atomic import atomic_write
    from echoquality_core.evaluate import evaluate_labels, save_evaluation_plots
    from echoquality_core.labels import LabelError
    from echoquality_core.tracking import default_tracking_uri, download_checkpoint

    if not args.csv.is_file():
        return _fail("evaluate", f"labels CSV not found: {args.csv}")
    with tempfile.TemporaryDirectory(prefix="echoquality-eval-") as tmp:
        try:
            uri = args.tracking_uri or default_tracking_uri(args.csv.resolve().parent)
            model = args.model or download_checkpoint(args.run_id, uri, tmp)
            only, source = _evaluation_scope(args, uri, Path(tmp))
            bar, progress = _clip_progress("Scoring labelled clips")
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
            return _fail("evaluate", exc)
    args.out.mkdir(parents=True, exist_ok=True)
    plots = save_evaluation_plots(metrics, args.out)
    with atomic_write(args.out / "predictions.csv", "w", newline="", encoding="utf-8") as fh:
        table.to_csv(fh, index=False)
    summary = {k: None if isinstance(v, float) and math.isnan(v) else v  # NaN is not JSON
               for k, v in metrics.items() if k != "records"}
    with atomic_write(args.out / "metrics.json", "w", encoding="utf-8") as fh:
        fh.write(json.dumps(summary, indent=2) + "\n")

    failed = int((table["error"] != "").sum())
    print(f"Evaluated {metrics['n']} labelled clip(s) ({source})"
          + (f" ({failed} unreadable, left out: see predictions.csv)" if failed else ""))
    from echoquality_core.cli_crossval import format_with_ci, patient_groups

    records = metrics["records"]
    print(format_with_ci([r["label"] for r in records], [r["score"] for r in records],
                         patient_groups([r["file"] for r in records]), metrics["threshold"],
                         source[0].upper() + source[1:]))
    print(f"  {'f1':<21} {metrics['f1']:.3f}")
    (tn, fp), (fn, tp) = metrics["confusion_matrix"]
    print("Confusion matrix (rows: label, columns: predicted)")
    print(f"  {'':<6}{'poor':>8}{'good':>8}")
    print(f"  {'poor':<6}{tn:>8}{fp:>8}")
    print(f"  {'good':<6}{fn:>8}{tp:>8}")
    print(f"Plots, metrics.json and predictions.csv in {args.out.resolve()}")
    print("  " + ", ".join(p.name for p in plots))
    return 0


def _evaluation_scope(args: argparse.Namespace, uri: str,
                      folder: Path) -> tuple[set[str] | None, str]:
    """(clip names to evaluate or None for all, plain words for what they are)."""
    if args.model:
        return None, "labelled clips of the CSV: make sure the model never trained on them"
    if args.all_clips:
        return None, ("ALL labelled clips, including the run's training and validation clips: "
                      "NOT a test measurement")
    from echoquality_core.cli_crossval import run_test_split

    return run_test_split(args.run_id, uri, folder), f"test split of run {args.run_id}"


def _add_gradcam(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("gradcam", help="GradCAM heat-map strip of one clip")
    p.add_argument("clip", type=Path, help="DICOM clip")
    p.add_argument("--model", type=Path, required=True, help="weights or checkpoint")
    p.add_argument("--out", type=Path, required=True, help="PNG to write")
    p.add_argument("--layer", default="layer4", help="layer to explain (default layer4)")
    p.add_argument("--explain", choices=("good", "poor"), default="good",
                   help="show what raised (good) or lowered (poor) the score")
    p.add_argument("--device", default="auto")
    p.set_defaults(run=_run_gradcam)


def _run_gradcam(args: argparse.Namespace) -> int:
    from echoquality_core.checkpoint import load_scoring_model, params_from_info, require_checkpoint
    from echoquality_core.data import ClipLoadError
    from echoquality_core.dicom import DicomReadError
    from echoquality_core.gradcam import explain_clip, save_explanation
    from echoquality_core.model import resolve_device
    from echoquality_core.scoring import assessment

    try:
        if not args.clip.is_file():
            raise FileNotFoundError(f"clip not found: {args.clip}")
        require_checkpoint(args.model)  # refused before it is loaded (it would run code)
        net, info = load_scoring_model(args.model)
        net.to(resolve_device(args.device))
        with working(f"GradCAM of {args.clip.name}"):
            result = explain_clip(net, args.clip, params_from_info(info), args.explain,
                                  args.layer)
            args.out.parent.mkdir(parents=True, exist_ok=True)
            save_explanation(result, args.out)
    except (OSError, ValueError, DicomReadError, ClipLoadError) as exc:
        return _fail("gradcam", exc)
    print(f"{args.clip.name}: score {result.score:.3f} ({assessment(result.score)})")
    print(f"GradCAM ({args.layer}, explains '{args.explain}'): {args.out.resolve()}")
    return 0


def _add_export(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="export a model (torch.export, ONNX if installed; "
                       "TorchScript on request)")
    p.add_argument("--model", type=Path, required=True, help="weights or checkpoint")
    p.add_argument("--out", type=Path, required=True, help="folder to write the export into")
    p.add_argument("--frames", type=int, default=16, help="frames of the example clip (16)")
    p.add_argument("--format", action="append", choices=("export", "onnx", "torchscript"),
                   help="repeat for several; default export and onnx")
    p.set_defaults(run=_run_export)


def _run_export(args: argparse.Namespace) -> int:
    from echoquality_core.checkpoint import INFO_FILE
    from echoquality_core.export import DEFAULT_FORMATS, export_model

    formats = tuple(args.format or DEFAULT_FORMATS)
    try:
        with working(f"Exporting ({', '.join(formats)})"):
            info = export_model(args.model, args.out, example_frames=args.frames,
                                formats=formats)
    except (OSError, ValueError, TypeError, RuntimeError) as exc:
        return _fail("export", exc)
    for fmt, name in info["files"].items():
        print(f"{fmt}: {(args.out / name).resolve()}")
    for fmt, reason in info["skipped"].items():
        print(f"{fmt} skipped: {reason}")
    for fmt, difference in info["max_score_difference"].items():
        print(f"{fmt} checked: largest score difference from the original {difference:.2g}")
    print(f"Model info: {(args.out / INFO_FILE).resolve()} (threshold {info['threshold']:.3f})")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every subcommand."""
    parser = argparse.ArgumentParser(
        prog="echoquality", description="Quality control of echocardiography clips."
    )
    from echoquality_core import __version__
    from echoquality_core.cli_weights import add_parsers as add_weights

    parser.add_argument("-v", "--verbose", action="store_true", help="more logging")
    parser.add_argument("--debug", action="store_true",
                        help="debug logging, and a traceback for unexpected errors")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    for add in (_add_demo, _add_train, _add_evaluate, _add_score, _add_gradcam, _add_export,
                add_weights):
        add(sub)
    from echoquality_core import cli_raters

    cli_raters.add_parsers(sub)
    from echoquality_core import cli_report

    cli_report.add_parsers(sub)
    from echoquality_core.cli_crossval import add_parsers as add_crossval

    add_crossval(sub)
    from echoquality_core import cli_pacs

    cli_pacs.add_parsers(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `echoquality` console script."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.debug else logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    try:
        return int(args.run(args) or 0)
    except KeyboardInterrupt:
        print("Interrupted.", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 (one line for the user; --debug shows the traceback)
        if args.debug:
            raise
        text = " ".join(str(exc).split())
        print(f"echoquality {args.command}: unexpected error: {type(exc).__name__}"
              f"{': ' + text if text else ''} (run with --debug for the traceback)",
              file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
