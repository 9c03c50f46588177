"""Model files, read back: a checkpoint or weights file, or a TorchScript export, as a model in
eval mode plus its info (threshold, calibration, preprocessing), a checkpoint's info alone
(:func:`read_info`), and the one forward pass that turns model-input clips into scores. No other
module reads model files; the one rewrite of a checkpoint, its decision, is here too
(:func:`write_decision`).

Writing model files lives elsewhere: checkpoints in ``network.save_checkpoint``, exports in
``export.export_model`` (which reads models through this module). Load a TorchScript export only
from a source you trust: it is a program, not just weights.
"""
from __future__ import annotations

import dataclasses
import json
import os
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from echoquality_core.model import precision
from echoquality_core.model.fold import fold_batchnorm
from echoquality_core.model.network import (
    WeightsError,
    model_from_state,
    read_model_file,
    resolve_device,
    save_torch_atomic,
)
from echoquality_core.model.file_kind import (
    EXPORT_FILE,
    INFO_FILE,
    TORCHSCRIPT_FILE,
    is_export,
    is_torchscript,
)
from echoquality_core.data.preprocess import PreprocessParams
from echoquality_core.decision import check_threshold

TRUST_HINT = ("a TorchScript export is a program: loading it runs code from the file (a "
              "torch.export .pt2 file may too). Load it only from a source you trust: "
              "--trust-exported on the command line, or confirm in the app")


class UntrustedModelError(WeightsError):
    """An export (TorchScript or torch.export) given where only weights
    (``weights_only=True``) are accepted."""


_NEEDS_CHECKPOINT = ("GradCAM needs the model's checkpoint, not an export (it has no layers to "
                     "look into)")


