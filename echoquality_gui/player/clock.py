"""The cine player's clock as plain Python (napari's ``Dims`` idea: the state without the widget,
tested headless): which frame is due at a wall-clock time (elapsed time x fps x speed, skipping
frames rather than slowing down, as OHIF/Weasis do), the speed steps, looping and the frame rate
actually achieved on screen. Times are ``time.perf_counter()`` seconds, passed in or read here.
"""
from __future__ import annotations

import time
from collections import deque

SPEEDS = (0.25, 0.5, 1.0, 1.5, 2.0, 4.0)


class PlayClock:
    """Frame index, playing state, speed and loop of one clip of ``n_frames`` at ``fps``."""

    def __init__(self) -> None:
        self.n_frames = 0
        self.fps = 30.0
        self.index = 0
        self.speed = 1.0
        self.loop = True
        self.playing = False
        self._t0 = 0.0
        self._start_index = 0
        self._shown_at: deque[float] = deque()

    def restart(self, now: float | None = None) -> None:
        """Count from the current frame from now on (after a seek or a speed change)."""
        self._t0 = time.perf_counter() if now is None else now
        self._start_index = self.index

    def play(self, now: float | None = None) -> None:
        self.playing = True
        self.restart(now)
        self._shown_at.clear()

    def pause(self) -> None:
        self.playing = False

    def due(self, now: float | None = None) -> tuple[int, bool]:
        """The frame due at ``now`` and whether playback ends there (the last frame, no loop)."""
        now = time.perf_counter() if now is None else now
        target = self._start_index + int((now - self._t0) * self.fps * self.speed)
        if target >= self.n_frames:
            if not self.loop:
                return max(self.n_frames - 1, 0), True
            target %= max(self.n_frames, 1)
        return target, False

    def set_speed(self, speed: float, now: float | None = None) -> int:
        """Clamp ``speed`` to 0.25x..4x; returns the index in ``SPEEDS`` closest to it."""
        self.speed = float(min(max(speed, SPEEDS[0]), SPEEDS[-1]))
        self.restart(now)
        self._shown_at.clear()
        return self.speed_step()

    def speed_step(self) -> int:
        return min(range(len(SPEEDS)), key=lambda i: abs(SPEEDS[i] - self.speed))

    def stepped_speed(self, steps: int) -> float:
        """The speed ``steps`` entries of ``SPEEDS`` away from the current one (clamped)."""
        return SPEEDS[max(0, min(self.speed_step() + steps, len(SPEEDS) - 1))]

    def stepped(self, n: int) -> int:
        """The frame ``n`` frames away (wrapping round when looping)."""
        target = self.index + n
        return target % self.n_frames if self.loop and self.n_frames else target

    def shown(self, now: float | None = None) -> None:
        """A frame went on screen at ``now`` (for ``achieved_fps``)."""
        now = time.perf_counter() if now is None else now
        self._shown_at.append(now)
        while self._shown_at and now - self._shown_at[0] > 1.0:
            self._shown_at.popleft()

    @property
    def achieved_fps(self) -> float:
        """Frames put on screen in the last second of playback."""
        if len(self._shown_at) < 2:
            return 0.0
        span = self._shown_at[-1] - self._shown_at[0]
        return (len(self._shown_at) - 1) / span if span > 0 else 0.0

    def rate_text(self, fps_source: str) -> str:
        """'25.0 fps (from FrameTime) × 2 · shown 49.8 fps' for the player's header."""
        text = f"{self.fps:.1f} fps (from {fps_source or 'default'})"
        if self.speed != 1.0:
            text += f" × {self.speed:g}"
        if self.playing and len(self._shown_at) > 2:
            text += f" · shown {self.achieved_fps:.1f} fps"
        return text
