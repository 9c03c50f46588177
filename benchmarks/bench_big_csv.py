"""Labelling with a 100,000-row labels CSV (issue 24.4), offscreen: how long the labels CSV takes
to load (``LabelStore``, then the project opening in the window: read in the background, the
window's largest stall meanwhile), and
how long one label key stalls the GUI thread: the largest gap between the ticks of a 10 ms timer
(``_timing.Gaps``) from the key until the label is on disk, beside an idle control (the same
watch, no label) in the same run, interleaved. ``--busy N`` keeps N other processes spinning
(a loaded machine); the bare save of the file is printed for comparison.

    QT_QPA_PLATFORM=offscreen .venv/bin/python benchmarks/bench_big_csv.py [--rows 100000]
        [--repeats 3] [--busy 4]
"""
from __future__ import annotations

import argparse
import multiprocessing
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from _timing import Gaps, cpu_model, spin
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


def _spin_forever() -> None:
    while True:
        pass


def busy(n: int) -> list[multiprocessing.Process]:
    """``n`` processes that keep a core each busy until terminated."""
    procs = [multiprocessing.Process(target=_spin_forever, daemon=True) for _ in range(n)]
    for proc in procs:
        proc.start()
    return procs


CPU: dict[str, list[float]] = {}  # the GUI thread's CPU seconds per watched step, by name


def stall(app, gaps: Gaps, work, done, name: str = "") -> float:
    """The largest gap (s) between timer ticks while ``work()`` runs and until ``done()``;
    the GUI thread's CPU time meanwhile goes to ``CPU[name]`` (robust on a busy machine)."""
    cpu = time.thread_time()
    gaps.start()
    spin(app, lambda: True)  # the first tick's clock
    work()
    spin(app, done)
    end = time.perf_counter() + 0.05  # ticks after the write's result arrived
    spin(app, lambda: time.perf_counter() > end)
    gaps.stop()
    CPU.setdefault(name, []).append(time.thread_time() - cpu)
    return max(gaps.gaps) / 1000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--busy", type=int, default=0, help="busy processes beside the app")
    args = parser.parse_args()
    procs = busy(args.busy)
    time.sleep(1.0 if procs else 0)
    print(f"CPU: {cpu_model()} ({os.cpu_count()} cores); {args.busy} busy processes; "
          f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    try:
        run(args)
    finally:
        for proc in procs:
            proc.terminate()
    return 0


def run(args) -> None:
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

        loads, load_cpu, saves = [], [], []
        for _ in range(args.repeats):
            start, cpu = time.perf_counter(), time.thread_time()
            store = LabelStore(csv_path, root)
            loads.append(time.perf_counter() - start)
            load_cpu.append(time.thread_time() - cpu)
        report(f"load {len(store)} labels (LabelStore)", loads)
        report("  (its CPU time)", load_cpu)
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
        gaps = Gaps()
        opens, open_gaps, labels, controls, undos, on_disk = [], [], [], [], [], []
        for _ in range(args.repeats):
            start = time.perf_counter()
            open_gaps.append(stall(app, gaps, lambda: window.open_project(root),
                                   lambda: getattr(session, "loading", None) is None, "open"))
            opens.append(time.perf_counter() - start)
            spin(app, lambda: not session.scanning and session.current is not None)
            for score in (1.0, 0.0):  # two labels per opening (the first names the rater)
                if session.current is None:
                    break
                end = time.perf_counter() + 0.3
                controls.append(stall(app, gaps, lambda: None,
                                      lambda: time.perf_counter() > end, "control"))
                start = time.perf_counter()
                labels.append(stall(app, gaps, lambda: window.give_score(score),
                                    lambda: not session.saver.busy, "label"))
                on_disk.append(time.perf_counter() - start)
            for _ in range(2):  # back to unlabelled for the next round
                undos.append(stall(app, gaps, session.undo, lambda: not session.saver.busy,
                                   "undo"))
        report("open the project until labels read", opens)
        report("  meanwhile: largest timer gap", open_gaps)
        report("idle control: largest timer gap", controls)
        report("one label: largest timer gap", labels)
        print("   each (ms):", " ".join(f"{x * 1000:.0f}" for x in labels))
        print(f"{'':<34} max    {max(labels) * 1000:8.1f} ms   (control max "
              f"{max(controls) * 1000:.1f} ms)")
        report("one undo: largest timer gap", undos)
        report("one label: key to on disk", on_disk)
        for name, text in (("open", "opening"), ("control", "idle control"),
                           ("label", "one label"), ("undo", "one undo")):
            report(f"GUI thread CPU: {text}", CPU[name])
        window.close()
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    raise SystemExit(main())
