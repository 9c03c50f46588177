"""Clip-level augmentation for training, and synthetic poor-quality copies of good clips.

Both work on what the model sees: a normalised float tensor (3, T, H, W). Intensity changes are
made in the original 0..255 intensity domain (un-normalised with ``preprocess.MEAN``/``STD``,
changed, clipped to 0..255, normalised again), so "black" stays black and "brighter" means what
it says. Every random parameter is drawn once per clip and applied to all its frames alike.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

import numpy as np
import torch
import torchvision.transforms.v2.functional as TF
from torchvision.transforms import InterpolationMode

from echoquality_core.data.preprocess import MEAN, STD

_MEAN = torch.tensor(MEAN, dtype=torch.float32).reshape(3, 1, 1, 1)
_STD = torch.tensor(STD, dtype=torch.float32).reshape(3, 1, 1, 1)

Range = tuple[float, float]
Video = TypeVar("Video", torch.Tensor, np.ndarray)


def to_intensity(video: torch.Tensor) -> torch.Tensor:
    """Normalised (3,T,H,W) -> float32 intensities 0..255 (undo ``preprocess.normalize``)."""
    return video.float() * _STD.to(video.device) + _MEAN.to(video.device)


def to_normalised(intensity: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Intensities (3,T,H,W) -> normalised model input, clipped to the 0..255 range first."""
    x = intensity.clamp(0.0, 255.0)
    return ((x - _MEAN.to(x.device)) / _STD.to(x.device)).to(dtype)


class EchoVideoAugmentation:
    """Random, clip-consistent augmentation of a normalised video tensor (3, T, H, W).

    Each step runs with probability ``transform_prob``, its parameters drawn once per clip:

    - temporal crop: a contiguous ``temporal_crop_range`` fraction of the frames, resampled
      back to T frames (nearest frame);
    - rotation (degrees), translation (fraction of width/height) and zoom (scale), combined
      into one affine transform applied identically to every frame (bilinear, black fill);
    - brightness (intensity x factor) and contrast (deviation from the clip mean x factor);
    - Gaussian noise, sigma drawn from ``noise_level`` as a fraction of the 0..255 range;
    - temporal mask: each frame is blacked out with probability ``temporal_mask_prob``.

    Returns a tensor of the same shape and dtype; ``transform_prob=0`` returns the input.
    ``generator`` (a ``torch.Generator`` or an int seed) makes it reproducible; without it the
    global torch RNG is used, which DataLoader seeds differently in each worker (a fixed
    generator is copied into every worker, so workers would repeat each other's draws).
    """

    def __init__(
        self,
        brightness_range: Range = (0.9, 1.1),
        contrast_range: Range = (0.9, 1.1),
        rotation_range: Range = (-5, 5),
        translation_range: Range = (-0.05, 0.05),
        zoom_range: Range = (0.95, 1.05),
        noise_level: Range = (0.0, 0.02),
        temporal_crop_range: Range = (0.9, 1.0),
        temporal_mask_prob: float = 0.05,
        transform_prob: float = 0.5,
        generator: torch.Generator | int | None = None,
    ):
        self.brightness_range = _range("brightness_range", brightness_range, low=0.0)
        self.contrast_range = _range("contrast_range", contrast_range, low=0.0)
        self.rotation_range = _range("rotation_range", rotation_range)
        self.translation_range = _range("translation_range", translation_range, -1.0, 1.0)
        self.zoom_range = _range("zoom_range", zoom_range, low=1e-3)
        self.noise_level = _range("noise_level", noise_level, low=0.0)
        self.temporal_crop_range = _range("temporal_crop_range", temporal_crop_range, 1e-3, 1.0)
        self.temporal_mask_prob = _probability("temporal_mask_prob", temporal_mask_prob)
        self.transform_prob = _probability("transform_prob", transform_prob)
        if isinstance(generator, int) and not isinstance(generator, bool):
            generator = torch.Generator().manual_seed(generator)
        self.generator = generator

    def __call__(self, video: torch.Tensor) -> torch.Tensor:
        _check_video(video)
        x: torch.Tensor | None = None  # intensities, once a step has run

        def intensity() -> torch.Tensor:
            return to_intensity(video) if x is None else x

        if self._happens():
            x = self._temporal_crop(intensity())
        affine = self._affine_params(video.shape[-1], video.shape[-2])
        if affine is not None:
            x = _affine(intensity(), *affine)
        if self._happens():
            x = intensity() * self._uniform(self.brightness_range)
        if self._happens():
            x = intensity()
            mean = x.mean()
            x = (x - mean) * self._uniform(self.contrast_range) + mean
        if self._happens():
            x = intensity()
            sigma = 255.0 * self._uniform(self.noise_level)
            x = x + sigma * self._randn(x.shape).to(x.device)
        if self._happens() and self.temporal_mask_prob > 0:
            x = intensity().clone()
            x[:, self._uniforms(x.shape[1]) < self.temporal_mask_prob] = 0.0
        return video if x is None else to_normalised(x, video.dtype)

    # --- random draws (all from self.generator) -------------------------------------------
    def _uniforms(self, n: int) -> torch.Tensor:
        return torch.rand(n, generator=self.generator)

    def _uniform(self, bounds: Range) -> float:
        low, high = bounds
        return low + (high - low) * float(self._uniforms(1))

    def _randn(self, shape: Sequence[int]) -> torch.Tensor:
        return torch.randn(tuple(shape), generator=self.generator)

    def _happens(self) -> bool:
        return float(self._uniforms(1)) < self.transform_prob

    # --- steps ----------------------------------------------------------------------------
    def _temporal_crop(self, x: torch.Tensor) -> torch.Tensor:
        n = x.shape[1]
        length = min(n, max(1, round(self._uniform(self.temporal_crop_range) * n)))
        start = int(self._uniforms(1) * (n - length + 1)) if length < n else 0
        index = start + (torch.arange(n) * length) // n
        return x[:, index.to(x.device)]

    def _affine_params(self, width: int, height: int) -> tuple[float, list[float], float] | None:
        angle = self._uniform(self.rotation_range) if self._happens() else 0.0
        shift = (
            [self._uniform(self.translation_range) * width,
             self._uniform(self.translation_range) * height]
            if self._happens() else [0.0, 0.0]
        )
        scale = self._uniform(self.zoom_range) if self._happens() else 1.0
        if angle == 0.0 and shift == [0.0, 0.0] and scale == 1.0:
            return None
        return angle, shift, scale


