"""GradCAM maps placed back onto a clip: which model frame stands for which clip frame, the
map of one original frame (crop and scale undone), and the player's per-frame overlay. Numpy
only (no torch), so a viewer can use it without loading the model stack.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from echoquality_core.data.preprocess import PreprocessParams, map_to_original, sample_indices


@dataclass(frozen=True)
class ClipExplanation:
    """GradCAM of one clip: the model input (3,T,S,S), its maps (T,S,S) in 0..1, the score, and
    what is needed to place the maps back onto the clip's own frames."""

    path: Path
    video: np.ndarray
    maps: np.ndarray
    score: float
    explain: str  # "good" | "poor": what the maps explain
    layer: str
    params: PreprocessParams
    n_frames: int  # frames of the clip as stored
    shape_hw: tuple[int, int]


def frame_importance(maps: np.ndarray) -> np.ndarray:
    """Mean GradCAM activation of each frame, float32 (T,)."""
    maps = np.asarray(maps, dtype=np.float32)
    if maps.ndim != 3:
        raise ValueError(f"maps must have shape (T,H,W), got {maps.shape}")
    return maps.mean(axis=(1, 2))


def model_frame_index(
    clip_index: int, n_clip_frames: int, params: PreprocessParams | None = None
) -> int | None:
    """Which model frame (0..params.n_frames-1) stands for original frame ``clip_index``.

    The nearest sampled frame; None for frames after the stretch the model sampled from
    (a clip longer than n_frames * stride: the model never saw them).
    """
    if not 0 <= clip_index < n_clip_frames:
        raise IndexError(f"frame {clip_index} is outside the clip's 0..{n_clip_frames - 1}")
    params = params or PreprocessParams()
    sampled = sample_indices(n_clip_frames, params.n_frames, params.stride)
    real = np.flatnonzero(sampled >= 0)
    if clip_index >= sampled[real[-1]] + params.stride:
        return None
    return int(real[np.argmin(np.abs(sampled[real] - clip_index))])


def _check_maps(maps: np.ndarray, params: PreprocessParams) -> np.ndarray:
    maps = np.asarray(maps, dtype=np.float32)
    if maps.ndim != 3 or maps.shape[0] != params.n_frames:
        raise ValueError(
            f"maps must have shape ({params.n_frames},H,W) for these preprocessing settings, "
            f"got {maps.shape}"
        )
    return maps


def clip_frame_map(
    maps: np.ndarray,
    clip_index: int,
    clip_shape_hw: tuple[int, int],
    n_clip_frames: int,
    params: PreprocessParams | None = None,
) -> np.ndarray:
    """The GradCAM map (H,W) float32 for one original frame of the clip, for an overlay.

    Undoes the preprocessing: nearest sampled frame in time, crop box and scale in space
    (zero outside the part of the frame the model saw, and for frames it never saw).
    """
    params = params or PreprocessParams()
    maps = _check_maps(maps, params)
    height, width = (int(v) for v in clip_shape_hw)
    j = model_frame_index(clip_index, n_clip_frames, params)
    if j is None:
        return np.zeros((height, width), dtype=np.float32)
    return map_to_original(maps[j], height, width, params.zoom)


def maps_to_clip(
    maps: np.ndarray,
    clip_shape_hw: tuple[int, int],
    n_clip_frames: int,
    params: PreprocessParams | None = None,
) -> np.ndarray:
    """GradCAM maps for every original frame, float32 (n_clip_frames, H, W).

    Takes n_clip_frames * H * W * 4 bytes (a 100-frame 600x800 clip: 190 MB); for long or large
    clips use :func:`clip_frame_map` frame by frame instead.
    """
    params = params or PreprocessParams()
    maps = _check_maps(maps, params)
    height, width = (int(v) for v in clip_shape_hw)
    out = np.zeros((n_clip_frames, height, width), dtype=np.float32)
    placed: dict[int, np.ndarray] = {}
    for i in range(n_clip_frames):
        j = model_frame_index(i, n_clip_frames, params)
        if j is not None:
            if j not in placed:
                placed[j] = map_to_original(maps[j], height, width, params.zoom)
            out[i] = placed[j]
    return out


class ClipHeatMap:
    """The player's overlay: frame index -> GradCAM map placed on that clip frame (crop and
    scale undone, nearest sampled frame in time), computed once per model frame."""

    def __init__(self, result: ClipExplanation):
        self.result = result
        self._maps: dict[int | None, np.ndarray] = {}

    def __call__(self, index: int) -> np.ndarray | None:
        r = self.result
        if not 0 <= index < r.n_frames:
            return None
        j = model_frame_index(index, r.n_frames, r.params)
        if j not in self._maps:
            self._maps[j] = clip_frame_map(r.maps, index, r.shape_hw, r.n_frames, r.params)
        return self._maps[j]

    def importance(self) -> tuple[np.ndarray, np.ndarray]:
        """(clip frame indices the model saw, their importance)."""
        r = self.result
        frames = sample_indices(r.n_frames, r.params.n_frames, r.params.stride)
        seen = frames >= 0
        return frames[seen], frame_importance(r.maps)[seen]
