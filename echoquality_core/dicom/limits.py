"""Resource limits checked before any pixel buffer is allocated: the frame size from the header
and from each compressed frame's own codestream (JPEG SOF, JPEG-LS SOF55, JPEG 2000 SIZ), the
number of frames, and the size of a whole decoded clip.

The limits can be raised (or lowered) with environment variables; the error says which.
"""
from __future__ import annotations

import os
import struct

from echoquality_core.dicom.errors import DicomReadError

MAX_FRAME_SIDE_ENV = "ECHOQUALITY_MAX_FRAME_SIDE"
MAX_FRAMES_ENV = "ECHOQUALITY_MAX_FRAMES"
MAX_CLIP_MB_ENV = "ECHOQUALITY_MAX_CLIP_MB"
DEFAULT_MAX_FRAME_SIDE = 8192  # pixels: a frame may hold up to 8192x8192 pixels
DEFAULT_MAX_FRAMES = 20_000  # ~11 min at 30 fps; real cine loops have a few hundred
DEFAULT_MAX_CLIP_MB = 2048  # a whole clip decoded at once (Clip.frames), uint8 RGB

_JPEG_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF,
             0xF7}  # 0xF7: JPEG-LS SOF55
_SCAN_LIMIT = 1 << 16  # marker segments before the first scan fit in far fewer bytes


def _env_int(name: str, default: int) -> int:
    try:
        value = int(os.environ.get(name, "") or default)
    except ValueError:
        return default
    return value if value > 0 else default


def max_frame_side() -> int:
    return _env_int(MAX_FRAME_SIDE_ENV, DEFAULT_MAX_FRAME_SIDE)


def max_frames() -> int:
    return _env_int(MAX_FRAMES_ENV, DEFAULT_MAX_FRAMES)


def max_clip_bytes() -> int:
    return _env_int(MAX_CLIP_MB_ENV, DEFAULT_MAX_CLIP_MB) * 2**20


def check_frame_size(path, rows: int, columns: int, where: str = "frames are") -> None:
    """DicomReadError if a frame of ``columns`` x ``rows`` exceeds the pixel budget."""
    side = max_frame_side()
    if rows * columns > side * side:
        raise DicomReadError(path, f"{where} {columns}×{rows}, larger than the {side}×{side} "
                                   f"limit; raise it with {MAX_FRAME_SIDE_ENV}=<pixels>")


def check_frame_count(path, n_frames: int) -> None:
    limit = max_frames()
    if n_frames > limit:
        raise DicomReadError(path, f"clip has {n_frames} frames, more than the limit of {limit}; "
                                   f"raise it with {MAX_FRAMES_ENV}=<frames>")


def check_clip_bytes(path, n_bytes: int) -> None:
    """DicomReadError if decoding a whole clip at once would take more than the budget."""
    limit = max_clip_bytes()
    if n_bytes > limit:
        raise DicomReadError(
            path, f"decoding the whole clip at once takes {n_bytes / 2**20:.0f} MB, more than "
                  f"the {limit // 2**20} MB limit (read it frame by frame, or raise it with "
                  f"{MAX_CLIP_MB_ENV}=<MB>)")


def codestream_size(data: bytes) -> tuple[int, int] | None:
    """(columns, rows) that a compressed frame declares in its own markers, before decoding:
    JPEG / JPEG-LS (SOF) or JPEG 2000 (SIZ, raw codestream or JP2 file); None if not found.
    A rows value of 0 (height given later in a DNL marker) is returned as is."""
    if data[:2] == b"\xff\xd8":
        return _jpeg_size(data)
    at = data.find(b"\xff\x4f\xff\x51", 0, _SCAN_LIMIT)  # J2K: SOC then SIZ
    if at >= 0 and len(data) >= at + 24:
        xsiz, ysiz, xosiz, yosiz = struct.unpack(">IIII", data[at + 8:at + 24])
        return max(xsiz - xosiz, 0), max(ysiz - yosiz, 0)
    return None


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    i, n = 2, min(len(data), _SCAN_LIMIT)
    while i + 4 <= n:
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker == 0xFF:
            i += 1
            continue
        if marker in (0x01, *range(0xD0, 0xD8)):  # markers without a length
            i += 2
            continue
        length = int.from_bytes(data[i + 2:i + 4], "big")
        if marker in _JPEG_SOF and i + 9 <= len(data):
            rows, columns = struct.unpack(">HH", data[i + 5:i + 9])
            return columns, rows
        if marker == 0xDA:
            return None
        i += 2 + length
    return None


def check_codestream(path, data: bytes, rows: int, columns: int, index: int) -> None:
    """Before decoding frame ``index``: its codestream's own size must fit the budget and match
    the header (a mismatch is refused: a decoder would allocate what the data says)."""
    size = codestream_size(data)
    if size is None:
        return
    width, height = size
    label = f"frame {index + 1}"
    if height == 0:
        raise DicomReadError(path, f"{label}: its JPEG data gives no height (DNL marker), "
                                   f"which is not supported")
    check_frame_size(path, height, width, f"{label} is")
    if (width, height) != (columns, rows):
        raise DicomReadError(path, f"{label} is {width}×{height} in its compressed data but the "
                                   f"header says {columns}×{rows}; not decoded")