def _affine(x: torch.Tensor, angle: float, shift: list[float], scale: float) -> torch.Tensor:
    """One affine for every frame: (3,T,H,W) viewed as a batch of T images (T,3,H,W)."""
    frames = x.permute(1, 0, 2, 3)
    moved = TF.affine(
        frames, angle=angle, translate=shift, scale=scale, shear=[0.0, 0.0],
        interpolation=InterpolationMode.BILINEAR, fill=0.0,
    )
    return moved.permute(1, 0, 2, 3)


def create_synthetic_low_quality(
    video: Video,
    noise_level: float = 0.2,
    blur_kernel: int = 5,
    contrast_reduction: float = 0.5,
    generator: torch.Generator | None = None,
) -> Video:
    """A poor-quality copy of a clip: blurred, with less contrast, then noisy.

    ``video`` is either the normalised model input, a float tensor (3, T, H, W), or raw frames,
    a uint8 array (T, H, W, 3); the result is of the same kind, shape and dtype.
    Steps, in the 0..255 intensity domain: Gaussian blur of each frame with an odd
    ``blur_kernel`` (1 = none; sigma as OpenCV derives it from the size), deviations from the
    clip's mean intensity scaled by ``1 - contrast_reduction``, Gaussian noise with sigma
    ``noise_level * 255``; finally clipped to 0..255.
    """
    if not 0.0 <= contrast_reduction <= 1.0:
        raise ValueError(f"contrast_reduction must be in [0, 1], got {contrast_reduction!r}")
    if noise_level < 0:
        raise ValueError(f"noise_level must be >= 0, got {noise_level!r}")
    if isinstance(blur_kernel, bool) or int(blur_kernel) != blur_kernel or blur_kernel < 1 \
            or blur_kernel % 2 == 0:
        raise ValueError(f"blur_kernel must be an odd whole number >= 1, got {blur_kernel!r}")

    if isinstance(video, np.ndarray):
        if video.dtype != np.uint8 or video.ndim != 4 or video.shape[-1] != 3:
            raise ValueError(
                f"expected uint8 frames (T,H,W,3), got {video.dtype} {tuple(video.shape)}"
            )
        x = torch.from_numpy(video).permute(3, 0, 1, 2).float()
    else:
        _check_video(video)
        x = to_intensity(video)

    if blur_kernel > 1:
        k = int(blur_kernel)
        sigma = 0.3 * ((k - 1) * 0.5 - 1) + 0.8
        x = TF.gaussian_blur(x.permute(1, 0, 2, 3), [k, k], [sigma, sigma]).permute(1, 0, 2, 3)
    mean = x.mean()
    x = (x - mean) * (1.0 - contrast_reduction) + mean
    if noise_level > 0:
        x = x + 255.0 * noise_level * torch.randn(x.shape, generator=generator).to(x.device)

    if isinstance(video, np.ndarray):
        return x.clamp(0, 255).round().to(torch.uint8).permute(1, 2, 3, 0).numpy()
    return to_normalised(x, video.dtype)


def _check_video(video: torch.Tensor) -> None:
    if not isinstance(video, torch.Tensor) or not video.is_floating_point():
        raise TypeError(f"expected a float tensor (3,T,H,W), got {type(video).__name__}"
                        + (f" of {video.dtype}" if isinstance(video, torch.Tensor) else ""))
    if video.ndim != 4 or video.shape[0] != 3:
        raise ValueError(f"expected a video tensor of shape (3,T,H,W), got {tuple(video.shape)}")


def _range(name: str, value: Sequence[float], low: float = -np.inf, high: float = np.inf) -> Range:
    try:
        lo, hi = (float(v) for v in value)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be a pair (low, high), got {value!r}") from exc
    if not low <= lo <= hi <= high:
        raise ValueError(f"{name} must satisfy {low:g} <= low <= high <= {high:g}, got {value!r}")
    return lo, hi


def _probability(name: str, value: float) -> float:
    if not 0.0 <= float(value) <= 1.0:
        raise ValueError(f"{name} must be a probability in [0, 1], got {value!r}")
    return float(value)
