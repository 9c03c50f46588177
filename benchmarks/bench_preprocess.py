"""How long preprocessing takes: ms per clip for the model input, and DICOM -> tensor end to end
(pydicom's test cine, and every clip of a freshly written demo project).

Run: .venv/bin/python benchmarks/bench_preprocess.py [--repeats N] [--demo-clips N]
"""

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import pydicom.data
from _timing import median_seconds

from echoquality_core.demo.project import synthetic_clip, write_demo_project
from echoquality_core.dicom import find_clips, read_clip
from echoquality_core.data.preprocess import model_frames, preprocess_clip, ultrasound_mask

DICOM_NAME = "color3d_jpeg_baseline.dcm"  # pydicom's 120-frame 480x640 JPEG cine



def report_steps(name: str, frames: np.ndarray, repeats: int) -> None:
    print(f"{name}: frames {frames.shape}")
    for label, fn in [
        ("ultrasound_mask", lambda: ultrasound_mask(frames)),
        ("model_frames", lambda: model_frames(frames)),
        ("preprocess_clip", lambda: preprocess_clip(frames)),
    ]:
        print(f"  {label:16s} {1000 * median_seconds(fn, repeats):8.1f} ms/clip")


def report_demo_project(n_clips: int, n_frames: int = 48) -> None:
    """DICOM file -> model tensor (read_clip + preprocess_clip) for each clip of a demo project
    written at the demo's real size (480x640, JPEG and some uncompressed)."""
    with tempfile.TemporaryDirectory() as tmp:
        write_demo_project(tmp, n_clips=n_clips, n_frames=n_frames, height=480, width=640)
        print(f"demo project, {n_clips} clips of {n_frames}x480x640, DICOM -> model tensor:")
        per_clip, per_frame = [], []
        for path in find_clips(Path(tmp)):
            start = time.perf_counter()
            clip = read_clip(path)
            preprocess_clip(clip.frames)
            ms = 1000 * (time.perf_counter() - start)
            per_clip.append(ms)
            per_frame.append(ms / clip.n_frames)
            print(f"  {path.name:12s} {clip.transfer_syntax:24s} {ms:8.1f} ms/clip "
                  f"{ms / clip.n_frames:6.2f} ms/frame")
    print(f"  median {statistics.median(per_clip):8.1f} ms/clip  "
          f"{statistics.median(per_frame):6.2f} ms/frame  (total {sum(per_clip) / 1000:.2f} s)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--demo-clips", type=int, default=10, help="clips in the demo project")
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
    ms = 1000 * median_seconds(end_to_end, max(1, args.repeats // 3))
    print(f"DICOM -> model tensor end to end ({n_frames} frames decoded):")
    print(f"  {ms:8.1f} ms/clip  {1000 / ms:6.2f} clips/s  {ms / n_frames:6.2f} ms/frame")

    report_demo_project(args.demo_clips)


if __name__ == "__main__":
    main()
