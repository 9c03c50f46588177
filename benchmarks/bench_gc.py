"""Garbage-collector stalls in the window while a worker thread imports a big package, offscreen:
pyqtgraph's GUI-timer collector, which collects the young objects the import makes (~100k in
half a second), against the app's (``echoquality_gui.common.garbage``), which freezes them.
The import: cleanlab and scikit-learn (~1,400 modules), ranking 40 clips as the Review tab's
"Possible label errors" list did in a window thread before it moved to a child; the window
still imports in threads elsewhere (e.g. the report export's matplotlib). (The Runs tab's MLflow
is not imported in the window's process at all: ``runs.run_list`` reads the runs in a child.)

Each run is a fresh app process (a module is imported once per process), with its start-up
objects frozen as the app does: the window opens a copy of the demo project (real-size clips,
48 x 480 x 640) and, once the first clip is on screen, the gaps between the ticks of a 10 ms
timer are watched while a ``Worker`` ranks 40 clips with cleanlab (its import included) and
1 s more; then, as a control, 2 s of the idle window in the same process. The two collectors
alternate, ``--repeats`` times each; prints each run, the median and min of the largest gap per
collector, the load average and the CPU model.

    QT_QPA_PLATFORM=offscreen .venv/bin/python benchmarks/bench_gc.py [--repeats 3]
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

COLLECTORS = ("pyqtgraph", "app")


def one_app(collector: str, project: Path) -> dict:
    """Open ``project`` in a fresh window with ``collector``; the gaps while its runs load."""
    import numpy as np
    from _timing import Gaps, spin
    from PySide6.QtCore import QSettings
    from PySide6.QtWidgets import QApplication

    from echoquality_core.evaluation.label_issues import rank_label_issues
    from echoquality_gui.app import configure_application
    from echoquality_gui.common import garbage, settings
    from echoquality_gui.common.workers import Worker
    from echoquality_gui.window.main_window import MainWindow

    app = QApplication(sys.argv[:1])
    tmp = Path(tempfile.mkdtemp(prefix="bench-gc-settings-"))
    QSettings.setPath(QSettings.Format.IniFormat, QSettings.Scope.UserScope, str(tmp))
    settings.set_rater("Benchmark")
    configure_application(app)
    ours = garbage._collector  # configure_application started the app's collector
    if collector == "pyqtgraph":
        from pyqtgraph.util.garbage_collector import GarbageCollector

        ours.timer.stop()  # only pyqtgraph's collects
        keep = GarbageCollector(interval=garbage.INTERVAL_MS / 1000)
    else:
        keep = ours
    window = MainWindow()
    window.resize(1366, 768)
    window.show()
    spin(app, lambda: window.isVisible())
    garbage.freeze_start_up()  # as app.main does once its window is up
    window.open_project(project)
    spin(app, lambda: window.player.frames_shown > 0, timeout=120)
    end = time.perf_counter() + 1.0
    spin(app, lambda: time.perf_counter() > end)
    assert "sklearn" not in sys.modules
    imported = []
    rng = np.random.default_rng(0)  # the list's input: a label and an out-of-fold score a clip
    rows = [{"video_path": f"clip{i}.dcm", "label": float(i % 2), "score": float(rng.random())}
            for i in range(40)]
    worker = Worker(lambda: rank_label_issues(rows))  # cleanlab is imported here, in the worker
    worker.connect(returned=imported.append)
    gaps = Gaps()
    gaps.start()
    worker.start()
    spin(app, lambda: bool(imported), timeout=120)
    end = time.perf_counter() + 1.0
    spin(app, lambda: time.perf_counter() > end)
    gaps.stop()
    importing = np.array(gaps.gaps)
    gaps.start()
    end = time.perf_counter() + 2.0
    spin(app, lambda: time.perf_counter() > end)
    gaps.stop()
    idle = np.array(gaps.gaps)
    worker.wait()
    result = {"collector": collector, "sklearn": "sklearn" in sys.modules,
              "import_max": int(importing.max()),
              "import_p99": float(np.percentile(importing, 99)),
              "idle_max": int(idle.max()), "idle_p99": float(np.percentile(idle, 99))}
    window.close()
    window.deleteLater()
    app.processEvents()
    del keep
    shutil.rmtree(tmp, ignore_errors=True)
    return result


def main() -> None:
    from _timing import cpu_model

    from echoquality_core.demo.project import write_demo_project

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--clips", type=int, default=8)
    args = parser.parse_args()
    load = lambda: "/".join(f"{x:.1f}" for x in os.getloadavg())  # noqa: E731
    print(f"CPU: {cpu_model()}; load average {load()} before")
    results: dict[str, list[dict]] = {c: [] for c in COLLECTORS}
    with tempfile.TemporaryDirectory(prefix="bench-gc-") as tmp_name:
        project = Path(tmp_name) / "demo"
        write_demo_project(project, n_clips=args.clips)
        for repeat in range(args.repeats):
            for collector in COLLECTORS:
                copy = Path(tmp_name) / f"copy-{repeat}-{collector}"  # no clip cache
                shutil.copytree(project, copy)
                out = subprocess.run([sys.executable, __file__, "--one", collector,
                                      str(copy)], check=True, capture_output=True,
                                     text=True, cwd=Path(__file__).parent).stdout
                result = json.loads(out.strip().splitlines()[-1])
                assert result["sklearn"], "the worker did not import scikit-learn"
                results[collector].append(result)
                print(f"repeat {repeat + 1}, {collector:>9} collector: while cleanlab is imported "
                      f"largest {result['import_max']} ms, p99 {result['import_p99']:.0f} ms; "
                      f"idle control largest {result['idle_max']} ms, p99 "
                      f"{result['idle_p99']:.0f} ms; load {load()}", flush=True)
    print(f"{args.clips} demo clips (48 x 480 x 640), {args.repeats} interleaved repeats; load "
          f"average {load()} after")
    for collector, runs in results.items():
        for key, what in (("import_max", "import"), ("idle_max", "idle control")):
            values = [r[key] for r in runs]
            print(f"{collector:>9} collector, {what:<13} largest gap median "
                  f"{statistics.median(values):.0f} ms, min {min(values)} ms "
                  f"(runs {', '.join(map(str, values))})")


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--one":
        print(json.dumps(one_app(sys.argv[2], Path(sys.argv[3]))))
    else:
        main()
