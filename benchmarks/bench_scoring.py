"""Scoring throughput on CPU: clips/s with the preprocessing cache cold and warm, against the
bare model forward on already-preprocessed clips; GradCAM seconds per clip.

    .venv/bin/python benchmarks/bench_scoring.py [--clips 100] [--frames 32] [--workers 0]

Demo clips are 32 frames of 240x320 (JPEG); the model sees EchoPrime's 16 x 112 x 112.
The model is randomly initialised (speed does not depend on the weights).
"""
from __future__ import annotations

import argparse
import tempfile
import time
import warnings
from pathlib import Path

import torch

from echoquality_core.data import ClipCache
from echoquality_core.demo import write_demo_project
from echoquality_core.dicom import find_clips
from echoquality_core.gradcam import gradcam
from echoquality_core.model import build_model
from echoquality_core.preprocess import PreprocessParams, normalize
from echoquality_core.scoring import score_clips


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=100)
    parser.add_argument("--frames", type=int, default=32)
    parser.add_argument("--workers", type=int, default=0)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--gradcam-clips", type=int, default=3)
    args = parser.parse_args()

    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        model = build_model().eval()
    params = PreprocessParams()
    with tempfile.TemporaryDirectory(prefix="bench-scoring-") as tmp:
        root = Path(tmp) / "project"
        t0 = time.perf_counter()
        write_demo_project(root, n_clips=args.clips, n_frames=args.frames, height=240,
                           width=320, seed=0)
        clips = find_clips(root)
        print(f"{len(clips)} demo clips ({args.frames} frames, 240x320) written in "
              f"{time.perf_counter() - t0:.1f} s; torch threads {torch.get_num_threads()}, "
              f"workers {args.workers}, batch {args.batch_size}")

        cache = Path(tmp) / "cache"
        timings = {}
        for name in ("cold cache", "warm cache"):
            t0 = time.perf_counter()
            result = score_clips(root, model, device="cpu", batch_size=args.batch_size,
                                 num_workers=args.workers, params=params, cache_dir=cache)
            timings[name] = time.perf_counter() - t0
            assert result.attrs["scored"] == len(clips), result.attrs
        t0 = time.perf_counter()
        score_clips(root, model, device="cpu", batch_size=args.batch_size,
                    num_workers=args.workers, params=params)
        timings["no cache"] = time.perf_counter() - t0

        store = ClipCache(cache, params)
        videos = torch.stack([torch.from_numpy(normalize(store.get(p))) for p in clips])
        t0 = time.perf_counter()
        with torch.inference_mode():
            for start in range(0, len(videos), args.batch_size):
                model(videos[start:start + args.batch_size])
        bare = time.perf_counter() - t0

        n = len(clips)
        print(f"{'bare forward':<12} {bare / n * 1000:8.1f} ms/clip  {n / bare:6.2f} clips/s")
        for name, seconds in timings.items():
            print(f"{name:<12} {seconds / n * 1000:8.1f} ms/clip  {n / seconds:6.2f} clips/s  "
                  f"({seconds / bare:.2f}x bare forward)")

        k = min(args.gradcam_clips, n)
        t0 = time.perf_counter()
        for video in videos[:k]:
            gradcam(model, video, "layer4", explain="poor")
        print(f"GradCAM (layer4) {(time.perf_counter() - t0) / k:.2f} s/clip over {k} clips")


if __name__ == "__main__":
    main()
