"""Turn a clip's frames into the tensor EchoPrime's video quality model was trained on.

Steps (EchoPrime ``utils.mask_outside_ultrasound`` + ``crop_and_scale`` + ``process_dicoms``):

1. Mask everything outside the ultrasound sector (burned-in text, ECG trace, scanner UI).
2. Crop the centre to a square, cut ``zoom`` (10 %) off each side, resize to 112x112 (bicubic).
3. Take frames ``0, 2, ..., 30`` (16 frames); a shorter clip is padded at the end.
4. Normalise per channel with EchoPrime's MEAN/STD -> float32 (3, T, 112, 112).

Padding: EchoPrime pads *after* normalising, with zeros, i.e. with the dataset's mean colour.
``pad="mean"`` (default) reproduces that in the uint8 stage by filling padded frames with the
uint8 colour nearest MEAN, which normalises to within 0.003 of zero (a uint8 step is 0.021), so
the uint8 frames stay a complete, cacheable description of the model input. ``pad="zero"`` pads
with black frames instead.

Colour: frames are RGB as ``dicom.read_clip`` decodes them. EchoPrime's reference code also runs
``cv2.COLOR_YUV2BGR`` on every frame inside its mask step; that depends on how its pydicom
version decoded YBR pixel data and is not reproduced here.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

MEAN = (29.110628, 28.076836, 29.096405)
STD = (47.989223, 46.456997, 47.20083)

MASK_KINDS = ("sector", "region", "none")
PAD_KINDS = ("mean", "zero")

_KERNEL = np.ones((3, 3), np.uint8)
_MORPH_ITERATIONS = 10  # erosion drops strokes thinner than ~21 px (ECG trace, text)
_IGNORED_CORNER = 20  # EchoPrime ignores changes in the top-left 20x20 px (a blinking dot)
_HULL_LINE = 3  # EchoPrime draws the hull with a 3-px line, so the mask reaches 1 px past it
_PAD_COLOUR = np.round(MEAN).astype(np.uint8)
MAX_VIEW_FRAMES = 3000  # model_view keeps every frame: 3000 x 112 x 112 x 3 = 113 MB

Region = tuple[int, int, int, int]


@dataclass(frozen=True)
class PreprocessParams:
    """How clips become model input; the defaults are EchoPrime's."""

    n_frames: int = 16
    stride: int = 2
    size: int = 112
    zoom: float = 0.1
    mask: str = "sector"  # "sector" (EchoPrime mask) | "region" (US region box) | "none"
    pad: str = "mean"  # "mean" (EchoPrime: normalises to ~0) | "zero" (black frames)

    def __post_init__(self) -> None:
        for name in ("n_frames", "stride", "size"):
            value = getattr(self, name)
            if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
                raise ValueError(f"PreprocessParams.{name} must be a positive integer, got {value!r}")
        if not 0.0 <= float(self.zoom) < 0.5:
            raise ValueError(f"PreprocessParams.zoom must be in [0, 0.5), got {self.zoom!r}")
        if self.mask not in MASK_KINDS:
            raise ValueError(f"PreprocessParams.mask must be one of {MASK_KINDS}, got {self.mask!r}")
        if self.pad not in PAD_KINDS:
            raise ValueError(f"PreprocessParams.pad must be one of {PAD_KINDS}, got {self.pad!r}")

    def key(self) -> str:
        """Stable string naming these settings (part of cache keys)."""
        return (
            f"v1-n{self.n_frames}-st{self.stride}-px{self.size}-z{float(self.zoom):g}"
            f"-{self.mask}-pad{self.pad}"
        )


def _is_torch(x: Any) -> bool:
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(x, torch.Tensor)


