"""Write uint8 RGB frames as a real Ultrasound Multi-frame DICOM file (for synthetic data only)."""
from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.uid import (
    PYDICOM_IMPLEMENTATION_UID,
    ExplicitVRLittleEndian,
    JPEGBaseline8Bit,
    generate_uid,
)

US_MULTIFRAME_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.3.1"  # Ultrasound Multi-frame Image Storage
JPEG_QUALITY = 92
_DEFAULT_DEPTH_CM = 16.0


def _uid(*parts: object) -> str:
    return generate_uid(entropy_srcs=["echoquality-demo", *map(str, parts)])


def write_dicom_clip(
    path: str | os.PathLike,
    frames: np.ndarray,
    *,
    fps: float = 30.0,
    compression: str = "jpeg",
    patient_id: str = "DEMO-P00",
    patient_name: str = "DEMO^PATIENT00",
    study_uid: str | None = None,
    regions: Sequence[Sequence[int]] = (),
    cm_per_px: float | None = None,
    apex: tuple[int, int] | None = None,
    instance_number: int = 1,
) -> Path:
    """Write uint8 (T, H, W, 3) RGB frames as an Ultrasound Multi-frame DICOM file.

    compression: "jpeg" (JPEG baseline, YBR_FULL_422, one fragment per frame with a basic offset
    table) or "none" (uncompressed RGB, explicit VR little endian). regions: (x0, y0, x1, y1) boxes,
    ends inclusive, written to SequenceOfUltrasoundRegions as 2-D tissue regions with
    ``cm_per_px`` (default: 16 cm over the box's height) and the probe at pixel ``apex``
    (default: the top centre of the box). UIDs are derived from the content, so the same input
    gives the same file. Patient values must be fake: this is for synthetic data only.
    """
    frames = np.asarray(frames)
    _check_inputs(frames, compression, fps)
    path = Path(path)
    study_uid = study_uid or _uid("study", patient_id)
    digest = hashlib.sha1(frames.tobytes()).hexdigest()
    series_uid = _uid("series", study_uid, instance_number, digest)
    sop_uid = _uid("instance", series_uid, fps, compression)

    ds = _header(sop_uid, compression)
    _describe(ds, patient_id, patient_name, study_uid, series_uid, instance_number)
    _describe_frames(ds, frames.shape, fps)
    if regions:
        ds.SequenceOfUltrasoundRegions = [_region_item(box, cm_per_px, apex) for box in regions]
    if compression == "jpeg":
        _put_jpeg_pixels(ds, frames, path.name)
    else:
        ds.PhotometricInterpretation = "RGB"
        ds.LossyImageCompression = "00"
        ds.PixelData = np.ascontiguousarray(frames).tobytes()
        ds["PixelData"].VR = "OB"

    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    ds.save_as(partial, enforce_file_format=True)
    os.replace(partial, path)
    return path


def _check_inputs(frames: np.ndarray, compression: str, fps: float) -> None:
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3 or not frames.size:
        raise ValueError(f"frames must be uint8 (T, H, W, 3), got {frames.dtype} {frames.shape}")
    if compression not in ("jpeg", "none"):
        raise ValueError(f"compression must be 'jpeg' or 'none', got {compression!r}")
    if not fps > 0:
        raise ValueError(f"fps must be positive, got {fps}")


