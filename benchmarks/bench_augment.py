"""Cost of augmentation next to a training step: milliseconds per clip and their ratio.

    .venv/bin/python benchmarks/bench_augment.py [--frames 16] [--size 112] [--threads 1]

Augmentation (EchoVideoAugmentation at its defaults, and with every step forced on) is timed on
(3, T, 112, 112) clips; the train step is r2plus1d_18 forward + backward + AdamW step on a batch
of 2, once with the default freezing (fc + layer4 train) and once with everything trainable.
The ratio is augmentation time / train-step time per clip: the share an epoch grows by when
augmentation runs in the main process (num_workers=0); with DataLoader workers it overlaps.
"""
from __future__ import annotations

import argparse
import statistics
import time
import warnings

import numpy as np
import torch

from echoquality_core.data.augment import EchoVideoAugmentation, create_synthetic_low_quality
from echoquality_core.model.network import build_model, freeze_model_except_final_layers
from echoquality_core.data.preprocess import normalize


def _ms_per_call(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return 1000 * statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=16)
    ap.add_argument("--size", type=int, default=112)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--clips", type=int, default=30, help="clips to augment per measurement")
    ap.add_argument("--steps", type=int, default=3, help="train steps per measurement")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    shape = (args.frames, args.size, args.size, 3)
    rng = np.random.default_rng(0)
    clips = [torch.from_numpy(normalize(rng.integers(0, 256, shape, dtype=np.uint8)))
             for _ in range(args.clips)]
    print(f"clips (3,{args.frames},{args.size},{args.size}), torch threads {args.threads}")

    augment = {
        "augment (defaults, p=0.5)": EchoVideoAugmentation(generator=0),
        "augment (every step, p=1)": EchoVideoAugmentation(transform_prob=1.0, generator=0),
    }
    aug_ms = {}
    for name, aug in augment.items():
        aug_ms[name] = _ms_per_call(lambda aug=aug: [aug(c) for c in clips], 3) / len(clips)
    synth = _ms_per_call(lambda: [create_synthetic_low_quality(c) for c in clips], 3) / len(clips)
    aug_ms["create_synthetic_low_quality"] = synth

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        model = build_model(None)
    x = torch.stack(clips[:2])
    y = torch.tensor([1.0, 0.0])
    criterion = torch.nn.BCEWithLogitsLoss()
    step_ms = {}
    for n_blocks, label in ((2, "train step (fc+layer4)"), (6, "train step (all layers)")):
        freeze_model_except_final_layers(model, n_blocks)
        optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], 1e-4)

        def step(optimizer=optimizer):
            optimizer.zero_grad()
            criterion(model(x).reshape(-1), y).backward()
            optimizer.step()

        step_ms[label] = _ms_per_call(step, args.steps) / len(x)

    for name, ms in {**aug_ms, **step_ms}.items():
        print(f"{name:32s} {ms:9.1f} ms/clip")
    cheapest = min(step_ms, key=step_ms.get)
    for name, ms in aug_ms.items():
        print(f"ratio {name} / {cheapest}: {ms / step_ms[cheapest]:.1%}")


if __name__ == "__main__":
    main()
