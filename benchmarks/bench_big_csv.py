"""Labelling with a 100,000-row labels CSV (issue 24.4), offscreen: how long the labels CSV takes
to load (``LabelStore``, then the whole project opening in the window), how long one label
key blocks the window (``give_score`` on the GUI thread, the write itself runs in the
background) and how long until that label is on disk, beside a bare save of the file. On a
busy machine the GUI thread's CPU time says what the wall times cannot.

    QT_QPA_PLATFORM=offscreen .venv/bin/python benchmarks/bench_big_csv.py [--rows 100000]
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from _timing import cpu_model, spin
from PySide6.QtCore import QSettings
from PySide6.QtWidgets import QApplication

from echoquality_core.demo.project import write_demo_project
from echoquality_core.labels.store import LabelStore



def report(name: str, times: list[float]) -> None:
    print(f"{name:<34} median {statistics.median(times) * 1000:8.1f} ms   "
          f"min {min(times) * 1000:8.1f} ms   (n={len(times)})")


def big_project(tmp: Path, rows: int) -> Path:
    """A demo project (8 clips, 4 unlabelled) whose CSV also lists ``rows`` other clips."""
    root = tmp / "project"
    write_demo_project(root, n_clips=8, n_frames=8, height=64, width=80, seed=3, unlabelled=0.5)
    csv_path = root / "labels.csv"
    with open(csv_path, "a", encoding="utf-8") as f:
        for i in range(rows - 8):
            f.write(f"elsewhere/clip_{i:06d}.dcm,{i % 2}\n")
    return root


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    print(f"CPU: {cpu_model()} ({os.cpu_count()} cores); load average before: "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    app = QApplication.instance() or QApplication(sys.argv[:1])
    from echoquality_gui.app import configure_application
    from echoquality_gui.common import settings
    from echoquality_gui.window.main_window import MainWindow

    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        QSettings.setPath(QSettings.Format.IniFormat, QSettings.Scope.UserScope,
                          str(tmp / "settings"))
        configure_application(app)
        settings.set_rater("bench")
        root = big_project(tmp, args.rows)
        csv_path = root / "labels.csv"

        loads, saves = [], []
        for _ in range(args.repeats):
            start = time.perf_counter()
            store = LabelStore(csv_path, root)
            loads.append(time.perf_counter() - start)
        report(f"load {len(store)} labels (LabelStore)", loads)
        for i in range(args.repeats):
            store.set(f"elsewhere/clip_{i:06d}.dcm", 1.0, save=False)
            start = time.perf_counter()
            store.save()
            saves.append(time.perf_counter() - start)
        report("bare save (render + atomic write)", saves)

        window = MainWindow()
        window.resize(1366, 768)
        window.show()
        session = window.session
        opens, blocks, on_disk, open_cpu, block_cpu = [], [], [], [], []
        for _ in range(args.repeats):
            start, cpu = time.perf_counter(), time.thread_time()
            window.open_project(root)
            opens.append(time.perf_counter() - start)
            open_cpu.append(time.thread_time() - cpu)
            spin(app, lambda: not session.scanning and session.current is not None)
            for score in (1.0, 0.0):  # two labels per opening (the first names the rater)
                if session.current is None:
                    break
                start, cpu = time.perf_counter(), time.thread_time()
                window.give_score(score)
                blocks.append(time.perf_counter() - start)
                block_cpu.append(time.thread_time() - cpu)
                spin(app, lambda: not session.saver.busy)
                on_disk.append(time.perf_counter() - start)
            session.saver.flush()
            window.session.undo()  # back to unlabelled for the next round
            window.session.undo()
        report("open the project in the window", opens)
        report("  (GUI thread's CPU time)", open_cpu)
        report("one label: window blocked", blocks)
        report("  (GUI thread's CPU time)", block_cpu)
        report("one label: until on disk", on_disk)
        window.close()
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
