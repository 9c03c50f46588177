"""DICOM reading on real files: pydicom's and pydicom-data's test files, and clips written here
with pydicom (and OpenCV's JPEG encoder). References come from pydicom's own decoding."""
from __future__ import annotations

import hashlib
import logging
import pickle
import shutil
import subprocess
import sys
import tracemalloc
from pathlib import Path

import cv2
import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.pixels import apply_color_lut
from pydicom.uid import (
    MPEG4HP41,
    UID,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEGBaseline8Bit,
    UltrasoundMultiFrameImageStorage,
    generate_uid,
)

from echoquality_core.dicom import (
    DEFAULT_SALT,
    Clip,
    DicomReadError,
    find_clips,
    is_dicom,
    read_clip,
)

SENTINELS = ("ZZSENTINEL^PATIENT", "ZZSENTINEL-ID-4711", "19010203", "19020304", "ZZHOSPITAL")


# --- helpers --------------------------------------------------------------------------------
def data_file(name: str) -> str:
    path = get_testdata_file(name)
    assert path is not None, f"pydicom test file {name} not installed"
    return path


def pydicom_rgb(path) -> np.ndarray:
    """pydicom's own decoding of every frame as uint8 (T,H,W,3), for colour files."""
    ds = pydicom.dcmread(path)
    arr = ds.pixel_array  # YCbCr is converted to RGB by pydicom
    if ds.PhotometricInterpretation == "PALETTE COLOR":
        arr = apply_color_lut(arr, ds)
        if arr.dtype != np.uint8:
            arr = (arr >> 8).astype(np.uint8)
    return arr if int(ds.get("NumberOfFrames", 1) or 1) > 1 else arr[None]


def write_dicom(path, frames, *, photometric=None, syntax=ExplicitVRLittleEndian, encoded=None,
                file_format=True, **attrs):
    """Write ``frames`` (T,H,W[,3]) as a DICOM file; ``encoded`` = list of compressed frames."""
    frames = np.asarray(frames)
    n, rows, cols = frames.shape[:3]
    samples = 3 if frames.ndim == 4 else 1
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = syntax
    ds.file_meta.MediaStorageSOPClassUID = UltrasoundMultiFrameImageStorage
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.SOPClassUID = UltrasoundMultiFrameImageStorage
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
    ds.Modality = "US"
    ds.Rows, ds.Columns, ds.SamplesPerPixel = rows, cols, samples
    ds.PhotometricInterpretation = photometric or ("RGB" if samples == 3 else "MONOCHROME2")
    if samples == 3:
        ds.PlanarConfiguration = 0
    ds.BitsAllocated = ds.BitsStored = 8 * frames.dtype.itemsize
    ds.HighBit = ds.BitsStored - 1
    ds.PixelRepresentation = 0
    if n > 1:
        ds.NumberOfFrames = n
    for keyword, value in attrs.items():
        setattr(ds, keyword, value)
    if encoded is not None:
        ds.add_new(0x7FE00010, "OB", encapsulate(encoded))
    else:
        ds.add_new(0x7FE00010, "OB" if frames.dtype.itemsize == 1 else "OW", frames.tobytes())
    if file_format and not UID(syntax).is_transfer_syntax:  # private syntax: say how to write it
        ds.save_as(path, enforce_file_format=True, implicit_vr=False, little_endian=True)
    elif file_format:
        ds.save_as(path, enforce_file_format=True)
    else:  # a bare dataset: no preamble, no 'DICM', no file meta
        del ds.file_meta
        ds.save_as(path, implicit_vr=True, little_endian=True)
    return path