def _header(sop_uid: str, compression: str) -> Dataset:
    """A dataset with its file meta information and SOP identity (Ultrasound Multi-frame)."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = US_MULTIFRAME_SOP_CLASS
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = JPEGBaseline8Bit if compression == "jpeg" else ExplicitVRLittleEndian
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    meta.ImplementationVersionName = "ECHOQ_DEMO"

    ds = Dataset()
    ds.file_meta = meta
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.ImageType = ["DERIVED", "SECONDARY"]
    ds.SOPClassUID = US_MULTIFRAME_SOP_CLASS
    ds.SOPInstanceUID = sop_uid
    return ds


def _describe(ds: Dataset, patient_id: str, patient_name: str, study_uid: str,
              series_uid: str, instance_number: int) -> None:
    """Study, series and (fake) patient attributes."""
    ds.StudyDate = ds.ContentDate = "20000101"
    ds.StudyTime = ds.ContentTime = "120000"
    ds.AccessionNumber = ""
    ds.Modality = "US"
    ds.Manufacturer = "EchoQuality Studio (synthetic demo)"
    ds.ReferringPhysicianName = ""
    ds.StudyDescription = "SYNTHETIC ECHO - NOT A PATIENT"
    ds.SeriesDescription = "A4C (synthetic)"
    ds.PatientName = patient_name
    ds.PatientID = patient_id
    ds.PatientBirthDate = ""
    ds.PatientSex = ""
    ds.BurnedInAnnotation = "NO"
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = series_uid
    ds.StudyID = "1"
    ds.SeriesNumber = instance_number
    ds.InstanceNumber = instance_number


def _describe_frames(ds: Dataset, shape: tuple[int, ...], fps: float) -> None:
    """Frame timing and the Image Pixel module (8-bit, 3 samples, interleaved)."""
    n_frames, height, width = shape[:3]
    ds.FrameTime = f"{1000.0 / fps:.13g}"  # ms, 13 digits: fits a DS, keeps the fps
    ds.CineRate = round(fps)
    ds.RecommendedDisplayFrameRate = round(fps)
    ds.FrameIncrementPointer = (0x0018, 0x1063)  # FrameTime
    ds.NumberOfFrames = n_frames
    ds.Rows, ds.Columns = height, width
    ds.SamplesPerPixel = 3
    ds.PlanarConfiguration = 0
    ds.BitsAllocated = ds.BitsStored = 8
    ds.HighBit = 7
    ds.PixelRepresentation = 0


def _put_jpeg_pixels(ds: Dataset, frames: np.ndarray, name: str) -> None:
    """JPEG baseline (YBR_FULL_422), one fragment per frame with a basic offset table."""
    ds.PhotometricInterpretation = "YBR_FULL_422"
    ds.LossyImageCompression = "01"
    ds.LossyImageCompressionMethod = "ISO_10918_1"
    params = [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY,
              cv2.IMWRITE_JPEG_SAMPLING_FACTOR, cv2.IMWRITE_JPEG_SAMPLING_FACTOR_422]
    encoded = []
    for frame in frames:
        ok, jpeg = cv2.imencode(".jpg", np.ascontiguousarray(frame[..., ::-1]), params)
        if not ok:
            raise RuntimeError(f"{name}: JPEG encoding failed")
        encoded.append(jpeg.tobytes())
    ds.LossyImageCompressionRatio = f"{frames.nbytes / sum(map(len, encoded)):.2f}"[:16]
    ds.PixelData = encapsulate(encoded, has_bot=True)
    ds["PixelData"].VR = "OB"


def _region_item(box: Sequence[int], cm_per_px: float | None,
                 apex: tuple[int, int] | None) -> Dataset:
    """One SequenceOfUltrasoundRegions item: a 2-D tissue region in cm, the apex as reference."""
    x0, y0, x1, y1 = (int(v) for v in box)
    if cm_per_px is None:
        cm_per_px = _DEFAULT_DEPTH_CM / max(y1 - y0, 1)
    apex_x, apex_y = apex if apex is not None else ((x0 + x1 + 1) // 2, y0)
    item = Dataset()
    item.RegionSpatialFormat = 1  # 2-D
    item.RegionDataType = 1  # tissue
    item.RegionFlags = 0
    item.RegionLocationMinX0, item.RegionLocationMinY0 = x0, y0
    item.RegionLocationMaxX1, item.RegionLocationMaxY1 = x1, y1
    item.PhysicalUnitsXDirection = item.PhysicalUnitsYDirection = 3  # cm
    item.PhysicalDeltaX = item.PhysicalDeltaY = cm_per_px
    item.ReferencePixelX0 = int(apex_x) - x0
    item.ReferencePixelY0 = int(apex_y) - y0
    return item
