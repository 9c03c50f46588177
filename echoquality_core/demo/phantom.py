"""A synthetic echo phantom: cine loops that look like echocardiograms, without patient data.

A clip looks like an apical four-chamber cine loop: a ~90 degree sector fanning out from an apex at
the top centre, on black; Rayleigh speckle that is coherent over a few pixels and changes slowly;
four dark chambers whose size follows a 60-90 bpm heart cycle inside bright myocardium, with a
mitral valve opening and closing; burned-in text and a depth ruler beside the sector and, below
it, a thin green ECG trace of the whole loop with a dot marking the current frame, as stored loops
show it. The overlays are thin and apart from the sector, so EchoPrime's sector mask
(`preprocess.ultrasound_mask`) removes them as it does on real clips. Poor-quality kinds degrade
the sector only (the overlays are the same for every kind, so they give the label away to no
model):

- ``noise``: strong incoherent noise and clutter filling the chambers
- ``blur``: smeared speckle and edges (out of focus / motion)
- ``low_contrast``: washed-out grey, chambers hardly darker than tissue
- ``dropout``: rib shadows blacking out wedges of the sector, some frames lost entirely
- ``off_axis``: the heart displaced to the sector edge and cut, rotated, foreshortened, distorted

Clips are written as real multi-frame ultrasound DICOMs (JPEG baseline YBR_FULL_422 or

The DICOM writer is `echoquality_core.dicom.write`; the demo project is `echoquality_core.demo.project`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

QUALITIES = ("good", "noise", "blur", "low_contrast", "dropout", "off_axis")
POOR_QUALITIES = QUALITIES[1:]
DEPTH_CM = 16.0
_ECG_SECONDS = 2.5  # the shortest ECG strip drawn below the sector
_ECG_BASELINE = 0.945  # the ECG strip's baseline, as a fraction of the image height
_LUT_SIZE = 1024
_LUT_MAX = 3.0  # envelope amplitude mapped to the top of the lookup table
_TINT = np.array([1.0, 0.96, 0.88], np.float32)  # warm grey map: gives the YBR chroma something




# --------------------------------------------------------------------------- geometry


@dataclass(frozen=True)
class _Sector:
    apex_x: float
    apex_y: float
    radius: float
    half_angle: float  # radians


def _sector(height: int, width: int) -> _Sector:
    """The fan's geometry for an image size (the same for every clip of that size)."""
    return _Sector(
        apex_x=(width - 1) / 2.0,
        apex_y=0.05 * height,
        radius=min(0.80 * height, 0.56 * width),
        half_angle=math.radians(45.0),
    )


def sector_box(height: int, width: int) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1), ends inclusive, of the sector that `synthetic_clip` draws at this size:
    the box written to SequenceOfUltrasoundRegions."""
    s = _sector(height, width)
    half_width = s.radius * math.sin(s.half_angle)
    x0 = max(0, math.floor(s.apex_x - half_width))
    x1 = min(width - 1, math.ceil(s.apex_x + half_width))
    y0 = max(0, math.floor(s.apex_y))
    y1 = min(height - 1, math.ceil(s.apex_y + s.radius))
    return x0, y0, x1, y1


def _polar(height: int, width: int, s: _Sector) -> tuple[np.ndarray, np.ndarray]:
    """Per pixel: depth as a fraction of the radius, and beam angle in radians."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    dx, dy = x - s.apex_x, y - s.apex_y
    depth = np.sqrt(dx * dx + dy * dy) / s.radius
    angle = np.arctan2(dx, dy)
    return depth, angle


def _in_fan(depth: np.ndarray, angle: np.ndarray, s: _Sector) -> np.ndarray:
    """int16 (H,W): 1 inside the sector (below a thin near-field gap), 0 outside."""
    inside = (depth <= 1.0) & (np.abs(angle) <= s.half_angle) & (depth >= 0.02)
    return inside.astype(np.int16)


# --------------------------------------------------------------------------- anatomy


