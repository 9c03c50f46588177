"""Scoring throughput on CPU: clips/s of the real ``echoquality score`` command (a subprocess,
default workers) and of ``score_clips`` in-process, with the preprocessing cache cold and warm,
against the bare model forward on already-preprocessed clips (fp32, and at the precision
scoring uses: bf16 autocast where the CPU has it); GradCAM seconds per clip.

    .venv/bin/python benchmarks/bench_scoring.py [--clips 100] [--workers 0]

Clips are the demo project's (``write_demo_project`` defaults: 48 frames of 480x640, JPEG); the
model sees EchoPrime's 16 x 112 x 112. The model is randomly initialised (speed does not depend
on the weights). The command's time includes starting Python and loading the checkpoint.
"""
from __future__ import annotations

import argparse
import copy
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import torch

from echoquality_core.model import precision
from echoquality_core.model.checkpoint import forward_scores
from echoquality_core.data.clips import ClipCache
from echoquality_core.demo.project import write_demo_project
from echoquality_core.dicom import find_clips
from echoquality_core.scoring.gradcam import gradcam
from echoquality_core.model.network import build_model, save_checkpoint
from echoquality_core.data.preprocess import PreprocessParams, normalize
from echoquality_core.scoring.score import read_scores, score_clips


def time_command(root: Path, checkpoint: Path, cache: Path, out: Path) -> float:
    """Seconds for ``echoquality score`` (default workers and batch size) over ``root``."""
    command = [str(Path(sys.executable).with_name("echoquality")), "score", str(root),
               "--model", str(checkpoint), "--out", str(out), "--cache", str(cache),
               "--device", "cpu"]
    t0 = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=100)
    parser.add_argument("--workers", type=int, default=0, help="for the in-process runs")
    parser.add_argument("--batch-size", type=int, default=8, help="for the in-process runs")
    parser.add_argument("--gradcam-clips", type=int, default=3)
    args = parser.parse_args()

    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        model = build_model().eval()
    params = PreprocessParams()
    with tempfile.TemporaryDirectory(prefix="bench-scoring-") as tmp_name:
        tmp = Path(tmp_name)
        root = tmp / "project"
        t0 = time.perf_counter()
        write_demo_project(root, n_clips=args.clips)
        clips = find_clips(root)
        n = len(clips)
        checkpoint = save_checkpoint(model, tmp / "best.pt", preprocess=params)
        print(f"{n} demo clips (48 frames, 480x640 JPEG) written in "
              f"{time.perf_counter() - t0:.1f} s; torch threads {torch.get_num_threads()}")

        timings = {}
        for name in ("cold cache", "warm cache"):
            out = tmp / f"scores {name}.csv"
            timings[f"command, {name}"] = time_command(root, checkpoint, tmp / "cli-cache", out)
            assert read_scores(out)["score"].notna().sum() == n, out
        for name in ("cold cache", "warm cache"):
            t0 = time.perf_counter()
            result = score_clips(root, model, device="cpu", batch_size=args.batch_size,
                                 num_workers=args.workers, params=params, cache_dir=tmp / "cache")
            timings[f"in-process, {name}"] = time.perf_counter() - t0
            assert result.attrs["scored"] == n, result.attrs
        t0 = time.perf_counter()
        score_clips(root, model, device="cpu", batch_size=args.batch_size,
                    num_workers=args.workers, params=params)
        timings["in-process, no cache"] = time.perf_counter() - t0

        store = ClipCache(tmp / "cache", params)
        videos = torch.stack([torch.from_numpy(normalize(store.get(p))) for p in clips])
        t0 = time.perf_counter()
        with torch.inference_mode():
            for start in range(0, n, args.batch_size):
                model(videos[start:start + args.batch_size])
        bare = time.perf_counter() - t0
        dev = torch.device("cpu")
        fast = precision.prepare_model(copy.deepcopy(model), dev).eval()
        t0 = time.perf_counter()
        for start in range(0, n, args.batch_size):
            forward_scores(fast, videos[start:start + args.batch_size], dev)
        bare_fast = time.perf_counter() - t0

        print(f"(in-process: workers {args.workers}, batch {args.batch_size}; command: its "
              f"defaults; scoring precision on this CPU: "
              f"{precision.inference_dtype(dev) or torch.float32})")
        print(f"{'bare forward, fp32':<24} {bare / n * 1000:8.1f} ms/clip  {n / bare:6.2f} "
              "clips/s")
        print(f"{'bare forward, scoring':<24} {bare_fast / n * 1000:8.1f} ms/clip  "
              f"{n / bare_fast:6.2f} clips/s  (the precision the command uses)")
        for name, seconds in timings.items():
            print(f"{name:<24} {seconds / n * 1000:8.1f} ms/clip  {n / seconds:6.2f} clips/s  "
                  f"({seconds / bare:.2f}x fp32, {seconds / bare_fast:.2f}x scoring forward)")

        k = min(args.gradcam_clips, n)
        t0 = time.perf_counter()
        for video in videos[:k]:
            gradcam(model, video, "layer4", explain="poor")
        print(f"GradCAM (layer4) {(time.perf_counter() - t0) / k:.2f} s/clip over {k} clips")


if __name__ == "__main__":
    main()
