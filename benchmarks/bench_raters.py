"""Several raters: time of the agreement report (1000 bootstrap resamples) and of one label
written through the per-rater file (atomic save + training-table row), for a study size.

    .venv/bin/python benchmarks/bench_raters.py [--clips 500] [--raters 3] [--n-boot 1000]

The report runs in a background thread in the app (Agreement tab); a label is written in the
GUI thread, so its time is the labelling key's cost.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _timing import median_seconds  # noqa: E402

from echoquality_core.labels.agreement import agreement_report  # noqa: E402
from echoquality_core.labels.project import Project  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=500)
    parser.add_argument("--raters", type=int, default=3)
    parser.add_argument("--n-boot", type=int, default=1000)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "labels.csv").write_text("video_path,quality_score\n")
        project = Project(Path(tmp))
        names = [f"rater{k}" for k in range(args.raters)]
        for r in names[:1]:  # the first rater, then the others through the per-rater file
            for c in range(args.clips):
                project.set_label(f"c{c:05d}.dcm", int(rng.integers(0, 5)) / 4, rater=r)
        start = time.perf_counter()
        for r in names[1:]:
            for c in range(args.clips):
                project.set_label(f"c{c:05d}.dcm", int(rng.integers(0, 5)) / 4, rater=r,
                                  issues=("dropout",) if rng.random() < 0.2 else ())
        per_label = (time.perf_counter() - start) / max(1, args.clips * (args.raters - 1))
        labels = project.raters.labels()
        seconds = median_seconds(lambda: agreement_report(labels, n_boot=args.n_boot), 3)
        size = project.raters.path.stat().st_size / 1e6
    print(f"{args.clips} clips x {args.raters} raters (five-point, one tag):")
    print(f"  label through the per-rater file: {1e3 * per_label:.1f} ms per key press "
          f"(file {size:.2f} MB at the end)")
    print(f"  agreement report, {args.n_boot} bootstrap resamples: {seconds:.2f} s")


if __name__ == "__main__":
    main()