@dataclass
class _Chamber:
    x: float  # centre, in radii from the apex (x across, y down)
    y: float
    a: float  # semi-axes, in radii
    b: float
    tilt: float  # radians
    wall: float  # wall thickness as a fraction of the chamber's size
    kind: str  # "ventricle" | "atrium": which way it moves over the heart cycle


def _four_chambers(rng: np.random.Generator, quality: str) -> list[_Chamber]:
    """An apical four-chamber layout (LV on the screen's right), jittered per clip."""
    size = rng.uniform(0.9, 1.1)
    jx, jy = rng.uniform(-0.03, 0.03), rng.uniform(-0.02, 0.02)
    chambers = [
        _Chamber(0.12, 0.42, 0.145, 0.27, math.radians(-8), 0.42, "ventricle"),  # LV
        _Chamber(-0.165, 0.45, 0.10, 0.22, math.radians(14), 0.35, "ventricle"),  # RV
        _Chamber(0.14, 0.82, 0.135, 0.10, 0.0, 0.25, "atrium"),  # LA
        _Chamber(-0.16, 0.81, 0.11, 0.10, 0.0, 0.25, "atrium"),  # RA
    ]
    for c in chambers:
        c.x = c.x * size + jx
        c.y = 0.40 + (c.y - 0.40) * size + jy
        c.a *= size
        c.b *= size
        c.tilt += rng.uniform(-0.06, 0.06)
    if quality == "off_axis":
        # the probe points past the heart: everything slides towards one edge of the fan, turns,
        # and the long axes shorten (foreshortened, apex cut off)
        side = rng.choice([-1.0, 1.0])
        turn = side * rng.uniform(0.35, 0.6)
        shift = side * rng.uniform(0.30, 0.42)
        cx, cy = 0.0, 0.6
        for c in chambers:
            rx, ry = c.x - cx, c.y - cy
            c.x = cx + rx * math.cos(turn) - ry * math.sin(turn) + shift
            c.y = cy + rx * math.sin(turn) + ry * math.cos(turn) + rng.uniform(0.0, 0.1)
            c.tilt -= turn
            c.b *= rng.uniform(0.6, 0.8)
            c.a *= rng.uniform(1.0, 1.25)
    return chambers


def _ellipse_distance(xr: np.ndarray, yr: np.ndarray, c: _Chamber) -> np.ndarray:
    """Normalised ellipse distance (1 on the chamber's edge) at rest size."""
    dx, dy = xr - c.x, yr - c.y
    cos, sin = math.cos(c.tilt), math.sin(c.tilt)
    u = (dx * cos + dy * sin) / c.a
    v = (-dx * sin + dy * cos) / c.b
    return np.sqrt(u * u + v * v).astype(np.float32)


def _ventricle_scale(phase: float) -> float:
    """Ventricle size over one beat (phase 0 = R wave = end-diastole): squeezing in systole
    until 0.35, refilling until 0.6, then at rest."""
    if phase < 0.35:
        squeeze = 0.5 * (1.0 - math.cos(math.pi * phase / 0.35))
    elif phase < 0.6:
        squeeze = 0.5 * (1.0 + math.cos(math.pi * (phase - 0.35) / 0.25))
    else:
        squeeze = 0.0
    return 1.0 - 0.16 * squeeze


def _ecg(phase: np.ndarray) -> np.ndarray:
    """A PQRST complex per beat (phase 0 = R peak), in units of the R wave."""
    p = np.mod(phase + 0.5, 1.0) - 0.5  # -0.5..0.5, R at 0

    def wave(centre: float, width: float, height: float) -> np.ndarray:
        return height * np.exp(-(((p - centre) / width) ** 2))

    return (
        wave(-0.17, 0.035, 0.12)  # P
        + wave(-0.025, 0.008, -0.12)  # Q
        + wave(0.0, 0.011, 1.0)  # R
        + wave(0.03, 0.01, -0.25)  # S
        + wave(0.27, 0.06, 0.28)  # T
    )


# --------------------------------------------------------------------------- overlays


