"""GradCAM for the video quality model: where in the clip the model looked for its score.

Hand-written hooks rather than pytorch-grad-cam / captum: the model input is 5-D (N,C,T,H,W),
the maps must stay 3-D (T,H,W), and a frozen model (every ``requires_grad`` False) must work
without touching its parameters.

How: a forward hook on the target layer swaps the layer's output A for a detached copy that
requires grad, so the backward pass of the quality logit stops at that layer (no gradients reach
or accumulate in any parameter); ``torch.autograd.grad`` gives dScore/dA. Then
``cam = relu(sum_c mean_{t,h,w}(dScore/dA_c) * A_c)``, upsampled trilinearly to the input
(T,H,W) and scaled to 0..1.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from echoquality_core.data.clips import clip_model_frames
from echoquality_core.decision import Verdict
from echoquality_core.dicom import read_clip
from echoquality_core.scoring.heatmap import ClipExplanation
from echoquality_core.data.preprocess import MEAN, STD, PreprocessParams, normalize

EXPLAIN = ("good", "poor")


def _find_layer(model: nn.Module, name: str) -> nn.Module:
    try:
        return model.get_submodule(name)
    except AttributeError:
        top = ", ".join(n for n, _ in model.named_children())
        raise ValueError(
            f"model has no layer {name!r}; use a dotted module name such as 'layer4' or "
            f"'layer3.1.conv2' (top-level layers: {top})"
        ) from None


def _as_batch(video: Any) -> torch.Tensor:
    if isinstance(video, np.ndarray):
        video = torch.from_numpy(video)
    if not isinstance(video, torch.Tensor):
        raise TypeError(f"video must be a torch tensor or numpy array, got {type(video).__name__}")
    if video.ndim == 4:
        video = video.unsqueeze(0)
    if video.ndim != 5 or video.shape[0] != 1 or video.shape[1] != 3:
        raise ValueError(
            f"video must have shape (3,T,H,W) or (1,3,T,H,W), got {tuple(video.shape)}"
        )
    return video


def gradcam_with_score(
    model: nn.Module, video: Any, target_layer_name: str = "layer4", explain: str = "good"
) -> tuple[np.ndarray, float]:
    """GradCAM maps (T,H,W) float32 in 0..1 and the clip's quality score (sigmoid of the logit)."""
    if explain not in EXPLAIN:
        raise ValueError(f"explain must be one of {EXPLAIN}, got {explain!r}")
    layer = _find_layer(model, target_layer_name)
    batch = _as_batch(video)
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    captured: dict[str, torch.Tensor] = {}

    def keep_activation(module: nn.Module, inputs: Any, output: Any) -> torch.Tensor:
        if not isinstance(output, torch.Tensor):
            raise TypeError(f"layer {target_layer_name!r} does not output a single tensor")
        activation = output.detach().requires_grad_(True)
        captured["activation"] = activation
        return activation.clone()  # downstream in-place ops (out += identity) must not touch it

    was_training = model.training
    handle = layer.register_forward_hook(keep_activation)
    try:
        model.eval()
        with torch.inference_mode(False), torch.enable_grad():
            x = batch.detach().to(device=device, dtype=torch.float32).clone()
            logit = model(x).reshape(-1)
            if logit.numel() != 1:
                raise ValueError(f"model must output one logit per clip, got {logit.numel()}")
            if "activation" not in captured:
                raise ValueError(f"layer {target_layer_name!r} was not used by the model")
            activation = captured["activation"]
            target = logit[0] if explain == "good" else -logit[0]
            (grads,) = torch.autograd.grad(target, activation)
        with torch.no_grad():
            weights = grads.mean(dim=(2, 3, 4), keepdim=True)
            cam = F.relu((weights * activation).sum(dim=1, keepdim=True))
            cam = F.interpolate(cam, size=tuple(batch.shape[2:]), mode="trilinear",
                                align_corners=False)[0, 0]
            peak = cam.max()
            cam = cam / peak if peak > 0 else torch.zeros_like(cam)
            score = float(torch.sigmoid(logit[0]).item())
    finally:
        handle.remove()
        model.train(was_training)
    return cam.clamp_(0.0, 1.0).cpu().numpy().astype(np.float32), score


