"""Where a clip's pixel data lies in its file and how one frame becomes uint8 RGB: the walk over
the fragment items of encapsulated data, the JPEG markers that decide the OpenCV fast path, and
pydicom's decoders frame by frame.

pydicom logs every decoding plugin's failure with a traceback (at ERROR) before it raises one
error that names them all; that error becomes the clip's reason (its row, one line), so the
tracebacks are dropped unless debug logging is on (``echoquality --debug``)."""
from __future__ import annotations

import io
import logging
import os
import struct
from pathlib import Path
from typing import BinaryIO

import cv2
import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.multival import MultiValue
from pydicom.uid import UID

from echoquality_core.dicom.errors import DicomReadError
from echoquality_core.dicom.header import _DEFLATED, _GREYS, _ITEM, _SEQ_END, _YBR, _n_frames

_OPENCV_FLAGS = getattr(cv2, "IMREAD_COLOR_RGB", cv2.IMREAD_COLOR) | cv2.IMREAD_IGNORE_ORIENTATION


class _PluginTracebacks(logging.Filter):
    """Drops pydicom's per-plugin failure records, unless the root logger shows DEBUG."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.exc_info is None or logging.getLogger().isEnabledFor(logging.DEBUG)


logging.getLogger("pydicom.pixels.decoders.base").addFilter(_PluginTracebacks())


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



class _PixelSource:
    """Where a clip's pixel data lies in its file, and how to turn one frame into uint8 RGB."""

    def __init__(self, path: Path, ds: Dataset, ts: UID, value_offset: int,
                 value_length: int | None, vr: str | None, inflated: bytes | None = None):
        self.path, self.ts, self.vr = path, ts, vr
        self.value_offset, self.value_length = value_offset, value_length
        self.inflated = inflated
        self.n_frames = _n_frames(ds, path)
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

    def decode(self, fh: BinaryIO, i: int, encoded: bytes | None = None) -> np.ndarray:
        """Frame ``i`` as pydicom returns it (YCbCr already converted to RGB); ``encoded``: its
        compressed bytes when already read."""
        from pydicom.encaps import encapsulate
        from pydicom.pixels import get_decoder

        ts = self.ts if str(self.ts) != _DEFLATED else pydicom.uid.ExplicitVRLittleEndian
        decoder = get_decoder(ts)
        opts = dict(self.options(), transfer_syntax_uid=ts)
        if ts.is_encapsulated:
            src = encapsulate([encoded if encoded is not None else self.encoded_frame(fh, i)])
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
        if grey.dtype.kind == "u" and self.bits_stored < 8:  # e.g. 1-bit: 0/1 -> 0/255
            top = 2 ** max(self.bits_stored, 1) - 1
            out = (np.minimum(grey, top).astype(np.uint16) * 255 // top).astype(np.uint8)
        elif grey.dtype == np.uint8 or (grey.dtype.kind == "u" and self.bits_stored <= 8):
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



def _item_tag(header: bytes) -> tuple[int, int]:
    group, element, length = struct.unpack("<HHI", header)
    return (group << 16) | element, length


def _item_header(fh: BinaryIO) -> tuple[int, int]:
    header = fh.read(8)
    if len(header) < 8:
        return 0, 0
    return _item_tag(header)

