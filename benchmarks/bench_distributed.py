"""Scaling out on whatever this machine has: scoring throughput of ``echoquality score`` with 1
rank and with ``--distributed 2`` (torchrun, gloo on CPU / NCCL on GPUs), the whole command's
time against the bare model forward on the same clips (goal <= 1.3x), fp32 against the chosen
precision, and the MLflow artifact size per run with the old logging (best.pt, the plain state
dict and an ``mlflow.pytorch`` pickle), with best.pt next to a pyfunc holding a copy, and with
the pyfunc alone holding best.pt (what training logs now).

    .venv/bin/python benchmarks/bench_distributed.py [--clips 10] [--frames 24]

The model is randomly initialised (speed does not depend on the weights) and sees EchoPrime's
16 x 112 x 112; the demo clips are 120 x 160 px.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]


def _command(folder: Path, checkpoint: Path, out: Path, ranks: int) -> float:
    argv = [sys.executable, "-m", "echoquality_core", "score", str(folder), "--model",
            str(checkpoint), "--out", str(out), "--workers", "1", "--device", "cpu"]
    if ranks > 1:
        argv += ["--distributed", str(ranks)]
    env = os.environ | {"PYTHONPATH": str(ROOT)}
    t0 = time.perf_counter()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                   env=env)
    return time.perf_counter() - t0


def _bare_forward(clips: list[Path], checkpoint: Path) -> float:
    """Seconds of the model forward alone on the preprocessed clips (batches of 8)."""
    from echoquality_core.model.checkpoint import forward_scores, load_scoring_model
    from echoquality_core.data.clips import clip_model_frames
    from echoquality_core.data.preprocess import PreprocessParams, normalize

    net, _ = load_scoring_model(checkpoint)
    videos = torch.stack([torch.from_numpy(normalize(clip_model_frames(c, PreprocessParams())))
                          for c in clips])
    forward_scores(net, videos[:2], torch.device("cpu"))  # warm-up
    t0 = time.perf_counter()
    for i in range(0, len(videos), 8):
        forward_scores(net, videos[i:i + 8], torch.device("cpu"))
    return time.perf_counter() - t0


def _artifact_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def _mlflow_sizes(checkpoint: Path, work: Path) -> dict[str, int]:
    """Bytes stored per run by three ways of logging the model: the old one (best.pt, the plain
    state dict and an ``mlflow.pytorch`` pickle), best.pt next to a pyfunc holding a copy of
    it, and what training logs now (the pyfunc alone holds best.pt)."""
    from echoquality_core.model.network import load_model_file
    from echoquality_core.scoring.pyfunc import log_pyfunc_model
    from echoquality_core.runs.tracking import default_tracking_uri, start_run

    state = work / "best_state_dict.pt"
    net, _ = load_model_file(checkpoint)
    torch.save(net.state_dict(), state)
    sizes = {}
    for name in ("old", "checkpoint + pyfunc", "pyfunc only (now)"):
        store = work / name.split()[0]
        with start_run(tracking_uri=default_tracking_uri(store), experiment="bench",
                       artifact_location=(store / "mlartifacts").as_uri()) as run:
            if name == "old":
                run.log_artifact(checkpoint, "checkpoints")
                run.log_artifact(state, "checkpoints")
                run.log_model(net)
            else:
                if name.startswith("checkpoint"):
                    run.log_artifact(checkpoint, "checkpoints")
                log_pyfunc_model(checkpoint)
        sizes[name] = _artifact_bytes(store / "mlartifacts")
    return sizes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=10)
    parser.add_argument("--frames", type=int, default=24)
    args = parser.parse_args()
    from echoquality_core.model import precision
    from echoquality_core.demo.project import write_demo_project
    from echoquality_core.dicom import find_clips
    from echoquality_core.model.network import build_model, save_checkpoint

    print(f"torch {torch.__version__}, {os.cpu_count()} CPU cores, CUDA devices: "
          f"{torch.cuda.device_count()}, CPU native bf16: {precision.cpu_has_native_bf16()}, "
          f"scoring precision: {precision.inference_dtype('cpu') or torch.float32}")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        write_demo_project(work / "demo", n_clips=args.clips, n_frames=args.frames, height=120,
                           width=160, unlabelled=0.0)
        clips = find_clips(work / "demo" / "clips")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            checkpoint = save_checkpoint(build_model(), work / "best.pt", threshold=0.5)
        bare = _bare_forward(clips, checkpoint)
        one = _command(work / "demo" / "clips", checkpoint, work / "one.csv", 1)
        two = _command(work / "demo" / "clips", checkpoint, work / "two.csv", 2)
        n = len(clips)
        print(f"bare forward ({n} clips, fp32 default threads): {bare:.2f} s "
              f"({n / bare:.2f} clips/s)")
        print(f"echoquality score, 1 rank:  {one:.2f} s ({n / one:.2f} clips/s); "
              f"whole command / bare forward = {one / bare:.2f}x (goal <= 1.3x)")
        print(f"echoquality score --distributed 2: {two:.2f} s ({n / two:.2f} clips/s); "
              f"speed-up over 1 rank {one / two:.2f}x")
        sizes = _mlflow_sizes(checkpoint, work)
        print("MLflow artifacts per run: " + ", ".join(
            f"{name} {size / 1e6:.0f} MB" for name, size in sizes.items()))


if __name__ == "__main__":
    main()
