"""Facts from a DICOM header: frame rate, ultrasound regions, salted keys, decoder support and
the checks that the header describes an image we can read. No pixel data is touched here."""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.uid import UID

from echoquality_core.dicom.errors import DicomReadError

DEFAULT_FPS = 30.0
SALT_ENV = "ECHOQUALITY_SALT"
DEFAULT_SALT = "echoquality-studio-default-salt"  # used when no salt is given or set

JPEG_BASELINE = "1.2.840.10008.1.2.4.50"
_DEFLATED = "1.2.840.10008.1.2.1.99"
_PIXEL_DATA = 0x7FE00010
_ITEM, _SEQ_END = 0xFFFEE000, 0xFFFEE0DD
_EXPLICIT_LONG_VRS = {b"OB", b"OW", b"OD", b"OF", b"OL", b"OV", b"SQ", b"UC", b"UN", b"UR", b"UT"}
_ALL_VRS = _EXPLICIT_LONG_VRS | {
    b"AE", b"AS", b"AT", b"CS", b"DA", b"DS", b"DT", b"FL", b"FD", b"IS", b"LO", b"LT", b"PN",
    b"SH", b"SL", b"SS", b"ST", b"SV", b"TM", b"UI", b"UL", b"US", b"UV",
}
_COLOURS = {"RGB", "YBR_FULL", "YBR_FULL_422", "YBR_ICT", "YBR_RCT", "PALETTE COLOR"}
_GREYS = {"MONOCHROME1", "MONOCHROME2"}
_YBR = {"YBR_FULL", "YBR_FULL_422"}

_LIBJPEG = "pylibjpeg and pylibjpeg-libjpeg (pip install pylibjpeg pylibjpeg-libjpeg)"
_OPENJPEG = "pylibjpeg and pylibjpeg-openjpeg (pip install pylibjpeg pylibjpeg-openjpeg)"
_PACKAGE_FOR = {  # transfer syntax UID prefix/value -> package that adds a decoder
    "1.2.840.10008.1.2.4.50": "Pillow or " + _LIBJPEG,
    "1.2.840.10008.1.2.4.51": "Pillow or " + _LIBJPEG,
    "1.2.840.10008.1.2.4.57": _LIBJPEG,
    "1.2.840.10008.1.2.4.70": _LIBJPEG,
    "1.2.840.10008.1.2.4.80": _LIBJPEG,
    "1.2.840.10008.1.2.4.81": _LIBJPEG,
    "1.2.840.10008.1.2.4.90": _OPENJPEG,
    "1.2.840.10008.1.2.4.91": _OPENJPEG,
    "1.2.840.10008.1.2.4.201": _OPENJPEG,
    "1.2.840.10008.1.2.4.202": _OPENJPEG,
    "1.2.840.10008.1.2.4.203": _OPENJPEG,
    "1.2.840.10008.1.2.5": "pylibjpeg-rle (pip install pylibjpeg pylibjpeg-rle)",
}



def _salt(salt: str | None) -> str:
    if salt is not None:
        return salt
    return os.environ.get(SALT_ENV) or DEFAULT_SALT


def _raw_text(ds: Dataset, tag: int) -> str | None:
    """An element's value as text, from its raw bytes (no VR validation, so nothing is logged)."""
    if tag not in ds._dict:
        return None
    value = ds.get_item(tag).value
    if value is None:
        return None
    if isinstance(value, bytes):
        value = value.decode("latin-1")
    text = str(value).strip(" \x00")
    return text or None


def _key(salt: str, *parts: str) -> str:
    return hashlib.sha256("|".join((salt, *parts)).encode("utf-8")).hexdigest()[:16]


def _positive(value) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if np.isfinite(number) and number > 0 else None


def frame_rate(ds: Dataset) -> tuple[float, str]:
    """(fps, source): FrameTime (ms), FrameTimeVector (mean of non-zero entries), CineRate,
    RecommendedDisplayFrameRate, else 30 fps ("default")."""
    frame_time = _positive(_safe_get(ds, "FrameTime"))
    if frame_time:
        return 1000.0 / frame_time, "FrameTime"
    vector = _safe_get(ds, "FrameTimeVector")
    if vector is not None:
        values = [_positive(v) for v in (vector if isinstance(vector, MultiValue | list) else [vector])]
        values = [v for v in values if v]
        if values:
            return 1000.0 / float(np.mean(values)), "FrameTimeVector"
    for keyword in ("CineRate", "RecommendedDisplayFrameRate"):
        rate = _positive(_safe_get(ds, keyword))
        if rate:
            return rate, keyword
    return DEFAULT_FPS, "default"


