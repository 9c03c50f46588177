"""Reading DICOM cine clips: the header at once, the frames one at a time when asked for.

``read_clip`` reads only the header and checks that the pixel data is complete (it walks the
fragment headers of compressed data, without decoding anything). ``Clip.frame(i)`` then reads and
decodes just frame ``i`` as uint8 RGB, so a 300-frame clip never sits in memory as anything
bigger than its uint8 output.

Decoding. JPEG baseline frames go to OpenCV (``cv2.imdecode``, ~5x faster than pydicom with
Pillow) when OpenCV's colour handling gives the same result as pydicom's. That is decided once per
clip from the header and the JPEG markers of the first frame, without decoding anything twice:
libjpeg (inside OpenCV) converts YCbCr to RGB when the JPEG has a JFIF marker, when it has an
Adobe APP14 marker with transform 1, or when it has neither and its component ids are not 'R',
'G', 'B'; pydicom converts when the Photometric Interpretation (corrected by pydicom for a JFIF
marker or 'RGB' component ids) is YBR_FULL or YBR_FULL_422. Where the two agree, OpenCV decodes;
otherwise (e.g. an RGB JPEG stored without colour transform, an Adobe marker with transform 1)
pydicom does. Every other transfer syntax goes through pydicom's decoders frame by frame, with
the colour conversion done per frame.

Privacy: patient and study identifiers only leave this module as salted SHA-256 keys; names,
IDs and dates are never read into anything returned, logged or printed.
"""
from __future__ import annotations

import hashlib
import io
import logging
import os
import struct
import threading
from pathlib import Path
from typing import BinaryIO

import cv2
import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.multival import MultiValue
from pydicom.uid import UID

log = logging.getLogger(__name__)

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
_OPENCV_FLAGS = getattr(cv2, "IMREAD_COLOR_RGB", cv2.IMREAD_COLOR) | cv2.IMREAD_IGNORE_ORIENTATION

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


class DicomReadError(Exception):
    """A clip that cannot be read; ``reason`` says why in plain words (never patient data)."""

    def __init__(self, path: str | os.PathLike, reason: str):
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"{self.path.name}: {reason}")

    def __reduce__(self):  # picklable across worker processes
        return type(self), (self.path, self.reason)


# --- finding files ----------------------------------------------------------------------------
def is_dicom(path: str | os.PathLike) -> bool:
    """True if the file's content is DICOM: 'DICM' at byte 128, or a bare dataset (no preamble)
    that starts with a group 0008 element and parses as DICOM."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(132)
    except OSError:
        return False
    if len(head) == 132 and head[128:132] == b"DICM":
        return True
    if len(head) < 8 or struct.unpack("<H", head[:2])[0] != 0x0008:
        return False
    explicit = head[4:6] in _ALL_VRS
    if not explicit and struct.unpack("<I", head[4:8])[0] > 0xFFFF:
        return False
    try:
        ds = pydicom.dcmread(path, force=True, stop_before_pixels=True)
        return any(tag in ds for tag in (0x00080016, 0x00080060, 0x00280010))
    except Exception:  # noqa: BLE001 - anything unparsable is simply not DICOM
        return False


def find_clips(root: str | os.PathLike) -> list[Path]:
    """DICOM files under ``root`` (recursive, by content not extension), sorted.

    Hidden folders and files, DICOMDIR index files and unreadable files are skipped quietly.
    """
    root = Path(root)
    if root.is_file():
        return [root] if is_dicom(root) else []
    found = []
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in files:
            if name.startswith(".") or name.upper() == "DICOMDIR":
                continue
            path = Path(folder) / name
            if is_dicom(path):
                found.append(path)
    return sorted(found)


# --- header helpers -----------------------------------------------------------------------------
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


# --- JPEG markers (fast-path decision) -----------------------------------------------------------
def _jpeg_markers(data: bytes) -> tuple[bool, int | None, tuple[int, ...]]:
    """(has JFIF APP0, Adobe APP14 transform or None, component ids) from a JPEG's markers."""
    jfif, adobe, ids = False, None, ()
    if data[:2] != b"\xff\xd8":
        return jfif, adobe, ids
    i, n = 2, len(data)
    while i + 4 <= n and data[i] == 0xFF:
        marker = data[i + 1]
        if marker == 0xFF:
            i += 1
            continue
        length = int.from_bytes(data[i + 2:i + 4], "big")
        segment = data[i + 4:i + 2 + length]
        if marker == 0xE0 and segment.startswith(b"JFIF\x00"):
            jfif = True
        elif marker == 0xEE and segment.startswith(b"Adobe") and len(segment) >= 12:
            adobe = segment[11]
        elif 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC) and len(segment) > 5:
            ids = tuple(segment[6 + 3 * k] for k in range(segment[5]) if 6 + 3 * k < len(segment))
        elif marker == 0xDA:
            break
        i += 2 + length
    return jfif, adobe, ids