def jit_load(path: str | os.PathLike) -> torch.jit.ScriptModule:
    """A TorchScript file on the CPU, without torch's deprecation note about ``torch.jit``."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*torch\.jit\.load. is deprecated",
                                category=FutureWarning)
        return torch.jit.load(str(path), map_location="cpu")


def load_exported(path: str | os.PathLike) -> tuple[nn.Module, dict[str, Any]]:
    """(exported model in eval mode on the CPU, its model_info.json or {}) from an export's
    ``model.pt2`` (torch.export), ``model.ts.pt`` (TorchScript) or their folder (``model.pt2``
    first). Raises WeightsError for anything else."""
    path = Path(path)
    if path.is_dir() and (path / EXPORT_FILE).is_file():
        path = path / EXPORT_FILE
    if path.suffix == ".pt2" and path.is_file():
        return _load_program(path)
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
    return module.eval(), _read_info(file)


def _read_info(file: Path) -> dict[str, Any]:
    info_path = file.parent / INFO_FILE
    info: dict[str, Any] = {}
    if info_path.is_file():
        try:
            info = json.loads(info_path.read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError) as exc:
            raise WeightsError(info_path, f"not valid JSON ({exc})") from exc
    return info


class ExportedProgramModel(nn.Module):
    """A ``torch.export`` program as a module that scoring can use like any other: it was
    exported in eval mode, so ``eval()``/``train()`` leave it alone (the program itself refuses
    them); it runs on the CPU."""

    def __init__(self, program: Any):
        super().__init__()
        object.__setattr__(self, "program", program)  # not a child: kept out of eval()/to()

    def forward(self, videos: torch.Tensor) -> torch.Tensor:
        return self.program(videos.cpu())


def _load_program(file: Path) -> tuple[nn.Module, dict[str, Any]]:
    """A ``torch.export`` program (``.pt2``) as a module, and its info."""
    try:
        program = torch.export.load(file).module()
    except Exception as exc:  # a damaged or foreign .pt2
        raise WeightsError(file, f"torch.export file could not be loaded ({exc})") from exc
    return ExportedProgramModel(program), _read_info(file)


def load_scoring_model(model: str | os.PathLike | nn.Module, *,
                       trust_exported: bool = False) -> tuple[nn.Module, dict[str, Any]]:
    """(model in eval mode on the CPU, its info) from a module or a weights file or checkpoint
    (see model.load_weights: ``weights_only=True``, no code runs). An export (its folder,
    a TorchScript ``.ts.pt`` or a torch.export ``.pt2`` file) may run code when loaded: it is
    refused with ``UntrustedModelError`` unless ``trust_exported``."""
    build, info = read_scoring_model(model, trust_exported=trust_exported)
    return build(), info


def read_scoring_model(model: str | os.PathLike | nn.Module, *, trust_exported: bool = False,
                       ) -> tuple[Callable[[], nn.Module], dict[str, Any]]:
    """:func:`load_scoring_model` in two steps: (build, info), the file read once and its info
    known at once; ``build()`` then makes the model in eval mode (for a checkpoint: imports
    torchvision, makes the layers on the ``meta`` device and gives them the file's tensors), so
    clips can be decoded meanwhile. Same files and errors."""
    if isinstance(model, nn.Module):
        return lambda: model, {}
    path = Path(model)
    if is_export(path):
        if not trust_exported:
            raise UntrustedModelError(path, TRUST_HINT)
        net, info = load_exported(path)
        return lambda: net, info
    state, info = read_model_file(path)  # WeightsError for a bad file
    return lambda: model_from_state(path, state).eval(), info


def require_checkpoint(net: nn.Module | str | os.PathLike,
                       source: str | os.PathLike | None = None) -> None:
    """Refuse an exported model (or export file, before loading it) where its layers are
    needed (GradCAM): WeightsError naming ``source`` when it is a file, else ValueError."""
    if not isinstance(net, nn.Module):
        if is_export(net):
            raise WeightsError(Path(net), _NEEDS_CHECKPOINT)
        return
    if isinstance(net, (torch.jit.ScriptModule, ExportedProgramModel)):
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


def read_info(path: str | os.PathLike) -> dict[str, Any]:
    """A weights file's or checkpoint's info without its weights (threshold, calibration,
    preprocess, config, run_id, ...; {} for bare weights). WeightsError for a file that is not
    a weights file or checkpoint (the checks of ``network.read_model_file``)."""
    return read_model_file(path)[1]


def write_decision(path: str | os.PathLike, threshold: float,
                   calibration: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Make ``threshold`` and ``calibration`` (None: none) the checkpoint's: the file is
    rewritten atomically with them, its weights and other info unchanged. Returns the info as
    written. WeightsError for bare weights (no checkpoint to hold a decision)."""
    path = Path(path)
    state, info = read_model_file(path)
    if not info:
        raise WeightsError(path, "not an EchoQuality checkpoint (bare weights have no place "
                                 "for a threshold); use a training run's best.pt")
    info["threshold"] = check_threshold(threshold)
    info["calibration"] = dict(calibration) if calibration else None
    save_torch_atomic({"model_state_dict": state, **info}, path)
    return info


def autocast(device: torch.device):
    """Reduced precision where the device is fast at it (``precision.autocast``), else fp32."""
    return precision.autocast(device)


def forward_scores(net: nn.Module, videos: torch.Tensor, dev: torch.device) -> list[float]:
    """Scores (sigmoid of the one logit per clip) of a batch already in eval mode on ``dev``
    (bf16/fp16 autocast and channels_last_3d where ``precision`` says they help)."""
    with torch.inference_mode(), autocast(dev):
        logits = net(precision.prepare_input(videos, dev)).reshape(-1)
    if logits.numel() != len(videos):
        raise ValueError(f"model gave {logits.numel()} outputs for {len(videos)} clips; "
                         "expected one logit per clip")
    return torch.sigmoid(logits.float()).cpu().tolist()


def score_arrays(net: nn.Module, videos: np.ndarray | torch.Tensor,
                 device: str | torch.device = "cpu") -> np.ndarray:
    """Scores (N,) for a batch of model-input clips (N,3,T,S,S): sigmoid of the logits, from
    ``net`` with its BatchNorms folded as ``scoring.score`` scores (``net`` keeps its weights
    and mode; it is put in the memory format scoring uses, ``precision.prepare_model``)."""
    dev = resolve_device(device)
    videos = torch.as_tensor(videos, dtype=torch.float32)
    was_training = net.training
    precision.prepare_model(net, dev).eval()
    try:
        return np.asarray(forward_scores(fold_batchnorm(net), videos, dev), dtype=np.float32)
    finally:
        net.train(was_training)
