"""The cine player plays at the clip's own frame rate (by wall-clock, skipping frames), steps,
seeks, loops, shows the model input and overlays, and decodes the newest request first."""
from __future__ import annotations

import time

import numpy as np
import pytest

from echoquality_core.demo.project import synthetic_clip, write_dicom_clip
from echoquality_core.dicom import read_clip
from echoquality_core.data.preprocess import PreprocessParams, model_frames
from echoquality_gui.player.frame_loader import FrameLoader
from echoquality_gui.player.view import CinePlayer


@pytest.fixture(scope="module")
def clip_25fps(tmp_path_factory):
    """A 25 fps, 50-frame, 64x80 uncompressed clip."""
    frames = synthetic_clip(np.random.default_rng(1), "good", n_frames=50, height=64, width=80)
    path = tmp_path_factory.mktemp("player") / "clip25.dcm"
    return write_dicom_clip(path, frames, fps=25.0, compression="none")


@pytest.fixture
def player(qtbot, clip_25fps):
    widget = CinePlayer()
    qtbot.addWidget(widget)
    widget.resize(640, 480)
    widget.show()
    yield widget
    widget.shutdown()


def open_fully_decoded(qtbot, player, path) -> None:
    with qtbot.waitSignal(player.frame_shown, timeout=5000):
        player.open_clip(path)
    qtbot.waitUntil(lambda: all(player.loader.cache.get(player.path, i) is not None
                                for i in range(player.n_frames)), timeout=10000)


def test_header_frame_rate_and_first_frame_are_shown(qtbot, player, clip_25fps):
    open_fully_decoded(qtbot, player, clip_25fps)
    assert (player.n_frames, player.fps) == (50, 25.0)
    assert player.fps_source != "default"
    assert "25.0 fps" in player.rate.text() and player.fps_source in player.rate.text()
    assert player.image.image.shape == (64, 80, 3)


@pytest.mark.usefixtures("app_heap")  # timed by the wall clock
def test_playback_shows_the_clips_frame_rate_by_wall_clock(qtbot, player, clip_25fps):
    open_fully_decoded(qtbot, player, clip_25fps)
    shown = player.frames_shown
    start = time.perf_counter()
    player.play()
    qtbot.wait(1000)
    elapsed = time.perf_counter() - start
    player.pause()
    per_second = (player.frames_shown - shown) / elapsed
    assert 20 <= per_second <= 30, per_second
    # the frame index follows elapsed time, not the number of timer ticks
    assert abs(player.index - (25 * elapsed) % 50) <= 4


@pytest.mark.usefixtures("app_heap")  # timed by the wall clock
def test_speed_scales_how_far_playback_gets(qtbot, player, clip_25fps):
    open_fully_decoded(qtbot, player, clip_25fps)
    player.set_loop(False)
    player.set_speed(2.0)
    start = time.perf_counter()
    player.play()
    qtbot.wait(500)
    expected = 50 * (time.perf_counter() - start)
    player.pause()
    assert abs(player.index - expected) <= 6, (player.index, expected)


def test_step_seek_first_last_and_loop(qtbot, player, clip_25fps):
    open_fully_decoded(qtbot, player, clip_25fps)
    assert player.position.text() == "1 / 50 · 0 ms"
    player.step(1)
    assert player.index == 1 and player.slider.value() == 1
    player.step(-2)  # loop on: wraps to the last frame
    assert player.index == 49
    player.seek(10)
    assert player.position.text() == "11 / 50 · 400 ms"  # 10 frames at 25 fps
    player.first()
    assert player.index == 0
    player.last()
    assert player.index == 49

    player.set_loop(False)
    player.seek(45)
    player.play()
    qtbot.waitUntil(lambda: not player.playing, timeout=2000)  # stops at the end
    assert player.index == 49

    player.set_loop(True)
    player.seek(45)
    player.play()
    qtbot.waitUntil(lambda: player.index < 45, timeout=2000)  # wrapped round
    assert player.playing
    player.pause()


def test_brightness_contrast_and_reset(qtbot, player, clip_25fps):
    open_fully_decoded(qtbot, player, clip_25fps)
    player.contrast.setValue(50)
    lo, hi = player.image.levels
    assert hi - lo == pytest.approx(127.5)
    player.brightness.setValue(40)
    assert player.image.levels[0] < lo
    player.reset_levels()
    assert player._levels is None and player.contrast.value() == 0


def test_model_input_view_shows_112px_frames(qtbot, player, clip_25fps):
    open_fully_decoded(qtbot, player, clip_25fps)
    with qtbot.waitSignal(player.loader.model_ready, timeout=10000):
        player.set_model_input(True)
    assert player.model_view.isVisible()
    assert player.model_image.image.shape == (112, 112, 3)
    player.seek(7)
    assert np.array_equal(player.model_image.image, player._model[7])
    # built frame by frame, yet exactly what preprocessing gives for the whole clip at once
    whole = model_frames(read_clip(clip_25fps).frames, PreprocessParams(n_frames=50, stride=1))
    assert np.array_equal(player._model, whole)


def test_overlay_follows_the_frame(qtbot, player, clip_25fps):
    open_fully_decoded(qtbot, player, clip_25fps)
    heat = np.random.default_rng(0).random((50, 64, 80)).astype(np.float32)
    player.set_overlay(heat, opacity=0.3)
    player.seek(5)
    assert np.array_equal(player.overlay_item.image, heat[5])
    player.set_overlay(lambda i: np.full((64, 80), i / 50, np.float32))
    player.seek(25)
    assert player.overlay_item.image[0, 0] == pytest.approx(0.5)
    player.set_overlay(None)
    assert player.overlay_item.image is None


def test_only_the_newest_frame_request_is_decoded(qtbot, clip_25fps):
    loader = FrameLoader()
    got = []
    loader.frame_ready.connect(lambda _p, i, _f: got.append(i))
    loader.start()
    try:
        loader.open(clip_25fps)
        qtbot.waitUntil(lambda: got == [0], timeout=5000)
        for i in range(1, 50):
            loader.request(clip_25fps, i)
        qtbot.waitUntil(lambda: got[-1] == 49, timeout=5000)
        qtbot.wait(100)
        assert got[-1] == 49 and len(got) < 25, got
    finally:
        loader.stop()


def test_undecodable_clip_shows_its_reason(qtbot, player, tmp_path, clip_25fps):
    broken = tmp_path / "broken.dcm"
    data = clip_25fps.read_bytes()
    broken.write_bytes(data[: len(data) * 2 // 3])  # header intact, pixel data cut short
    with qtbot.waitSignal(player.clip_failed, timeout=5000) as failed:
        player.open_clip(broken)
        player.seek(49)
    assert player.stack.currentIndex() == 0
    assert failed.args[1] in player.message.text()
    assert "broken.dcm" in player.message.text()
