"""How long `write_demo_project` takes for the default demo (40 clips, 48 frames, 480x640).

Run: .venv/bin/python benchmarks/bench_demo.py [n_clips]
"""
from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from echoquality_core.demo.project import QUALITIES, synthetic_clip, write_demo_project


def main() -> None:
    n_clips = int(sys.argv[1]) if len(sys.argv) > 1 else 40
    for quality in QUALITIES:
        start = time.perf_counter()
        synthetic_clip(np.random.default_rng(0), quality)
        print(f"synthetic_clip {quality:<12} 48 frames 480x640: {time.perf_counter() - start:.2f} s")
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        csv_path = write_demo_project(tmp, n_clips=n_clips)
        seconds = time.perf_counter() - start
        size = sum(p.stat().st_size for p in Path(tmp, "clips").iterdir()) / 2**20
        n_labelled = len(csv_path.read_text().splitlines()) - 1
    print(f"write_demo_project {n_clips} clips (48 frames 480x640): {seconds:.1f} s "
          f"({seconds / n_clips:.2f} s per clip), {size:.0f} MiB, {n_labelled} labelled")


if __name__ == "__main__":
    main()
