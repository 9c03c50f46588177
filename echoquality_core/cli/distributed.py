"""CLI for scaling out: ``echoquality score --distributed N`` (launches torchrun), the
``--list`` input, and what a rank does when torchrun started ``echoquality score``/``train``.

``torchrun --nproc_per_node N -m echoquality_core score ...`` runs this module's
:func:`run_score_rank` on every rank; ``echoquality score --distributed N ...`` is the same
command through ``python -m torch.distributed.run --standalone`` (one machine).
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

from echoquality_core.jobs.distributed import launched_by_torchrun


def add_score_options(p: argparse.ArgumentParser) -> None:
    """``--list`` and ``--distributed`` on the score parser."""
    p.add_argument("--list", type=Path, action="append", default=[], metavar="FILE",
                   help="text file with one clip path per line (or a CSV with a video_path "
                   "column); relative paths are taken from the file's folder; repeatable")
    p.add_argument("--distributed", type=int, metavar="N",
                   help="score with N processes on this machine through torchrun (one per GPU "
                   "on a GPU machine); for several machines run torchrun yourself")


def read_list(path: Path) -> list:
    """ClipInputs from a list file: one path per line (blank lines and # comments skipped),
    or a CSV with a ``video_path`` column. Output names are the paths as written."""
    from echoquality_core.scoring.score import ClipInput, collect_clips

    if not path.is_file():
        raise FileNotFoundError(f"list file not found: {path}")
    if path.suffix.lower() == ".csv":
        return collect_clips(path)
    clips = []
    for line in path.read_text(encoding="utf-8-sig").splitlines():
        name = line.strip()
        if name and not name.startswith("#"):
            clip = Path(name)
            clips.append(ClipInput(clip if clip.is_absolute() else path.parent / clip, name))
    if not clips:
        raise ValueError(f"{path.name}: no clip paths in this list")
    return clips


def score_inputs(args: argparse.Namespace) -> list:
    """The PATH arguments plus the clips of every ``--list`` file."""
    inputs: list = list(args.paths)
    for path in args.list:
        inputs += read_list(path)
    if not inputs:
        raise ValueError("nothing to score: give a folder, DICOM file, CSV or --list FILE")
    return inputs


def wants_distributed(args: argparse.Namespace) -> bool:
    """True when ``score`` should launch torchrun or runs as one of its ranks."""
    return bool(args.distributed) or launched_by_torchrun()


def torchrun_command(args: argparse.Namespace) -> list[str]:
    """argv running this score command on ``args.distributed`` local ranks via torchrun."""
    argv = [sys.executable, "-m", "torch.distributed.run", "--standalone",
            f"--nproc_per_node={int(args.distributed)}", "-m", "echoquality_core", "score",
            *map(str, args.paths), "--model", str(args.model), "--out", str(args.out),
            "--batch-size", str(args.batch_size), "--workers", str(args.workers),
            "--device", str(args.device)]
    for path in args.list:
        argv += ["--list", str(path)]
    for flag, value in (("--threshold", args.threshold), ("--gradcam", args.gradcam),
                        ("--cache", args.cache)):
        if value is not None:
            argv += [flag, str(value)]
    return argv


def launch(args: argparse.Namespace) -> int:
    """Run the score command under torchrun on this machine; its exit code."""
    if args.distributed < 1:
        print("echoquality score: error: --distributed needs at least 1 process",
              file=sys.stderr)
        return 2
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // args.distributed)))
    return subprocess.call(torchrun_command(args), env=env)


def run_score_rank(args: argparse.Namespace, fail) -> int:
    """One rank of a distributed score command (``fail(command, error)`` prints a user error)."""
    from echoquality_core.jobs import distributed as dist

    if not launched_by_torchrun():
        return launch(args)
    device = dist.init_from_env(args.device)
    try:
        return _score_rank(args, device, fail)
    finally:
        dist.shutdown()


def _score_rank(args: argparse.Namespace, device: str, fail) -> int:
    from tqdm import tqdm

    from echoquality_core.jobs import distributed as dist
    from echoquality_core.scoring.distributed import score_distributed

    main = dist.is_main()
    bar = tqdm(total=0, desc=f"Scoring ({dist.world_size()} ranks)", unit="clip",
               disable=None if main else True)

    def progress(done: int, total: int, name: str) -> None:
        bar.total, bar.n = total, done
        bar.refresh()

    try:
        result = score_distributed(
            score_inputs(args), args.model, out_csv=args.out, threshold=args.threshold,
            device=device, batch_size=args.batch_size, num_workers=args.workers,
            cache_dir=args.cache, gradcam_dir=args.gradcam, progress=progress,
            trust_exported=args.trust_exported)
    except (OSError, ValueError) as exc:
        return fail("score", exc) if main else 2
    finally:
        bar.close()
    if main:
        info = result.attrs
        print(f"Scored {info['scored']} clip(s) on {dist.world_size()} ranks: "
              f"{info['passed']} pass, {info['failed']} unreadable; skipped {info['skipped']} "
              f"already in {args.out.name}.")
        print(f"Scores: {args.out.resolve()}")
    return 0
