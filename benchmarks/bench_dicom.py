"""DICOM reading speed and memory.

1. ms per frame decoding pydicom-data's color3d_jpeg_baseline.dcm (120 frames, 640x480, JPEG
   baseline YBR_FULL_422): our OpenCV fast path, our pydicom path, and pydicom's own
   ``pixel_array(path, index=i)`` for reference.
2. Peak memory while opening and decoding every frame of a 300-frame 600x800 JPEG-baseline clip
   (written to a temp folder), measured in fresh processes per decoder: peak RSS (ru_maxrss)
   above the RSS before reading, and tracemalloc's peak, each also minus the output
   (300*600*800*3 bytes = 432 MB = 412 MiB; numbers are MiB).

Run: .venv/bin/python benchmarks/bench_dicom.py
"""
from __future__ import annotations

import json
import resource
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import cv2
import numpy as np

MB = 2**20  # numbers are printed in MiB


def _rss_mb() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * resource.getpagesize() / MB


def time_per_frame() -> None:
    import pydicom
    from pydicom.data import get_testdata_file

    from echoquality_core.dicom import read_clip

    path = get_testdata_file("color3d_jpeg_baseline.dcm")
    for label, fast in (("OpenCV fast path", True), ("pydicom path", False)):
        clip = read_clip(path, fast_jpeg=fast)
        clip.frame(0)  # warm up (decoder choice, imports)
        start = time.perf_counter()
        for i in range(clip.n_frames):
            clip.frame(i)
        ms = (time.perf_counter() - start) * 1000 / clip.n_frames
        print(f"  Clip.frame(i), {label:17s} [{clip.decoder}]: {ms:6.2f} ms/frame")
    start = time.perf_counter()
    for i in range(0, 120, 4):
        pydicom.pixels.pixel_array(path, index=i)
    ms = (time.perf_counter() - start) * 1000 / 30
    print(f"  pydicom.pixels.pixel_array(path, index=i):  {ms:6.2f} ms/frame")
    start = time.perf_counter()
    for _ in range(20):
        read_clip(path)
    print(f"  read_clip (header + fragment table):        {(time.perf_counter() - start) * 50:6.2f} "
          "ms/clip")


def write_big_clip(path: Path, n_frames=300, height=600, width=800) -> Path:
    """A JPEG-baseline YBR_FULL_422 clip of moving coloured shapes, written with pydicom."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.encaps import encapsulate
    from pydicom.uid import JPEGBaseline8Bit, UltrasoundMultiFrameImageStorage, generate_uid

    y, x = np.mgrid[0:height, 0:width]
    rng = np.random.default_rng(0)
    speckle = [rng.integers(0, 30, (height, width, 3), dtype=np.uint8) for _ in range(4)]
    params = [cv2.IMWRITE_JPEG_QUALITY, 90,
              cv2.IMWRITE_JPEG_SAMPLING_FACTOR, cv2.IMWRITE_JPEG_SAMPLING_FACTOR_422]
    encoded = []
    for t in range(n_frames):
        inside = (x - width / 2 - 100 * np.sin(t / 20)) ** 2 + (y - height / 2) ** 2 < 200**2
        frame = speckle[t % 4].copy()
        frame[inside] += np.uint8(90)
        frame[..., 0] += (40 * inside * (x % 64 < 32)).astype(np.uint8)
        encoded.append(cv2.imencode(".jpg", frame, params)[1].tobytes())
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
    ds.file_meta.MediaStorageSOPClassUID = UltrasoundMultiFrameImageStorage
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.SOPClassUID, ds.SOPInstanceUID = UltrasoundMultiFrameImageStorage, generate_uid()
    ds.Modality = "US"
    ds.Rows, ds.Columns, ds.SamplesPerPixel, ds.PlanarConfiguration = height, width, 3, 0
    ds.PhotometricInterpretation = "YBR_FULL_422"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.NumberOfFrames, ds.FrameTime = n_frames, "33.3"
    ds.add_new(0x7FE00010, "OB", encapsulate(encoded))
    ds.save_as(path, enforce_file_format=True)
    return path


def measure_memory(path: str, fast: bool, traced: bool) -> dict:
    """Run inside a fresh process: open + decode all frames, report time and memory (RSS, or
    tracemalloc's peak when ``traced``; tracing slows decoding, so time comes from the RSS run)."""
    import pydicom  # noqa: F401 - imported before the baseline so its import is not counted

    from echoquality_core.dicom import read_clip

    before = _rss_mb()
    if traced:
        tracemalloc.start()
    start = time.perf_counter()
    clip = read_clip(path, fast_jpeg=fast)
    frames = clip.frames
    seconds = time.perf_counter() - start
    traced_peak = tracemalloc.get_traced_memory()[1] if traced else 0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"decoder": clip.decoder, "seconds": seconds, "output_mb": frames.nbytes / MB,
            "extra_rss_mb": peak - before, "traced_peak_mb": traced_peak / MB,
            "n_frames": clip.n_frames}


def _measure_in_fresh_process(path: Path, fast: bool, traced: bool) -> dict:
    out = subprocess.run(
        [sys.executable, __file__, "--memory", str(path), str(int(fast)), str(int(traced))],
        check=True, capture_output=True, text=True,
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


def memory_report() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        path = write_big_clip(Path(tmp) / "big.dcm")
        print(f"  wrote 300x600x800 JPEG clip: {path.stat().st_size / MB:.1f} MB on disk "
              f"({time.perf_counter() - start:.1f} s)")
        for fast in (True, False):
            m = _measure_in_fresh_process(path, fast, traced=False)
            traced = _measure_in_fresh_process(path, fast, traced=True)["traced_peak_mb"]
            output = m["output_mb"]
            print(f"  {m['decoder']:7s}: {m['n_frames']} frames in {m['seconds']:.2f} s "
                  f"({m['seconds'] * 1000 / m['n_frames']:.1f} ms/frame), output {output:.0f} MB")
            print(f"           peak RSS above start: {m['extra_rss_mb']:.0f} MB total, "
                  f"{m['extra_rss_mb'] - output:.0f} MB beyond the output")
            print(f"           tracemalloc peak:     {traced:.0f} MB total, "
                  f"{traced - output:.0f} MB beyond the output")


def main() -> None:
    if len(sys.argv) == 5 and sys.argv[1] == "--memory":
        print(json.dumps(measure_memory(sys.argv[2], sys.argv[3] == "1", sys.argv[4] == "1")))
        return
    cv2.setNumThreads(1)
    print("Frame decode, color3d_jpeg_baseline.dcm (120 frames, 640x480, JPEG baseline):")
    time_per_frame()
    print("Memory, open + decode all frames of a 300-frame 600x800 JPEG-baseline clip:")
    memory_report()


if __name__ == "__main__":
    main()
