"""Issue 23.4's GPU check in one short script: fine-tuning with mixed precision on CUDA with and
without the frozen-trunk cache, and ``echoquality score`` in one process against ``--distributed``
(torchrun; NCCL on GPUs) over the GPUs present, on one demo project of real-size clips.

    python benchmarks/bench_gpu.py [--clips 16] [--epochs 3] [--device cuda] [--out DIR]

Prints the GPU(s), the torch / CUDA / NCCL versions, then per training run the precision it chose
(the Train tab's setup line), the first epoch's seconds (it computes the trunk when cached), the
median of the later epochs' and the best validation ROC AUC; per scoring the command's seconds,
and the largest score difference between the two scorings. ``--device cpu`` runs the same steps
on the CPU (gloo, 2 ranks) to check the script where there is no GPU. The demo clips are 48 x 480
x 640; the model sees 16 x 112 x 112 and starts from random weights.

On a lent device machine (Python 3.12 with torch, no pydicom): carry the wheels that scoring and
training import beyond that image (pydicom, pylibjpeg, pylibjpeg-libjpeg, pylibjpeg-openjpeg,
pylibjpeg-rle, pyjpegls) as the device README says, and run it with ``PYTHONPATH=/tmp/site:.``.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from echoquality_core.demo.project import write_demo_project
from echoquality_core.train.events import EpochEnd, Progress, TrainError
from echoquality_core.train.trainer import TrainConfig, Trainer

WORKERS = min(4, os.cpu_count() or 1)  # clip loading processes for training and scoring


def describe(device: str) -> str:
    """The accelerator and library versions in one line."""
    parts = [f"torch {torch.__version__}"]
    if device == "cuda":
        names = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
        parts += [f"CUDA {torch.version.cuda}", f"{len(names)} GPU(s): {', '.join(names)}",
                  f"bf16 {'yes' if torch.cuda.is_bf16_supported() else 'no'}",
                  f"NCCL {_version(torch.cuda.nccl.version())}"]
    else:
        parts.append(f"CPU, {os.cpu_count()} cores")
    return "; ".join(parts)


def _version(value) -> str:
    return ".".join(map(str, value)) if isinstance(value, tuple) else str(value)


def train(csv_path: Path, work: Path, device: str, epochs: int, cached: bool) -> dict:
    """One run with the defaults; its precision line, epoch seconds, best AUC and checkpoint."""
    seen: dict = {"epochs": [], "auc": [], "setup": "", "warnings": []}

    def on_event(event) -> None:
        if isinstance(event, EpochEnd):
            seen["epochs"].append(event.seconds)
            seen["auc"].append(event.metrics.get("roc_auc", float("nan")))
        elif isinstance(event, Progress) and event.stage == "setup":
            seen["setup"] = event.message
        elif isinstance(event, TrainError):
            seen["warnings"].append(event.message)

    name = "cached" if cached else "uncached"
    config = TrainConfig(annotations_csv=str(csv_path), videos_dir=None, epochs=epochs,
                         device=device, use_mlflow=False, run_name=name,
                         save_dir=str(work / "runs"), cache_dir=str(work / f"cache-{name}"),
                         frozen_trunk_cache=cached, num_workers=WORKERS)
    end = Trainer(config, on_event).run()
    if end.error is not None:
        raise SystemExit(f"training ({name}) failed: {end.error.message}")
    seen["checkpoint"] = end.best_checkpoint
    return seen


def score(folder: Path, checkpoint: Path, out: Path, device: str, ranks: int | None) -> float:
    """Seconds for ``echoquality score`` over ``folder``; with ``ranks``, ``--distributed``
    (torchrun: NCCL on GPUs, also with one)."""
    command = [sys.executable, "-m", "echoquality_core", "score", str(folder), "--model",
               str(checkpoint), "--out", str(out), "--device", device, "--workers", str(WORKERS)]
    if ranks is not None:
        command += ["--distributed", str(ranks)]
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, timeout=900)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"score ({ranks} rank(s)) failed:\n{done.stderr[-3000:]}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=16)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--device", default="cuda", choices=("cuda", "cpu"))
    parser.add_argument("--out", type=Path, help="keep the project and runs here")
    args = parser.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("no CUDA device here: nothing to measure (--device cpu checks the "
                         "script on the CPU)")
    print(describe(args.device), flush=True)
    with tempfile.TemporaryDirectory(prefix="bench-gpu-") as tmp:
        work = args.out or Path(tmp)
        start = time.perf_counter()
        csv_path = write_demo_project(work / "demo", n_clips=args.clips, n_frames=48,
                                      height=480, width=640, seed=0, unlabelled=0.0)
        print(f"{args.clips} demo clips (48 x 480 x 640) written in "
              f"{time.perf_counter() - start:.1f} s", flush=True)
        runs = {}
        for cached in (True, False):
            run = runs[cached] = train(csv_path, work, args.device, args.epochs, cached)
            later = run["epochs"][1:] or run["epochs"]
            print(f"training, frozen-trunk cache {'on' if cached else 'off'}: {run['setup']} "
                  f"epoch 1 {run['epochs'][0]:.2f} s, later epochs median "
                  f"{statistics.median(later):.2f} s (min {min(later):.2f}); best val ROC AUC "
                  f"{max(run['auc']):.3f}"
                  + (f"; warnings: {' | '.join(run['warnings'])}" if run["warnings"] else ""),
                  flush=True)
        checkpoint = runs[True]["checkpoint"]
        ranks = torch.cuda.device_count() if args.device == "cuda" else 2
        single = score(work / "demo", checkpoint, work / "one.csv", args.device, None)
        spread = score(work / "demo", checkpoint, work / "ranks.csv", args.device, ranks)
        from echoquality_core.scoring.scores_csv import read_scores

        a = read_scores(work / "one.csv").set_index("video_path")["score"]
        b = read_scores(work / "ranks.csv").set_index("video_path")["score"]
        print(f"echoquality score, {args.clips} clips: 1 process {single:.1f} s; "
              f"--distributed {ranks} ({'NCCL' if args.device == 'cuda' else 'gloo'}) "
              f"{spread:.1f} s; scores equal within {float((a - b.loc[a.index]).abs().max()):.1e}"
              f" ({int(a.notna().sum())} and {int(b.notna().sum())} scored)", flush=True)


if __name__ == "__main__":
    main()
