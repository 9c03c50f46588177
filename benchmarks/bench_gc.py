"""Garbage-collector pauses in the window, offscreen: the time of one full collection (which the
app runs on its GUI timer, stalling the window) once every tab was shown and the Train tab has
found its devices (in a child: torch is not imported into the window), with the app's freezing
of its start-up objects (``echoquality_gui.common.garbage``) and without.

    QT_QPA_PLATFORM=offscreen .venv/bin/python benchmarks/bench_gc.py
"""
from __future__ import annotations

import gc
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")


def one_app(freeze: bool) -> None:
    from _timing import spin
    from PySide6.QtCore import QSettings
    from PySide6.QtWidgets import QApplication

    from echoquality_core.demo.project import write_demo_project
    from echoquality_gui.common import garbage
    from echoquality_gui.common import settings
    from echoquality_gui.app import configure_application
    from echoquality_gui.window.main_window import MainWindow

    tmp = Path(tempfile.mkdtemp(prefix="bench_gc"))
    write_demo_project(tmp / "demo", n_clips=12, n_frames=16, height=120, width=160)
    app = QApplication(sys.argv[:1])
    QSettings.setPath(QSettings.Format.IniFormat, QSettings.Scope.UserScope, str(tmp))
    settings.set_rater("Benchmark")
    configure_application(app)
    window = MainWindow()
    window.resize(1366, 768)
    window.show()
    window.open_project(tmp / "demo")
    spin(app, lambda: window.player.frames_shown > 0)
    if freeze:
        garbage.freeze_start_up()  # as app.main does before its event loop
    for index in range(window.tabs.count()):  # every tab shown once, for a second
        window.tabs.setCurrentIndex(index)
        shown = time.perf_counter()
        spin(app, lambda: time.perf_counter() - shown > 1.0)
    window.tabs.setCurrentWidget(window.train_panel)
    spin(app, lambda: window.train_panel.form.device_info.text() != "finding…", timeout=120)
    times = []
    for _ in range(5):
        start = time.perf_counter()
        gc.collect()
        times.append((time.perf_counter() - start) * 1000)
    tracked = len(gc.get_objects())
    print(f"{'frozen' if freeze else 'not frozen'}: full collection median "
          f"{statistics.median(times):.0f} ms (max {max(times):.0f} ms), {tracked:,} objects "
          f"scanned, {gc.get_freeze_count():,} frozen; torch imported: {'torch' in sys.modules}")
    window.close()
    window.deleteLater()
    app.processEvents()
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    if len(sys.argv) > 1:
        one_app(sys.argv[1] == "freeze")
    else:
        for mode in ("no-freeze", "freeze"):
            subprocess.run([sys.executable, __file__, mode], check=True,
                           cwd=Path(__file__).parent)
