"""Memory of opening a long clip and preprocessing it: a 300-frame 600x800 JPEG clip (and its
uncompressed twin) to the model's 16 frames, streamed (``model_frames(clip)``) vs decoding the
whole clip first (``model_frames(clip.frames)``). Each way runs in a fresh Python; the number is
its peak RSS (ru_maxrss) above the RSS after the imports and ``read_clip``. Target: < 100 MB.

Run: .venv/bin/python benchmarks/bench_preprocess_memory.py [--frames 300] [--height 600] [--width 800]
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

WRITE = textwrap.dedent("""
    import sys
    import numpy as np
    from echoquality_core.demo.project import synthetic_clip, write_dicom_clip
    path, n, h, w, compression = sys.argv[1], *map(int, sys.argv[2:5]), sys.argv[5]
    frames = synthetic_clip(np.random.default_rng(0), "good", n_frames=n, height=h, width=w)
    write_dicom_clip(path, frames, compression=compression)
""")

MEASURE = textwrap.dedent("""
    import json, resource, sys, time
    import psutil
    from echoquality_core.dicom import read_clip
    from echoquality_core.data.preprocess import model_frames
    clip = read_clip(sys.argv[1])
    base = psutil.Process().memory_info().rss
    start = time.perf_counter()
    out = model_frames(clip if sys.argv[2] == "streamed" else clip.frames)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps({"extra_mb": (peak - base) / 2**20, "seconds": seconds,
                      "shape": list(out.shape)}))
""")


def run(code: str, *args: str) -> str:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True,
                          env=env, check=True)
    return done.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--frames", type=int, default=300)
    parser.add_argument("--height", type=int, default=600)
    parser.add_argument("--width", type=int, default=800)
    args = parser.parse_args()
    size = f"{args.frames}x{args.height}x{args.width}"
    with tempfile.TemporaryDirectory() as tmp:
        for compression in ("jpeg", "none"):
            path = Path(tmp) / f"long_{compression}.dcm"
            run(WRITE, str(path), str(args.frames), str(args.height), str(args.width),
                compression)
            for way in ("streamed", "whole clip"):
                result = json.loads(run(MEASURE, str(path), way.split()[0]))
                print(f"{size} {compression:4s} {way:10s}: +{result['extra_mb']:6.1f} MB peak "
                      f"above read_clip, {result['seconds']:5.2f} s -> {result['shape']}")


if __name__ == "__main__":
    main()
