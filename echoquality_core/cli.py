"""The `echoquality` command: demo, train, evaluate, score, gradcam, export, gui.

Each subcommand is a pair `_add_<name>(subparsers)` / `_run_<name>(args)`; heavy imports happen
inside `_run_*` so `echoquality --help` stays fast.
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path


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
    csv_path = write_demo_project(args.path, n_clips=args.clips, n_frames=args.frames, seed=args.seed)
    print(f"Demo project written to {args.path.resolve()}")
    print(f"Labels CSV: {csv_path.resolve()}")
    return 0


def _add_gui(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("gui", help="open the desktop app")
    p.add_argument("project", nargs="?", type=Path, help="dataset folder to open")
    p.set_defaults(run=_run_gui)


def _run_gui(args: argparse.Namespace) -> int:
    from echoquality_gui.app import main as gui_main

    return gui_main([str(args.project)] if args.project else [])


def _add_train(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        help="fine-tune the quality model on labelled clips (tracked in MLflow)",
        description="Fine-tune the quality model. Settings come from --config (TOML, keys as in "
        "TrainConfig), then the options given here.",
    )
    p.add_argument("--csv", type=Path, help="labels CSV (video_path, quality_score)")
    p.add_argument("--videos", type=Path, help="folder with the clips (VIDEOS_DIR)")
    p.add_argument("--weights", type=Path, help="starting weights, e.g. video_quality_model.pt")
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
    p.set_defaults(run=_run_train)


_TRAIN_OPTIONS = (
    "epochs", "batch_size", "learning_rate", "weight_decay", "num_unfrozen_layers",
    "unfreeze_schedule", "loss", "class_weighting", "scheduler", "grad_accum_steps", "amp",
    "early_stopping_patience", "augment", "synthetic_pairs", "n_frames", "stride", "mask",
    "device", "seed", "num_workers", "tracking_uri", "experiment", "use_mlflow",
)


def _run_train(args: argparse.Namespace) -> int:
    import shlex

    from tqdm import tqdm

    from echoquality_core.events import BatchEnd, EpochEnd, Progress, TrainError
    from echoquality_core.tracking import mlflow_ui_command
    from echoquality_core.train import TrainConfig, Trainer, summarize

    options = {k: getattr(args, k) for k in _TRAIN_OPTIONS if getattr(args, k) is not None}
    paths = {"annotations_csv": args.csv, "videos_dir": args.videos,
             "model_weights": args.weights, "save_dir": args.save_dir}
    options |= {k: str(v.resolve()) for k, v in paths.items() if v is not None}
    if args.config:
        config = TrainConfig.from_toml(args.config, **options)
    else:
        config = TrainConfig(**options)

    bar: list = [None]

    def show(event) -> None:
        if isinstance(event, Progress):
            if bar[0] is None:
                bar[0] = tqdm(total=event.total, desc="Preparing clips", unit="clip")
            bar[0].n = event.done
            bar[0].refresh()
        elif isinstance(event, BatchEnd):
            if event.step == 1:
                if bar[0] is not None:
                    bar[0].close()
                bar[0] = tqdm(total=event.n_steps, desc=f"Epoch {event.epoch}", unit="batch")
            bar[0].update(1)
            bar[0].set_postfix(loss=f"{event.loss:.4f}")
        elif isinstance(event, EpochEnd):
            if bar[0] is not None:
                bar[0].close()
                bar[0] = None
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

    trainer = Trainer(config, callback=show)
    try:
        end = trainer.run()
    finally:
        if bar[0] is not None:
            bar[0].close()
    print(summarize(end))
    if end.run_id and config.use_mlflow:
        uri = trainer.tracking_uri
        print(f"MLflow run {end.run_id} in {uri}")
        print("Open the MLflow UI with:  " + shlex.join(mlflow_ui_command(uri)[2:]))
    return 0 if end.error is None and not end.cancelled else 1


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every subcommand."""
    parser = argparse.ArgumentParser(
        prog="echoquality", description="Quality control of echocardiography clips."
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="more logging")
    sub = parser.add_subparsers(dest="command", required=True)
    for add in (_add_demo, _add_train, _add_gui):
        add(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `echoquality` console script."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    try:
        return int(args.run(args) or 0)
    except KeyboardInterrupt:
        print("Interrupted.", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
