"""`echoquality weights list|download|path|verify`, and getting `train --weights` ready.

Nothing here imports torch: listing, downloading and checking a file take milliseconds plus
the download itself.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from echoquality_core.cli.common import fail
from echoquality_core.files.download import DownloadError, DownloadProgress
from echoquality_core.cli.progress import progress_bar


def add_parsers(sub: argparse._SubParsersAction) -> None:
    """Add the `weights` command and its sub-commands."""
    p = sub.add_parser(
        "weights", help="starting weights for training: list, download, check",
        description="Known starting points for training (optional: without one the model "
        "starts from random weights). Downloads are cached in $ECHOQUALITY_CACHE or the "
        "platform's cache folder and checked (size and SHA-256) before use.",
    )
    actions = p.add_subparsers(dest="weights_command", required=True)
    actions.add_parser("list", help="the known starting points and whether they are "
                       "downloaded").set_defaults(run=_run_list)
    d = actions.add_parser("download", help="download a starting point into the cache")
    d.add_argument("name", help="e.g. echoprime-quality or kinetics400")
    d.add_argument("--sha256", help="expected SHA-256 when it differs from ours (a newer "
                   "release); the expected size is then not checked")
    d.add_argument("--url", help="download from this address instead (a mirror)")
    d.set_defaults(run=_run_download)
    g = actions.add_parser("path", help="print where a starting point's file is cached")
    g.add_argument("name")
    g.set_defaults(run=_run_path)
    v = actions.add_parser("verify", help="check that a file holds weights for our model")
    v.add_argument("file", type=Path)
    v.add_argument("--backbone", action="store_true",
                   help="the file's head (fc) is replaced, as for kinetics400")
    v.set_defaults(run=_run_verify)


def _run_list(args: argparse.Namespace) -> int:
    from echoquality_core.model.weights import REGISTRY, cache_dir, cached_path

    print(f"Cache folder: {cache_dir()}")
    for point in REGISTRY.values():
        path = cached_path(point.name)
        state = ("downloaded" if path and path.is_file() else "not downloaded") if path \
            else "nothing to download"
        size = f", {point.size / 1e6:.0f} MB" if point.size else ""
        print(f"{point.name:<18} {point.title} ({state}{size})")
        print(f"{'':<18} {point.description}")
    return 0


def _run_path(args: argparse.Namespace) -> int:
    from echoquality_core.model.weights import cached_path

    try:
        path = cached_path(args.name)
    except ValueError as exc:
        return fail("weights path", exc)
    if path is None:
        return fail("weights path", f"{args.name!r} has no file")
    print(path)
    return 0 if path.is_file() else 1


def _run_download(args: argparse.Namespace) -> int:
    try:
        path = fetch(args.name, sha256=args.sha256, url=args.url)
    except (ValueError, DownloadError) as exc:
        return fail("weights download", exc)
    print(path)
    return 0


def _run_verify(args: argparse.Namespace) -> int:
    from echoquality_core.files.download import file_sha256
    from echoquality_core.model.weights import WeightsError, check_weights_file

    try:
        check_weights_file(args.file, new_head=args.backbone)
    except WeightsError as exc:
        return fail("weights verify", exc)
    print(f"{args.file}: weights for this model (SHA-256 {file_sha256(args.file)})")
    return 0


def fetch(name: str, *, sha256: str | None = None, url: str | None = None) -> Path:
    """Download a starting point with a progress bar on stderr (a no-op when cached)."""
    from echoquality_core.model.weights import cached_path, download_starting_point

    cached = cached_path(name)
    if cached is not None and cached.is_file() and sha256 is None and url is None:
        return cached
    bars: list = []  # made at the first progress: no bar when the server cannot be reached

    def show(p: DownloadProgress) -> None:
        if not bars:
            bars.append(progress_bar(p.total, f"Downloading {name}", "B"))
            if hasattr(bars[0], "unit_scale"):  # tqdm: MB, not bytes
                bars[0].unit_scale, bars[0].unit_divisor = True, 1024
        bar = bars[0]
        bar.total = p.total
        bar.n = p.done
        bar.set_postfix(speed=f"{p.speed / 1e6:.1f} MB/s")
        bar.refresh()

    try:
        return download_starting_point(name, sha256=sha256, url=url, progress=show)
    finally:
        for bar in bars:
            bar.close()


def prepare_train_weights(spec: str | None, base_dir: Path) -> None:
    """Before `train` reads any clip: download a named starting point if needed, then check
    the weights file against the model. Raises ValueError / DownloadError (one line)."""
    from echoquality_core.model.weights import REGISTRY, check_starting_weights, is_cached

    if spec in REGISTRY and REGISTRY[spec].url and not is_cached(spec):
        fetch(spec)
    check_starting_weights(spec, base_dir)