def gradcam(
    model: nn.Module, video: Any, target_layer_name: str = "layer4", explain: str = "good"
) -> np.ndarray:
    """GradCAM maps, float32 (T,H,W) in 0..1, for one model-input clip (3,T,H,W) or (1,3,T,H,W).

    ``explain="good"`` shows what raised the quality score, ``"poor"`` what lowered it.
    ``target_layer_name`` is a dotted module name ("layer4", "layer3", "layer3.1.conv2").
    Works on frozen models and under ``torch.no_grad``/``inference_mode``; leaves the model's
    mode, parameters and hooks as it found them.
    """
    return gradcam_with_score(model, video, target_layer_name, explain)[0]


def denormalize(video: Any) -> np.ndarray:
    """Model input (3,T,H,W) or (1,3,T,H,W) back to viewable uint8 frames (T,H,W,3)."""
    x = _as_batch(video)[0].detach().float().cpu().numpy()
    x = x * np.asarray(STD, np.float32).reshape(3, 1, 1, 1)
    x += np.asarray(MEAN, np.float32).reshape(3, 1, 1, 1)
    return np.clip(np.rint(x), 0, 255).astype(np.uint8).transpose(1, 2, 3, 0)


def explain_clip(
    model: nn.Module,
    path: str | os.PathLike,
    params: PreprocessParams,
    explain: str = "good",
    target_layer_name: str = "layer4",
) -> ClipExplanation:
    """Read a DICOM clip, turn it into model input and explain the model's score on it.

    ``model`` must be a module with layers (not a TorchScript export; see
    ``checkpoint.require_checkpoint``); ``params`` are the checkpoint's preprocessing settings.
    """
    clip = read_clip(path)
    video = normalize(clip_model_frames(clip, params))
    maps, score = gradcam_with_score(model, torch.from_numpy(video), target_layer_name, explain)
    return ClipExplanation(Path(path), video, maps, score, explain, target_layer_name, params,
                           clip.n_frames, (clip.height, clip.width))


def save_explanation(result: ClipExplanation, save_path: str | os.PathLike,
                     n_frames_shown: int = 8, verdict: Verdict | None = None) -> Path:
    """PNG strip of an explanation: model-input frames with the heat map, importance curve;
    the title gives the model's ``verdict`` on the clip when given, else its raw score."""
    from echoquality_core.evaluation.plots import save_gradcam_strip

    save_path = Path(save_path)
    save_gradcam_strip(
        denormalize(result.video), result.maps, save_path, n_frames_shown=n_frames_shown,
        title=_title(result.layer, result.explain, result.score, verdict),
    )
    return save_path


def _title(layer: str, explain: str, score: float, verdict: Verdict | None) -> str:
    said = (f"score {verdict.score:.3f} ({verdict.assessment})" if verdict is not None
            else f"score {score:.3f}")
    return f"GradCAM ({layer}, explains '{explain}') - {said}"


def visualize_gradcam(
    model: nn.Module,
    video: Any,
    target_layer_name: str = "layer4",
    save_path: str | os.PathLike | None = None,
    n_frames_shown: int = 8,
    explain: str = "good",
    verdict: Verdict | None = None,
) -> np.ndarray:
    """GradCAM maps (T,H,W) for a clip; with ``save_path`` also a PNG: the model-input frames
    with a jet heat-map overlay and the per-frame importance curve underneath, titled with the
    model's ``verdict`` when given (else the raw score)."""
    maps, score = gradcam_with_score(model, video, target_layer_name, explain)
    if save_path is not None:
        from echoquality_core.evaluation.plots import save_gradcam_strip

        save_gradcam_strip(
            denormalize(video), maps, Path(save_path), n_frames_shown=n_frames_shown,
            title=_title(target_layer_name, explain, score, verdict),
        )
    return maps
