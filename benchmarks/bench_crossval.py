"""Cross-validation cost vs one training run on the same clips, and the share of DICOM decoding.

    .venv/bin/python benchmarks/bench_crossval.py [--clips 40] [--folds 5] [--epochs 2]

A demo project is written, then (1) a k-fold cross-validation runs from a cold clip cache
(its one decoding pass is timed from the Progress events), (2) one ordinary training run of the
same settings on the same clips runs from the warm cache. Prints total seconds, the ratio, the
seconds spent decoding (once, before the folds) and checking the cache in each fold, and the
decoding share of the cross-validation's total time (target < 5%).
"""
from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import torch

from echoquality_core.train.crossval import CrossValidator
from echoquality_core.demo.project import write_demo_project
from echoquality_core.train.events import FoldStart, Progress
from echoquality_core.train.trainer import TrainConfig, Trainer


class _Clock:
    """Times the clip preparation: before the first fold (decoding) and inside each fold."""

    def __init__(self) -> None:
        self.start = time.perf_counter()
        self.start_cpu = time.process_time()
        self.decode = 0.0
        self.decode_cpu = 0.0
        self.fold_prepare = 0.0
        self._prep_started: float | None = None
        self._in_fold = False

    def __call__(self, event) -> None:
        now = time.perf_counter()
        if isinstance(event, FoldStart):
            self._in_fold = True
        if isinstance(event, Progress) and event.stage == "prepare":
            if event.done == 0:
                self._prep_started, self._prep_cpu = now, time.process_time()
            elif event.done >= event.total and self._prep_started is not None:
                spent = now - self._prep_started
                if self._in_fold:
                    self.fold_prepare += spent
                else:
                    self.decode += spent
                    self.decode_cpu += time.process_time() - self._prep_cpu
                self._prep_started = None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clips", type=int, default=40)
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--frames", type=int, default=8, help="model frames per clip")
    ap.add_argument("--size", type=int, default=112, help="model input size")
    ap.add_argument("--clip-frames", type=int, default=32, help="frames in each demo DICOM")
    ap.add_argument("--height", type=int, default=240)
    ap.add_argument("--width", type=int, default=320)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch default)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    root = Path(tempfile.mkdtemp(prefix="bench-crossval-"))
    try:
        csv_path = write_demo_project(root, n_clips=args.clips, n_frames=args.clip_frames,
                                      height=args.height, width=args.width, seed=0,
                                      unlabelled=0.0)
        config = TrainConfig(annotations_csv=str(csv_path), videos_dir=None,
                             n_frames=args.frames, stride=1, size=args.size, batch_size=4,
                             epochs=args.epochs, device="cpu", use_mlflow=True,
                             log_mlflow_model=False)
        clock = _Clock()
        end = CrossValidator(config, args.folds, callback=clock).run()
        cv_total = time.perf_counter() - clock.start
        cv_cpu = time.process_time() - clock.start_cpu
        assert end.error is None, end.error
        start, start_cpu = time.perf_counter(), time.process_time()
        one = Trainer(config).run()
        one_total = time.perf_counter() - start
        one_cpu = time.process_time() - start_cpu
        assert one.error is None, one.error
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(f"clips {args.clips} ({args.clip_frames} frames {args.height}x{args.width} DICOM), "
          f"model input {args.frames} frames {args.size}x{args.size}, {args.epochs} epochs, "
          f"{args.folds} folds, torch threads {torch.get_num_threads()}")
    print(f"one training run (warm cache):      {one_total:8.1f} s")
    print(f"{args.folds}-fold cross-validation:           {cv_total:8.1f} s "
          f"({cv_total / one_total:.2f}x one run)")
    print(f"  decoding (once, before the folds): {clock.decode:8.2f} s "
          f"({100 * clock.decode / cv_total:.2f}% of the cross-validation)")
    print(f"  cache checks inside the folds:     {clock.fold_prepare:8.2f} s "
          f"({100 * clock.fold_prepare / cv_total:.2f}%)")
    share = (clock.decode + clock.fold_prepare) / cv_total
    print(f"  clip preparation in all:           {100 * share:.2f}% (target < 5%)")
    print(f"CPU seconds of this process (robust on a busy machine): one run {one_cpu:.1f}, "
          f"cross-validation {cv_cpu:.1f} ({cv_cpu / one_cpu:.2f}x), decoding "
          f"{clock.decode_cpu:.2f} ({100 * clock.decode_cpu / cv_cpu:.2f}%)")


if __name__ == "__main__":
    main()
