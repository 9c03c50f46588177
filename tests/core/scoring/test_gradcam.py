"""GradCAM on a real R(2+1)D-18 trained for a few steps to find a bright square.

Clips are (3, 8, 64, 64): "good" clips (label 1) carry a bright 16x16 square in frames 0-3.
At 64x64 px layer4 is only 4x4 (and 1 frame deep), layer3 8x8 (2 frames), layer2 16x16
(4 frames): localisation is checked on layer3, timing within the clip on layer2.
"""
from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from torch import nn

from echoquality_core.scoring.gradcam import denormalize, gradcam, visualize_gradcam
from echoquality_core.scoring.heatmap import clip_frame_map, frame_importance, maps_to_clip, model_frame_index
from echoquality_core.model.network import build_model
from echoquality_core.data.preprocess import PreprocessParams, crop_box, model_frames, normalize

T, S, SQUARE = 8, 64, 16
SQUARE_FRAMES = slice(0, T // 2)


def _clips(n: int, rng: np.random.Generator):
    """n clips alternating good (square) / poor (noise only), labels and square corners."""
    videos = torch.from_numpy(rng.normal(0.0, 0.3, (n, 3, T, S, S)).astype(np.float32))
    labels = torch.zeros(n)
    corners = []
    for i in range(n):
        if i % 2 == 0:
            r, c = (int(v) for v in rng.integers(0, S - SQUARE, 2))
            videos[i, :, SQUARE_FRAMES, r:r + SQUARE, c:c + SQUARE] = 3.0
            labels[i] = 1.0
            corners.append((r, c))
        else:
            corners.append(None)
    return videos, labels, corners


def _square_mask(r: int, c: int) -> np.ndarray:
    inside = np.zeros((T, S, S), dtype=bool)
    inside[SQUARE_FRAMES, r:r + SQUARE, c:c + SQUARE] = True
    return inside


def _untrained_model() -> nn.Module:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "no weights: random initialisation"
        return build_model()


def _train_square_model(seed: int = 0, steps: int = 5):
    """R(2+1)D-18 (stem and layer1 frozen) trained a few steps on square / no-square clips; BN
    statistics recomputed afterwards so eval mode sees what training saw. Returns the model
    (in eval mode) and the training losses."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    model = _untrained_model()
    for name, p in model.named_parameters():
        p.requires_grad = not name.startswith(("stem", "layer1"))
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    losses = []
    model.train()
    for _ in range(steps):
        videos, labels, _ = _clips(8, rng)
        optimizer.zero_grad()
        loss = nn.functional.binary_cross_entropy_with_logits(model(videos).reshape(-1), labels)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    optimizer.zero_grad(set_to_none=True)
    for module in model.modules():
        if isinstance(module, nn.BatchNorm3d):
            module.reset_running_stats()
            module.momentum = None  # cumulative average over the recalibration batches
    with torch.no_grad():
        for _ in range(2):
            model(_clips(8, rng)[0])
    return model.eval(), losses


@pytest.fixture(scope="module")
def square_model():
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    yield _train_square_model()
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def test_clips():
    return _clips(6, np.random.default_rng(123))


def _requires_grad(model):
    return {name: p.requires_grad for name, p in model.named_parameters()}


def test_model_learned_the_square(square_model, test_clips):
    model, losses = square_model
    assert losses[-1] < 0.5 * losses[0]
    videos, labels, _ = test_clips
    with torch.no_grad():
        scores = torch.sigmoid(model(videos)).reshape(-1)
    assert scores[labels == 1].min() > scores[labels == 0].max(), scores  # ranks them right


def test_gradcam_peaks_on_the_square(square_model, test_clips):
    model, _ = square_model
    videos, _, corners = test_clips
    for video, corner in zip(videos, corners):
        if corner is None:
            continue
        maps = gradcam(model, video, "layer3")
        inside = _square_mask(*corner)
        seen = maps[SQUARE_FRAMES]
        assert maps[inside].mean() > 2 * seen[~inside[SQUARE_FRAMES]].mean()
        peak_r, peak_c = np.unravel_index(seen.mean(axis=0).argmax(), (S, S))
        r, c = corner
        slack = 4  # half a layer3 cell
        assert r - slack <= peak_r < r + SQUARE + slack
        assert c - slack <= peak_c < c + SQUARE + slack


def test_gradcam_layer4_is_coarse_but_still_on_the_square(square_model, test_clips):
    model, _ = square_model
    videos, _, corners = test_clips
    maps = gradcam(model, videos[0], "layer4")
    inside = _square_mask(*corners[0])
    assert maps[inside].mean() > 1.2 * maps[SQUARE_FRAMES][~inside[SQUARE_FRAMES]].mean()


def test_gradcam_shape_and_range(square_model, test_clips):
    model, _ = square_model
    video = test_clips[0][0]
    for layer in ("layer4", "layer3.1.conv2", "layer2"):
        maps = gradcam(model, video.unsqueeze(0), layer)
        assert maps.shape == (T, S, S) and maps.dtype == np.float32
        assert maps.min() >= 0.0 and maps.max() == pytest.approx(1.0)


def test_frame_importance_is_higher_where_the_square_is(square_model, test_clips):
    model, _ = square_model
    videos, _, corners = test_clips
    for video, corner in zip(videos, corners):
        if corner is None:
            continue
        importance = frame_importance(gradcam(model, video, "layer2"))
        assert importance.shape == (T,)
        assert importance[SQUARE_FRAMES].mean() > 1.05 * importance[T // 2:].mean()


def test_explaining_poor_does_not_point_at_the_square(square_model, test_clips):
    model, _ = square_model
    videos, _, corners = test_clips
    inside = _square_mask(*corners[0])
    good = gradcam(model, videos[0], "layer3", explain="good")
    poor = gradcam(model, videos[0], "layer3", explain="poor")
    assert poor[inside].mean() < good[inside].mean()


def test_gradcam_leaves_model_untouched(square_model, test_clips):
    model, _ = square_model
    before = _requires_grad(model)
    weights = model.layer3[0].conv1[0][0].weight.detach().clone()
    model.train()
    gradcam(model, test_clips[0][0], "layer3")
    assert model.training
    model.eval()
    gradcam(model, test_clips[0][0], "layer3.1.conv2")
    assert not model.training
    assert _requires_grad(model) == before
    assert torch.equal(model.layer3[0].conv1[0][0].weight, weights)
    assert all(p.grad is None for p in model.parameters())  # nothing accumulated
    for module in model.modules():
        assert not module._forward_hooks and not module._backward_hooks


def test_gradcam_removes_hooks_after_an_error(square_model, test_clips):
    model, _ = square_model

    def fail(module, inputs):
        raise RuntimeError("failure after the GradCAM hook ran")

    failing = model.fc.register_forward_pre_hook(fail)
    try:
        with pytest.raises(RuntimeError, match="failure after"):
            gradcam(model, test_clips[0][0], "layer4")
    finally:
        failing.remove()
    for module in model.modules():
        assert not module._forward_hooks and not module._backward_hooks
    assert not model.training


def test_gradcam_works_on_a_fully_frozen_model_under_no_grad(square_model, test_clips):
    model, _ = square_model
    before = _requires_grad(model)
    try:
        for p in model.parameters():
            p.requires_grad_(False)
        with torch.no_grad():
            frozen = gradcam(model, test_clips[0][0], "layer3")
        with torch.inference_mode():
            frozen_inference = gradcam(model, test_clips[0][0], "layer3")
        assert not any(p.requires_grad for p in model.parameters())
    finally:
        for name, p in model.named_parameters():
            p.requires_grad_(before[name])
    np.testing.assert_allclose(frozen, gradcam(model, test_clips[0][0], "layer3"), atol=1e-5)
    np.testing.assert_allclose(frozen_inference, frozen, atol=1e-5)


def test_gradcam_rejects_bad_arguments(square_model, test_clips):
    model, _ = square_model
    video = test_clips[0][0]
    with pytest.raises(ValueError, match="no layer 'layer9'"):
        gradcam(model, video, "layer9")
    with pytest.raises(ValueError, match="explain"):
        gradcam(model, video, explain="bad")
    with pytest.raises(ValueError, match=r"\(3,T,H,W\)"):
        gradcam(model, torch.zeros(2, 3, T, S, S))


def test_all_zero_cam_gives_zero_maps():
    """A model whose logit ignores the layer's activation has zero gradients: zeros, not NaN."""
    model = _untrained_model()
    nn.init.zeros_(model.fc.weight)
    maps = gradcam(model, torch.randn(3, 4, 32, 32), "layer4")
    assert maps.shape == (4, 32, 32) and not maps.any()


def test_visualize_gradcam_writes_a_strip(square_model, test_clips, tmp_path):
    model, _ = square_model
    out = tmp_path / "strip" / "gradcam.png"
    maps = visualize_gradcam(model, test_clips[0][0], "layer3", save_path=out, n_frames_shown=4)
    assert maps.shape == (T, S, S)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 10_000


def test_denormalize_inverts_normalize():
    frames = np.random.default_rng(1).integers(0, 256, (4, 8, 8, 3), dtype=np.uint8)
    np.testing.assert_array_equal(denormalize(torch.from_numpy(normalize(frames))), frames)


def test_model_frame_index_undoes_sampling():
    params = PreprocessParams()  # 16 frames, stride 2: original 0, 2, ..., 30
    assert model_frame_index(0, 40, params) == 0
    assert model_frame_index(4, 40, params) == 2
    assert model_frame_index(5, 40, params) in (2, 3)
    assert model_frame_index(31, 40, params) == 15
    assert model_frame_index(32, 40, params) is None  # the model never saw frames 32..39
    assert model_frame_index(9, 10, params) == 4  # short clip: nearest real frame, not padding
    with pytest.raises(IndexError):
        model_frame_index(10, 10, params)


def test_clip_frame_map_puts_the_hot_spot_back_on_the_clip():
    """A map computed on what the model sees lands on the same spot of the original frame."""
    params = PreprocessParams(n_frames=4, stride=2, size=32, mask="none")
    height, width, n = 60, 90, 9
    clip = np.zeros((n, height, width, 3), dtype=np.uint8)
    clip[:, 20:30, 40:50] = 255  # a bright block inside the crop box
    seen = model_frames(clip, params)
    maps = seen[..., 0].astype(np.float32) / 255.0  # "attention" exactly where the block is
    y0, x0, y1, x1 = crop_box(height, width, params.zoom)
    for i in (0, 3, 7):  # sampled frames 0, 2, 4, 6 (frame 7 still lies in the window)
        back = clip_frame_map(maps, i, (height, width), n, params)
        assert back.shape == (height, width) and back.dtype == np.float32
        peak_y, peak_x = np.unravel_index(back.argmax(), back.shape)
        assert 20 <= peak_y < 30 and 40 <= peak_x < 50
        assert not back[:, :x0].any() and not back[:, x1:].any()
        assert not back[:y0].any() and not back[y1:].any()
    assert not clip_frame_map(maps, 8, (height, width), n, params).any()  # never seen
    whole = maps_to_clip(maps, (height, width), n, params)
    assert whole.shape == (n, height, width)
    for i in range(n):
        np.testing.assert_array_equal(whole[i], clip_frame_map(maps, i, (height, width), n, params))
    with pytest.raises(ValueError, match="maps must have shape"):
        clip_frame_map(maps[:3], 0, (height, width), n, params)
