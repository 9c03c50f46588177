"""Training throughput on CPU: a 100-clip demo project, seconds per epoch (cold vs cached clips),
share of step time spent loading data vs forward/backward, peak memory.

    .venv/bin/python benchmarks/bench_train.py [--clips 100] [--frames 16] [--epochs 2]

Prints plain numbers. On a small CPU the default 16 frames is slow (a train step is ~1-2.6 s per
clip); ``--frames 8`` halves it and is what the numbers in the report used when noted.
"""
from __future__ import annotations

import argparse
import resource
import shutil
import tempfile
import time
from pathlib import Path

import psutil
import torch

from echoquality_core.data.clips import EchoDataset
from echoquality_core.demo.project import write_demo_project
from echoquality_core.train.events import BatchEnd, EpochEnd, Progress
from echoquality_core.labels.store import LabelStore
from echoquality_core.runs.tracking import default_tracking_uri
from echoquality_core.train.trainer import TrainConfig, Trainer


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clips", type=int, default=100)
    ap.add_argument("--frames", type=int, default=16, help="model frames per clip")
    ap.add_argument("--clip-frames", type=int, default=40, help="frames in each demo DICOM")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch default)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    proc = psutil.Process()
    peak = [proc.memory_info().rss]

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        t0 = time.perf_counter()
        csv_path = write_demo_project(tmp / "demo", n_clips=args.clips, n_frames=args.clip_frames,
                                      height=480, width=640, seed=0, unlabelled=0.0)
        print(f"demo project: {args.clips} clips of {args.clip_frames} frames 640x480, "
              f"written in {time.perf_counter() - t0:.1f} s")

        # data loading alone: cold (decode DICOM + preprocess + write cache) vs cached
        store = LabelStore(csv_path)
        paths = [store.resolve(p) for p in store.paths()]
        labels = [store.get(p).quality_score for p in store.paths()]
        config = TrainConfig(
            annotations_csv=str(csv_path), videos_dir=None, save_dir=str(tmp / "models"),
            tracking_uri=default_tracking_uri(tmp), n_frames=args.frames, stride=2,
            batch_size=args.batch_size, epochs=args.epochs, device="cpu",
            log_mlflow_model=False, cache_dir=str(tmp / "cache"),
        )
        ds = EchoDataset(paths, labels, params=config.preprocess, cache_dir=tmp / "cache")
        for label, _ in (("cold (decode + cache)", 0), ("cached", 1)):
            t0 = time.perf_counter()
            for i in range(len(ds)):
                ds[i]
            dt = time.perf_counter() - t0
            print(f"load all {len(ds)} clips, {label}: {dt:.2f} s ({1000 * dt / len(ds):.1f} ms/clip)")
            peak.append(proc.memory_info().rss)

        # training: per-epoch time; per step, the gap between two BatchEnds is data loading
        # (the DataLoader fetching the next batch) plus that step's forward/backward
        compute: dict[int, float] = {}
        fetch: dict[int, float] = {}
        epoch_seconds: dict[int, float] = {}
        last = [None]
        prepare = [time.perf_counter(), None]

        def on_event(event) -> None:
            now = time.perf_counter()
            peak.append(proc.memory_info().rss)
            if isinstance(event, Progress) and event.done == event.total:
                prepare[1] = now
            elif isinstance(event, BatchEnd):
                if event.step > 1:
                    compute[event.epoch] = compute.get(event.epoch, 0.0) + event.seconds
                    fetch[event.epoch] = fetch.get(event.epoch, 0.0) + (
                        now - last[0] - event.seconds)
                last[0] = now
            elif isinstance(event, EpochEnd):
                epoch_seconds[event.epoch] = event.seconds

        shutil.rmtree(tmp / "cache")  # the run's first epoch starts from an empty cache
        t0 = time.perf_counter()
        end = Trainer(config, callback=on_event).run()
        total = time.perf_counter() - t0
        if end.error:
            print("training failed:", end.error.message)
            return
        print(f"split sizes: {end.split_sizes}; {args.frames} frames, batch {args.batch_size}, "
              f"torch threads {torch.get_num_threads()}")
        print(f"prepare (decode + cache all clips before epoch 1): {prepare[1] - prepare[0]:.1f} s")
        for epoch, seconds in epoch_seconds.items():
            steps = compute[epoch] + fetch[epoch]
            print(f"epoch {epoch}: {seconds:.1f} s incl. validation; of the step time "
                  f"(steps 2..n) {100 * fetch[epoch] / steps:.1f} % data loading, "
                  f"{100 * compute[epoch] / steps:.1f} % forward/backward")
        print(f"whole run incl. test evaluation and MLflow logging: {total:.1f} s")
    peak_psutil = max(peak) / 2**20
    peak_ru = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS: {peak_psutil:.0f} MiB (sampled), {peak_ru:.0f} MiB (getrusage)")


if __name__ == "__main__":
    main()