def colour_frames(n=3, height=48, width=64) -> np.ndarray:
    """Smooth coloured test frames that JPEG keeps faithfully."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    out = np.empty((n, height, width, 3), np.uint8)
    for t in range(n):
        out[t, ..., 0] = 40 + 150 * x / width
        out[t, ..., 1] = 60 + 120 * y / height
        out[t, ..., 2] = 200 - 30 * t - 100 * ((x - 20 - 4 * t) ** 2 + (y - 24) ** 2 < 150)
    return out


def jpeg_frames(frames: np.ndarray) -> list[bytes]:
    params = [cv2.IMWRITE_JPEG_QUALITY, 95,
              cv2.IMWRITE_JPEG_SAMPLING_FACTOR, cv2.IMWRITE_JPEG_SAMPLING_FACTOR_422]
    encoded = []
    for frame in frames:
        ok, buf = cv2.imencode(".jpg", cv2.cvtColor(frame, cv2.COLOR_RGB2BGR), params)
        assert ok
        encoded.append(buf.tobytes())
    return encoded


def write_jpeg_clip(path, frames, **attrs):
    return write_dicom(path, frames, photometric="YBR_FULL_422", syntax=JPEGBaseline8Bit,
                       encoded=jpeg_frames(frames), **attrs)


# --- decoding against pydicom -----------------------------------------------------------------
def test_jpeg_ultrasound_clip_reads_header_and_decodes_frames_like_pydicom():
    path = data_file("color3d_jpeg_baseline.dcm")
    clip = read_clip(path)
    assert (clip.n_frames, clip.height, clip.width) == (120, 480, 640)
    assert clip.fps == pytest.approx(1000 / 33.333, rel=1e-4) and clip.fps_source == "FrameTime"
    assert clip.regions == [(84, 31, 595, 414)]
    assert clip.decoder == "opencv"
    for i in (0, 59, 119):
        ours = clip.frame(i)
        ref = pydicom.pixels.pixel_array(path, index=i)
        assert ours.dtype == np.uint8 and ours.shape == (480, 640, 3)
        diff = np.abs(ours.astype(int) - ref.astype(int))
        assert diff.mean() < 0.2 and diff.max() <= 8, (i, diff.mean(), diff.max())


def test_all_frames_of_a_jpeg_clip_match_pydicom_and_are_cached():
    path = data_file("examples_ybr_color.dcm")
    clip = read_clip(path)
    frames = clip.frames
    assert frames.shape == (30, 240, 320, 3) and frames.dtype == np.uint8
    diff = np.abs(frames.astype(int) - pydicom_rgb(path).astype(int))
    assert diff.mean() < 0.2 and diff.max() <= 8
    assert clip.frames is frames
    np.testing.assert_array_equal(clip.frame(7), frames[7])


@pytest.mark.parametrize("name, photometric, n_frames", [
    ("OBXXXX1A.dcm", "PALETTE COLOR", 1),  # palette, uncompressed
    ("OBXXXX1A_rle_2frame.dcm", "PALETTE COLOR", 2),  # palette, RLE, 2 frames
    ("gdcm-US-ALOKA-16.dcm", "PALETTE COLOR", 1),  # 16-bit palette, implicit VR
    ("US1_UNCR.dcm", "RGB", 1),  # RGB uncompressed, planar configuration 0
    ("color-pl.dcm", "RGB", 1),  # RGB planar configuration 1
    ("ExplVR_BigEnd.dcm", "RGB", 1),  # big endian
    ("SC_rgb_rle.dcm", "RGB", 1),  # RGB RLE
    ("US1_J2KR.dcm", "YBR_RCT", 1),  # JPEG 2000 lossless
    ("US1_J2KI.dcm", "YBR_ICT", 1),  # JPEG 2000 lossy (same decoder, so exact)
    ("SC_ybr_full_uncompressed.dcm", "YBR_FULL", 1),
    ("SC_ybr_full_422_uncompressed.dcm", "YBR_FULL_422", 1),
    ("SC_rgb_jls_lossy_line.dcm", "RGB", 1),  # JPEG-LS near-lossless colour
])
def test_colour_files_decode_exactly_like_pydicom(name, photometric, n_frames):
    path = data_file(name)
    clip = read_clip(path)
    assert clip.photometric == photometric and clip.n_frames == n_frames
    assert clip.decoder == "pydicom"
    np.testing.assert_array_equal(clip.frames, pydicom_rgb(path))


def test_lossless_jpeg_grey_frame_becomes_three_equal_channels():
    path = data_file("JPGLosslessP14SV1_1s_1f_8b.dcm")
    clip = read_clip(path)
    frame = clip.frame(0)
    ref = pydicom.dcmread(path).pixel_array
    assert frame.shape == (768, 1024, 3)
    for channel in range(3):
        np.testing.assert_array_equal(frame[..., channel], ref)


def test_deeper_grey_data_is_scaled_by_first_frame_range():
    """12-bit JPEG-LS lossless without a window: frame 1's min/max maps to 0..255."""
    path = data_file("emri_small_jpeg_ls_lossless.dcm")
    clip = read_clip(path)
    ref = pydicom.dcmread(path).pixel_array.astype(np.float32)
    low, high = ref[0].min(), ref[0].max()
    expected = np.clip((ref - low) * (255.0 / (high - low)), 0, 255).astype(np.uint8)
    assert clip.n_frames == 10
    np.testing.assert_array_equal(clip.frames[..., 1], expected)