def opencv_matches_pydicom(photometric: str, samples: int, frame: bytes) -> bool:
    """True when OpenCV decodes this JPEG baseline frame to the same colours as pydicom."""
    if samples == 1:
        return photometric in _GREYS
    if samples != 3:
        return False
    jfif, adobe, ids = _jpeg_markers(frame)
    if adobe not in (None, 0):
        return False
    opencv_converts = jfif or (adobe is None and ids != (82, 71, 66))
    if ids in ((82, 71, 66), (114, 103, 98)):
        pydicom_pi = "RGB"
    elif jfif and "YBR" not in photometric:
        pydicom_pi = "YBR_FULL"
    else:
        pydicom_pi = photometric
    return opencv_converts == (pydicom_pi in _YBR)


# --- the clip -------------------------------------------------------------------------------------
class Clip:
    """A DICOM cine clip: header facts now, uint8 RGB frames on demand (thread-safe)."""

    def __init__(self, path: Path, ds: Dataset, pixels: _PixelSource, salt: str,
                 fast_jpeg: bool = True):
        self.path = path
        self.n_frames = pixels.n_frames
        self.height = int(ds.Rows)
        self.width = int(ds.Columns)
        self.fps, self.fps_source = frame_rate(ds)
        self.regions = _regions(ds)
        self.transfer_syntax = str(pixels.ts)
        self.photometric = pixels.photometric
        issuer, patient = _raw_text(ds, 0x00100021), _raw_text(ds, 0x00100020)
        study = _raw_text(ds, 0x0020000D)
        self.metadata = {
            "n_frames": self.n_frames, "height": self.height, "width": self.width,
            "transfer_syntax": self.transfer_syntax,
            "transfer_syntax_name": pixels.ts.name,
            "photometric": self.photometric,
            "fps": self.fps, "fps_source": self.fps_source,
            "patient_key": _key(salt, issuer or "", patient) if patient else None,
            "study_key": _key(salt, study) if study else None,
            "modality": _raw_text(ds, 0x00080060),
        }
        self._pixels = pixels
        self._fast_jpeg = fast_jpeg and str(pixels.ts) == JPEG_BASELINE and pixels.bits == 8
        self._decoder: str | None = None
        self._frames: np.ndarray | None = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return (f"Clip({self.path.name!r}, frames={self.n_frames}, "
                f"size={self.width}x{self.height}, fps={self.fps:.1f})")

    @property
    def decoder(self) -> str:
        """Which decoder the frames go through: "opencv" (JPEG fast path) or "pydicom"."""
        with self._lock:
            if self._decoder is None:
                with self._pixels.open() as fh:
                    self._guarded(lambda f, _: self._choose_decoder(f), fh, 0)
            return self._decoder

    def frame(self, i: int) -> np.ndarray:
        """Frame ``i`` (0-based) as uint8 RGB (H,W,3)."""
        i = int(i)
        if not 0 <= i < self.n_frames:
            raise IndexError(f"frame {i} out of range (clip has {self.n_frames} frames)")
        with self._lock:
            if self._frames is not None:
                return self._frames[i]
            with self._pixels.open() as fh:
                return self._decode(fh, i)

    @property
    def frames(self) -> np.ndarray:
        """All frames, uint8 (T,H,W,3); decoded frame by frame on first access, then cached."""
        with self._lock:
            if self._frames is None:
                try:
                    out = np.empty((self.n_frames, self.height, self.width, 3), np.uint8)
                except MemoryError:
                    size = self.n_frames * self.height * self.width * 3 / 2**20
                    raise DicomReadError(self.path, f"clip too large to hold in memory "
                                                    f"({size:.0f} MB)") from None
                with self._pixels.open() as fh:
                    for i in range(self.n_frames):
                        out[i] = self._decode(fh, i)
                self._frames = out
            return self._frames

    # internals (called with the lock held)
    def _choose_decoder(self, fh: BinaryIO) -> None:
        use_opencv = False
        if self._fast_jpeg:
            first = self._pixels.encoded_frame(fh, 0)
            use_opencv = opencv_matches_pydicom(self.photometric, self._pixels.samples, first)
        self._decoder = "opencv" if use_opencv else "pydicom"
        log.debug("%s: frames decoded with %s", self.path.name, self._decoder)

    def _decode(self, fh: BinaryIO, i: int) -> np.ndarray:
        return self._guarded(self._decode_frame, fh, i)

    def _decode_frame(self, fh: BinaryIO, i: int) -> np.ndarray:
        if self._decoder is None:
            self._choose_decoder(fh)
        if self._decoder == "opencv":
            rgb = self._decode_opencv(fh, i)
            if rgb is not None:
                return rgb
        return self._pixels.to_rgb(self._pixels.decode(fh, i), fh)

    def _guarded(self, work, fh: BinaryIO, i: int):
        """Run ``work(fh, i)``, turning any decoder error into a DicomReadError for frame i."""
        try:
            return work(fh, i)
        except DicomReadError:
            raise
        except Exception as exc:  # decoder errors become a plain reason
            raise DicomReadError(
                self.path,
                f"frame {i + 1} of {self.n_frames} could not be decoded "
                f"({type(exc).__name__}: {_short(exc)})",
            ) from exc

    def _decode_opencv(self, fh: BinaryIO, i: int) -> np.ndarray | None:
        data = np.frombuffer(self._pixels.encoded_frame(fh, i), np.uint8)
        if self._pixels.samples == 1:
            grey = cv2.imdecode(data, cv2.IMREAD_GRAYSCALE | cv2.IMREAD_IGNORE_ORIENTATION)
            if grey is None or grey.shape != (self.height, self.width):
                return None
            return self._pixels.to_rgb(grey, fh)
        rgb = cv2.imdecode(data, _OPENCV_FLAGS)
        if rgb is None or rgb.shape != (self.height, self.width, 3):
            return None  # let pydicom decode it (and explain if it cannot)
        if not hasattr(cv2, "IMREAD_COLOR_RGB"):
            rgb = cv2.cvtColor(rgb, cv2.COLOR_BGR2RGB)
        return rgb


