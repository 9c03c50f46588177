"""The cine player: plays a clip at its DICOM frame rate (frame index from elapsed wall-clock
time x fps x speed, skipping frames rather than slowing down, as OHIF/Weasis do), with zoom/pan,
brightness/contrast, a heat-map overlay (``set_overlay``, with its own show/opacity controls), a
per-frame importance curve under the scrub bar (``set_importance``) and the model's-eye view."""
from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from PySide6.QtCore import Qt, QTimer, Signal

from echoquality_gui.common.resources import icon
from echoquality_gui.player.clock import PlayClock
from echoquality_gui.player.frame_loader import FrameLoader
from echoquality_gui.player.layout import PlayerLayout
from echoquality_gui.window.keybinds import issue_key

TICK_MS = 5
Overlay = Callable[[int], "np.ndarray | None"] | np.ndarray


def _clock_attr(name: str) -> property:
    """A player attribute kept by its :class:`PlayClock`."""
    return property(lambda self: getattr(self.clock, name),
                    lambda self, value: setattr(self.clock, name, value))


class CinePlayer(PlayerLayout):
    """Shows one clip; ``open_clip(path)`` / ``prefetch(path)``; play, step, seek, speed, loop.
    The frame index, frame rate, speed, loop and playing state live in ``self.clock``."""

    index = _clock_attr("index")
    n_frames = _clock_attr("n_frames")
    fps = _clock_attr("fps")
    speed = _clock_attr("speed")
    loop = _clock_attr("loop")
    playing = _clock_attr("playing")

    frame_shown = Signal(int)
    clip_failed = Signal(object, str)  # path, reason

    def __init__(self, loader: FrameLoader | None = None, parent=None):
        super().__init__(parent)
        self.loader = loader or FrameLoader(parent=self)
        self.loader.frame_ready.connect(self._on_frame)
        self.loader.clip_opened.connect(self._on_clip_opened)
        self.loader.failed.connect(self._on_failed)
        self.loader.model_ready.connect(self._on_model_frames)
        self.loader.start()

        self.clock = PlayClock()
        self.path: Path | None = None
        self.fps_source = ""
        self.autoplay = False  # set_autoplay(True): a clip plays as soon as it opens
        self.empty_text = "Open a folder of clips (File > Open folder…, or drop it here)"
        self.frames_shown = 0
        self.show_model_input = False
        self._levels: tuple[float, float] | None = None
        self._model: np.ndarray | None = None
        self._overlay: Overlay | None = None
        self.overlay_on = True
        self._opened_at = 0.0
        self._rate_updated = 0.0
        self.first_frame_seconds: float | None = None  # open_clip -> first frame on screen

        self._timer = QTimer(self)
        self._timer.setTimerType(Qt.TimerType.PreciseTimer)
        self._timer.setInterval(TICK_MS)
        self._timer.timeout.connect(self._tick)
        self._build()

    # --- clips -----------------------------------------------------------------------------
    def open_clip(self, path: str | Path | None) -> None:
        """Show clip ``path`` from its first frame (None: no clip)."""
        self.pause()
        self.path = Path(path) if path else None
        self._model, self.index, self.n_frames = None, 0, 0
        self.first_frame_seconds = None
        self._opened_at = time.perf_counter()
        self.model_image.clear()
        self.importance_marker.setValue(0)
        self._refresh_overlay()
        if self.path is None:
            self._show_message(self.empty_text)
            return
        self.info.setText(f"{self.path.name} · opening…")  # the name at once, the rest follows
        self.rate.setText("")
        self.message.setText(f"Opening {self.path.name}…")  # shown until its first frame
        self.loader.open(self.path)
        clip = self.loader.header(self.path)
        if clip is not None:
            self._on_clip_opened(self.path, clip)
            frame = self.loader.cache.get(self.path, 0)
            if frame is not None:
                self._display(0, frame)
        if self.show_model_input:
            self.loader.request_model_frames(self.path)

    def prefetch(self, path: str | Path | None) -> None:
        """Decode the header and first frames of the clip likely to be opened next."""
        self.loader.prefetch(Path(path) if path else None)

    def _on_clip_opened(self, path: Path, clip) -> None:
        if path != self.path:
            return
        first = self.n_frames == 0
        self.n_frames, self.fps, self.fps_source = clip.n_frames, float(clip.fps), clip.fps_source
        self.slider.blockSignals(True)
        self.slider.setRange(0, max(self.n_frames - 1, 0))
        self.slider.blockSignals(False)
        self.importance_plot.setXRange(0, max(self.n_frames - 1, 1), padding=0)
        self._show_position()
        self.info.setText(f"{path.name} · {clip.n_frames} frames · {clip.width}×{clip.height}")
        self._update_rate_label()
        if first:
            self.stack.setCurrentIndex(1)
            self.fit()  # fit the new clip (zoom/pan turn this off)
            if self.autoplay and self.isVisible():  # a player on a hidden tab waits
                self.play()

    def _on_failed(self, path: Path, reason: str) -> None:
        if path != self.path:
            return
        self.pause()
        self._show_message(f"Cannot show {path.name}\n\n{reason}\n\n"
                           "You can still label it (e.g. tag it 'unreadable', key "
                           f"{issue_key('unreadable')}).")
        self.clip_failed.emit(path, reason)

    def _show_message(self, text: str) -> None:
        self.message.setText(text)
        self.stack.setCurrentIndex(0)
        self.info.setText("")
        self.rate.setText("")

    # --- frames ----------------------------------------------------------------------------
    def _on_frame(self, path: Path, index: int, frame: np.ndarray) -> None:
        # while playing, a frame that arrives late is still shown (decoding slower than the
        # frame rate skips frames instead of freezing the picture)
        if path == self.path and (index == self.index or self.playing):
            self._display(index, frame)

    def _display(self, index: int, frame: np.ndarray) -> None:
        self.image.setImage(frame, autoLevels=False, levels=self._levels)
        self.stack.setCurrentIndex(1)
        if self.first_frame_seconds is None:
            self.first_frame_seconds = time.perf_counter() - self._opened_at
        if self._model is not None and index < len(self._model):
            self.model_image.setImage(self._model[index], autoLevels=False, levels=self._levels)
        self._refresh_overlay()
        self.frames_shown += 1
        self.clock.shown()
        self.frame_shown.emit(index)

    def seek(self, index: int) -> None:
        """Show frame ``index`` (clamped); keeps playing from there if playing."""
        if self.path is None or self.n_frames == 0:
            return
        index = max(0, min(int(index), self.n_frames - 1))
        self._go(index)
        if self.playing:
            self.clock.restart()

    def _go(self, index: int) -> None:
        self.index = index
        self.slider.blockSignals(True)
        self.slider.setValue(index)
        self.slider.blockSignals(False)
        self.importance_marker.setValue(index)
        self._show_position()
        frame = self.loader.cache.get(self.path, index)
        if frame is not None:
            self._display(index, frame)
        else:
            self.loader.request(self.path, index)

    def _show_position(self) -> None:
        ms = 1000.0 * self.index / self.fps if self.fps > 0 else 0.0
        self.position.setText(f"{self.index + 1} / {self.n_frames} · {ms:.0f} ms")

    def fit(self) -> None:
        """Fit the whole clip in the player (undoes zoom and pan), keeping its aspect ratio."""
        self.view_box.enableAutoRange()

    def set_autoplay(self, on: bool) -> None:
        """Play clips as soon as they open (off: they open paused; one playing now stops)."""
        self.autoplay = bool(on)
        if not self.autoplay:
            self.pause()

    def showEvent(self, event) -> None:  # noqa: N802 (Qt's name)
        super().showEvent(event)
        if self.autoplay and self.n_frames > 1 and not self.playing:
            self.play()  # back on its tab: the clip plays again, as it did on opening

    def set_empty_text(self, text: str) -> None:
        """What the player says while no clip is shown."""
        self.empty_text = text
        if self.path is None:
            self._show_message(text)

    def _on_slider(self, value: int) -> None:
        self.seek(value)

    def step(self, n: int) -> None:
        """Pause and move ``n`` frames (wrapping round when looping)."""
        self.pause()
        if self.n_frames:
            self.seek(self.clock.stepped(n))

    def first(self) -> None:
        self.pause()
        self.seek(0)

    def last(self) -> None:
        self.pause()
        self.seek(self.n_frames - 1)

    # --- playback --------------------------------------------------------------------------
    def play(self) -> None:
        if self.path is None or self.n_frames < 2:
            return
        if not self.loop and self.index >= self.n_frames - 1:
            self.seek(0)
        self.clock.play()
        self._timer.start()
        self.play_button.setIcon(icon("pause"))

    def pause(self) -> None:
        self.clock.pause()
        self._timer.stop()
        self.play_button.setIcon(icon("play"))
        self._update_rate_label()

    def toggle_play(self) -> None:
        self.pause() if self.playing else self.play()

    def _tick(self) -> None:
        target, ends = self.clock.due()
        if ends:
            self._go(target)
            self.pause()
            return
        if target != self.index:
            self._go(target)
        if time.perf_counter() - self._rate_updated > 0.25:
            self._update_rate_label()

    @property
    def achieved_fps(self) -> float:
        """Frames put on screen in the last second of playback."""
        return self.clock.achieved_fps

    def _update_rate_label(self) -> None:
        self._rate_updated = time.perf_counter()
        if not self.n_frames:
            return
        self.rate.setText(self.clock.rate_text(self.fps_source))

    def set_speed(self, speed: float) -> None:
        """Playback speed (0.25x to 4x of the clip's frame rate)."""
        closest = self.clock.set_speed(speed)
        self.speed_box.blockSignals(True)
        self.speed_box.setCurrentIndex(closest)
        self.speed_box.blockSignals(False)
        self._update_rate_label()

    def change_speed(self, steps: int) -> None:
        self.set_speed(self.clock.stepped_speed(steps))

    def set_loop(self, on: bool) -> None:
        self.loop = bool(on)
        if self.loop_box.isChecked() != self.loop:
            self.loop_box.setChecked(self.loop)

    # --- display settings ------------------------------------------------------------------
    def _apply_levels(self) -> None:
        b, c = self.brightness.value(), self.contrast.value()
        if b == 0 and c == 0:
            self._levels = None
        else:
            width = 255.0 / (2.0 ** (c / 50.0))  # contrast -100..100 -> x0.25..x4
            centre = 127.5 - b * 1.275
            self._levels = (centre - width / 2, centre + width / 2)
        frame = self.loader.cache.get(self.path, self.index) if self.path else None
        if frame is not None:
            self._display(self.index, frame)

    def reset_levels(self) -> None:
        """Brightness and contrast back to the clip's own values."""
        for slider in (self.brightness, self.contrast):
            slider.blockSignals(True)
            slider.setValue(0)
            slider.blockSignals(False)
        self._apply_levels()

    def set_model_input(self, on: bool) -> None:
        """Show the model's input (masked, cropped 112 x 112 frames) beside the clip."""
        self.show_model_input = bool(on)
        if self.model_box_toggle.isChecked() != self.show_model_input:
            self.model_box_toggle.setChecked(self.show_model_input)
        self.model_view.setVisible(self.show_model_input)
        if self.show_model_input and self.path is not None and self._model is None:
            self.loader.request_model_frames(self.path)

    def _on_model_frames(self, path: Path, frames: np.ndarray) -> None:
        if path != self.path:
            return
        self._model = frames
        self.model_box.enableAutoRange()
        if self.index < len(frames):
            self.model_image.setImage(frames[self.index], autoLevels=False, levels=self._levels)

    def set_overlay(self, source: Overlay | None, opacity: float | None = None,
                    caption: str = "") -> None:
        """Heat map over the clip (e.g. GradCAM): an array (T,H,W) or (H,W) in 0..1, or a
        callable frame_index -> (H,W) array or None. None removes it. ``opacity`` (0..1) sets
        the opacity slider; ``caption`` says what the map shows."""
        self._overlay = source
        if opacity is not None:
            self.opacity_slider.setValue(round(float(opacity) * 100))
        self.overlay_caption.setText(caption)
        self.overlay_row.setVisible(source is not None)
        self._refresh_overlay()

    def set_overlay_visible(self, on: bool) -> None:
        """Show or hide the heat map (it stays set)."""
        self.overlay_on = bool(on)
        if self.overlay_box.isChecked() != self.overlay_on:
            self.overlay_box.setChecked(self.overlay_on)
        self.overlay_item.setVisible(self.overlay_on)
        self._refresh_overlay()

    def toggle_overlay(self) -> None:
        self.set_overlay_visible(not self.overlay_on)

    def set_importance(self, frames: Sequence[int] | None, values: Sequence[float] = ()) -> None:
        """Curve under the scrub bar: ``values`` at clip frame indices ``frames`` (e.g. the
        frames the model saw and their GradCAM importance); None hides it."""
        if frames is None or len(frames) == 0:
            self.importance_curve.setData([], [])
            self.importance_plot.setVisible(False)
            return
        values = np.asarray(values, dtype=np.float64)
        self.importance_curve.setData(np.asarray(frames, dtype=np.float64), values)
        self.importance_plot.setXRange(0, max(self.n_frames - 1, int(max(frames)), 1), padding=0)
        top = float(values.max()) if values.size else 1.0
        self.importance_plot.setYRange(0.0, top if top > 0 else 1.0, padding=0.1)
        self.importance_plot.setVisible(True)

    def _refresh_overlay(self) -> None:
        source = self._overlay if self.overlay_on else None
        if callable(source):
            heat = source(self.index)
        elif source is not None:
            heat = source[min(self.index, len(source) - 1)] if source.ndim == 3 else source
        else:
            heat = None
        if heat is None:
            self.overlay_item.clear()
        else:
            self.overlay_item.setImage(np.asarray(heat, dtype=np.float32), levels=(0.0, 1.0))

    def shutdown(self) -> None:
        """Stop playback and the decoder thread (before the widget is destroyed)."""
        self.pause()
        self.loader.stop()