def _font(height: int) -> tuple[float, int]:
    return max(0.22, 0.030 * height / 22.0), max(1, round(height / 480))


def _static_overlay(height: int, width: int, s: _Sector, fps: float) -> np.ndarray:
    """Burned-in text and the depth ruler (RGB, black where nothing is drawn)."""
    canvas = np.zeros((height, width, 3), np.uint8)
    scale, thick = _font(height)
    line = max(4, round(0.042 * height))
    white, cyan = (235, 235, 235), (120, 220, 235)
    font = cv2.FONT_HERSHEY_SIMPLEX
    left = max(1, round(0.02 * width))
    for i, (text, colour) in enumerate(
        [("ECHO DEMO", white), ("SYNTHETIC", white), (f"FR {fps:g}Hz", cyan), ("2D 60%", cyan)]
    ):
        y = round(0.05 * height) + (i + 1) * line
        cv2.putText(canvas, text, (left, y), font, scale, colour, thick, cv2.LINE_AA)
    right = round(0.78 * width)
    for i, text in enumerate([f"{DEPTH_CM:g} cm", "M5S", "HGen"]):
        y = round(0.05 * height) + (i + 1) * line
        cv2.putText(canvas, text, (right, y), font, scale, white, thick, cv2.LINE_AA)
    # depth ruler to the right of the fan: a tick per cm, long ticks every 5 cm
    x = round(0.955 * width)
    top, bottom = round(s.apex_y), round(s.apex_y + s.radius)
    cv2.line(canvas, (x, top), (x, bottom), white, 1)
    for cm in range(int(DEPTH_CM) + 1):
        y = round(s.apex_y + s.radius * cm / DEPTH_CM)
        tick = max(2, round(0.012 * width)) * (2 if cm % 5 == 0 else 1)
        cv2.line(canvas, (x - tick, y), (x, y), white, 1)
    return canvas


def _ecg_trace(height: int, width: int, seconds: float, bpm: float, phase0: float) -> np.ndarray:
    """(N, 2) float32 pixel points (x, y) of the ECG over the loop's first `seconds`, left to
    right along the bottom of the image (the same in every frame)."""
    x0, x1 = 0.05 * width, 0.88 * width
    base, amp = _ECG_BASELINE * height, 0.05 * height
    n = max(16, int(x1 - x0))
    times = seconds * np.arange(n) / (n - 1)
    ys = base - amp * _ecg(phase0 + times * bpm / 60.0)
    xs = x0 + (x1 - x0) * np.arange(n) / (n - 1)
    return np.stack([xs, ys], axis=1).astype(np.float32)


def _draw_ecg(frame: np.ndarray, trace: np.ndarray, progress: float, bpm: float) -> None:
    """The static ECG `trace` with a dot at `progress` (0..1) along it, and the heart rate
    (in place). A thin line and a small moving dot: nothing thick enough to survive the sector
    mask's erosion, whichever frames are stacked."""
    height, width = frame.shape[:2]
    points = np.round(trace * 4).astype(np.int32)  # 2 fractional bits
    cv2.polylines(frame, [points], False, (40, 230, 60), 1, cv2.LINE_AA, shift=2)
    x, y = trace[round(progress * (len(trace) - 1))]
    radius = max(1, round(height / 160))
    cv2.circle(frame, (round(float(x)), round(float(y))), radius, (250, 230, 40), -1, cv2.LINE_AA)
    scale, thick = _font(height)
    cv2.putText(frame, f"HR {bpm:.0f}", (round(0.905 * width), round(_ECG_BASELINE * height)),
                cv2.FONT_HERSHEY_SIMPLEX, scale * 0.8, (40, 230, 60), thick, cv2.LINE_AA)


def _draw_square(frames: np.ndarray, square: tuple | dict) -> None:
    """Draw the bright test square described in `synthetic_clip` (in place)."""
    if isinstance(square, dict):
        x, y, size = square["x"], square["y"], square["size"]
        which = square.get("frames")
        value = square.get("value", 255)
    else:
        x, y, size = square
        which, value = None, 255
    if size < 1:
        raise ValueError(f"square size must be at least 1 pixel, got {size}")
    index = slice(None) if which is None else np.asarray(list(which), dtype=int)
    frames[index, max(0, y) : max(0, y + size), max(0, x) : max(0, x + size)] = value


