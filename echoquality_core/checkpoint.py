"""Model files, read back: a checkpoint or weights file, or a TorchScript export, as a model in
eval mode plus its info (threshold, preprocessing), and the one forward pass that turns
model-input clips into scores.

Writing model files lives elsewhere: checkpoints in ``model.save_checkpoint``, exports in
``export.export_model`` (which reads models through this module). Load a TorchScript export only
from a source you trust: it is a program, not just weights.
"""
from __future__ import annotations

import dataclasses
import json
import os
import warnings
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from echoquality_core.model import WeightsError, build_model, load_weights, resolve_device
from echoquality_core.preprocess import PreprocessParams
from echoquality_core.review import DEFAULT_THRESHOLD

TORCHSCRIPT_FILE = "model.ts.pt"
INFO_FILE = "model_info.json"

_NEEDS_CHECKPOINT = ("GradCAM needs the model's checkpoint, not a TorchScript export (it has no "
                     "layers to look into)")


def is_torchscript(path: str | os.PathLike) -> bool:
    """True for a TorchScript archive (a zip holding ``code/`` and ``constants.pkl``)."""
    path = Path(path)
    if not path.is_file() or not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
    return any(n.endswith("constants.pkl") for n in names) and any("/code/" in n for n in names)


def jit_load(path: str | os.PathLike) -> torch.jit.ScriptModule:
    """A TorchScript file on the CPU, without torch's deprecation note about ``torch.jit``."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*torch\.jit\.load. is deprecated",
                                category=FutureWarning)
        return torch.jit.load(str(path), map_location="cpu")


def load_exported(path: str | os.PathLike) -> tuple[torch.jit.ScriptModule, dict[str, Any]]:
    """(TorchScript model in eval mode on the CPU, its model_info.json or {}) from an export's
    ``model.ts.pt`` or its folder. Raises WeightsError for anything else."""
    path = Path(path)
    file = path / TORCHSCRIPT_FILE if path.is_dir() else path
    if not file.is_file():
        where = f"no {TORCHSCRIPT_FILE} in this folder" if path.is_dir() else "file not found"
        raise WeightsError(file if not path.is_dir() else path, f"{where} ({path})")
    if not is_torchscript(file):
        raise WeightsError(file, "not a TorchScript export (see `echoquality export`)")
    try:
        module = jit_load(file)
    except RuntimeError as exc:
        raise WeightsError(file, f"TorchScript file could not be loaded ({exc})") from exc
    info_path = file.parent / INFO_FILE
    info: dict[str, Any] = {}
    if info_path.is_file():
        try:
            info = json.loads(info_path.read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError) as exc:
            raise WeightsError(info_path, f"not valid JSON ({exc})") from exc
    return module.eval(), info


def load_scoring_model(model: str | os.PathLike | nn.Module) -> tuple[nn.Module, dict[str, Any]]:
    """(model in eval mode on the CPU, its info) from a module, a weights file or checkpoint
    (see model.load_weights), or a TorchScript export (a ``.ts.pt`` file or its folder)."""
    if isinstance(model, nn.Module):
        return model, {}
    path = Path(model)
    if path.is_dir() or is_torchscript(path):
        return load_exported(path)
    net = build_model(path)  # validates and loads; raises WeightsError for a bad file
    info = load_weights(net, path)  # again, for the checkpoint's threshold and preprocessing
    return net.eval(), info


def require_checkpoint(net: nn.Module, source: str | os.PathLike | None = None) -> None:
    """Refuse a TorchScript model where its layers are needed (GradCAM): WeightsError naming
    ``source`` when it is a file, else ValueError."""
    if isinstance(net, torch.jit.ScriptModule):
        if source is not None and not isinstance(source, nn.Module):
            raise WeightsError(Path(source), _NEEDS_CHECKPOINT)
        raise ValueError(_NEEDS_CHECKPOINT)


def params_from_info(info: Mapping[str, Any]) -> PreprocessParams:
    """The checkpoint's preprocessing settings, or EchoPrime's defaults when it has none."""
    saved = info.get("preprocess")
    if not isinstance(saved, Mapping):
        return PreprocessParams()
    known = {f.name for f in dataclasses.fields(PreprocessParams)}
    return PreprocessParams(**{k: v for k, v in saved.items() if k in known})


def threshold_from_info(info: Mapping[str, Any], threshold: float | None = None) -> float:
    """``threshold`` if given, else the checkpoint's, else :data:`DEFAULT_THRESHOLD` (0.3)."""
    value = threshold if threshold is not None else info.get("threshold", DEFAULT_THRESHOLD)
    value = float(DEFAULT_THRESHOLD if value is None else value)
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"threshold must lie in 0..1, got {value:g}")
    return value


def autocast(device: torch.device):
    """Half precision on CUDA, full precision elsewhere."""
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.float16)
    return torch.autocast(device.type, enabled=False)


def forward_scores(net: nn.Module, videos: torch.Tensor, dev: torch.device) -> list[float]:
    """Scores (sigmoid of the one logit per clip) of a batch already in eval mode on ``dev``."""
    with torch.inference_mode(), autocast(dev):
        logits = net(videos.to(dev, non_blocking=True)).reshape(-1)
    if logits.numel() != len(videos):
        raise ValueError(f"model gave {logits.numel()} outputs for {len(videos)} clips; "
                         "expected one logit per clip")
    return torch.sigmoid(logits.float()).cpu().tolist()


def score_arrays(net: nn.Module, videos: np.ndarray | torch.Tensor,
                 device: str | torch.device = "cpu") -> np.ndarray:
    """Scores (N,) for a batch of model-input clips (N,3,T,S,S): sigmoid of the logits."""
    dev = resolve_device(device)
    videos = torch.as_tensor(videos, dtype=torch.float32)
    was_training = net.training
    net.to(dev).eval()
    try:
        return np.asarray(forward_scores(net, videos, dev), dtype=np.float32)
    finally:
        net.train(was_training)