def _as_frames(frames: Any) -> np.ndarray:
    """Validate a frame stack: uint8 (T,H,W,3) or grey (T,H,W) / (T,H,W,1); numpy or torch."""
    if _is_torch(frames):
        frames = frames.detach().cpu().numpy()
    if not isinstance(frames, np.ndarray):
        raise TypeError(f"frames must be a numpy array or torch tensor, got {type(frames).__name__}")
    if frames.dtype != np.uint8:
        raise ValueError(f"frames must be uint8, got {frames.dtype}")
    if frames.ndim == 4 and frames.shape[-1] == 1:
        frames = frames[..., 0]
    if not (frames.ndim == 3 or (frames.ndim == 4 and frames.shape[-1] == 3)):
        raise ValueError(
            f"frames must have shape (T,H,W,3) or (T,H,W), got {tuple(frames.shape)}"
        )
    if min(frames.shape[:3]) == 0:
        raise ValueError(f"frames must not be empty, got shape {tuple(frames.shape)}")
    return np.ascontiguousarray(frames)


def _any_channel(image: np.ndarray) -> np.ndarray:
    """Bool (H,W): non-zero in any channel of an (H,W,3) or (H,W) uint8 image."""
    if image.ndim == 3:
        image = image[..., 0] | image[..., 1] | image[..., 2]
    return image > 0