def _short(exc: Exception, limit: int = 160) -> str:
    text = " ".join(str(exc).split())
    return text if len(text) <= limit else text[:limit - 3] + "..."


class _PixelSource:
    """Where a clip's pixel data lies in its file, and how to turn one frame into uint8 RGB."""

    def __init__(self, path: Path, ds: Dataset, ts: UID, value_offset: int,
                 value_length: int | None, vr: str | None, inflated: bytes | None = None):
        self.path, self.ts, self.vr = path, ts, vr
        self.value_offset, self.value_length = value_offset, value_length
        self.inflated = inflated
        self.n_frames = _n_frames(ds)
        self.rows, self.columns = int(ds.Rows), int(ds.Columns)
        self.samples = int(ds.get("SamplesPerPixel", 1) or 1)
        self.bits = int(ds.BitsAllocated)
        self.bits_stored = int(ds.get("BitsStored", self.bits) or self.bits)
        self.photometric = str(ds.PhotometricInterpretation).strip()
        self.fragments: list[tuple[int, int]] = []  # (offset, length) of each fragment
        self.frame_fragments: list[list[int]] | None = None  # fragment numbers of each frame
        # only the Image Pixel module (group 0028) is kept: no patient data lives in a Clip
        self.pixel_ds = Dataset()
        for tag in list(ds._dict):
            if tag >> 16 == 0x0028 or tag in (0x7FE00001, 0x7FE00002):
                self.pixel_ds[tag] = ds[tag]
        self.pixel_ds.file_meta = FileMetaDataset()
        self.pixel_ds.file_meta.TransferSyntaxUID = ts
        self._options: dict | None = None
        self._palette: np.ndarray | None = None
        self._grey_range: tuple[float, float] | None = None

    def open(self) -> BinaryIO:
        if self.inflated is not None:
            return io.BytesIO(self.inflated)
        try:
            return open(self.path, "rb")
        except OSError as exc:
            raise DicomReadError(self.path, f"cannot open file ({exc.strerror or exc})") from exc

    # --- layout checks at read time
    def check_native(self, file_size: int) -> None:
        frame_bytes = self.frame_length()
        expected = frame_bytes * self.n_frames
        available = min(self.value_length or 0, file_size - self.value_offset)
        if available < expected:
            complete = int(max(available, 0) // frame_bytes)
            raise DicomReadError(
                self.path,
                f"file is truncated: pixel data holds {complete} of {self.n_frames} frames "
                f"({max(available, 0)} of {int(expected)} bytes)",
            )

    def frame_length(self) -> float:
        pixels = self.rows * self.columns
        if self.bits == 1:
            return pixels * self.samples / 8
        if self.photometric == "YBR_FULL_422" and self.samples == 3:
            return pixels * 2 * (self.bits // 8)
        return pixels * self.samples * (self.bits // 8)

    def index_fragments(self, fh: BinaryIO, file_size: int) -> None:
        """Walk the item headers of encapsulated data: fragment table + truncation check."""
        fh.seek(self.value_offset)
        tag, length = _item_header(fh)
        if tag != _ITEM:
            raise DicomReadError(self.path, "pixel data is damaged (no offset table item)")
        table = fh.read(length)
        if len(table) < length:
            raise DicomReadError(self.path, "file is truncated inside the pixel data")
        offsets = list(struct.unpack(f"<{length // 4}I", table[:length - length % 4]))
        first_item = fh.tell()
        item_starts = []
        while True:
            start = fh.tell()
            header = fh.read(8)
            if len(header) < 8:
                if len(self.fragments) >= self.n_frames:
                    break  # complete data, only the end-of-sequence marker is missing
                raise self._truncated()
            tag, length = _item_tag(header)
            if tag == _SEQ_END:
                break
            if tag != _ITEM:
                raise DicomReadError(self.path, "pixel data is damaged (unexpected element "
                                                "between frames)")
            if start + 8 + length > file_size:
                raise self._truncated()
            self.fragments.append((start + 8, length))
            item_starts.append(start - first_item)
            fh.seek(length, os.SEEK_CUR)
        n_fragments = len(self.fragments)
        if n_fragments < self.n_frames:
            raise self._truncated()
        if "ExtendedOffsetTable" in self.pixel_ds:
            self.frame_fragments = None  # pydicom's get_frame uses the extended table
        elif len(offsets) == self.n_frames and offsets and offsets[0] == 0:
            bounds = [*offsets, item_starts[-1] + 1]
            self.frame_fragments = [
                [k for k, s in enumerate(item_starts) if bounds[f] <= s < bounds[f + 1]]
                for f in range(self.n_frames)
            ]
        elif n_fragments == self.n_frames:
            self.frame_fragments = [[k] for k in range(n_fragments)]
        elif self.n_frames == 1:
            self.frame_fragments = [list(range(n_fragments))]
        else:
            self.frame_fragments = None  # several fragments per frame, no offsets: pydicom splits
        if self.frame_fragments is not None and not all(self.frame_fragments):
            raise DicomReadError(self.path, "pixel data is damaged (offset table points to "
                                            "missing fragments)")

    def _truncated(self) -> DicomReadError:
        complete = min(len(self.fragments), self.n_frames)
        return DicomReadError(
            self.path,
            f"file is truncated: pixel data holds at most {complete} of {self.n_frames} "
            "complete frames",
        )

    # --- decoding
    def encoded_frame(self, fh: BinaryIO, i: int) -> bytes:
        """The compressed bytes of frame ``i``."""
        if self.frame_fragments is not None:
            parts = []
            for k in self.frame_fragments[i]:
                offset, length = self.fragments[k]
                fh.seek(offset)
                parts.append(fh.read(length))
            return b"".join(parts)
        from pydicom.encaps import get_frame

        fh.seek(self.value_offset)
        extended = None
        if "ExtendedOffsetTable" in self.pixel_ds:
            extended = (self.pixel_ds.ExtendedOffsetTable, self.pixel_ds.ExtendedOffsetTableLengths)
        return get_frame(fh, i, number_of_frames=self.n_frames, extended_offsets=extended)

    def options(self) -> dict:
        if self._options is None:
            from pydicom.pixels.utils import as_pixel_options

            opts = as_pixel_options(self.pixel_ds)
            opts.pop("extended_offsets", None)
            opts.update(transfer_syntax_uid=self.ts, pixel_keyword="PixelData")
            if self.vr:
                opts["pixel_vr"] = self.vr
            self._options = opts
        return self._options

    def decode(self, fh: BinaryIO, i: int) -> np.ndarray:
        """Frame ``i`` as pydicom returns it (YCbCr already converted to RGB)."""
        from pydicom.encaps import encapsulate
        from pydicom.pixels import get_decoder

        ts = self.ts if str(self.ts) != _DEFLATED else pydicom.uid.ExplicitVRLittleEndian
        decoder = get_decoder(ts)
        opts = dict(self.options(), transfer_syntax_uid=ts)
        if ts.is_encapsulated:
            src = encapsulate([self.encoded_frame(fh, i)])
            opts["number_of_frames"] = 1
            array, _ = decoder.as_array(src, index=0, **opts)
        else:
            fh.seek(self.value_offset)
            array, _ = decoder.as_array(fh, index=i, **opts)
        return array

    def to_rgb(self, array: np.ndarray, fh: BinaryIO) -> np.ndarray:
        """uint8 RGB (H,W,3) from a decoded frame (grey, palette indices, or colour)."""
        if array.shape[:2] != (self.rows, self.columns):
            raise DicomReadError(self.path, f"a frame is {array.shape[1]}x{array.shape[0]} but "
                                            f"the header says {self.columns}x{self.rows}")
        if self.photometric == "PALETTE COLOR":
            table = self.palette()
            index = array if array.dtype == np.uint8 and len(table) >= 256 else \
                np.clip(array, 0, len(table) - 1)
            return table[index]
        if array.ndim == 2:
            return cv2.cvtColor(self.grey_to_uint8(array, fh), cv2.COLOR_GRAY2RGB)
        if array.dtype == np.uint8:
            return np.ascontiguousarray(array[..., :3])
        top = float(2 ** min(self.bits_stored, 16) - 1)
        return np.clip(array[..., :3].astype(np.float32) * (255.0 / top), 0, 255).astype(np.uint8)

    def palette(self) -> np.ndarray:
        """(N,3) uint8 RGB for every possible stored value, built once from the colour LUTs."""
        if self._palette is None:
            from pydicom.pixels.processing import apply_color_lut

            n = 2 ** min(self.bits_stored, 16)
            indices = np.arange(n, dtype=np.uint16 if n > 256 else np.uint8)
            table = apply_color_lut(indices, self.pixel_ds)
            if table.dtype != np.uint8:
                shift = 8 if table.max() > 255 else 0
                table = (table >> shift).astype(np.uint8)
            self._palette = np.ascontiguousarray(table)
        return self._palette

    def grey_to_uint8(self, grey: np.ndarray, fh: BinaryIO) -> np.ndarray:
        """Grey values to uint8: 8-bit as is, deeper data through the window (or frame 1's
        min/max when there is none); MONOCHROME1 inverted."""
        if grey.dtype == np.uint8 or (grey.dtype.kind == "u" and self.bits_stored <= 8):
            out = grey.astype(np.uint8, copy=False)
        else:
            if self._grey_range is None:
                self._grey_range = self._window() or self._first_frame_range(fh)
            low, high = self._grey_range
            scaled = (grey.astype(np.float32) - low) * (255.0 / max(high - low, 1e-6))
            out = np.clip(scaled, 0, 255).astype(np.uint8)
        return 255 - out if self.photometric == "MONOCHROME1" else out

    def _window(self) -> tuple[float, float] | None:
        """(low, high) in stored values from the first WindowCenter/WindowWidth, if any."""
        ds = self.pixel_ds
        try:
            center, width = ds.get("WindowCenter"), ds.get("WindowWidth")
            if center is None or width is None:
                return None
            center = float(center[0] if isinstance(center, MultiValue) else center)
            width = float(width[0] if isinstance(width, MultiValue) else width)
            slope = float(ds.get("RescaleSlope", 1) or 1)
            intercept = float(ds.get("RescaleIntercept", 0) or 0)
        except (TypeError, ValueError, IndexError):
            return None
        if width <= 1:
            return None
        low = (center - width / 2 - intercept) / slope
        high = (center + width / 2 - intercept) / slope
        return (min(low, high), max(low, high))

    def _first_frame_range(self, fh: BinaryIO) -> tuple[float, float]:
        first = self.decode(fh, 0)
        return float(first.min()), float(first.max())


def _n_frames(ds: Dataset) -> int:
    try:
        n = int(ds.get("NumberOfFrames", 1) or 1)
    except (TypeError, ValueError):
        n = 1
    return max(n, 1)


def _item_tag(header: bytes) -> tuple[int, int]:
    group, element, length = struct.unpack("<HHI", header)
    return (group << 16) | element, length


def _item_header(fh: BinaryIO) -> tuple[int, int]:
    header = fh.read(8)
    if len(header) < 8:
        return 0, 0
    return _item_tag(header)


# --- reading ----------------------------------------------------------------------------------------
def read_clip(path: str | os.PathLike, *, salt: str | None = None,
              fast_jpeg: bool = True) -> Clip:
    """Read a clip's header (no pixel decoding); frames are decoded when asked for.

    ``salt`` keys the patient/study hashes (default: env ``ECHOQUALITY_SALT``, else a fixed
    library salt). ``fast_jpeg=False`` sends JPEG baseline frames through pydicom too.
    Raises DicomReadError (and nothing else) for anything that makes the clip unreadable.
    """
    path = Path(path)
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise DicomReadError(path, "file not found") from None
    except OSError as exc:
        raise DicomReadError(path, f"cannot read file ({exc.strerror or exc})") from None
    if path.is_dir():
        raise DicomReadError(path, "is a folder, not a file")
    if size == 0:
        raise DicomReadError(path, "file is empty")
    if not is_dicom(path):
        raise DicomReadError(path, "not a DICOM file")
    try:
        ds, pixels = _read_header(path, size)
        return Clip(path, ds, pixels, _salt(salt), fast_jpeg)
    except DicomReadError:
        raise
    except OSError as exc:
        if exc.errno is None:  # pydicom ran out of bytes: not a disk error
            raise DicomReadError(path, "DICOM header is damaged or truncated") from exc
        raise DicomReadError(path, f"cannot read file ({exc.strerror or exc})") from exc
    except Exception as exc:  # pydicom's errors become a plain reason
        raise DicomReadError(
            path, f"DICOM header is damaged or truncated ({type(exc).__name__})"
        ) from exc


def _read_header(path: Path, size: int) -> tuple[Dataset, _PixelSource]:
    with open(path, "rb") as fh:
        try:
            ds = pydicom.dcmread(fh, stop_before_pixels=True, force=True)
        except Exception:
            _explain_unreadable(path)
            raise
        position = fh.tell()
        ts = UID(getattr(ds.file_meta, "TransferSyntaxUID", None)
                 or pydicom.uid.ImplicitVRLittleEndian)
        if (reason := _unsupported(ts)) is not None:
            raise DicomReadError(path, reason)
        if str(ts) == _DEFLATED:
            inflated = _inflated_pixels(path, ds)
            value_offset, value_length, vr = 0, len(inflated), "OB"
        else:
            inflated = None
            value_offset, value_length, vr = _pixel_element(path, ds, fh, position, ts)
        _check_image_header(path, ds)
        pixels = _PixelSource(path, ds, ts, value_offset, value_length, vr, inflated)
        if ts.is_encapsulated:
            pixels.index_fragments(fh, size)
        else:
            pixels.check_native(size if inflated is None else len(inflated))
    return ds, pixels


def _explain_unreadable(path: Path) -> None:
    """Raise the reason a header cannot be parsed when it is an unknown transfer syntax."""
    try:
        ts = pydicom.filereader.read_file_meta_info(path).get("TransferSyntaxUID")
    except Exception:  # noqa: BLE001 - no readable file meta: the caller's error stands
        return
    if ts is not None and (reason := _unsupported(UID(ts))) is not None:
        raise DicomReadError(path, reason)


_NO_PIXELS = "no pixel data (not an image, e.g. a structured report)"
_CUT_BEFORE_PIXELS = "file is truncated: the image header ends before the pixel data"


def _is_image(ds: Dataset) -> bool:
    """True if the header describes an image (so missing pixel data means damage)."""
    meta_class = getattr(getattr(ds, "file_meta", None), "MediaStorageSOPClassUID", None)
    sop_class = _raw_text(ds, 0x00080016) or str(meta_class or "")
    return "Rows" in ds or "Image" in UID(sop_class).name


def _pixel_element(path: Path, ds: Dataset, fh: BinaryIO, position: int,
                   ts: UID) -> tuple[int, int | None, str | None]:
    """(value offset, value length or None if undefined, VR) of the Pixel Data element at
    ``position``; DicomReadError if there is none."""
    fh.seek(position)
    header = fh.read(8)
    endian = "<" if ts.is_little_endian else ">"
    if len(header) < 8:
        raise DicomReadError(path, _CUT_BEFORE_PIXELS if _is_image(ds) else _NO_PIXELS)
    group, element = struct.unpack(f"{endian}HH", header[:4])
    tag = (group << 16) | element
    if tag in (0x7FE00008, 0x7FE00009):
        raise DicomReadError(path, "float pixel data is not supported")
    if tag != _PIXEL_DATA:
        raise DicomReadError(path, "DICOM header is damaged: no pixel data after the image "
                                   "header" if _is_image(ds) else _NO_PIXELS)
    vr = None
    if ts.is_implicit_VR:
        (length,) = struct.unpack(f"{endian}I", header[4:8])
    elif header[4:6] in _EXPLICIT_LONG_VRS:
        vr = header[4:6].decode("ascii")
        (length,) = struct.unpack(f"{endian}I", fh.read(4))
    else:
        (length,) = struct.unpack(f"{endian}H", header[6:8])
    return fh.tell(), None if length == 0xFFFFFFFF else length, vr


def _inflated_pixels(path: Path, header: Dataset) -> bytes:
    """Pixel data of a deflated dataset (the whole file has to be inflated to reach it)."""
    ds = pydicom.dcmread(path, force=True)
    if "PixelData" not in ds:
        raise DicomReadError(path, _CUT_BEFORE_PIXELS if _is_image(header) else _NO_PIXELS)
    return bytes(ds.PixelData)


def _check_image_header(path: Path, ds: Dataset) -> None:
    for keyword in ("Rows", "Columns", "BitsAllocated", "PhotometricInterpretation"):
        if keyword not in ds:
            raise DicomReadError(path, f"image header incomplete ({keyword} missing)")
    photometric = str(ds.PhotometricInterpretation).strip()
    if photometric not in _COLOURS | _GREYS:
        raise DicomReadError(path, f"unsupported photometric interpretation {photometric}")
    samples = int(ds.get("SamplesPerPixel", 1) or 1)
    if samples not in (1, 3):
        raise DicomReadError(path, f"unsupported samples per pixel ({samples})")
    if int(ds.Rows) < 1 or int(ds.Columns) < 1:
        raise DicomReadError(path, "image size is zero")
