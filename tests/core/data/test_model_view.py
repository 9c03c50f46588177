"""The streamed model view (one full-size frame at a time) equals model_frames of the whole clip."""
from __future__ import annotations

import numpy as np
import pytest

from echoquality_core.demo.project import synthetic_clip
from echoquality_core.data.preprocess import PreprocessParams, model_frames, model_view


@pytest.mark.parametrize("quality", ["good", "dropout"])
@pytest.mark.parametrize("mask", ["sector", "none"])
def test_streamed_view_equals_model_frames_of_every_frame(quality, mask):
    clip = synthetic_clip(np.random.default_rng(3), quality, n_frames=10, height=96, width=128)
    params = PreprocessParams(mask=mask, size=48)
    asked: list[int] = []

    def frame_at(index: int) -> np.ndarray:
        asked.append(index)
        return clip[index]

    view = model_view(frame_at, len(clip), params)
    whole = model_frames(clip, PreprocessParams(n_frames=len(clip), stride=1, mask=mask, size=48))
    np.testing.assert_array_equal(view, whole)
    assert max(asked) == len(clip) - 1


def test_region_mask_and_grey_frames_match_too():
    clip = synthetic_clip(np.random.default_rng(4), "good", n_frames=6, height=80, width=96)
    grey = np.ascontiguousarray(clip[..., 1])
    regions = [(10, 5, 80, 70)]
    params = PreprocessParams(mask="region", size=32)
    view = model_view(lambda i: grey[i], len(grey), params, regions)
    whole = model_frames(grey, PreprocessParams(n_frames=6, stride=1, mask="region", size=32),
                         regions)
    np.testing.assert_array_equal(view, whole)


def test_giving_up_midway_returns_none():
    clip = synthetic_clip(np.random.default_rng(5), "good", n_frames=6, height=64, width=80)
    assert model_view(lambda i: clip[i] if i < 4 else None, len(clip)) is None