def _fill_convex_hulls(mask_u8: np.ndarray) -> np.ndarray:
    """Fill the convex hull of every blob (closes the sector's dark gaps and its outline)."""
    contours, _ = cv2.findContours(mask_u8, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    filled = np.zeros_like(mask_u8)
    if contours:
        hulls = [cv2.convexHull(c) for c in contours]
        cv2.fillPoly(filled, hulls, 1)
        cv2.drawContours(filled, hulls, -1, 1, _HULL_LINE)
    return filled


def _close_to_sector(seed: np.ndarray) -> np.ndarray:
    grown = cv2.dilate(seed.view(np.uint8), _KERNEL, iterations=_MORPH_ITERATIONS)
    return _fill_convex_hulls(grown).astype(bool)


def ultrasound_mask(frames: Any) -> np.ndarray:
    """Bool (H,W) mask of the ultrasound sector, EchoPrime's way.

    Kept: pixels non-zero (any channel) in some frame, eroded 10x (3x3) to drop the thin
    ECG trace and text, that also change between the first and last frame (static overlays
    drop out; the top-left 20x20 px is ignored), dilated 10x and closed by filling the
    convex hull of each blob.

    Fallback when nothing changes (a still image, a frozen loop): EchoPrime would then
    black out the whole clip; here the eroded non-zero mask is dilated and hull-filled
    instead (text and ECG strokes are still removed by the erosion), and if that is empty
    too (an all-black or tiny image) nothing is masked.
    """
    frames = _as_frames(frames)
    nonzero = _any_channel(frames.max(axis=0))
    changed = _any_channel(cv2.absdiff(frames[0], frames[-1]))
    changed[:_IGNORED_CORNER, :_IGNORED_CORNER] = False

    solid = cv2.erode(nonzero.view(np.uint8), _KERNEL, iterations=_MORPH_ITERATIONS).view(bool)
    moving = solid & changed
    if moving.any():
        return _close_to_sector(moving)
    if solid.any():
        return _close_to_sector(solid)
    return np.ones(frames.shape[1:3], dtype=bool)


def region_mask(shape_hw: tuple[int, int], regions: Sequence[Region]) -> np.ndarray:
    """Bool (H,W) mask: the union of ultrasound region boxes (x0, y0, x1, y1), ends inclusive
    as DICOM's RegionLocationMaxX1/Y1 are; boxes are clipped to the image."""
    height, width = int(shape_hw[0]), int(shape_hw[1])
    mask = np.zeros((height, width), dtype=bool)
    for box in regions:
        if len(box) != 4:
            raise ValueError(f"region must be (x0, y0, x1, y1), got {box!r}")
        x0, y0, x1, y1 = (int(v) for v in box)
        if x1 < x0 or y1 < y0:
            raise ValueError(f"region has its end before its start: {box!r}")
        mask[max(y0, 0) : min(y1 + 1, height), max(x0, 0) : min(x1 + 1, width)] = True
    return mask


def crop_box(height: int, width: int, zoom: float = 0.1) -> tuple[int, int, int, int]:
    """(y0, x0, y1, x1), in original pixels, of what the model sees: EchoPrime's centre
    square crop followed by cutting ``zoom`` of each side (y1/x1 exclusive)."""
    if height < 1 or width < 1:
        raise ValueError(f"image size must be positive, got {height}x{width}")
    y0, x0, y1, x1 = 0, 0, height, width
    if width > height:
        cut = round((width - height) / 2)
        x0, x1 = cut, width - cut
    elif height > width:
        cut = round((height - width) / 2)
        y0, y1 = cut, height - cut
    cut_y = int((y1 - y0) * zoom)
    cut_x = int((x1 - x0) * zoom)
    return y0 + cut_y, x0 + cut_x, y1 - cut_y, x1 - cut_x


def map_to_original(map_2d: np.ndarray, height: int, width: int, zoom: float = 0.1) -> np.ndarray:
    """Place a (S,S) map of the model's view (e.g. GradCAM) onto the (H,W) original frame;
    zero outside the crop box."""
    map_2d = np.asarray(map_2d, dtype=np.float32)
    if map_2d.ndim != 2:
        raise ValueError(f"map must be 2-D, got shape {map_2d.shape}")
    y0, x0, y1, x1 = crop_box(height, width, zoom)
    out = np.zeros((height, width), dtype=np.float32)
    out[y0:y1, x0:x1] = cv2.resize(map_2d, (x1 - x0, y1 - y0), interpolation=cv2.INTER_LINEAR)
    return out


def sample_indices(n_available: int, n_frames: int = 16, stride: int = 2) -> np.ndarray:
    """Frame indices the model sees: 0, stride, ... (n_frames of them); -1 marks padding."""
    if n_available < 0 or n_frames < 1 or stride < 1:
        raise ValueError(
            f"need n_available >= 0, n_frames >= 1, stride >= 1; "
            f"got {n_available}, {n_frames}, {stride}"
        )
    idx = np.arange(n_frames, dtype=np.int64) * stride
    idx[idx >= n_available] = -1
    return idx


def _clip_mask(frames: np.ndarray, params: PreprocessParams, regions) -> np.ndarray | None:
    if params.mask == "sector":
        return ultrasound_mask(frames)
    if params.mask == "region":
        if not regions:
            raise ValueError(
                "mask='region' needs the clip's ultrasound regions "
                "(SequenceOfUltrasoundRegions), but none were given; use mask='sector'"
            )
        return region_mask(frames.shape[1:3], regions)
    return None


def _mask_and_resize(crops: np.ndarray, box_mask: np.ndarray | None, size: int) -> np.ndarray:
    """Zero (N,h,w[,3]) uint8 crops outside ``box_mask`` and resize them bicubically to
    (N,size,size[,3]); cv2 saturates the result to 0..255."""
    mask_u8 = None if box_mask is None else box_mask.view(np.uint8)
    out = []
    for crop in crops:
        if mask_u8 is not None:
            crop = cv2.bitwise_and(crop, crop, mask=mask_u8)
        out.append(cv2.resize(crop, (size, size), interpolation=cv2.INTER_CUBIC))
    return np.stack(out)


class SectorInputs:
    """What EchoPrime's sector mask needs from a whole clip, gathered one frame at a time: the
    first frame, each pixel's brightest value and the last frame (three frames of memory)."""

    def __init__(self) -> None:
        self.first: np.ndarray | None = None
        self.brightest: np.ndarray | None = None
        self.last: np.ndarray | None = None

    def add(self, frame: np.ndarray) -> None:
        if self.brightest is None:
            self.first, self.brightest = frame, frame.copy()
        else:
            np.maximum(self.brightest, frame, out=self.brightest)
        self.last = frame

    def mask(self) -> np.ndarray:
        """``ultrasound_mask`` of the whole clip (its max is ``brightest``, its ends first/last)."""
        return ultrasound_mask(np.stack([self.first, self.brightest, self.last]))


def _is_frame_source(frames: Any) -> bool:
    """A clip read frame by frame (``dicom.Clip``, or anything with ``n_frames`` and
    ``frame(i)``) rather than an array of all its frames."""
    return hasattr(frames, "frame") and hasattr(frames, "n_frames")


def _streamed_model_frames(clip: Any, params: PreprocessParams,
                           regions: Sequence[Region] | None) -> np.ndarray:
    """``model_frames`` of a clip read frame by frame, in one pass: each frame is decoded once
    and dropped; only the mask's inputs and the sampled frames' crops are kept. Without the
    sector mask only the sampled frames are decoded."""
    n = int(clip.n_frames)
    idx = sample_indices(n, params.n_frames, params.stride)
    real = idx >= 0
    wanted = {int(i) for i in idx[real]}
    sector = SectorInputs() if params.mask == "sector" else None
    crops: dict[int, np.ndarray] = {}
    shape = None
    for i in range(n) if sector is not None else sorted(wanted):
        frame = _as_frames(np.asarray(clip.frame(i))[None])[0]
        shape = frame.shape
        if sector is not None:
            sector.add(frame)
        if i in wanted:
            y0, x0, y1, x1 = crop_box(shape[0], shape[1], params.zoom)
            crops[i] = np.ascontiguousarray(frame[y0:y1, x0:x1])
    if sector is not None:
        mask = sector.mask()
    else:
        mask = _clip_mask(np.empty((1, *shape[:2]), np.uint8), params, regions)
    box = crop_box(shape[0], shape[1], params.zoom)
    return _assemble([crops[int(i)] for i in idx[real]], mask, box, real, params)


def model_frames(
    frames: Any,
    params: PreprocessParams = PreprocessParams(),
    regions: Sequence[Region] | None = None,
) -> np.ndarray:
    """uint8 (n_frames, size, size, 3): masked, cropped, resized, sampled frames, i.e. what
    the model sees before normalisation (the form clips are cached in).

    ``frames``: all frames as an array, or a clip read frame by frame (``dicom.Clip``), which
    is streamed: memory for three full frames and the sampled crops, whatever its length."""
    if _is_frame_source(frames):
        return _streamed_model_frames(frames, params, regions)
    frames = _as_frames(frames)
    mask = _clip_mask(frames, params, regions)
    t, h, w = frames.shape[:3]
    idx = sample_indices(t, params.n_frames, params.stride)
    real = idx >= 0
    y0, x0, y1, x1 = box = crop_box(h, w, params.zoom)
    return _assemble(frames[idx[real], y0:y1, x0:x1], mask, box, real, params)


def _assemble(crops: Any, mask: np.ndarray | None, box: tuple[int, int, int, int],
              real: np.ndarray, params: PreprocessParams) -> np.ndarray:
    """The sampled frames' crops masked (``mask`` of the whole frame, cut to ``box``), resized,
    made RGB and placed at the ``real`` slots of (n_frames, size, size, 3); padding slots get
    the pad colour."""
    y0, x0, y1, x1 = box
    box_mask = None if mask is None else np.ascontiguousarray(mask[y0:y1, x0:x1])
    resized = _mask_and_resize(crops, box_mask, params.size)
    if resized.ndim == 3:  # grey frames
        resized = np.repeat(resized[..., None], 3, axis=-1)
    out = np.empty((params.n_frames, params.size, params.size, 3), dtype=np.uint8)
    out[real] = resized
    out[~real] = _PAD_COLOUR if params.pad == "mean" else 0
    return out


def model_view(
    frame_at: Callable[[int], Any],
    n_frames: int,
    params: PreprocessParams = PreprocessParams(),
    regions: Sequence[Region] | None = None,
) -> np.ndarray | None:
    """Every frame of a clip as the model sees it, uint8 (n_frames, size, size, 3), built
    while holding one full-size frame at a time (for long clips in a viewer).

    ``frame_at(i)`` gives frame ``i`` (uint8 (H,W,3) or (H,W)) or None to give up (then None
    is returned); ValueError for a clip over ``MAX_VIEW_FRAMES`` frames (the view holds every
    frame at model size). Equals ``model_frames`` of the whole clip with ``n_frames`` frames and
    stride 1: the sector mask needs only each pixel's brightest value and the first and last
    frames (see :func:`ultrasound_mask`), gathered in a first pass; a second pass masks, crops
    and resizes each frame.
    """
    if n_frames > MAX_VIEW_FRAMES:
        raise ValueError(f"the clip has {n_frames} frames; the model-input view shows clips of "
                         f"up to {MAX_VIEW_FRAMES} frames")
    mask = None
    if params.mask == "sector":
        sector = SectorInputs()
        for index in range(n_frames):
            frame = frame_at(index)
            if frame is None:
                return None
            sector.add(_as_frames(np.asarray(frame)[None])[0])
        mask = sector.mask()
    out = np.empty((n_frames, params.size, params.size, 3), dtype=np.uint8)
    for index in range(n_frames):
        frame = frame_at(index)
        if frame is None:
            return None
        frame = _as_frames(np.asarray(frame)[None])
        if mask is None and params.mask == "region":
            mask = _clip_mask(frame, params, regions)
        h, w = frame.shape[1:3]
        y0, x0, y1, x1 = crop_box(h, w, params.zoom)
        box_mask = None if mask is None else np.ascontiguousarray(mask[y0:y1, x0:x1])
        resized = _mask_and_resize(frame[:, y0:y1, x0:x1], box_mask, params.size)[0]
        out[index] = resized[..., None] if resized.ndim == 2 else resized
    return out


def normalize(frames_u8: np.ndarray) -> np.ndarray:
    """uint8 (T,S,S,3) -> float32 (3,T,S,S): (x - MEAN) / STD per channel."""
    frames_u8 = np.asarray(frames_u8)
    if frames_u8.ndim != 4 or frames_u8.shape[-1] != 3:
        raise ValueError(f"frames must have shape (T,S,S,3), got {frames_u8.shape}")
    x = frames_u8.transpose(3, 0, 1, 2).astype(np.float32)
    x -= np.asarray(MEAN, np.float32).reshape(3, 1, 1, 1)
    x /= np.asarray(STD, np.float32).reshape(3, 1, 1, 1)
    return x


def preprocess_clip(
    frames: Any,
    params: PreprocessParams | None = None,
    regions: Sequence[Region] | None = None,
    **overrides: Any,
) -> Any:
    """Model input float32 (3, n_frames, size, size) for a uint8 (T,H,W,3) or (T,H,W) clip, or
    a ``dicom.Clip`` (streamed: ``preprocess_clip(read_clip(path))``).

    ``overrides`` replace fields of ``params`` (e.g. ``n_frames=8``). A torch tensor in gives
    a torch float32 tensor out, a numpy array in gives a numpy array out.
    """
    params = params or PreprocessParams()
    if overrides:
        fields = {f.name for f in dataclasses.fields(PreprocessParams)}
        unknown = sorted(set(overrides) - fields)
        if unknown:
            raise TypeError(f"unknown preprocessing setting(s) {unknown}; known: {sorted(fields)}")
        params = dataclasses.replace(params, **overrides)
    out = normalize(model_frames(frames, params, regions))
    if _is_torch(frames):
        return sys.modules["torch"].from_numpy(out)
    return out
