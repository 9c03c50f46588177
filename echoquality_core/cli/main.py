"""The `echoquality` command: its parser, `main`, and the small `demo` and `export` sub-commands
(the desktop app is `echoquality-gui`; the core never imports the GUI).

Every other sub-command lives in a `cli_<command>.py` module whose `add_parsers(subparsers)` adds
it: `cli_train` (train), `cli_score` (score, gradcam), `cli_evaluate` (evaluate), `cli_weights`,
`cli_raters`, `cli_report`, `cli_crossval`, `cli_pacs`; what they share is in `cli_common`. Each
sub-command is a pair `add…(subparsers)` / `run…(args)`; heavy imports happen inside the runners
so `echoquality --help` stays fast.
"""
from __future__ import annotations

import argparse
import atexit
import logging
import os
import sys
import threading
from pathlib import Path

from echoquality_core.cli.common import clip_progress, fail
from echoquality_core.cli.progress import working


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
    from echoquality_core.demo.project import write_demo_project
    from echoquality_core.labels.folder import ProjectFolder

    existing = ProjectFolder(args.path).labels_csv
    if existing.exists() and not args.force:
        print(f"Demo project already exists at {args.path.resolve()} (labels kept; --force rewrites it)")
        print(f"Labels CSV: {existing.resolve()}")
        return 0
    bar, progress = clip_progress("Writing demo clips")
    try:
        csv_path = write_demo_project(args.path, n_clips=args.clips, n_frames=args.frames,
                                      seed=args.seed, progress=progress)
    finally:
        bar.close()
    print(f"Demo project written to {args.path.resolve()}")
    print(f"Labels CSV: {csv_path.resolve()}")
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
    from echoquality_core.model.checkpoint import INFO_FILE
    from echoquality_core.model.export import DEFAULT_FORMATS, export_model

    formats = tuple(args.format or DEFAULT_FORMATS)
    try:
        with working(f"Exporting ({', '.join(formats)})"):
            info = export_model(args.model, args.out, example_frames=args.frames,
                                formats=formats)
    except (OSError, ValueError, TypeError, RuntimeError) as exc:
        return fail("export", exc)
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
    from echoquality_core.cli import crossval as cli_crossval
    from echoquality_core.cli import evaluate as cli_evaluate
    from echoquality_core.cli import pacs as cli_pacs
    from echoquality_core.cli import raters as cli_raters
    from echoquality_core.cli import report as cli_report
    from echoquality_core.cli import score as cli_score
    from echoquality_core.cli import train as cli_train
    from echoquality_core.cli import weights as cli_weights

    parser.add_argument("-v", "--verbose", action="store_true", help="more logging")
    parser.add_argument("--debug", action="store_true",
                        help="debug logging, and a traceback for unexpected errors")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    for add in (_add_demo, cli_train.add_parsers, cli_evaluate.add_parsers,
                cli_score.add_parsers, _add_export, cli_weights.add_parsers,
                cli_raters.add_parsers, cli_report.add_parsers, cli_crossval.add_parsers,
                cli_pacs.add_parsers):
        add(sub)
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


def run() -> None:
    """The `echoquality` console script: ``main()``, then, once torch was imported, a quick
    exit. The interpreter's own shutdown after torch takes 0.6–1.3 s (tearing down its modules
    and libraries) with nothing left to do: the exit handlers run (MLflow, temporary folders,
    logging), the output is flushed, and the process ends. A command that left a thread or a
    process group running exits the usual way."""
    code = main()
    torch = sys.modules.get("torch")
    if (torch is not None and threading.active_count() == 1
            and not (torch.distributed.is_available() and torch.distributed.is_initialized())):
        atexit._run_exitfuncs()  # what a normal exit runs first (CPython's own function)
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except OSError:  # a closed pipe (`echoquality score … | head`)
                pass
        os._exit(code)
    sys.exit(code)


if __name__ == "__main__":
    run()
