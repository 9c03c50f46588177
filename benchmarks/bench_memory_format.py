"""The memory format rule of ``model/precision.py`` checked on this CPU: R(2+1)D-18 in
``channels_last_3d`` against the contiguous (NCDHW) layout, the forward of a batch of 8 clips of
16 x 112 x 112 (scoring's batch) in fp32, and in bf16 where the CPU computes it natively, and a
full training step (forward and backward of every block, batch 4) in fp32. Interleaved, median
and min over the repeats; the CPU model and load average printed, and what the rule picks.

    .venv/bin/python benchmarks/bench_memory_format.py [--repeats 3] [--avx2]

``--avx2`` holds oneDNN and ATen to AVX2 kernels (``ONEDNN_MAX_CPU_ISA=AVX2``,
``ATEN_CPU_CAPABILITY=avx2``): what a CPU without AVX-512 runs (bf16 is skipped there: it is
emulated, and ``precision`` keeps such a CPU in fp32).
"""
from __future__ import annotations

import argparse
import os
import statistics
import time
import warnings

from _timing import cpu_model, hold_to_avx2_if_asked

HELD = hold_to_avx2_if_asked()  # before torch: the kernels are chosen when it loads

import torch  # noqa: E402

from echoquality_core.model import precision  # noqa: E402
from echoquality_core.model.network import build_model  # noqa: E402

LAYOUTS = {"contiguous": torch.contiguous_format, "channels_last_3d": torch.channels_last_3d}


def load() -> str:
    return "/".join(f"{x:.1f}" for x in os.getloadavg())


def forward(net: torch.nn.Module, videos: torch.Tensor, dtype: torch.dtype | None) -> None:
    with torch.inference_mode(), precision.autocast("cpu", dtype):
        net(videos)


def train_step(net: torch.nn.Module, videos: torch.Tensor, labels: torch.Tensor) -> None:
    net.zero_grad(set_to_none=True)
    loss = torch.nn.functional.binary_cross_entropy_with_logits(net(videos), labels)
    loss.backward()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--avx2", action="store_true", help="oneDNN and ATen held to AVX2")
    args = parser.parse_args()

    native = precision.cpu_has_native_bf16()
    print(f"CPU: {cpu_model()}; native bf16: {'yes' if native else 'no'}{HELD}; "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads; "
          f"load average {load()} before")
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # random weights: speed does not need others
        nets = {name: build_model().to(memory_format=fmt) for name, fmt in LAYOUTS.items()}
    batch = torch.randn(8, 3, 16, 112, 112)
    labels = torch.rand(4, 1)
    cases = [("forward fp32, 8 clips", None)] + ([("forward bf16, 8 clips", torch.bfloat16)]
                                                 if native else [])
    work = {}
    for name, fmt in LAYOUTS.items():
        videos = batch.contiguous(memory_format=fmt)
        for case, dtype in cases:
            work[(case, name)] = (lambda n=nets[name], v=videos, d=dtype: forward(n.eval(), v, d))
        work[("training step fp32, 4 clips", name)] = (
            lambda n=nets[name], v=videos[:4]: train_step(n.train(), v, labels))
    for fn in work.values():  # warm-up: oneDNN makes its kernels once per shape
        fn()
    times: dict[tuple[str, str], list[float]] = {key: [] for key in work}
    for _ in range(args.repeats):
        for key, fn in work.items():
            start = time.perf_counter()
            fn()
            times[key].append(time.perf_counter() - start)

    print(f"{args.repeats} interleaved repeats; load average {load()} after")
    for case in dict.fromkeys(case for case, _ in work):
        row = {name: times[(case, name)] for name in LAYOUTS}
        for name, seconds in row.items():
            print(f"{case:<30} {name:<17} median {statistics.median(seconds):6.2f} s, "
                  f"min {min(seconds):6.2f} s")
        ratios = [a / b for a, b in zip(row["contiguous"], row["channels_last_3d"])]
        print(f"{case:<30} channels_last_3d is {statistics.median(ratios):.2f}x faster "
              f"(median; min {min(ratios):.2f}x)")
    print(f"the rule (precision.channels_last) on these kernels "
          f"({torch.backends.cpu.get_cpu_capability()}): fp32 scoring "
          f"{'channels_last_3d' if precision.channels_last('cpu', None) else 'contiguous'}, "
          f"fp32 training "
          f"{'channels_last_3d' if precision.channels_last('cpu', None, True) else 'contiguous'}")


if __name__ == "__main__":
    main()
