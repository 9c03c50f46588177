"""The streamed preprocessing pass (a Clip read frame by frame) gives exactly what preprocessing
all frames at once gives, decodes each frame once, and never builds the whole clip in memory."""
from __future__ import annotations

import numpy as np
import pytest

from echoquality_core.demo.project import synthetic_clip, write_dicom_clip
from echoquality_core.dicom import read_clip
from echoquality_core.data.preprocess import PreprocessParams, model_frames, preprocess_clip


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    root = tmp_path_factory.mktemp("stream")
    rng = np.random.default_rng(3)
    return {
        (n, compression): write_dicom_clip(
            root / f"c{n}_{compression}.dcm",
            synthetic_clip(rng, "dropout" if n > 10 else "good", n_frames=n, height=96,
                           width=128), compression=compression)
        for n in (5, 16) for compression in ("jpeg", "none")}


class CountingClip:
    """A real Clip whose frame reads are counted (and ``frames`` is forbidden)."""

    def __init__(self, clip):
        self.clip, self.n_frames, self.reads = clip, clip.n_frames, []

    def frame(self, i):
        self.reads.append(i)
        return self.clip.frame(i)


@pytest.mark.parametrize("mask", ["sector", "region", "none"])
@pytest.mark.parametrize("pad", ["mean", "zero"])
def test_streamed_equals_all_frames_at_once(clips, mask, pad):
    params = PreprocessParams(n_frames=8, stride=2, size=48, mask=mask, pad=pad)
    for path in clips.values():
        clip = read_clip(path)
        regions = clip.regions if mask == "region" else None
        whole = model_frames(clip.frames, params, regions)
        streamed = model_frames(CountingClip(read_clip(path)), params, regions)
        np.testing.assert_array_equal(streamed, whole)


def test_each_frame_is_decoded_once_and_only_sampled_frames_without_the_sector_mask(clips):
    path = clips[(16, "jpeg")]
    counting = CountingClip(read_clip(path))
    model_frames(counting, PreprocessParams(n_frames=4, stride=3, size=32))
    assert counting.reads == list(range(16))
    counting = CountingClip(read_clip(path))
    model_frames(counting, PreprocessParams(n_frames=4, stride=3, size=32, mask="none"))
    assert counting.reads == [0, 3, 6, 9]


def test_the_readme_example_runs_on_a_clip(clips):
    clip = read_clip(clips[(5, "none")])
    video = preprocess_clip(clip, regions=clip.regions)  # the README's example
    assert video.shape == (3, 16, 112, 112) and video.dtype == np.float32
    assert clip._frames is None  # the whole clip was never decoded into memory


def test_the_model_input_view_of_a_very_long_clip_is_refused_before_decoding():
    from echoquality_core.data.preprocess import MAX_VIEW_FRAMES, model_view

    asked = []
    with pytest.raises(ValueError, match=f"the clip has {MAX_VIEW_FRAMES + 1} frames; the "
                                         f"model-input view shows clips of up to"):
        model_view(asked.append, MAX_VIEW_FRAMES + 1)
    assert asked == []
