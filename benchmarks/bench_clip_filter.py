"""The clip list's filter and per-class counter on a large project (plain Python, GUI thread):
target < 50 ms for 20,000 clips, since both run on every label change.

    python benchmarks/bench_clip_filter.py
"""
from __future__ import annotations

import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _timing import median_seconds  # noqa: E402

from echoquality_core.labels.store import Label  # noqa: E402
from echoquality_core.labels.project import ClipInfo  # noqa: E402
from echoquality_gui.label.clip_filter import ClipFilter, class_counts  # noqa: E402
from echoquality_gui.label.clip_list import short_names  # noqa: E402

N = 20_000


def main() -> None:
    rng = random.Random(0)
    clips = [ClipInfo(Path(f"/d/p{i // 30:04d}/s{i % 3}/IM{i % 30:04d}.dcm"),
                      f"p{i // 30:04d}/s{i % 3}/IM{i % 30:04d}.dcm", 48, 480, 640, 30.0)
             for i in range(N)]
    labels = {c.rel: (Label(c.rel, rng.choice((0.0, 1.0)), None, None,
                            ("dropout",) if rng.random() < 0.1 else (), None)
                      if rng.random() < 0.6 else None) for c in clips}
    scores = {c.rel: rng.random() for c in clips}
    flt = ClipFilter(mode="labelled", tag="dropout", score_min=0.2, score_max=0.8, text="s1")

    def run_filter() -> int:
        return sum(flt.accepts(c, labels[c.rel], scores[c.rel], False) for c in clips)

    print(f"clips: {N}")
    print(f"filter (mode+tag+score range+text): {1000 * median_seconds(run_filter, 5):.1f} ms")
    print(f"per-class counter: "
          f"{1000 * median_seconds(lambda: class_counts(labels.values()), 5):.1f} ms")
    print(f"File column names (on project reset): "
          f"{1000 * median_seconds(lambda: short_names(c.rel for c in clips), 5):.1f} ms")


if __name__ == "__main__":
    main()