def test_window_scales_16_bit_grey_and_monochrome1_is_inverted(tmp_path):
    values = np.array([[[0, 100, 150, 200, 300, 4000]]], np.uint16)
    mono2 = read_clip(write_dicom(tmp_path / "w2.dcm", values, WindowCenter="150",
                                  WindowWidth="100"))
    assert mono2.frame(0)[0, :, 0].tolist() == [0, 0, 127, 255, 255, 255]
    mono1 = read_clip(write_dicom(tmp_path / "w1.dcm", values, photometric="MONOCHROME1",
                                  WindowCenter="150", WindowWidth="100"))
    assert mono1.frame(0)[0, :, 0].tolist() == [255, 255, 128, 0, 0, 0]


def test_monochrome1_files_are_inverted(tmp_path):
    grey = np.arange(0, 256, 16, dtype=np.uint8).reshape(1, 2, 8)
    clip = read_clip(write_dicom(tmp_path / "m1.dcm", grey, photometric="MONOCHROME1"))
    np.testing.assert_array_equal(clip.frame(0)[..., 2], 255 - grey[0])
    real = read_clip(data_file("RG1_UNCR.dcm"))  # 15-bit MONOCHROME1 radiograph
    ds = pydicom.dcmread(data_file("RG1_UNCR.dcm"))
    assert (ds.WindowCenter, ds.WindowWidth) == (15000, 30000)
    scaled = np.clip(ds.pixel_array.astype(np.float32) * (255.0 / 30000), 0, 255)
    np.testing.assert_array_equal(real.frame(0)[..., 0], 255 - scaled.astype(np.uint8))


def test_deflated_file_reads():
    clip = read_clip(data_file("image_dfl.dcm"))
    ref = pydicom.dcmread(data_file("image_dfl.dcm")).pixel_array
    np.testing.assert_array_equal(clip.frame(0)[..., 0], ref)


def test_single_frame_image_is_a_one_frame_clip():
    clip = read_clip(data_file("US1_UNCR.dcm"))
    assert clip.n_frames == 1 and clip.frames.shape == (1, 480, 640, 3)
    with pytest.raises(IndexError):
        clip.frame(1)


# --- the JPEG fast path --------------------------------------------------------------------
def test_jpeg_fast_path_matches_pydicom_on_a_written_ybr_clip(tmp_path):
    frames = colour_frames(n=4)
    path = write_jpeg_clip(tmp_path / "jpeg.dcm", frames)
    fast, slow = read_clip(path), read_clip(path, fast_jpeg=False)
    assert fast.decoder == "opencv" and slow.decoder == "pydicom"
    diff = np.abs(fast.frames.astype(int) - pydicom_rgb(path).astype(int))
    assert diff.mean() < 0.5 and diff.max() <= 8
    np.testing.assert_array_equal(slow.frames, pydicom_rgb(path))
    assert np.abs(fast.frames.astype(int) - frames.astype(int)).mean() < 3  # and near the source


