"""Hostile DICOM files: decompression bombs, header/data mismatches, absurd sizes and frame
counts, garbage NumberOfFrames, 1-bit images, YBR_RCT on uncompressed data, unreadable files.
Every file is generated here with pydicom / OpenCV; memory is measured in a child process."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.pixels import pack_bits
from pydicom.uid import ExplicitVRLittleEndian, JPEGBaseline8Bit, generate_uid

from echoquality_core.dicom import DicomReadError, read_clip

ROOT = Path(__file__).resolve().parents[2]
US_MULTIFRAME = "1.2.840.10008.5.1.4.1.1.3.1"


def write_dicom(path: Path, *, rows: int, columns: int, frames: list[bytes] | bytes,
                n_frames: int | str = 1, samples: int = 1, photometric: str = "MONOCHROME2",
                bits: int = 8, syntax=JPEGBaseline8Bit) -> Path:
    """A minimal Ultrasound Multi-frame file: encapsulated ``frames`` (list) or native bytes."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = US_MULTIFRAME
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = syntax
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = US_MULTIFRAME, meta.MediaStorageSOPInstanceUID
    ds.Modality = "US"
    ds.PatientID = "HOSTILE-01"
    ds.Rows, ds.Columns = rows, columns
    ds.NumberOfFrames = n_frames
    ds.SamplesPerPixel = samples
    ds.PhotometricInterpretation = photometric
    ds.BitsAllocated = ds.BitsStored = bits
    ds.HighBit = bits - 1
    ds.PixelRepresentation = 0
    if samples == 3:
        ds.PlanarConfiguration = 0
    if isinstance(frames, list):
        ds.PixelData = encapsulate(frames, has_bot=True)
    else:
        ds.PixelData = frames
    ds["PixelData"].VR = "OB"
    ds.save_as(path, enforce_file_format=True)
    return path


def grey_jpeg(height: int, width: int) -> bytes:
    image = np.zeros((height, width), np.uint8)
    cv2.circle(image, (width // 2, height // 2), min(height, width) // 3, 200, -1)
    ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 50])
    assert ok
    return data.tobytes()


@pytest.fixture(scope="module")
def bomb_jpeg(tmp_path_factory) -> Path:
    """A real 16000x16000 JPEG frame (a few MB), encoded in a child so its 256 MB source image
    does not stay in the test process."""
    path = tmp_path_factory.mktemp("bomb") / "frame.jpg"
    code = ("import sys, cv2, numpy as np\n"
            "img = np.zeros((16000, 16000), np.uint8)\n"
            "cv2.circle(img, (8000, 8000), 5000, 200, -1)\n"
            "ok, data = cv2.imencode('.jpg', img, [cv2.IMWRITE_JPEG_QUALITY, 50])\n"
            "sys.stdout.buffer.write(data)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=120,
                          check=True)
    path.write_bytes(done.stdout)
    return path


PROBE = textwrap.dedent("""
    import json, sys, time
    import psutil
    from echoquality_core.dicom import DicomReadError, read_clip
    from echoquality_core.data.preprocess import model_frames
    before = psutil.Process().memory_info().rss
    began = time.monotonic()
    reasons = []
    for step in ("read_clip", "frame", "frames", "model_frames"):
        try:
            clip = read_clip(sys.argv[1])
            if step == "frame":
                clip.frame(0)
            elif step == "frames":
                clip.frames
            elif step == "model_frames":
                model_frames(clip)
            reasons.append(None)
        except DicomReadError as exc:
            reasons.append(exc.reason)
    # VmHWM: this process's own peak; ru_maxrss would carry the forking parent's over exec
    status = open("/proc/self/status").read()
    peak = int(status.split("VmHWM:")[1].split()[0]) * 1024
    print(json.dumps({"reasons": reasons, "seconds": time.monotonic() - began,
                      "before_mb": before / 2**20, "peak_mb": peak / 2**20}))
""")


