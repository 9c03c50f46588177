"""Clip augmentation and synthetic poor-quality clips (echoquality_core.data.augment)."""

import numpy as np
import pytest
import torch

from echoquality_core.data.augment import (
    EchoVideoAugmentation,
    create_synthetic_low_quality,
    to_intensity,
)
from echoquality_core.data.preprocess import normalize

T, S = 8, 32


def _video(frames_u8: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(normalize(frames_u8))


def _random_clip(seed: int = 0) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    return _video(rng.integers(20, 230, (T, S, S, 3), dtype=np.uint8))


def _square_clip(value: int = 200, background: int = 0) -> torch.Tensor:
    """Every frame the same: a bright 6x6 square in the top-left quarter."""
    frames = np.full((T, S, S, 3), background, np.uint8)
    frames[:, 4:10, 4:10] = value
    return _video(frames)


def _only(**settings) -> EchoVideoAugmentation:
    """An augmentation doing nothing except the given settings, every time."""
    neutral = {
        "brightness_range": (1, 1), "contrast_range": (1, 1), "rotation_range": (0, 0),
        "translation_range": (0, 0), "zoom_range": (1, 1), "noise_level": (0, 0),
        "temporal_crop_range": (1, 1), "temporal_mask_prob": 0.0, "transform_prob": 1.0,
        "generator": 0,
    }
    return EchoVideoAugmentation(**{**neutral, **settings})


def _centroid(video: torch.Tensor) -> torch.Tensor:
    """(row, col) centre of mass of the first frame's intensity."""
    image = to_intensity(video)[:, 0].mean(0)
    rows, cols = torch.meshgrid(torch.arange(S), torch.arange(S), indexing="ij")
    return torch.stack([(image * rows).sum(), (image * cols).sum()]) / image.sum()


def test_augmentation_keeps_shape_and_dtype():
    video = _random_clip()
    out = EchoVideoAugmentation(transform_prob=1.0, temporal_mask_prob=0.5, generator=1)(video)
    assert out.shape == video.shape and out.dtype == torch.float32
    assert not torch.equal(out, video)


def test_zero_probability_returns_the_clip_unchanged():
    video = _random_clip()
    out = EchoVideoAugmentation(transform_prob=0.0, temporal_mask_prob=1.0, generator=1)(video)
    assert torch.equal(out, video)


def test_same_seed_gives_the_same_augmentation():
    video = _random_clip()
    a = EchoVideoAugmentation(transform_prob=1.0, generator=42)
    b = EchoVideoAugmentation(transform_prob=1.0, generator=torch.Generator().manual_seed(42))
    c = EchoVideoAugmentation(transform_prob=1.0, generator=43)
    first = a(video)
    assert torch.equal(first, b(video))
    assert not torch.equal(first, c(video))
    assert not torch.equal(first, a(video))  # the generator moves on: the next clip differs


def test_spatial_transform_is_the_same_for_every_frame():
    video = _square_clip()
    out = _only(rotation_range=(-20, 20), translation_range=(-0.2, 0.2),
                zoom_range=(0.8, 1.2), generator=5)(video)
    assert not torch.allclose(out, video)
    for t in range(1, T):
        assert torch.equal(out[:, t], out[:, 0])


def test_rotation_moves_a_bright_square_around_the_centre():
    video = _square_clip()
    out = _only(rotation_range=(90, 90))(video)  # torchvision's affine: clockwise, so -> top-right
    before, after = _centroid(video), _centroid(out)
    centre = (S - 1) / 2
    assert before[0] < centre and before[1] < centre
    assert after[0] < centre and after[1] > centre
    assert torch.allclose(torch.linalg.norm(after - centre), torch.linalg.norm(before - centre),
                          atol=1.0)


def test_translation_shifts_by_the_given_fraction_of_the_image():
    video = _square_clip()
    out = _only(translation_range=(0.25, 0.25))(video)
    torch.testing.assert_close(_centroid(out) - _centroid(video),
                               torch.tensor([S * 0.25, S * 0.25]), atol=0.2, rtol=0)


def test_zoom_enlarges_the_square_about_the_centre():
    frames = np.zeros((T, S, S, 3), np.uint8)
    frames[:, 13:19, 13:19] = 200  # 6x6 square in the middle
    video = _video(frames)
    out = _only(zoom_range=(2, 2))(video)
    bright = (to_intensity(out)[:, 0].mean(0) > 100).sum()
    assert 4 * 36 * 0.7 < bright < 4 * 36 * 1.3
    torch.testing.assert_close(_centroid(out), _centroid(video), atol=0.6, rtol=0)


def test_brightness_raises_the_mean_intensity():
    video = _random_clip()
    out = _only(brightness_range=(1.1, 1.1))(video)
    before, after = to_intensity(video), to_intensity(out)
    assert after.mean() > before.mean()
    torch.testing.assert_close(after, (before * 1.1).clamp(0, 255), atol=1e-3, rtol=0)


def test_contrast_scales_deviations_from_the_clip_mean():
    video = _random_clip()
    out = _only(contrast_range=(0.5, 0.5))(video)
    before, after = to_intensity(video), to_intensity(out)
    torch.testing.assert_close(after.mean(), before.mean(), atol=1e-2, rtol=0)
    torch.testing.assert_close(after.std(), before.std() * 0.5, atol=1e-2, rtol=0)


def test_noise_has_the_drawn_sigma_relative_to_the_intensity_range():
    video = _video(np.full((T, S, S, 3), 128, np.uint8))
    out = _only(noise_level=(0.05, 0.05))(video)
    added = to_intensity(out) - to_intensity(video)
    assert added.std() == pytest.approx(0.05 * 255, rel=0.05)
    for t in range(1, T):  # noise differs between frames
        assert not torch.equal(added[:, t], added[:, 0])


def _numbered_clip() -> torch.Tensor:
    """Frame t has intensity 20 * (t + 1) everywhere."""
    frames = np.stack([np.full((S, S, 3), 20 * (t + 1), np.uint8) for t in range(T)])
    return _video(frames)


def _frame_numbers(video: torch.Tensor) -> list[int]:
    return [round(float(v)) // 20 - 1 for v in to_intensity(video)[0, :, 0, 0]]


def test_temporal_crop_takes_contiguous_frames_resampled_to_the_same_length():
    out = _only(temporal_crop_range=(0.5, 0.5), generator=3)(_numbered_clip())
    numbers = _frame_numbers(out)
    assert len(numbers) == T
    start = numbers[0]
    assert numbers == [start + i // 2 for i in range(T)]  # 4 frames, each shown twice
    assert 0 <= start <= T - 4


def test_temporal_mask_blacks_out_whole_frames():
    video = _numbered_clip()
    assert _frame_numbers(_only(temporal_mask_prob=1.0)(video)) == [-1] * T  # all black
    out = _only(temporal_mask_prob=0.5, generator=2)(video)
    numbers = _frame_numbers(out)
    masked = [t for t, n in enumerate(numbers) if n == -1]
    assert 0 < len(masked) < T
    assert all(numbers[t] == t for t in range(T) if t not in masked)
    assert torch.allclose(to_intensity(out)[:, masked], torch.zeros(()), atol=1e-3)


def test_augmentation_rejects_what_is_not_a_model_input():
    with pytest.raises(ValueError, match=r"\(3,T,H,W\)"):
        EchoVideoAugmentation()(torch.zeros(T, 3, S, S))
    with pytest.raises(TypeError, match="float tensor"):
        EchoVideoAugmentation()(torch.zeros(3, T, S, S, dtype=torch.uint8))
    with pytest.raises(ValueError, match="transform_prob"):
        EchoVideoAugmentation(transform_prob=1.5)
    with pytest.raises(ValueError, match="zoom_range"):
        EchoVideoAugmentation(zoom_range=(1.1, 0.9))


def _sharpness(x: torch.Tensor) -> float:
    """Mean absolute difference between horizontally neighbouring pixels."""
    return float((x[..., 1:] - x[..., :-1]).abs().mean())


def test_synthetic_low_quality_tensor_has_less_contrast_and_detail():
    video = _random_clip()
    out = create_synthetic_low_quality(video, noise_level=0.0, blur_kernel=5,
                                       contrast_reduction=0.5)
    assert out.shape == video.shape and out.dtype == video.dtype
    before, after = to_intensity(video), to_intensity(out)
    assert after.std() < 0.5 * before.std()
    assert _sharpness(after) < 0.5 * _sharpness(before)
    torch.testing.assert_close(after.mean(), before.mean(), atol=0.5, rtol=0)


def test_synthetic_low_quality_adds_noise():
    video = _video(np.full((T, S, S, 3), 128, np.uint8))
    out = create_synthetic_low_quality(video, noise_level=0.05, blur_kernel=1,
                                       contrast_reduction=0.0,
                                       generator=torch.Generator().manual_seed(0))
    assert (to_intensity(out) - to_intensity(video)).std() == pytest.approx(0.05 * 255, rel=0.05)


def test_synthetic_low_quality_on_uint8_frames_returns_uint8_frames():
    rng = np.random.default_rng(0)
    frames = rng.integers(20, 230, (T, S, S, 3), dtype=np.uint8)
    out = create_synthetic_low_quality(frames, noise_level=0.0)
    assert isinstance(out, np.ndarray) and out.dtype == np.uint8 and out.shape == frames.shape
    assert out.std() < 0.5 * frames.std()
    noisy = create_synthetic_low_quality(np.full_like(frames, 128), noise_level=0.05,
                                         blur_kernel=1, contrast_reduction=0.0)
    assert noisy.std() == pytest.approx(0.05 * 255, rel=0.05)


def test_synthetic_low_quality_on_uint8_matches_the_tensor_path():
    rng = np.random.default_rng(1)
    frames = rng.integers(20, 230, (T, S, S, 3), dtype=np.uint8)
    from_frames = create_synthetic_low_quality(frames, noise_level=0.0)
    from_tensor = create_synthetic_low_quality(_video(frames), noise_level=0.0)
    assert np.abs(normalize(from_frames) - from_tensor.numpy()).max() < 0.02  # a uint8 step


@pytest.mark.parametrize(
    ("kwargs", "problem"),
    [({"blur_kernel": 4}, "odd"), ({"blur_kernel": 0}, "odd"),
     ({"contrast_reduction": 1.5}, "contrast_reduction"), ({"noise_level": -0.1}, "noise_level")],
)
def test_synthetic_low_quality_rejects_bad_settings(kwargs, problem):
    with pytest.raises(ValueError, match=problem):
        create_synthetic_low_quality(_random_clip(), **kwargs)