@pytest.mark.parametrize("photometric", ["MONOCHROME2", "MONOCHROME1"])
def test_grey_jpeg_fast_path_matches_pydicom(tmp_path, photometric):
    grey = colour_frames(n=2)[..., 1]
    encoded = [cv2.imencode(".jpg", g, [cv2.IMWRITE_JPEG_QUALITY, 95])[1].tobytes() for g in grey]
    path = write_dicom(tmp_path / "grey.dcm", grey, photometric=photometric,
                       syntax=JPEGBaseline8Bit, encoded=encoded)
    clip = read_clip(path)
    assert clip.decoder == "opencv"
    ref = pydicom.dcmread(path).pixel_array.astype(int)
    expected = 255 - ref if photometric == "MONOCHROME1" else ref
    assert np.abs(clip.frames[..., 0].astype(int) - expected).max() <= 2
    np.testing.assert_array_equal(clip.frames[..., 0], clip.frames[..., 2])


def test_rgb_jpeg_without_colour_transform_is_left_to_pydicom():
    """OpenCV would convert this RGB-coded JPEG from YCbCr (no JFIF/Adobe marker): wrong."""
    path = data_file("SC_jpeg_no_color_transform.dcm")
    clip = read_clip(path)
    assert clip.decoder == "pydicom"
    np.testing.assert_array_equal(clip.frame(0), pydicom_rgb(path)[0])


@pytest.mark.parametrize("name", ["SC_jpeg_no_color_transform_2.dcm", "SC_rgb_dcmtk_+eb+cr.dcm",
                                  "SC_rgb_jpeg_dcmtk.dcm", "SC_rgb_small_odd_jpeg.dcm"])
def test_jpeg_colour_agrees_with_pydicom_whichever_decoder_is_chosen(name):
    path = data_file(name)
    diff = np.abs(read_clip(path).frame(0).astype(int) - pydicom_rgb(path)[0].astype(int))
    assert diff.mean() < 0.5 and diff.max() <= 8


@pytest.mark.parametrize("fast", [True, False])
def test_decoding_all_frames_needs_little_memory_beyond_the_output(tmp_path, fast):
    """Frames are decoded one at a time: no whole-clip float copy (pydicom's full-array YCbCr
    conversion peaks at several times the output)."""
    path = write_jpeg_clip(tmp_path / "long.dcm", colour_frames(n=40, height=96, width=128))
    tracemalloc.start()
    try:
        frames = read_clip(path, fast_jpeg=fast).frames
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < frames.nbytes * 2, (peak, frames.nbytes)


# --- frame rate ----------------------------------------------------------------------------------
@pytest.mark.parametrize("attrs, fps, source", [
    ({"FrameTime": "40"}, 25.0, "FrameTime"),
    ({"FrameTime": "40", "CineRate": 24}, 25.0, "FrameTime"),
    ({"FrameTimeVector": ["0", "20", "20", "20"]}, 50.0, "FrameTimeVector"),
    ({"FrameTime": "0", "FrameTimeVector": ["0", "25", "25", "25"]}, 40.0, "FrameTimeVector"),
    ({"CineRate": 24, "RecommendedDisplayFrameRate": 60}, 24.0, "CineRate"),
    ({"RecommendedDisplayFrameRate": 15}, 15.0, "RecommendedDisplayFrameRate"),
    ({}, 30.0, "default"),
])
def test_fps_comes_from_the_first_timing_attribute_present(tmp_path, attrs, fps, source):
    clip = read_clip(write_dicom(tmp_path / "t.dcm", np.zeros((4, 8, 8), np.uint8), **attrs))
    assert clip.fps == pytest.approx(fps) and clip.fps_source == source
    assert clip.metadata["fps"] == pytest.approx(fps) and clip.metadata["fps_source"] == source


# --- privacy -----------------------------------------------------------------------------------
def phi_attrs():
    return {"PatientName": SENTINELS[0], "PatientID": SENTINELS[1],
            "PatientBirthDate": SENTINELS[2], "StudyDate": SENTINELS[3],
            "InstitutionName": SENTINELS[4], "IssuerOfPatientID": "HOSP",
            "StudyInstanceUID": "1.2.3.4.5"}