def _safe_get(ds: Dataset, keyword: str):
    try:
        return ds.get(keyword)
    except Exception:  # noqa: BLE001 - a malformed value counts as missing
        return None


def _regions(ds: Dataset) -> list[tuple[int, int, int, int]]:
    boxes = []
    for item in _safe_get(ds, "SequenceOfUltrasoundRegions") or []:
        try:
            box = (int(item.RegionLocationMinX0), int(item.RegionLocationMinY0),
                   int(item.RegionLocationMaxX1), int(item.RegionLocationMaxY1))
        except Exception:  # noqa: BLE001 - an incomplete region is left out
            box = None
        if box is not None:
            boxes.append(box)
    return boxes


def _unsupported(ts: UID) -> str | None:
    """Why frames of this transfer syntax cannot be decoded here, or None if they can."""
    from pydicom.pixels import get_decoder

    name = ts.name if ts.is_transfer_syntax else f"unknown ({ts})"
    if ts in pydicom.uid.MPEGTransferSyntaxes:
        return (f"unsupported transfer syntax {name}: video-compressed DICOM cannot be decoded "
                "frame by frame; export the clip as JPEG or uncompressed DICOM")
    if str(ts) == _DEFLATED:
        return None
    try:
        decoder = get_decoder(ts)
    except NotImplementedError:
        return f"unsupported transfer syntax {name}"
    if decoder.is_available:
        return None
    package = _PACKAGE_FOR.get(str(ts), "a decoder plugin for pydicom")
    return f"unsupported transfer syntax {name}: install {package} to read it"



def _n_frames(ds: Dataset, path: str | os.PathLike = "") -> int:
    """NumberOfFrames (1 when absent or empty); DicomReadError when it is not a whole number."""
    text = _raw_text(ds, 0x00280008)
    if text is None:
        return 1
    try:
        n = int(float(text)) if float(text).is_integer() else None
    except (ValueError, OverflowError):
        n = None
    if n is None:
        raise DicomReadError(path, f"NumberOfFrames {text[:20]!r} is not a whole number")
    return max(n, 1)



_NO_PIXELS = "no pixel data (not an image, e.g. a structured report)"
_CUT_BEFORE_PIXELS = "file is truncated: the image header ends before the pixel data"


def _is_image(ds: Dataset) -> bool:
    """True if the header describes an image (so missing pixel data means damage)."""
    meta_class = getattr(getattr(ds, "file_meta", None), "MediaStorageSOPClassUID", None)
    sop_class = _raw_text(ds, 0x00080016) or str(meta_class or "")
    return "Rows" in ds or "Image" in UID(sop_class).name



def _check_image_header(path: Path, ds: Dataset, ts: UID | None = None) -> None:
    for keyword in ("Rows", "Columns", "BitsAllocated", "PhotometricInterpretation"):
        if keyword not in ds:
            raise DicomReadError(path, f"image header incomplete ({keyword} missing)")
    photometric = str(ds.PhotometricInterpretation).strip()
    if photometric not in _COLOURS | _GREYS:
        raise DicomReadError(path, f"unsupported photometric interpretation {photometric}")
    if photometric in ("YBR_RCT", "YBR_ICT") and ts is not None and "1.2.840.10008.1.2.4.9" \
            not in str(ts) and not str(ts).startswith("1.2.840.10008.1.2.4.20"):
        raise DicomReadError(path, f"photometric interpretation {photometric} is only valid for "
                                   f"JPEG 2000 data, but this file's pixels are "
                                   f"{UID(str(ts)).name}; the colours cannot be trusted")
    samples = int(ds.get("SamplesPerPixel", 1) or 1)
    if samples not in (1, 3):
        raise DicomReadError(path, f"unsupported samples per pixel ({samples})")
    if int(ds.Rows) < 1 or int(ds.Columns) < 1:
        raise DicomReadError(path, "image size is zero")
