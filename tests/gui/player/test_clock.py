"""The player's clock without a widget (times passed in, no Qt)."""
import pytest

from echoquality_gui.player.clock import SPEEDS, PlayClock


def _clock(n_frames=10, fps=25.0, loop=True) -> PlayClock:
    clock = PlayClock()
    clock.n_frames, clock.fps, clock.loop = n_frames, fps, loop
    return clock


def test_the_frame_due_follows_wall_clock_time_fps_and_speed():
    clock = _clock(fps=8.0)
    clock.play(now=100.0)
    assert clock.due(100.0) == (0, False)
    assert clock.due(100.5) == (4, False)  # 0.5 s x 8 fps
    clock.index = 4
    clock.set_speed(2.0, now=100.5)
    assert clock.due(100.875) == (0, False)  # 4 + 0.375 s x 8 fps x 2 = 10, wrapped round


def test_without_loop_playback_ends_on_the_last_frame():
    clock = _clock(loop=False)
    clock.play(now=0.0)
    assert clock.due(10.0) == (9, True)


def test_speed_is_clamped_and_steps_through_the_list():
    clock = _clock()
    assert SPEEDS[clock.set_speed(100.0)] == SPEEDS[-1] == clock.speed
    assert clock.stepped_speed(-1) == SPEEDS[-2]
    clock.set_speed(0.01)
    assert clock.speed == SPEEDS[0] and clock.stepped_speed(-3) == SPEEDS[0]


def test_steps_wrap_only_when_looping():
    clock = _clock()
    clock.index = 9
    assert clock.stepped(1) == 0
    clock.loop = False
    assert clock.stepped(1) == 10  # the player clamps it to the last frame


def test_achieved_fps_counts_the_frames_shown_in_the_last_second():
    clock = _clock()
    clock.play(now=0.0)
    for i in range(21):
        clock.shown(now=i * 0.05)  # 20 fps for a second
    assert clock.achieved_fps == pytest.approx(20.0)
    clock.shown(now=5.0)  # the old ones fall out of the window
    assert clock.achieved_fps == 0.0
    assert clock.rate_text("FrameTime").startswith("25.0 fps (from FrameTime)")
