"""Export a trained quality model for use without this package: TorchScript (and ONNX when the
``onnx`` package is installed), with ``model_info.json`` saying how to feed it.

The exported model maps a normalised clip (N, 3, T, 112, 112) to one logit per clip;
score = sigmoid(logit). ``model_info.json`` holds the preprocessing settings, MEAN/STD, the
decision threshold and the input shape. Reading an export back
(``load_exported``) lives in ``echoquality_core.checkpoint``. Load a TorchScript export only from a
source you trust: it is a program, not just weights.
"""
from __future__ import annotations

import dataclasses
import importlib.util
import io
import json
import logging
import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from echoquality_core.atomic import atomic_write
from echoquality_core.checkpoint import (
    INFO_FILE,
    TORCHSCRIPT_FILE,
    jit_load,
    load_scoring_model,
    params_from_info,
    score_arrays,
    threshold_from_info,
)
from echoquality_core.model import WeightsError
from echoquality_core.preprocess import MEAN, STD

log = logging.getLogger(__name__)

EXPORT_FORMAT = "echoquality-export-v1"
ONNX_FILE = "model.onnx"
FORMATS = ("torchscript", "onnx")
TOLERANCE = 1e-4  # largest score difference allowed between the export and the original


def export_model(
    checkpoint_or_model: str | os.PathLike | nn.Module,
    out_dir: str | os.PathLike,
    *,
    example_frames: int = 16,
    formats: Sequence[str] = FORMATS,
    threshold: float | None = None,
) -> dict[str, Any]:
    """Write ``model.ts.pt`` (torch.jit.trace on a (1,3,T,112,112) example), ``model.onnx`` if
    ONNX export works here, and ``model_info.json``; return the info (as written).

    The TorchScript export is checked against the original on the example: scores must agree
    within 1e-4. ONNX needs the ``onnx`` package; without it ONNX is skipped and
    ``info["skipped"]["onnx"]`` says why. ``threshold`` defaults to the checkpoint's.
    """
    unknown = sorted(set(formats) - set(FORMATS))
    if unknown or not formats:
        raise ValueError(f"formats must be some of {FORMATS}, got {tuple(formats)}")
    if isinstance(checkpoint_or_model, torch.jit.ScriptModule):
        raise TypeError("this is already a TorchScript model; export the checkpoint instead")
    model, source_info = load_scoring_model(checkpoint_or_model)
    if isinstance(model, torch.jit.ScriptModule):
        raise WeightsError(Path(checkpoint_or_model),
                           "already a TorchScript export; export the checkpoint instead")
    params = params_from_info(source_info)
    if int(example_frames) < 1:
        raise ValueError(f"example_frames must be >= 1, got {example_frames}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)

    model = model.cpu().eval()
    generator = torch.Generator().manual_seed(0)
    example = torch.randn(1, 3, int(example_frames), params.size, params.size, generator=generator)
    info: dict[str, Any] = {
        "format": EXPORT_FORMAT,
        "input_shape": [1, 3, int(example_frames), params.size, params.size],
        "input": "normalised clip float32 (N, 3, T, S, S): (uint8 RGB - mean) / std per channel; "
                 "any N, T",
        "output": "one logit per clip, shape (N, 1)",
        "score": "sigmoid(logit)",
        "threshold": threshold_from_info(source_info, threshold),
        "preprocess": dataclasses.asdict(params),
        "mean": list(MEAN),
        "std": list(STD),
        "torch_version": torch.__version__,
        "files": {},
        "skipped": {},
    }
    if "torchscript" in formats:
        info["files"]["torchscript"] = _export_torchscript(model, example, out_dir)
        exported = jit_load(out_dir / TORCHSCRIPT_FILE)
        original, copy = score_arrays(model, example), score_arrays(exported, example)
        difference = float(abs(original - copy).max())
        if difference > TOLERANCE:
            raise RuntimeError(f"the TorchScript export scores {difference:.2g} away from the "
                               f"original (allowed {TOLERANCE:g}); export not usable")
        info["max_score_difference"] = difference
    if "onnx" in formats:
        reason = _export_onnx(model, example, out_dir)
        if reason is None:
            info["files"]["onnx"] = ONNX_FILE
        else:
            info["skipped"]["onnx"] = reason
            log.info("ONNX export skipped: %s", reason)
    _write_atomic(out_dir / INFO_FILE, (json.dumps(info, indent=2) + "\n").encode("utf-8"))
    return info


def _export_torchscript(model: nn.Module, example: torch.Tensor, out_dir: Path) -> str:
    buffer = io.BytesIO()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # TracerWarnings / deprecation notes about torch.jit
        traced = torch.jit.trace(model, example, check_trace=False)
        torch.jit.save(traced, buffer)
    _write_atomic(out_dir / TORCHSCRIPT_FILE, buffer.getvalue())
    return TORCHSCRIPT_FILE


def _export_onnx(model: nn.Module, example: torch.Tensor, out_dir: Path) -> str | None:
    """None when written, else why ONNX was skipped."""
    if importlib.util.find_spec("onnx") is None:
        return ("the 'onnx' package is not installed (torch.onnx.export needs it); "
                "install it with `pip install onnx` to export ONNX")
    buffer = io.BytesIO()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                model, (example,), buffer, dynamo=False, input_names=["video"],
                output_names=["logit"],
                dynamic_axes={"video": {0: "batch", 2: "frames"}, "logit": {0: "batch"}},
            )
    except Exception as exc:  # exporter limitations must not lose the TorchScript export
        log.exception("ONNX export failed")
        return f"torch.onnx.export failed ({type(exc).__name__}: {exc})"
    _write_atomic(out_dir / ONNX_FILE, buffer.getvalue())
    return None


def _write_atomic(path: Path, data: bytes) -> None:
    with atomic_write(path) as fh:
        fh.write(data)
