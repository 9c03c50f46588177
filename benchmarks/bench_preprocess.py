"""How long preprocessing takes: ms per clip for the model input, and DICOM -> tensor end to end.

Run: .venv/bin/python benchmarks/bench_preprocess.py [--repeats N]
"""

import argparse
import statistics
import time

import cv2
import numpy as np
import pydicom.data

from echoquality_core.demo import synthetic_clip
from echoquality_core.dicom import read_clip
from echoquality_core.preprocess import model_frames, preprocess_clip, ultrasound_mask

DICOM_NAME = "color3d_jpeg_baseline.dcm"  # pydicom's 120-frame 480x640 JPEG cine


def median_ms(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def report_steps(name: str, frames: np.ndarray, repeats: int) -> None:
    print(f"{name}: frames {frames.shape}")
    for label, fn in [
        ("ultrasound_mask", lambda: ultrasound_mask(frames)),
        ("model_frames", lambda: model_frames(frames)),
        ("preprocess_clip", lambda: preprocess_clip(frames)),
    ]:
        print(f"  {label:16s} {median_ms(fn, repeats):8.1f} ms/clip")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()
    print(f"cv2 threads: {cv2.getNumThreads()}")

    synthetic = synthetic_clip(np.random.default_rng(0), "good", n_frames=48, height=480, width=640)
    report_steps("synthetic clip", synthetic, args.repeats)

    path = pydicom.data.get_testdata_file(DICOM_NAME)
    report_steps(DICOM_NAME, read_clip(path).frames, args.repeats)

    def end_to_end() -> None:
        clip = read_clip(path)
        preprocess_clip(clip.frames)

    n_frames = read_clip(path).n_frames
    ms = median_ms(end_to_end, max(1, args.repeats // 3))
    print(f"DICOM -> model tensor end to end ({n_frames} frames decoded):")
    print(f"  {ms:8.1f} ms/clip  {1000 / ms:6.2f} clips/s  {ms / n_frames:6.2f} ms/frame")


if __name__ == "__main__":
    main()
