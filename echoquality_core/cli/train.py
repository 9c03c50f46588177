"""``echoquality train``: fine-tune the quality model from the command line, its events shown as
progress bars and one line per epoch."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from echoquality_core.cli.common import fail
from echoquality_core.cli.progress import progress_bar


def add_parsers(sub: argparse._SubParsersAction) -> None:
    """Add ``train`` to the echoquality command."""
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
    p.set_defaults(run=run_train)


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

        from echoquality_core.train.events import BatchEnd, EpochEnd, Progress, TrainError
        if isinstance(event, Progress) and event.stage in ("finish", "test"):
            self.close_bar()
            if event.stage == "test":
                print(f"Testing the best model on {event.total} clips", file=sys.stderr)
        elif isinstance(event, Progress) and event.stage == "setup":
            self.close_bar()
            print(event.message, file=sys.stderr)
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


def run_train(args: argparse.Namespace) -> int:
    from echoquality_core.cli.weights import prepare_train_weights
    from echoquality_core.model.weights import REGISTRY

    weights = args.weights
    if weights and weights not in REGISTRY:
        weights = str(Path(weights).expanduser().resolve())
    if weights and not args.print_config:  # checked before torch is even imported
        try:
            prepare_train_weights(weights, Path.cwd())
        except (OSError, ValueError) as exc:
            return fail("train", exc)

    import shlex

    from echoquality_core.jobs.distributed import is_main
    from echoquality_core.train.events import summarize
    from echoquality_core.runs.tracking import mlflow_ui_command
    from echoquality_core.train.trainer import SetupError
    from echoquality_core.train.config import TrainConfig
    from echoquality_core.jobs.launch import make_trainer
    from echoquality_core.jobs.child import end_on_sigterm

    options = {k: getattr(args, k) for k in _TRAIN_OPTIONS if getattr(args, k) is not None}
    paths = {"annotations_csv": args.csv, "videos_dir": args.videos, "save_dir": args.save_dir}
    options |= {k: str(v.resolve()) for k, v in paths.items() if v is not None}
    if weights:
        options["model_weights"] = weights
    try:
        config = (TrainConfig.from_toml(args.config, **options) if args.config
                  else TrainConfig(**options))
    except (OSError, ValueError, TypeError) as exc:  # missing/bad TOML, invalid settings
        return fail("train", exc)
    if args.print_config:
        from echoquality_core.train.config_file import config_toml

        print(config_toml(config), end="")
        return 0

    show = _TrainPrinter()
    trainer = make_trainer(config, callback=show)  # DDP when torchrun started this process
    end_on_sigterm()
    try:
        trainer.preflight()  # labels CSV and starting weights, before any clip is read
    except SetupError as exc:
        return fail("train", exc)
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
