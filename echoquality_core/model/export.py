"""Export a trained quality model for use without this package: ``torch.export`` (``model.pt2``)
and ONNX (``model.onnx``, when the ``[onnx]`` extra is installed) by default, TorchScript
(deprecated by PyTorch) on request, with ``model_info.json`` saying how to feed it. Each file
is checked against the eager model on the example clip (ONNX through onnxruntime when present).

The exported model maps a normalised clip (N, 3, T, 112, 112) to one logit per clip;
score = sigmoid(logit). ``model_info.json`` holds the preprocessing settings, MEAN/STD, the
decision threshold and the input shape. Reading an export back
(``load_exported``) lives in ``echoquality_core.model.checkpoint``. Load a TorchScript export only from a
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

from echoquality_core.files.atomic import atomic_write
from echoquality_core.model.checkpoint import (
    EXPORT_FILE,
    INFO_FILE,
    TORCHSCRIPT_FILE,
    is_export,
    is_torchscript,
    jit_load,
    load_exported,
    load_scoring_model,
    params_from_info,
    score_arrays,
)
from echoquality_core.decision import Decision
from echoquality_core.model.fold import fold_batchnorm
from echoquality_core.model.network import WeightsError
from echoquality_core.model.precision import precision
from echoquality_core.data.preprocess import MEAN, STD, PreprocessParams

log = logging.getLogger(__name__)

EXPORT_FORMAT = "echoquality-export-v1"
ONNX_FILE = "model.onnx"
FORMATS = ("export", "onnx", "torchscript")
DEFAULT_FORMATS = ("export", "onnx")
TOLERANCE = 1e-4  # largest score difference allowed between the export and the original


def export_model(
    checkpoint_or_model: str | os.PathLike | nn.Module,
    out_dir: str | os.PathLike,
    *,
    example_frames: int = 16,
    formats: Sequence[str] = DEFAULT_FORMATS,
    threshold: float | None = None,
) -> dict[str, Any]:
    """Write the ``formats`` asked for: ``model.pt2`` (torch.export, any batch size, T frames),
    ``model.onnx`` if ONNX export works here, ``model.ts.pt`` (torch.jit.trace), plus
    ``model_info.json``; return the info (as written).

    Each export holds the network scoring runs (BatchNorms folded, ``model.fold``) and is
    checked against it on a (2,3,T,S,S) example: scores must agree within 1e-4
    (``info["max_score_difference"][format]``). ONNX needs the ``onnx`` package and
    is checked with ``onnxruntime`` when that is installed; without ``onnx`` it is skipped and
    ``info["skipped"]["onnx"]`` says why. ``threshold`` defaults to the checkpoint's; its
    calibration goes with it, so the export makes the same calls.
    """
    _refuse(checkpoint_or_model, formats)
    model, source_info = load_scoring_model(checkpoint_or_model)
    params = params_from_info(source_info)
    if int(example_frames) < 1:
        raise ValueError(f"example_frames must be >= 1, got {example_frames}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)

    # the exports score as scoring does: BatchNorm folded into the convolutions (fold.py),
    # so an export and its checkpoint give the same scores at any precision
    model = fold_batchnorm(model.cpu().eval())
    generator = torch.Generator().manual_seed(0)
    example = torch.randn(2, 3, int(example_frames), params.size, params.size, generator=generator)
    info = _info(params, int(example_frames), Decision.from_info(source_info, threshold))
    with precision("fp32"):  # the files hold fp32 graphs: compare them with the fp32 eager model
        original = score_arrays(model, example)
        if "export" in formats:
            info["files"]["export"] = _export_program(model, example, out_dir)
            _check(info, "export", original, score_arrays(
                load_exported(out_dir / EXPORT_FILE)[0], example))
        if "torchscript" in formats:
            info["files"]["torchscript"] = _export_torchscript(model, example, out_dir)
            _check(info, "torchscript", original,
                   score_arrays(jit_load(out_dir / TORCHSCRIPT_FILE), example))
        if "onnx" in formats:
            _export_and_check_onnx(model, example, out_dir, info, original)
    _write_atomic(out_dir / INFO_FILE, (json.dumps(info, indent=2) + "\n").encode("utf-8"))
    return info


def _refuse(checkpoint_or_model: str | os.PathLike | nn.Module, formats: Sequence[str]) -> None:
    """ValueError for unknown formats; a TorchScript model or an export is not re-exported."""
    unknown = sorted(set(formats) - set(FORMATS))
    if unknown or not formats:
        raise ValueError(f"formats must be some of {FORMATS}, got {tuple(formats)}")
    if isinstance(checkpoint_or_model, torch.jit.ScriptModule):
        raise TypeError("this is already a TorchScript model; export the checkpoint instead")
    if not isinstance(checkpoint_or_model, torch.nn.Module) and is_export(checkpoint_or_model):
        kind = ("a TorchScript export" if is_torchscript(checkpoint_or_model) else "an export")
        raise WeightsError(Path(checkpoint_or_model),
                           f"already {kind}; export the checkpoint instead")


def _info(params: PreprocessParams, frames: int, decision: Decision) -> dict[str, Any]:
    """``model_info.json`` before any file is written (``files``, ``skipped`` and
    ``max_score_difference`` are filled in as the formats are exported)."""
    return {
        "format": EXPORT_FORMAT,
        "input_shape": [1, 3, frames, params.size, params.size],
        "input": "normalised clip float32 (N, 3, T, S, S): (uint8 RGB - mean) / std per channel; "
                 "any N; T as in input_shape for model.pt2",
        "output": "one logit per clip, shape (N, 1)",
        "score": "sigmoid(logit)",
        "threshold": decision.threshold,
        "calibration": decision.calibration,
        "preprocess": dataclasses.asdict(params),
        "mean": list(MEAN),
        "std": list(STD),
        "torch_version": torch.__version__,
        "files": {},
        "skipped": {},
        "max_score_difference": {},
    }


def _export_and_check_onnx(model: nn.Module, example: torch.Tensor, out_dir: Path,
                           info: dict[str, Any], original) -> None:
    """``model.onnx``, checked through onnxruntime when installed; skipped (with the reason in
    ``info["skipped"]``) when ONNX export does not work here."""
    reason = _export_onnx(model, example, out_dir)
    if reason is None:
        info["files"]["onnx"] = ONNX_FILE
        onnx_scores = onnx_score_arrays(out_dir / ONNX_FILE, example)
        if onnx_scores is not None:
            _check(info, "onnx", original, onnx_scores)
    else:
        info["skipped"]["onnx"] = reason
        log.info("ONNX export skipped: %s", reason)


def _check(info: dict[str, Any], fmt: str, original, copy) -> None:
    difference = float(abs(original - copy).max())
    if difference > TOLERANCE:
        raise RuntimeError(f"the {fmt} export scores {difference:.2g} away from the original "
                           f"(allowed {TOLERANCE:g}); export not usable")
    info["max_score_difference"][fmt] = difference


def onnx_score_arrays(path: str | os.PathLike, videos: torch.Tensor):
    """Scores of an ONNX export through onnxruntime, or None when it is not installed."""
    if importlib.util.find_spec("onnxruntime") is None:
        return None
    import numpy as np
    import onnxruntime

    session = onnxruntime.InferenceSession(os.fspath(path), providers=["CPUExecutionProvider"])
    (logits,) = session.run(None, {"video": videos.numpy()})
    return (1.0 / (1.0 + np.exp(-logits.reshape(-1).astype(np.float64)))).astype(np.float32)


def _export_program(model: nn.Module, example: torch.Tensor, out_dir: Path) -> str:
    """``model.pt2``: torch.export with a dynamic batch dimension."""
    batch = torch.export.Dim("batch", min=1, max=4096)
    with torch.no_grad():
        program = torch.export.export(model, (example,), dynamic_shapes=({0: batch},))
    buffer = io.BytesIO()
    torch.export.save(program, buffer)
    _write_atomic(out_dir / EXPORT_FILE, buffer.getvalue())
    return EXPORT_FILE


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