# --------------------------------------------------------------------------- clip


def _display_lut(quality: str, gain: float) -> np.ndarray:
    """(LUT_SIZE, 3) uint8: envelope amplitude -> tinted grey, with log-like compression."""
    amplitude = np.linspace(0.0, _LUT_MAX, _LUT_SIZE, dtype=np.float32)
    grey = np.clip(gain * 0.95 * (amplitude / 1.6) ** 0.65, 0.0, 1.0)
    if quality == "low_contrast":
        grey = 0.30 + 0.28 * grey  # fog: chambers hardly darker than tissue
    rgb = np.round(255.0 * grey[:, None] * _TINT[None, :]).astype(np.uint8)
    rgb[0] = 0  # exactly black outside the sector
    return rgb


class _Heart:
    """The beating four-chamber heart as echogenicity (0 black .. ~1 bright), without speckle."""

    def __init__(self, rng: np.random.Generator, quality: str, s: _Sector, height: int,
                 width: int):
        self.sector, self.size = s, (width, height)
        # anatomy is smooth: draw it at half resolution, in units of the fan radius
        h2, w2 = max(8, height // 2), max(8, width // 2)
        self.scale_x, self.scale_y = width / w2, height / h2
        y2, x2 = np.mgrid[0:h2, 0:w2].astype(np.float32)
        xr = (x2 * self.scale_x - s.apex_x) / s.radius
        yr = (y2 * self.scale_y - s.apex_y) / s.radius
        if quality == "off_axis":  # a wavy warp: shapes look bent, not anatomical
            xr = xr + 0.05 * np.sin(yr * rng.uniform(7, 10) + rng.uniform(0, 6.3))
            yr = yr + 0.04 * np.sin(xr * rng.uniform(6, 9) + rng.uniform(0, 6.3))
        depth = np.sqrt(xr * xr + yr * yr)
        self.chambers = _four_chambers(rng, quality)
        self.rest = [_ellipse_distance(xr, yr, c) for c in self.chambers]
        texture = cv2.resize(rng.random((6, 8), dtype=np.float32), (w2, h2),
                             interpolation=cv2.INTER_CUBIC)
        tissue = (0.10 + 0.14 * texture) * (1.0 - 0.3 * depth)
        tissue += 0.45 * np.exp(-depth / 0.06)  # near-field clutter under the probe
        pericardium = np.abs(np.sqrt(((xr + 0.01) / 0.46) ** 2 + ((yr - 0.60) / 0.40) ** 2) - 1)
        self.tissue = np.maximum(tissue, 0.85 * np.clip(1.0 - pericardium / 0.05, 0.0, 1.0))
        self.wall_gain = [np.float32(1.0)] * len(self.chambers)
        if quality == "off_axis":  # half of each wall falls out of the imaging plane
            side = rng.uniform(0, 2 * math.pi)
            self.wall_gain = [
                np.clip(0.5 + 3.0 * ((xr - c.x) * math.cos(side) + (yr - c.y) * math.sin(side)),
                        0.1, 1.0).astype(np.float32)
                for c in self.chambers
            ]
        self.blood_level = 0.25 if quality == "noise" else 0.012  # clutter fills noisy chambers

    def echo(self, phase: float) -> np.ndarray:
        """Full-resolution echogenicity at this point of the heart cycle (0 = R wave)."""
        v_scale = _ventricle_scale(phase)
        a_scale = 1.0 + 0.6 * (1.0 - v_scale)  # atria fill while the ventricles squeeze
        echo = self.tissue.copy()
        blood = np.ones_like(echo)
        for c, d0, wall_gain in zip(self.chambers, self.rest, self.wall_gain, strict=True):
            d = d0 * np.float32(1.0 / (v_scale if c.kind == "ventricle" else a_scale))
            # myocardium: a mid-grey plateau, brightest at the endocardial border
            muscle = np.clip((1.0 + c.wall - d) / 0.08, 0.0, 1.0)
            border = np.clip(1.0 - np.abs(d - 1.03) / 0.07, 0.0, 1.0)
            np.maximum(echo, (0.42 * muscle + 0.5 * border) * wall_gain, out=echo)
            blood *= np.clip((d - 0.93) / 0.1, 0.0, 1.0)
        echo = echo * blood + self.blood_level * (1.0 - blood)
        self._draw_mitral_valve(echo, v_scale, phase)
        return cv2.resize(echo, self.size, interpolation=cv2.INTER_LINEAR)

    def _draw_mitral_valve(self, echo: np.ndarray, scale: float, phase: float) -> None:
        """Two bright leaflets at the LV base: closed in systole, open into the LV in diastole."""
        lv, s = self.chambers[0], self.sector
        opening = 0.0 if phase < 0.38 else math.sin(math.pi * min(1.0, (phase - 0.38) / 0.62))
        swing = 0.1 + 1.15 * opening  # radians up from flat across the valve ring
        cos, sin = math.cos(lv.tilt), math.sin(lv.tilt)
        length = 0.5 * lv.a * scale
        thickness = max(1, round(echo.shape[0] / 100))

        def pixel(u: float, v: float) -> tuple[int, int]:  # LV frame (u across, v down) -> pixel
            x = s.apex_x + (lv.x + u * cos - v * sin) * s.radius
            y = s.apex_y + (lv.y + u * sin + v * cos) * s.radius
            return round(x / self.scale_x), round(y / self.scale_y)

        base = 0.97 * lv.b * scale
        for side in (-1.0, 1.0):
            hinge_u = side * 0.85 * lv.a * scale
            tip_u = hinge_u - side * length * math.cos(swing)
            tip_v = base - length * math.sin(swing)
            cv2.line(echo, pixel(hinge_u, base), pixel(tip_u, tip_v), 0.9, thickness,
                     cv2.LINE_AA)


class _Speckle:
    """Rayleigh speckle (mean ~1): a complex Gaussian field on a coarse polar grid (grains a few
    pixels, wider with depth) remapped onto the image, changing slowly from frame to frame."""

    KEEP = 0.85  # AR(1) correlation between consecutive frames

    def __init__(self, rng: np.random.Generator, s: _Sector, depth: np.ndarray,
                 angle: np.ndarray, height: int):
        grain = max(1.2, height / 200.0)
        n_depth = max(8, round(s.radius / grain))
        n_angle = max(8, round(s.half_angle * s.radius / (1.6 * grain)))
        self.map_x = ((angle + s.half_angle) / (2 * s.half_angle) * (n_angle - 1)).astype(
            np.float32)
        self.map_y = (depth * (n_depth - 1)).astype(np.float32)
        self.rng = rng
        self.state = rng.standard_normal((n_depth, n_angle, 2), dtype=np.float32)

    def next(self) -> np.ndarray:
        fresh = self.rng.standard_normal(self.state.shape, dtype=np.float32)
        self.state = self.KEEP * self.state + math.sqrt(1.0 - self.KEEP**2) * fresh
        field = cv2.remap(self.state, self.map_x, self.map_y, cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_REFLECT)
        return cv2.magnitude(field[..., 0], field[..., 1]) * np.float32(1 / 1.1)


def _dropout(rng: np.random.Generator, s: _Sector, depth: np.ndarray, angle: np.ndarray,
             n_frames: int) -> tuple[np.ndarray, np.ndarray]:
    """Signal kept per pixel (rib shadows, a fading far field) and which frames are lost."""
    kept = np.ones(depth.shape, np.float32)
    for _ in range(int(rng.integers(1, 3))):  # each shadow a quarter to a third of the fan
        centre = rng.uniform(-0.6, 0.6) * s.half_angle
        half = rng.uniform(0.22, 0.32) * s.half_angle
        kept *= 0.03 + 0.97 * np.clip((np.abs(angle - centre) - half) / 0.04, 0.0, 1.0)
    far = rng.uniform(0.6, 0.85)
    kept *= np.clip((far + 0.12 - depth) / 0.12, 0.03, 1.0)
    return kept, rng.random(n_frames) < 0.2


def synthetic_clip(
    rng: np.random.Generator,
    quality: str = "good",
    n_frames: int = 48,
    height: int = 480,
    width: int = 640,
    square: tuple[int, int, int] | dict | None = None,
    *,
    fps: float = 30.0,
) -> np.ndarray:
    """A synthetic echo cine loop, uint8 (T, H, W, 3) RGB.

    quality: "good" or one poor kind (see the module docstring). fps sets the heart-cycle and ECG
    timing and the frame rate burned into the text. square: a bright test square (for GradCAM
    checks), either ``(x, y, size)`` in pixels (top-left corner; drawn in every frame) or a dict
    ``{"x", "y", "size", "frames": indices (default all), "value": 0-255 (default 255)}``.
    """
    if quality not in QUALITIES:
        raise ValueError(f"quality must be one of {QUALITIES}, got {quality!r}")
    if n_frames < 1 or height < 16 or width < 16:
        raise ValueError(f"need n_frames >= 1 and an image of at least 16x16, got "
                         f"{n_frames} frames of {height}x{width}")
    if fps <= 0:
        raise ValueError(f"fps must be positive, got {fps}")
    s = _sector(height, width)
    depth, angle = _polar(height, width, s)
    inside = _in_fan(depth, angle, s)
    heart = _Heart(rng, quality, s, height, width)
    speckle = _Speckle(rng, s, depth, angle, height)
    lut = _display_lut(quality, gain=rng.uniform(0.92, 1.08))
    bpm, phase0 = rng.uniform(60.0, 90.0), rng.uniform(0.0, 1.0)
    overlay = _static_overlay(height, width, s, fps)
    ys, xs = np.nonzero(overlay.any(axis=2))
    kept, lost = np.float32(1.0), np.zeros(n_frames, bool)
    if quality == "dropout":
        kept, lost = _dropout(rng, s, depth, angle, n_frames)
    to_index = np.float32((_LUT_SIZE - 1) / _LUT_MAX)
    ecg_seconds = max(_ECG_SECONDS, n_frames / fps)  # the whole loop, at least 2.5 s
    ecg = _ecg_trace(height, width, ecg_seconds, bpm, phase0)

    frames = np.empty((n_frames, height, width, 3), np.uint8)
    for t, frame in enumerate(frames):
        seconds = t / fps
        amplitude = heart.echo((phase0 + seconds * bpm / 60.0) % 1.0) * speckle.next()
        if quality == "noise":
            iid = rng.standard_normal((height, width, 2), dtype=np.float32)
            amplitude = 0.5 * amplitude + 0.28 * cv2.magnitude(iid[..., 0], iid[..., 1])
        elif quality == "blur":
            amplitude = cv2.GaussianBlur(amplitude, (0, 0), max(1.5, 0.011 * height)) + 0.05
        index = np.clip(amplitude * kept * to_index, 1, _LUT_SIZE - 1).astype(np.int16)
        np.take(lut, index * (np.int16(0) if lost[t] else inside), axis=0, out=frame)
        frame[ys, xs] = overlay[ys, xs]
        _draw_ecg(frame, ecg, seconds / ecg_seconds, bpm)
    if square is not None:
        _draw_square(frames, square)
    return frames


def sector_cm_per_px(height: int, width: int) -> float:
    """Centimetres per pixel of the sector drawn at this size (its radius is DEPTH_CM deep)."""
    return DEPTH_CM / _sector(height, width).radius


def sector_apex(height: int, width: int) -> tuple[int, int]:
    """(x, y) pixel of the sector's apex, where the probe sits."""
    s = _sector(height, width)
    return round(s.apex_x), round(s.apex_y)
