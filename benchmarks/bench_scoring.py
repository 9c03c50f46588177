"""``echoquality score`` on CPU against the bare model forward it runs: the command's wall time
(a subprocess: starting Python, importing torch, loading the checkpoint, decoding, scoring,
writing the CSV, exiting) over the bare forward of the same preprocessed clips in the same
batches at the same precision, interleaved, median and min over the repeats.

    .venv/bin/python benchmarks/bench_scoring.py [--clips 10] [--repeats 3] [--fp32] [--avx2]

Each repeat runs, one after the other: the command with a cold preprocessing cache, the command
with a warm one, the bare forward of the network as the checkpoint holds it, and of the same
network with its BatchNorms folded (``model/fold.py``: what the command runs). The precision is
the one scoring picks on this CPU (bf16 autocast where the CPU computes bf16 natively, see
``model/precision.py``); ``--fp32`` adds the same pairs forced to fp32 (``ECHOQUALITY_PRECISION``
for the command); ``--avx2`` holds oneDNN and ATen (the command's too) to AVX2 kernels, as on a
CPU without AVX-512 (fp32 then, as the precision rule picks there). Clips are the demo
project's (48 frames of 480x640, JPEG); the model sees EchoPrime's 16 x 112 x 112 and is
randomly initialised (speed does not depend on the weights). The load average is printed before and after: on a shared machine compare ratios, not seconds.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

from _timing import cpu_model, hold_to_avx2_if_asked

HELD = hold_to_avx2_if_asked()  # before torch; the command inherits the setting

import torch  # noqa: E402

from echoquality_core.data.clips import ClipCache
from echoquality_core.data.preprocess import PreprocessParams, normalize
from echoquality_core.demo.project import write_demo_project
from echoquality_core.dicom import find_clips
from echoquality_core.model import precision
from echoquality_core.model.checkpoint import forward_scores, load_scoring_model
from echoquality_core.model.fold import fold_batchnorm
from echoquality_core.model.network import build_model, save_checkpoint
from echoquality_core.scoring.scores_csv import read_scores

BATCH = 8  # the command's default batch size


def time_command(root: Path, checkpoint: Path, cache: Path, out: Path, fp32: bool) -> float:
    """Seconds for ``echoquality score`` (its default workers and batch size) over ``root``."""
    command = [str(Path(sys.executable).with_name("echoquality")), "score", str(root),
               "--model", str(checkpoint), "--out", str(out), "--cache", str(cache),
               "--device", "cpu"]
    env = dict(os.environ, **({precision.PRECISION_ENV: "fp32"} if fp32 else {}))
    out.unlink(missing_ok=True)
    t0 = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                   env=env)
    return time.perf_counter() - t0


def time_forward(net: torch.nn.Module, videos: torch.Tensor) -> float:
    """Seconds for the forward of ``videos`` in the command's batches (``forward_scores``:
    autocast and memory format as scoring uses them)."""
    dev = torch.device("cpu")
    t0 = time.perf_counter()
    for start in range(0, len(videos), BATCH):
        forward_scores(net, videos[start:start + BATCH], dev)
    return time.perf_counter() - t0


def load() -> str:
    return "/".join(f"{x:.1f}" for x in os.getloadavg())


def summary(name: str, seconds: list[float], n: int) -> str:
    return (f"{name:<34} median {statistics.median(seconds):6.2f} s, min {min(seconds):6.2f} s "
            f"({n / statistics.median(seconds):5.2f} clips/s; runs "
            f"{', '.join(f'{x:.1f}' for x in seconds)})")


def ratios(name: str, top: list[float], bottom: list[float]) -> str:
    """The interleaved repeats' ratios, median and min."""
    r = [a / b for a, b in zip(top, bottom)]
    return (f"{name:<60} median {statistics.median(r):.2f}x, min {min(r):.2f}x "
            f"(runs {', '.join(f'{x:.2f}' for x in r)})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--fp32", action="store_true", help="also the fp32 command and forward")
    parser.add_argument("--avx2", action="store_true", help="oneDNN and ATen held to AVX2")
    args = parser.parse_args()

    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        model = build_model().eval()
    params = PreprocessParams()
    dev = torch.device("cpu")
    scoring = precision.dtype_name(precision.inference_dtype(dev))
    print(f"CPU: {cpu_model()}; native bf16: {'yes' if precision.cpu_has_native_bf16() else 'no'}"
          f" (scoring runs in {scoring}){HELD}; torch threads {torch.get_num_threads()}; "
          f"load average {load()} before")
    with tempfile.TemporaryDirectory(prefix="bench-scoring-") as tmp_name:
        tmp = Path(tmp_name)
        root = tmp / "project"
        write_demo_project(root, n_clips=args.clips)
        clips = find_clips(root)
        n = len(clips)
        checkpoint = save_checkpoint(model, tmp / "best.pt", preprocess=params)
        store = ClipCache(tmp / "bench-cache", params)
        videos = torch.stack([torch.from_numpy(normalize(store.get(p))) for p in clips])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            net = load_scoring_model(checkpoint)[0]
        precision.prepare_model(net, dev).eval()
        folded = fold_batchnorm(net)
        kinds = [("", False)] + ([("fp32", True)] if args.fp32 and scoring != "fp32" else [])
        for fp32 in {fp32 for _, fp32 in kinds}:  # warm-up: oneDNN makes its kernels once
            with precision.precision("fp32" if fp32 else "auto"):
                time_forward(net, videos[:2]), time_forward(folded, videos[:2])
        times: dict[str, list[float]] = {}
        for _ in range(args.repeats):
            for label, fp32 in kinds:
                tag = label or scoring
                out = tmp / "scores.csv"
                cache = tmp / f"cache-{time.monotonic_ns()}"
                for name in ("cold", "warm"):
                    times.setdefault(f"command {tag}, {name} cache", []).append(
                        time_command(root, checkpoint, cache, out, fp32))
                assert read_scores(out)["score"].notna().sum() == n, out
                with precision.precision("fp32" if fp32 else "auto"):
                    times.setdefault(f"forward {tag}, as loaded", []).append(
                        time_forward(net, videos))
                    times.setdefault(f"forward {tag}, folded", []).append(
                        time_forward(folded, videos))

        print(f"{n} clips (48 x 480 x 640 JPEG -> 16 x 112 x 112), batch {BATCH}, "
              f"{args.repeats} interleaved repeats; load average {load()} after")
        for key, seconds in times.items():
            print(summary(key, seconds, n))
        for label, _fp32 in kinds:
            tag = label or scoring
            for cache in ("warm", "cold"):
                command = times[f"command {tag}, {cache} cache"]
                print(ratios(f"command ({cache} cache) / forward as loaded, both {tag}", command,
                             times[f"forward {tag}, as loaded"]))
                print(ratios(f"command ({cache} cache) / folded forward it runs, both {tag}",
                             command, times[f"forward {tag}, folded"]))
            print(ratios(f"folded forward / forward as loaded, both {tag}",
                         times[f"forward {tag}, folded"], times[f"forward {tag}, as loaded"]))


if __name__ == "__main__":
    main()