def test_patient_data_never_appears_in_anything_returned_or_logged(tmp_path, caplog, capsys):
    caplog.set_level(logging.DEBUG)
    frames = colour_frames(n=3, height=16, width=16)
    path = write_jpeg_clip(tmp_path / "phi.dcm", frames, **phi_attrs())
    clip = read_clip(path)
    clip.frames  # noqa: B018 - decode everything with logging on
    damaged = tmp_path / "phi_cut.dcm"
    damaged.write_bytes(path.read_bytes()[:-200])
    with pytest.raises(DicomReadError) as cut:
        read_clip(damaged)
    seen = " ".join([repr(clip), str(clip), str(clip.metadata), str(vars(clip)), str(cut.value),
                     cut.value.reason, caplog.text, *capsys.readouterr()])
    for sentinel in SENTINELS:
        assert sentinel not in seen
    assert set(clip.metadata) >= {"n_frames", "height", "width", "transfer_syntax", "photometric",
                                  "fps", "fps_source", "patient_key", "study_key", "modality"}
    assert repr(clip) == "Clip('phi.dcm', frames=3, size=16x16, fps=30.0)"


def test_patient_and_study_keys_are_salted_hashes(tmp_path, monkeypatch):
    monkeypatch.delenv("ECHOQUALITY_SALT", raising=False)
    path = write_dicom(tmp_path / "a.dcm", np.zeros((1, 4, 4), np.uint8), **phi_attrs())
    meta = read_clip(path).metadata
    expected = hashlib.sha256(f"{DEFAULT_SALT}|HOSP|{SENTINELS[1]}".encode()).hexdigest()[:16]
    assert meta["patient_key"] == expected
    assert meta["study_key"] == hashlib.sha256(f"{DEFAULT_SALT}|1.2.3.4.5".encode()).hexdigest()[:16]
    assert meta["modality"] == "US"
    salted = read_clip(path, salt="project-salt").metadata
    assert salted["patient_key"] != meta["patient_key"] and len(salted["patient_key"]) == 16
    monkeypatch.setenv("ECHOQUALITY_SALT", "project-salt")
    assert read_clip(path).metadata["patient_key"] == salted["patient_key"]
    bare = read_clip(write_dicom(tmp_path / "b.dcm", np.zeros((1, 4, 4), np.uint8))).metadata
    assert bare["patient_key"] is None and bare["study_key"] is None


# --- bad input ----------------------------------------------------------------------------------
def assert_read_error(path, *words):
    with pytest.raises(DicomReadError) as info:
        clip = read_clip(path)
        clip.frames  # noqa: B018
    error = info.value
    assert type(error) is DicomReadError and error.path.name == path.name
    assert str(error) == f"{path.name}: {error.reason}"
    for word in words:
        assert word in error.reason, error.reason
    return error


def test_empty_file(tmp_path):
    path = tmp_path / "empty.dcm"
    path.write_bytes(b"")
    error = assert_read_error(path, "file is empty")
    copy = pickle.loads(pickle.dumps(error))  # crosses process boundaries intact
    assert (type(copy), copy.path, copy.reason, str(copy)) == (
        DicomReadError, error.path, error.reason, str(error))


def test_text_file_named_dcm(tmp_path):
    path = tmp_path / "notes.dcm"
    path.write_text("these are not the pixels you are looking for\n" * 20)
    assert_read_error(path, "not a DICOM file")


def test_missing_file(tmp_path):
    assert_read_error(tmp_path / "gone.dcm", "not found")


def test_dicom_without_pixel_data(tmp_path):
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.88.11"  # Basic Text SR
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
    ds.Modality = "SR"
    path = tmp_path / "report.dcm"
    ds.save_as(path, enforce_file_format=True)
    assert_read_error(path, "no pixel data")


def test_truncated_uncompressed_clip(tmp_path):
    path = write_dicom(tmp_path / "cut.dcm", np.zeros((5, 20, 30, 3), np.uint8))
    path.write_bytes(path.read_bytes()[:-2000])  # 1800 bytes per frame: 3 of 5 left whole
    assert_read_error(path, "truncated", "3 of 5 frames")


