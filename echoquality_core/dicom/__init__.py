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

import logging
import os
import struct
import threading
from pathlib import Path
from typing import BinaryIO

import cv2
import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.uid import UID

from echoquality_core.dicom.errors import DicomReadError, _short
from echoquality_core.dicom.header import (
    _ALL_VRS,
    _CUT_BEFORE_PIXELS,
    _DEFLATED,
    _EXPLICIT_LONG_VRS,
    _NO_PIXELS,
    _PIXEL_DATA,
    DEFAULT_FPS,
    DEFAULT_SALT,
    JPEG_BASELINE,
    SALT_ENV,
    _check_image_header,
    _is_image,
    _key,
    _raw_text,
    _regions,
    _salt,
    _unsupported,
    frame_rate,
)
from echoquality_core.dicom.limits import (
    check_clip_bytes,
    check_codestream,
    check_frame_count,
    check_frame_size,
)
from echoquality_core.dicom.pixels import _OPENCV_FLAGS, _PixelSource, opencv_matches_pydicom

__all__ = ["DEFAULT_FPS", "DEFAULT_SALT", "SALT_ENV", "Clip", "DicomReadError", "find_clips",
           "frame_rate", "is_dicom", "opencv_matches_pydicom", "read_clip"]

log = logging.getLogger(__name__)


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

    Hidden folders and files and DICOMDIR index files are skipped. A file we may not read is
    listed (its content cannot be checked), and so is a subfolder we may not open, so that
    ``read_clip`` says "permission denied" instead of clips silently missing.
    """
    root = Path(root)
    if root.is_file():
        return [root] if is_dicom(root) or _permission_denied(root) else []
    found = []

    def locked(error: OSError) -> None:  # a subfolder we may not list: listed, not dropped
        if isinstance(error, PermissionError) and error.filename:
            found.append(Path(error.filename))

    for folder, dirs, files in os.walk(root, onerror=locked):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in files:
            if name.startswith(".") or name.upper() == "DICOMDIR":
                continue
            path = Path(folder) / name
            if is_dicom(path) or _permission_denied(path):
                found.append(path)
    return sorted(found)


def _permission_denied(path: Path) -> bool:
    try:
        with open(path, "rb"):
            return False
    except PermissionError:
        return True
    except OSError:
        return False


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
                check_clip_bytes(self.path, self.n_frames * self.height * self.width * 3)
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
        encoded = None
        if self._pixels.ts.is_encapsulated:
            encoded = self._pixels.encoded_frame(fh, i)
            check_codestream(self.path, encoded, self.height, self.width, i)
        if self._decoder == "opencv":
            rgb = self._decode_opencv(encoded, fh)
            if rgb is not None:
                return rgb
        return self._pixels.to_rgb(self._pixels.decode(fh, i, encoded), fh)

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

    def _decode_opencv(self, encoded: bytes, fh: BinaryIO) -> np.ndarray | None:
        data = np.frombuffer(encoded, np.uint8)
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
        if not os.access(path, os.R_OK | os.X_OK):
            raise DicomReadError(path, "permission denied: this user may not open the folder")
        raise DicomReadError(path, "is a folder, not a file")
    if size == 0:
        raise DicomReadError(path, "file is empty")
    if _permission_denied(path):
        raise DicomReadError(path, "permission denied: this user may not read the file")
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
        _check_image_header(path, ds, ts)
        check_frame_size(path, int(ds.Rows), int(ds.Columns))
        pixels = _PixelSource(path, ds, ts, value_offset, value_length, vr, inflated)
        check_frame_count(path, pixels.n_frames)
        if ts.is_encapsulated:
            pixels.index_fragments(fh, size)
            check_codestream(path, pixels.encoded_frame(fh, 0), pixels.rows, pixels.columns, 0)
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
