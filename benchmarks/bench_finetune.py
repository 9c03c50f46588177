"""Fine-tuning epochs: the original script's epoch vs ours with the defaults (frozen-trunk cache,
bf16 where the CPU computes it natively), and our epochs against a bare fp32 forward.

    .venv/bin/python benchmarks/bench_finetune.py [--clips 16] [--repeats 3] [--epochs 3]

On one demo project (clips 48x480x640, model input 16x112x112) and the same train/val clips,
each repeat runs, in a rotating order:

- ``original``: the original script's epoch, rebuilt here from the training guide: its
  ``EchoDataset`` decodes every DICOM on every access (pydicom, 16 frames at stride 2, each
  resized to 112x112 with OpenCV, normalised), its ``train_epoch`` (``model.train()``, Adam,
  BCE, ``NUM_UNFROZEN_LAYERS = 2``, which trained ``fc`` only since it counted ``avgpool``)
  and its validation pass, fp32;
- ``bare_fp32``: the whole network's fp32 forward of the same clips (eval, no gradients, clips
  already preprocessed);
- ``ours`` / ``ours_fp32``: ``Trainer`` runs with the defaults (``num_unfrozen_layers = 2``:
  fc + layer4), the precision rule (bf16 on a CPU with native bf16) and ``ECHOQUALITY_PRECISION
  =fp32``; epoch 1 computes the frozen trunk, epochs 2..N are the marginal cost.

Prints median and min seconds per variant, the ratios, the CPU model, bf16 or not, and the load
average before and after each measurement.
"""
from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import pydicom
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from _timing import cpu_model
from echoquality_core.data import preprocess
from echoquality_core.data.clips import EchoDataset
from echoquality_core.demo.project import write_demo_project
from echoquality_core.model import precision
from echoquality_core.model.network import build_model
from echoquality_core.train.events import EpochEnd
from echoquality_core.train.trainer import TrainConfig, Trainer

MEAN = np.array(preprocess.MEAN, dtype=np.float32)  # EchoPrime's, as the original used
STD = np.array(preprocess.STD, dtype=np.float32)


class OriginalEchoDataset(Dataset):
    """The guide's dataset: the DICOM decoded on every access, no cache."""

    def __init__(self, paths: list[str], labels: list[float], n_frames: int = 16,
                 stride: int = 2, size: int = 112):
        self.paths, self.labels = paths, labels
        self.n_frames, self.stride, self.size = n_frames, stride, size

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int):
        pixels = pydicom.dcmread(self.paths[index]).pixel_array  # (T, H, W, 3)
        frames = pixels[: self.n_frames * self.stride: self.stride]
        video = np.stack([cv2.resize(f, (self.size, self.size), interpolation=cv2.INTER_AREA)
                          for f in frames]).astype(np.float32)
        video = (video - MEAN) / STD
        return (torch.from_numpy(video).permute(3, 0, 1, 2).contiguous(),
                torch.tensor(self.labels[index], dtype=torch.float32))


def original_freeze(model: nn.Module, num_layers_to_train: int = 2) -> None:
    """The original count: fc, avgpool, layer4, ... (avgpool has no weights)."""
    for p in model.parameters():
        p.requires_grad = False
    order = [model.fc, model.avgpool, model.layer4, model.layer3, model.layer2, model.layer1]
    for layer in order[:num_layers_to_train]:
        for p in layer.parameters():
            p.requires_grad = True


def original_train_epoch(model, loader, criterion, optimizer, device) -> float:
    model.train()
    total = 0.0
    for videos, labels in loader:
        videos, labels = videos.to(device), labels.to(device)
        optimizer.zero_grad()
        outputs = model(videos)
        loss = criterion(outputs.squeeze(1), labels)
        loss.backward()
        optimizer.step()
        total += loss.item() * videos.size(0)
    return total / len(loader.dataset)


@torch.no_grad()
def original_validate(model, loader, criterion, device) -> float:
    model.eval()
    total = 0.0
    for videos, labels in loader:
        outputs = model(videos.to(device))
        total += criterion(outputs.squeeze(1), labels.to(device)).item() * videos.size(0)
    return total / len(loader.dataset)