def test_truncated_jpeg_clip(tmp_path):
    path = write_jpeg_clip(tmp_path / "cut.dcm", colour_frames(n=4))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) * 2 // 3])
    assert_read_error(path, "truncated", "of 4")


def test_file_cut_inside_the_header(tmp_path):
    path = write_dicom(tmp_path / "head.dcm", np.zeros((2, 8, 8), np.uint8), **phi_attrs())
    path.write_bytes(path.read_bytes()[:300])
    assert_read_error(path)


def test_corrupt_frame_names_the_frame(tmp_path):
    frames = colour_frames(n=3)
    encoded = jpeg_frames(frames)
    encoded[1] = encoded[1][:20] + bytes(200)  # valid start, garbage after
    path = write_dicom(tmp_path / "bad.dcm", frames, photometric="YBR_FULL_422",
                       syntax=JPEGBaseline8Bit, encoded=encoded)
    clip = read_clip(path)
    assert clip.frame(0).shape == (48, 64, 3)
    with pytest.raises(DicomReadError, match="frame 2 of 3 could not be decoded"):
        clip.frame(1)
    with pytest.raises(DicomReadError, match="frame 2 of 3"):
        clip.frames  # noqa: B018


def test_video_transfer_syntax_is_named(tmp_path):
    path = write_dicom(tmp_path / "video.dcm", np.zeros((2, 8, 8, 3), np.uint8),
                       syntax=MPEG4HP41, encoded=[b"\x00\x00\x01\xb3" + bytes(60)],
                       photometric="YBR_PARTIAL_420")
    error = assert_read_error(path, "unsupported transfer syntax", "MPEG-4")
    assert "JPEG or uncompressed" in error.reason


def test_unknown_transfer_syntax_is_named(tmp_path):
    path = write_dicom(tmp_path / "odd.dcm", np.zeros((2, 8, 8), np.uint8),
                       syntax="1.2.3.999", encoded=[bytes(64), bytes(64)])
    assert_read_error(path, "unsupported transfer syntax", "1.2.3.999")


# Every compressed syntax pydicom can decode has a plugin installed here, so a fresh Python takes
# pydicom's plugins away (Decoder.remove_plugin), as if the packages were missing, and reads real
# files: a JPEG-LS one (pylibjpeg-libjpeg only) and a JPEG 2000 one (Pillow or pylibjpeg-openjpeg).
_WITHOUT_PLUGINS = """
import sys
from pydicom.pixels import get_decoder
from pydicom.uid import JPEG2000, JPEGLSLossless
from echoquality_core.dicom import DicomReadError, read_clip
for syntax in (JPEGLSLossless, JPEG2000):  # every decoder, pyjpegls (highdicom's) included
    decoder = get_decoder(syntax)
    for label in list(decoder.available_plugins):
        decoder.remove_plugin(label)
for path in sys.argv[1:]:
    try:
        read_clip(path).frames
        print("read")
    except DicomReadError as exc:
        print(exc.reason)
"""


@pytest.mark.slow
def test_missing_decoder_plugin_names_the_package_to_install():
    files = [data_file("emri_small_jpeg_ls_lossless.dcm"), data_file("US1_J2KI.dcm")]
    assert [str(pydicom.dcmread(f).file_meta.TransferSyntaxUID) for f in files] == [
        "1.2.840.10008.1.2.4.80", "1.2.840.10008.1.2.4.91"]
    for path in files:  # with the plugins installed here, both read
        assert read_clip(path).frames.any()
    done = subprocess.run([sys.executable, "-c", _WITHOUT_PLUGINS, *files], check=False,
                          capture_output=True, text=True, timeout=60,
                          cwd=Path(__file__).parents[3])
    assert done.returncode == 0, done.stderr
    jpeg_ls, jpeg_2000 = done.stdout.splitlines()
    assert jpeg_ls == ("unsupported transfer syntax JPEG-LS Lossless Image Compression: install "
                       "pylibjpeg and pylibjpeg-libjpeg (pip install pylibjpeg "
                       "pylibjpeg-libjpeg) to read it")
    assert jpeg_2000.startswith("unsupported transfer syntax JPEG 2000 Image Compression: install ")
    assert "pip install pylibjpeg pylibjpeg-openjpeg" in jpeg_2000


