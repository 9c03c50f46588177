"""Preprocessing must produce the input EchoPrime's quality model was trained on."""

import dataclasses

import cv2
import numpy as np
import pytest
import torch

from echoquality_core.data.preprocess import (
    MEAN,
    STD,
    PreprocessParams,
    crop_box,
    map_to_original,
    model_frames,
    normalize,
    preprocess_clip,
    region_mask,
    sample_indices,
    ultrasound_mask,
)

MEAN_F = np.asarray(MEAN, np.float32)
STD_F = np.asarray(STD, np.float32)


# ---------------------------------------------------------------- a realistic echo frame stack


def fan(h, w, apex_xy, radius, half_angle_deg):
    yy, xx = np.mgrid[0:h, 0:w]
    dy, dx = yy - apex_xy[1], xx - apex_xy[0]
    angle = np.degrees(np.arctan2(dx, dy))
    return (np.hypot(dy, dx) <= radius) & (np.abs(angle) <= half_angle_deg) & (dy >= 0)


def echo_clip(seed=0, n_frames=8, h=120, w=160, overlays=True):
    """Fan sector with moving speckle around a dark cavity; optionally burned-in text
    (top-left, top-right), a static logo block and a sweeping ECG trace below the sector."""
    rng = np.random.default_rng(seed)
    sector = fan(h, w, (w // 2, 4), 88, 38)
    yy, xx = np.mgrid[0:h, 0:w]
    cavity = ((yy - 62) / 12.0) ** 2 + ((xx - w // 2) / 9.0) ** 2 <= 1
    clip = np.zeros((n_frames, h, w, 3), np.uint8)
    for t in range(n_frames):
        speckle = rng.integers(20, 200, size=(h, w), dtype=np.uint8)
        clip[t] = np.where(sector & ~cavity, speckle, 0)[..., None]
        if overlays:
            img = clip[t]
            white = (255, 255, 255)
            cv2.putText(img, "HR 72", (2, 12), cv2.FONT_HERSHEY_SIMPLEX, 0.35, white, 1)
            cv2.putText(img, "MI 1.2", (w - 42, 12), cv2.FONT_HERSHEY_SIMPLEX, 0.35, white, 1)
            img[h - 40 : h - 20, 4:24] = 90  # static logo, too thick for erosion
            base = h - 8  # ECG: thin baseline + QRS spikes whose phase moves every frame
            cv2.line(img, (30, base), (w - 30, base), (0, 255, 0), 1)
            for x in range(30 + (t * 7) % 25, w - 30, 25):
                cv2.line(img, (x, base), (x + 2, base - 6), (0, 255, 0), 1)
                cv2.line(img, (x + 2, base - 6), (x + 4, base + 3), (0, 255, 0), 1)
    return clip, sector, cavity


# ---------------------------------------------- plain, slow reference of EchoPrime's steps


def reference_mask(frames):
    """EchoPrime's mask_outside_ultrasound, step by step (frames already RGB)."""
    t, h, w, _ = frames.shape
    count = np.zeros((h, w), np.int64)
    for i in range(t):
        for c in range(3):
            count += frames[i, :, :, c] > 0  # one vote per channel, any vote keeps the pixel
    count = np.minimum(count, 1).astype(np.uint8)
    solid = cv2.erode(count, np.ones((3, 3), np.uint8), iterations=10) > 0
    diff = np.zeros((h, w), bool)
    for c in range(3):
        diff |= frames[0, :, :, c].astype(int) != frames[-1, :, :, c].astype(int)
    diff[0:20, 0:20] = False
    overlap = (solid & diff).astype(np.uint8)
    if not overlap.any():  # our documented fallback for still clips
        overlap = solid.astype(np.uint8)
    overlap = cv2.dilate(overlap, np.ones((3, 3), np.uint8), iterations=10)
    cv2.floodFill(overlap, None, (0, 0), 100)
    overlap = np.where(overlap != 100, 255, 0).astype(np.uint8)
    contours, _ = cv2.findContours(overlap, cv2.RETR_TREE, cv2.CHAIN_APPROX_SIMPLE)
    for contour in contours:
        cv2.drawContours(overlap, [cv2.convexHull(contour)], -1, 255, 3)
    overlap = np.where(overlap > 0, 1, 0).astype(np.uint8)
    cv2.floodFill(overlap, None, (0, 0), 100)
    return overlap != 100


def reference_crop_and_scale(img, size, zoom):
    """EchoPrime's crop_and_scale for a square output."""
    h, w = img.shape[:2]
    if w > h:
        padding = round((w - h) / 2)
        img = img[:, padding:-padding]
    if h > w:
        padding = round((h - w) / 2)
        img = img[padding:-padding]
    if zoom != 0:
        pad_x = round(int(img.shape[1] * zoom))
        pad_y = round(int(img.shape[0] * zoom))
        img = img[pad_y:-pad_y, pad_x:-pad_x]
    return cv2.resize(img, (size, size), interpolation=cv2.INTER_CUBIC)


def reference_preprocess(frames, frames_to_take=32, stride=2, size=112, zoom=0.1):
    """EchoPrime's process_dicoms: mask, crop+scale every frame, normalise, pad, stride."""
    mask = reference_mask(frames)
    scaled = []
    for frame in frames:
        masked = frame.copy()
        masked[~mask] = 0
        scaled.append(reference_crop_and_scale(masked, size, zoom))
    x = torch.as_tensor(np.stack(scaled), dtype=torch.float).permute([3, 0, 1, 2])
    x.sub_(torch.tensor(MEAN).reshape(3, 1, 1, 1)).div_(torch.tensor(STD).reshape(3, 1, 1, 1))
    if x.shape[1] < frames_to_take:
        pad = torch.zeros((3, frames_to_take - x.shape[1], size, size), dtype=torch.float)
        x = torch.cat((x, pad), dim=1)
    return x[:, 0:frames_to_take:stride].numpy()


# ------------------------------------------------------------------------------------ tests


def test_output_is_float32_channels_first_16_frames_of_112():
    clip, _, _ = echo_clip(n_frames=40, h=96, w=128)
    out = preprocess_clip(clip)
    assert out.shape == (3, 16, 112, 112)
    assert out.dtype == np.float32
    assert np.isfinite(out).all()
    u8 = model_frames(clip)
    assert u8.shape == (16, 112, 112, 3) and u8.dtype == np.uint8
    np.testing.assert_array_equal(out, normalize(u8))


def test_constant_still_clip_normalises_to_its_constant_and_is_not_blacked_out():
    clip = np.full((32, 64, 80, 3), 120, np.uint8)  # nothing moves: sector mask falls back
    out = preprocess_clip(clip)
    expected = (np.float32(120) - MEAN_F) / STD_F
    for c in range(3):
        np.testing.assert_allclose(out[c], expected[c], rtol=0, atol=1e-6)


def test_normalize_uses_echoprime_mean_and_std_per_channel():
    frames = np.zeros((2, 4, 4, 3), np.uint8)
    frames[..., 0], frames[..., 1], frames[..., 2] = 0, 100, 255
    out = normalize(frames)
    assert out.shape == (3, 2, 4, 4) and out.dtype == np.float32
    assert out[0, 0, 0, 0] == pytest.approx(-MEAN[0] / STD[0], rel=1e-6)
    assert out[1, 1, 3, 3] == pytest.approx((100 - MEAN[1]) / STD[1], rel=1e-6)
    assert out[2, 0, 2, 1] == pytest.approx((255 - MEAN[2]) / STD[2], rel=1e-6)


def test_sample_indices_take_every_second_frame_and_mark_padding():
    np.testing.assert_array_equal(sample_indices(48), np.arange(0, 32, 2))
    np.testing.assert_array_equal(sample_indices(10), [0, 2, 4, 6, 8] + [-1] * 11)
    np.testing.assert_array_equal(sample_indices(1, n_frames=3, stride=5), [0, -1, -1])
    np.testing.assert_array_equal(sample_indices(20, n_frames=4, stride=3), [0, 3, 6, 9])


def test_short_clip_is_padded_like_echoprime_with_frames_that_normalise_to_zero():
    clip = np.full((10, 64, 64, 3), 200, np.uint8)
    u8 = model_frames(clip, PreprocessParams(mask="none"))
    assert (u8[:5] == 200).all()
    np.testing.assert_array_equal(u8[5:], np.broadcast_to(np.round(MEAN), (11, 112, 112, 3)))
    out = preprocess_clip(clip, mask="none")
    assert np.abs(out[:, 5:]).max() < 0.003  # EchoPrime pads with 0.0 after normalising
    np.testing.assert_allclose(out[:, :5], ((200 - MEAN_F) / STD_F)[:, None, None, None]
                               * np.ones((3, 5, 112, 112)), atol=1e-6)


def test_zero_padding_gives_black_frames_before_normalisation():
    clip = np.full((10, 64, 64, 3), 200, np.uint8)
    assert (model_frames(clip, PreprocessParams(mask="none", pad="zero"))[5:] == 0).all()
    out = preprocess_clip(clip, mask="none", pad="zero")
    np.testing.assert_allclose(out[:, 7], np.broadcast_to((-MEAN_F / STD_F)[:, None, None],
                                                          (3, 112, 112)), atol=1e-6)


def test_frame_count_stride_and_size_are_respected():
    clip = np.zeros((20, 50, 50, 3), np.uint8)
    clip += (np.arange(20, dtype=np.uint8) * 10)[:, None, None, None]  # frame i has value 10*i
    u8 = model_frames(clip, PreprocessParams(n_frames=4, stride=3, size=32, mask="none"))
    assert u8.shape == (4, 32, 32, 3)
    np.testing.assert_array_equal(u8[:, 5, 7, 0], [0, 30, 60, 90])
    out = preprocess_clip(clip, n_frames=4, stride=3, size=32, mask="none")
    assert out.shape == (3, 4, 32, 32)


def test_unknown_setting_and_bad_input_give_clear_errors():
    clip = np.zeros((4, 32, 32, 3), np.uint8)
    with pytest.raises(TypeError, match="unknown preprocessing setting"):
        preprocess_clip(clip, frame_count=8)
    with pytest.raises(ValueError, match="uint8"):
        preprocess_clip(clip.astype(np.float32))
    with pytest.raises(ValueError, match=r"\(T,H,W,3\)"):
        preprocess_clip(np.zeros((4, 32, 32, 4), np.uint8))
    with pytest.raises(ValueError, match="mask"):
        PreprocessParams(mask="circle")
    with pytest.raises(ValueError, match="n_frames"):
        PreprocessParams(n_frames=0)
    with pytest.raises(ValueError, match="SequenceOfUltrasoundRegions"):
        model_frames(clip, PreprocessParams(mask="region"), regions=[])


def test_params_key_is_stable_and_distinguishes_settings():
    assert PreprocessParams().key() == PreprocessParams().key()
    keys = {
        PreprocessParams(**{name: value}).key()
        for name, value in [("n_frames", 8), ("stride", 1), ("size", 64), ("zoom", 0.0),
                            ("mask", "none"), ("pad", "zero")]
    }
    assert len(keys | {PreprocessParams().key()}) == 7


def test_torch_in_gives_torch_float32_out_equal_to_numpy_path():
    clip, _, _ = echo_clip(n_frames=6, h=64, w=80)
    out_np = preprocess_clip(clip, n_frames=4, size=32)
    out_t = preprocess_clip(torch.from_numpy(clip), n_frames=4, size=32)
    assert isinstance(out_t, torch.Tensor) and out_t.dtype == torch.float32
    np.testing.assert_array_equal(out_t.numpy(), out_np)


def test_grey_clip_equals_the_same_clip_in_rgb():
    clip, _, _ = echo_clip(n_frames=6, h=64, w=80, overlays=False)
    grey = clip[..., 0].copy()
    np.testing.assert_array_equal(preprocess_clip(grey, size=48), preprocess_clip(clip, size=48))


def test_mask_removes_text_logo_and_ecg_and_keeps_the_sector():
    clip, sector, cavity = echo_clip()
    clean, _, _ = echo_clip(overlays=False)
    overlays = np.any(clip != clean, axis=(0, 3))
    mask = ultrasound_mask(clip)

    assert not (mask & overlays).any()  # text, logo and ECG trace are all masked out
    assert mask[cavity].all()  # the dark cavity inside the sector stays (hull fill)
    assert (mask & sector).sum() > 0.7 * sector.sum()  # the sector body stays
    # nothing else: only the hull of the pixelated fan and EchoPrime's 3-px hull line stick out
    near_sector = cv2.dilate(sector.astype(np.uint8), np.ones((3, 3), np.uint8), iterations=3)
    assert not (mask & ~(near_sector > 0)).any()
    np.testing.assert_array_equal(mask, ultrasound_mask(clean))
    np.testing.assert_array_equal(model_frames(clip, PreprocessParams(zoom=0.0)),
                                  model_frames(clean, PreprocessParams(zoom=0.0)))


def test_still_image_falls_back_to_the_eroded_non_zero_mask_not_to_black():
    still, sector, _ = echo_clip(seed=2, n_frames=1)  # first == last frame: nothing "changes"
    clean, _, _ = echo_clip(seed=2, n_frames=1, overlays=False)
    mask = ultrasound_mask(still)
    assert not (mask & np.any(still != clean, axis=(0, 3))).any()  # thin text/ECG still go
    assert (mask & sector).sum() > 0.9 * sector.sum()
    assert (model_frames(still)[0] > 0).mean() > 0.3


def test_matches_plain_reference_of_echoprime_steps():
    clip, _, _ = echo_clip(n_frames=12, h=120, w=160)  # 12 frames: padding is exercised too
    ours = preprocess_clip(clip)
    ref = reference_preprocess(clip)
    np.testing.assert_array_equal(ultrasound_mask(clip), reference_mask(clip))
    np.testing.assert_array_equal(ours[:, :6], ref[:, :6])  # real frames: bit-identical
    np.testing.assert_allclose(ours[:, 6:], ref[:, 6:], atol=0.003)  # mean-colour padding
    still, _, _ = echo_clip(seed=2, n_frames=1)  # a still image: the fallback mask
    np.testing.assert_array_equal(ultrasound_mask(still), reference_mask(still))
    np.testing.assert_array_equal(preprocess_clip(still)[:, :1], reference_preprocess(still)[:, :1])
    tall, _, _ = echo_clip(seed=3, n_frames=5, h=150, w=110)  # portrait: crops rows
    np.testing.assert_array_equal(
        preprocess_clip(tall, n_frames=2, size=40, zoom=0.15)[:, :2],
        reference_preprocess(tall, frames_to_take=4, size=40, zoom=0.15)[:, :2],
    )


def test_region_mask_keeps_only_the_ultrasound_region_box():
    mask = region_mask((10, 12), [(2, 3, 5, 4), (10, 8, 40, 40)])
    expected = np.zeros((10, 12), bool)
    expected[3:5, 2:6] = True  # ends inclusive, as DICOM's RegionLocationMax
    expected[8:10, 10:12] = True  # clipped to the image
    np.testing.assert_array_equal(mask, expected)

    clip = np.full((3, 64, 64, 3), 200, np.uint8)
    u8 = model_frames(clip, PreprocessParams(n_frames=2, size=64, zoom=0.0, mask="region"),
                      regions=[(16, 8, 47, 55)])
    inside = np.zeros((64, 64), bool)
    inside[8:56, 16:48] = True
    assert (u8[:, inside] == 200).all() and (u8[:, ~inside] == 0).all()


def test_crop_box_follows_echoprime_centre_square_and_zoom():
    assert crop_box(480, 640, 0.1) == (48, 128, 432, 512)  # 480x480 square, 48 px cut
    assert crop_box(640, 480, 0.0) == (80, 0, 560, 480)
    assert crop_box(100, 100, 0.1) == (10, 10, 90, 90)


def test_map_to_original_puts_the_model_view_back_on_the_frame():
    h, w, size, zoom = 90, 130, 112, 0.1
    y0, x0, y1, x1 = crop_box(h, w, zoom)
    ones = map_to_original(np.ones((size, size), np.float32), h, w, zoom)
    assert ones.shape == (h, w)
    assert (ones[y0:y1, x0:x1] == 1).all() and ones.sum() == (y1 - y0) * (x1 - x0)

    # a bright spot in the original clip, through the model's view, lands back on itself
    frame = np.zeros((h, w), np.uint8)
    cv2.circle(frame, (70, 40), 4, 255, -1)
    view = model_frames(np.stack([frame, frame]), PreprocessParams(n_frames=1, mask="none"))
    back = map_to_original(view[0, :, :, 0].astype(np.float32), h, w, zoom)
    cy, cx = np.argwhere(back > 0.5 * back.max()).mean(axis=0)
    assert abs(cy - 40) < 1.0 and abs(cx - 70) < 1.0


def test_params_are_frozen_and_overrides_do_not_change_defaults():
    params = PreprocessParams()
    with pytest.raises(dataclasses.FrozenInstanceError):
        params.n_frames = 8
    preprocess_clip(np.zeros((2, 32, 32, 3), np.uint8), params, n_frames=2, size=16)
    assert params == PreprocessParams()


def test_real_echo_dicom_keeps_the_sector_and_drops_burned_in_text_and_ui():
    import pydicom.data

    from echoquality_core.dicom import read_clip

    clip = read_clip(pydicom.data.get_testdata_file("color3d_jpeg_baseline.dcm"))
    frames = np.stack([clip.frame(i) for i in range(8)])  # 8 of 120 frames keep this quick
    mask = ultrasound_mask(frames)

    grey = frames.max(axis=-1)
    static_bright = (grey[0] > 100) & (grey == grey[0]).all(axis=0)  # text, markers, UI bar
    assert static_bright.sum() > 1000
    assert not (mask & static_bright).any()
    assert 0.3 < mask.mean() < 0.5  # the sector is ~40% of this frame
    assert mask[240, 280] and mask[100, 280]  # inside the sector
    assert not mask[440:].any() and not mask[:, 600:].any()  # bottom UI bar, right-hand text


@pytest.mark.parametrize("quality", ["good", "noise", "blur", "low_contrast", "dropout", "off_axis"])
def test_demo_clips_become_model_input(quality):
    from echoquality_core.demo.project import synthetic_clip

    clip = synthetic_clip(np.random.default_rng(1), quality, n_frames=8, height=96, width=128)
    mask = ultrasound_mask(clip)
    assert 0.1 < mask.mean() < 0.95  # a sector, not nothing and not everything
    out = preprocess_clip(clip)
    assert out.shape == (3, 16, 112, 112) and np.isfinite(out).all()


# ------------------------------------------- the demo generator's overlays vs EchoPrime's mask
# The mask's erosion is 10 px whatever the image size, so overlays are only at risk at the
# demo's real size (480x640): a thick or smeared ECG band would survive it.
DEMO_H, DEMO_W = 480, 640


def demo_fan(height: int, width: int, grow: int = 0) -> np.ndarray:
    """Bool (H,W): the sector the demo draws, from its written box (apex at the top centre,
    radius = box height), grown by ``grow`` px. Outside it the demo draws only overlays."""
    from echoquality_core.demo.project import sector_box

    x0, y0, x1, y1 = sector_box(height, width)
    radius = y1 - y0
    half_angle = np.degrees(np.arcsin(min(1.0, (x1 - x0) / 2 / radius)))
    inside = fan(height, width, ((x0 + x1) / 2, y0), radius, half_angle)
    if not grow:
        return inside
    return cv2.dilate(inside.astype(np.uint8), np.ones((3, 3), np.uint8), iterations=grow) > 0


@pytest.mark.slow  # a few seconds: the fast tier stays under 4 minutes
@pytest.mark.parametrize("seed, fps", [(2, 50.0), (3, 25.0), (4, 30.0)])
def test_demo_overlays_never_survive_the_mask_and_the_sector_does(seed, fps):
    """Every kind, several seeds: the mask keeps no pixel of the burned-in text, depth ruler and
    ECG strip (none in the model's crop, none anywhere) and nearly all of the sector."""
    from echoquality_core.demo.project import QUALITIES, synthetic_clip

    y0, x0, y1, x1 = crop_box(DEMO_H, DEMO_W)
    sector, beyond = demo_fan(DEMO_H, DEMO_W), ~demo_fan(DEMO_H, DEMO_W, grow=4)
    for quality in QUALITIES:
        clip = synthetic_clip(np.random.default_rng(seed), quality, n_frames=40,
                              height=DEMO_H, width=DEMO_W, fps=fps)
        mask = ultrasound_mask(clip)
        overlays = clip.any(axis=(0, 3)) & beyond
        ecg = overlays & (clip[..., 1].astype(int) - clip[..., 0] > 100).any(axis=0)  # green
        assert ecg.sum() > 1000 and overlays[y0:y1, x0:x1].any()  # there is something to drop
        kept = mask & overlays
        assert not kept[y0:y1, x0:x1].any(), f"{quality}: {kept[y0:y1, x0:x1].sum()} in crop"
        assert not kept.any(), f"{quality}: {kept.sum()} overlay pixels kept ({ecg.sum()} ECG)"
        assert (mask & sector).sum() > 0.97 * sector.sum(), quality
        assert not (mask & beyond).any(), quality  # the mask hugs the sector


def test_demo_dicom_read_back_loses_its_overlays_to_the_mask(tmp_path):
    """The app's real path: a JPEG demo DICOM, decoded, then masked. JPEG ringing spreads every
    stroke over its 16x8 px blocks (and the sector's edge by up to two blocks); still no
    overlay pixel may be kept."""
    from echoquality_core.demo.project import synthetic_clip, write_dicom_clip
    from echoquality_core.dicom import read_clip

    drawn = synthetic_clip(np.random.default_rng(0), "good", n_frames=16, height=DEMO_H,
                           width=DEMO_W, fps=25.0)
    frames = read_clip(write_dicom_clip(tmp_path / "c.dcm", drawn, fps=25.0)).frames
    mask = ultrasound_mask(frames)
    beyond = ~demo_fan(DEMO_H, DEMO_W, grow=16)
    y0, x0, y1, x1 = crop_box(DEMO_H, DEMO_W)
    assert (frames.any(axis=(0, 3)) & beyond)[y0:y1, x0:x1].sum() > 100
    assert not (mask & beyond).any(), f"{(mask & beyond).sum()} overlay pixels kept"
    assert (mask & demo_fan(DEMO_H, DEMO_W)).mean() > 0.97 * demo_fan(DEMO_H, DEMO_W).mean()
