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


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every subcommand."""
    parser = argparse.ArgumentParser(
        prog="echoquality", description="Quality control of echocardiography clips."
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="more logging")
    sub = parser.add_subparsers(dest="command", required=True)
    for add in (_add_demo, _add_gui):
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