@pytest.mark.filterwarnings("ignore::UserWarning")  # pydicom warns about the damage
def test_damaged_files_only_ever_raise_dicom_read_error(tmp_path):
    """Random byte damage (flips, cuts, zeroed runs) anywhere in real files of several codecs:
    each read either works or raises DicomReadError, never a pydicom/numpy/OpenCV error."""
    sources = [data_file(n) for n in ("SC_rgb_rle.dcm", "emri_small_jpeg_ls_lossless.dcm",
                                      "US1_J2KI.dcm", "SC_rgb_jpeg_dcmtk.dcm")]
    sources.append(write_jpeg_clip(tmp_path / "j.dcm", colour_frames(n=3, height=16, width=16)))
    sources.append(write_dicom(tmp_path / "n.dcm", np.zeros((3, 8, 8, 3), np.uint8)))
    rng = np.random.default_rng(7)
    outcomes = {"read": 0, "error": 0}
    for k in range(150):
        data = bytearray(Path(sources[k % len(sources)]).read_bytes())
        pos = int(rng.integers(len(data)))
        if k % 3 == 0:
            data = data[:pos]
        elif k % 3 == 1:
            data[pos:pos + 16] = bytes(len(data[pos:pos + 16]))
        else:
            data[pos] = int(rng.integers(256))
        path = tmp_path / f"damaged{k}.dcm"
        path.write_bytes(bytes(data))
        try:
            read_clip(path).frames  # noqa: B018
            outcomes["read"] += 1
        except DicomReadError as exc:
            assert exc.reason and exc.path == path
            outcomes["error"] += 1
    assert outcomes["read"] > 0 and outcomes["error"] > 0, outcomes


# --- finding files ------------------------------------------------------------------------------
def test_find_clips_by_content(tmp_path):
    grey = np.zeros((2, 8, 8), np.uint8)
    (tmp_path / "b" / "deep").mkdir(parents=True)
    (tmp_path / ".hidden").mkdir()
    no_ext = write_dicom(tmp_path / "b" / "deep" / "IM000001", grey)
    named = write_dicom(tmp_path / "a.dcm", grey)
    bare = write_dicom(tmp_path / "b" / "bare_dataset", grey, file_format=False)
    write_dicom(tmp_path / ".hidden" / "skip.dcm", grey)
    (tmp_path / "b" / "fake.dcm").write_text("not dicom")
    (tmp_path / "b" / "empty.dcm").write_bytes(b"")
    shutil.copy(data_file("US1_UNCR.dcm"), tmp_path / "b" / "us.DCM")
    found = find_clips(tmp_path)
    assert found == sorted([named, bare, no_ext, tmp_path / "b" / "us.DCM"])
    assert is_dicom(bare) and not is_dicom(tmp_path / "b" / "fake.dcm")
    assert read_clip(bare).frames.shape == (2, 8, 8, 3)
    assert find_clips(tmp_path / "missing") == []


def test_clip_is_what_the_contract_names():
    clip = read_clip(data_file("US1_UNCR.dcm"))
    assert isinstance(clip, Clip)
    assert clip.metadata["transfer_syntax"] == ExplicitVRLittleEndian
    assert clip.metadata["photometric"] == "RGB"
    assert (clip.metadata["n_frames"], clip.metadata["height"], clip.metadata["width"]) == (
        1, 480, 640)
    assert isinstance(clip.regions, list)
    assert not is_dicom(data_file("US1_UNCR.dcm").replace(".dcm", ".nonexistent"))


def test_bare_implicit_dataset_without_meta_reads(tmp_path):
    path = write_dicom(tmp_path / "raw", np.full((1, 4, 6), 7, np.uint8), file_format=False)
    clip = read_clip(path)
    assert clip.metadata["transfer_syntax"] == ImplicitVRLittleEndian
    assert clip.frame(0).shape == (4, 6, 3) and int(clip.frame(0).max()) == 7