def load() -> str:
    return "/".join(f"{v:.1f}" for v in os.getloadavg())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clips", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=3, help="epochs of each of our runs")
    args = ap.parse_args()
    torch.manual_seed(0)
    print(f"CPU: {cpu_model()}, {os.cpu_count()} cores, torch threads {torch.get_num_threads()}, "
          f"native bf16: {precision.cpu_has_native_bf16()}; load average {load()}")

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        csv_path = write_demo_project(tmp / "demo", n_clips=args.clips, n_frames=48,
                                      height=480, width=640, seed=0, unlabelled=0.0)

        def config(name: str) -> TrainConfig:
            return TrainConfig(annotations_csv=str(csv_path), videos_dir=None,
                               save_dir=str(tmp / "models"), epochs=args.epochs, device="cpu",
                               use_mlflow=False, run_name=name, cache_dir=str(tmp / "cache"))

        def ours(name: str, choice: str) -> tuple[float, float]:
            epochs: list[float] = []

            def on_event(event) -> None:
                if isinstance(event, EpochEnd):
                    epochs.append(event.seconds)

            with precision.precision(choice):
                end = Trainer(config(name), on_event).run()
            if end.error is not None:
                raise SystemExit(f"training failed: {end.error.message}")
            return epochs[0], statistics.median(epochs[1:])

        probe = Trainer(config("probe"))  # decodes the clips into the cache, gives the split
        probe.config.epochs = 1
        probe.run()
        parts = {name: probe.data.part(name) for name in ("train", "val")}
        print(f"clips: train {len(parts['train'])}, val {len(parts['val'])} "
              f"(48x480x640 DICOM -> 16x112x112)")
        paths = {n: [r["file"] for r in p] for n, p in parts.items()}
        labels = {n: [float(r["label"]) for r in p] for n, p in parts.items()}

        model = build_model(None, "cpu")
        original_freeze(model, 2)
        criterion = nn.BCEWithLogitsLoss()
        optimizer = torch.optim.Adam(filter(lambda p: p.requires_grad, model.parameters()),
                                     lr=1e-4, weight_decay=1e-5)
        loaders = {n: DataLoader(OriginalEchoDataset(paths[n], labels[n]), batch_size=8,
                                 shuffle=n == "train") for n in paths}
        cached = EchoDataset(paths["train"] + paths["val"], labels["train"] + labels["val"],
                             params=probe.params, cache=probe.clips)
        videos = torch.stack([cached[i][0] for i in range(len(cached))])

        def original() -> float:
            start = time.perf_counter()
            original_train_epoch(model, loaders["train"], criterion, optimizer, "cpu")
            original_validate(model, loaders["val"], criterion, "cpu")
            return time.perf_counter() - start

        @torch.no_grad()
        def bare() -> float:
            model.eval()
            start = time.perf_counter()
            for batch in videos.split(8):
                model(batch)
            return time.perf_counter() - start

        results: dict[str, list[float]] = {k: [] for k in (
            "original", "bare_fp32", "ours_first", "ours_marginal", "ours_fp32_first",
            "ours_fp32_marginal")}

        def run(variant: str, repeat: int) -> None:
            before = load()
            if variant == "original":
                results["original"].append(original())
            elif variant == "bare_fp32":
                results["bare_fp32"].append(bare())
            else:
                suffix = "" if variant == "ours" else "_fp32"
                first, marginal = ours(f"{variant}-{repeat}",
                                       "auto" if variant == "ours" else "fp32")
                results[f"ours{suffix}_first"].append(first)
                results[f"ours{suffix}_marginal"].append(marginal)
            print(f"  repeat {repeat} {variant}: done (load {before} -> {load()})", flush=True)

        variants = ["original", "bare_fp32", "ours", "ours_fp32"]
        for repeat in range(args.repeats):
            shift = repeat % len(variants)
            for variant in variants[shift:] + variants[:shift]:
                run(variant, repeat)

    print("\nseconds per epoch (train + validation), median / min over "
          f"{args.repeats} repeats:")
    med = {k: statistics.median(v) for k, v in results.items()}
    low = {k: min(v) for k, v in results.items()}
    for key in results:
        print(f"  {key:20s} {med[key]:8.2f} / {low[key]:8.2f}")
    print("ratios (median / min):")
    for label, a, b in [
        ("original epoch / our epoch, marginal (bf16 rule)", "original", "ours_marginal"),
        ("original epoch / our epoch, marginal, fp32", "original", "ours_fp32_marginal"),
        ("original epoch / our first epoch (bf16 rule)", "original", "ours_first"),
        ("original epoch / our first epoch, fp32", "original", "ours_fp32_first"),
        ("our marginal epoch / bare fp32 forward (bf16 rule)", "ours_marginal", "bare_fp32"),
        ("our marginal epoch, fp32 / bare fp32 forward", "ours_fp32_marginal", "bare_fp32"),
    ]:
        print(f"  {label:52s} {med[a] / med[b]:6.2f}x / {low[a] / low[b]:6.2f}x")
    print(f"load average at the end: {load()}")


if __name__ == "__main__":
    main()