def probe(path: Path) -> dict:
    """Read ``path`` in a fresh Python: each step's refusal, time and peak memory (RSS)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-c", PROBE, str(path)], capture_output=True,
                          text=True, timeout=120, env=env, check=False)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


@pytest.mark.slow
def test_a_16000_square_jpeg_is_refused_before_decoding_with_peak_rss_under_300_mb(
        bomb_jpeg, tmp_path):
    path = write_dicom(tmp_path / "bomb.dcm", rows=16000, columns=16000,
                       frames=[bomb_jpeg.read_bytes()])
    result = probe(path)
    expected = ("frames are 16000×16000, larger than the 8192×8192 limit; raise it with "
                "ECHOQUALITY_MAX_FRAME_SIDE=<pixels>")
    assert result["reasons"] == [expected] * 4
    assert result["peak_mb"] < 300, result
    assert result["seconds"] < 5, result


@pytest.mark.slow
def test_a_16000_square_jpeg_inside_a_64x80_header_is_refused_before_decoding(
        bomb_jpeg, tmp_path):
    path = write_dicom(tmp_path / "mismatch.dcm", rows=64, columns=80,
                       frames=[bomb_jpeg.read_bytes()])
    result = probe(path)
    assert result["reasons"] == ["frame 1 is 16000×16000, larger than the 8192×8192 limit; "
                                 "raise it with ECHOQUALITY_MAX_FRAME_SIDE=<pixels>"] * 4
    assert result["peak_mb"] < 300 and result["seconds"] < 5, result  # decoding: 1.3 GB, 5-13 s


def test_a_header_codestream_size_mismatch_is_refused_before_decoding(tmp_path):
    frames = [grey_jpeg(64, 80), grey_jpeg(96, 120)]  # frame 2 is bigger than the header says
    path = write_dicom(tmp_path / "mixed.dcm", rows=64, columns=80, frames=frames, n_frames=2)
    clip = read_clip(path)  # frame 1 is checked at open and fine
    assert clip.frame(0).shape == (64, 80, 3)
    with pytest.raises(DicomReadError) as caught:
        clip.frame(1)
    assert caught.value.reason == ("frame 2 is 120×96 in its compressed data but the header says "
                                   "80×64; not decoded")
    assert caught.value.__cause__ is None  # refused by the check, not by a decoder failing
    first_bad = write_dicom(tmp_path / "first.dcm", rows=64, columns=80, frames=frames[::-1],
                            n_frames=2)
    with pytest.raises(DicomReadError, match="frame 1 is 120×96 in its compressed data"):
        read_clip(first_bad)


def test_a_huge_header_with_tiny_fragments_is_refused_without_allocating(tmp_path):
    path = write_dicom(tmp_path / "huge.dcm", rows=60000, columns=60000, n_frames=1000,
                       frames=[b"\xff\xd8\xff\xd9"] * 1000)
    began = time.monotonic()
    with pytest.raises(DicomReadError, match="frames are 60000×60000, larger than the "
                                             "8192×8192 limit"):
        read_clip(path)
    assert time.monotonic() - began < 2


def test_limits_can_be_raised_or_lowered_by_environment(tmp_path, monkeypatch):
    path = write_dicom(tmp_path / "small.dcm", rows=64, columns=80, frames=[grey_jpeg(64, 80)])
    monkeypatch.setenv("ECHOQUALITY_MAX_FRAME_SIDE", "32")
    with pytest.raises(DicomReadError, match="80×64, larger than the 32×32 limit"):
        read_clip(path)
    monkeypatch.delenv("ECHOQUALITY_MAX_FRAME_SIDE")
    monkeypatch.setenv("ECHOQUALITY_MAX_CLIP_MB", "1")
    native = write_dicom(tmp_path / "long.dcm", rows=100, columns=100, n_frames=50,
                         frames=bytes(100 * 100 * 50), syntax=ExplicitVRLittleEndian)
    clip = read_clip(native)
    assert clip.frame(49).shape == (100, 100, 3)  # frame by frame is fine
    with pytest.raises(DicomReadError, match="decoding the whole clip at once takes 1 MB, "
                                             "more than the 1 MB limit"):
        clip.frames  # noqa: B018


def test_a_100000_frame_clip_is_refused_with_a_message(tmp_path):
    path = write_dicom(tmp_path / "long.dcm", rows=2, columns=2, n_frames=100_000,
                       frames=bytes(4 * 100_000), syntax=ExplicitVRLittleEndian)
    with pytest.raises(DicomReadError) as caught:
        read_clip(path)
    assert caught.value.reason == ("clip has 100000 frames, more than the limit of 20000; raise "
                                   "it with ECHOQUALITY_MAX_FRAMES=<frames>")


@pytest.mark.parametrize("garbage", ["abc", "1e400", "2.5"])
def test_garbage_number_of_frames_gets_a_clear_message(tmp_path, garbage):
    path = write_dicom(tmp_path / "garbage.dcm", rows=4, columns=4, frames=bytes(16),
                       n_frames="77777777", syntax=ExplicitVRLittleEndian)
    data = path.read_bytes()  # pydicom will not write garbage: put it in by hand
    path.write_bytes(data.replace(b"77777777", garbage.ljust(8).encode("ascii")))
    with pytest.raises(DicomReadError) as caught:
        read_clip(path)
    assert caught.value.reason == f"NumberOfFrames {garbage!r} is not a whole number"


def test_a_1_bit_image_comes_out_black_and_white(tmp_path):
    bits = np.zeros((2, 16, 24), np.uint8)
    bits[:, 4:12, 6:18] = 1
    path = write_dicom(tmp_path / "onebit.dcm", rows=16, columns=24, n_frames=2, bits=1,
                       frames=pack_bits(bits), syntax=ExplicitVRLittleEndian)
    frames = read_clip(path).frames
    assert set(np.unique(frames)) == {0, 255}
    assert (frames[:, 4:12, 6:18] == 255).all() and frames[:, :4].max() == 0


def test_ybr_rct_on_uncompressed_data_is_refused(tmp_path):
    path = write_dicom(tmp_path / "rct.dcm", rows=8, columns=8, samples=3,
                       photometric="YBR_RCT", frames=bytes(8 * 8 * 3),
                       syntax=ExplicitVRLittleEndian)
    with pytest.raises(DicomReadError) as caught:
        read_clip(path)
    assert caught.value.reason == ("photometric interpretation YBR_RCT is only valid for JPEG "
                                   "2000 data, but this file's pixels are Explicit VR Little "
                                   "Endian; the colours cannot be trusted")
