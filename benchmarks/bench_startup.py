"""Start-up of the desktop app, offscreen: CPU-seconds and wall seconds from launching a fresh
interpreter to the first clip frame on screen (a demo project of 480x640 clips opened from the
command line), against a bare Qt window (QApplication + an empty QMainWindow shown and painted)
launched in the same run; also whether the window was painted before any clip was decoded,
and whether torch got imported on the way (it should not: it loads lazily when a model is
needed).

    .venv/bin/python benchmarks/bench_startup.py [--repeats 3]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

APP = r"""
import json, resource, sys, threading, time
from PySide6.QtCore import QEvent, QObject
from PySide6.QtWidgets import QApplication
from echoquality_gui.app import configure_application
from echoquality_gui.window.main_window import MainWindow
import echoquality_core.dicom as dicom
stamps = {}
frame = dicom.Clip.frame
def timed_frame(self, i):
    stamps.setdefault("decoded", time.time())
    return frame(self, i)
dicom.Clip.frame = timed_frame
class Painted(QObject):
    def eventFilter(self, obj, event):
        if event.type() == QEvent.Type.Paint:
            stamps.setdefault("painted", time.time())
        return False
app = QApplication(sys.argv[:1])
configure_application(app)
window = MainWindow()
painted = Painted()
window.installEventFilter(painted)
window.open_project(sys.argv[1])
window.show()
deadline = time.monotonic() + 60
while window.player.frames_shown == 0 and time.monotonic() < deadline:
    app.processEvents()
    time.sleep(0.001)
shown = time.time()
usage = resource.getrusage(resource.RUSAGE_SELF)
print(json.dumps({"shown": shown, "painted": stamps.get("painted"),
                  "decoded": stamps.get("decoded"), "frames": window.player.frames_shown,
                  "cpu": usage.ru_utime + usage.ru_stime, "torch": "torch" in sys.modules}))
window.close()
"""

BARE = r"""
import json, resource, sys, time
from PySide6.QtWidgets import QApplication, QMainWindow
app = QApplication(sys.argv[:1])
window = QMainWindow()
window.resize(1366, 768)
window.show()
window.grab()  # painted once
app.processEvents()
usage = resource.getrusage(resource.RUSAGE_SELF)
print(json.dumps({"shown": time.time(), "cpu": usage.ru_utime + usage.ru_stime}))
"""


def launch(code: str, *args: str) -> tuple[dict, float]:
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen")
    start = time.time()
    out = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True,
                         env=env, check=True)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    return result, result["shown"] - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    from echoquality_core.demo.project import write_demo_project

    print(f"load average {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    with tempfile.TemporaryDirectory() as tmp:
        demo = Path(tmp) / "demo"
        write_demo_project(demo, n_clips=4, n_frames=16, seed=0)
        app_cpu, app_wall, bare_cpu, bare_wall, torch_loaded, order = [], [], [], [], set(), []
        for n in range(args.repeats + 1):  # the first pair warms the disk cache
            bare, bare_s = launch(BARE)
            result, seconds = launch(APP, str(demo))
            if result["frames"] == 0:
                raise RuntimeError("no frame shown within 60 s")
            if n == 0:
                continue
            bare_cpu.append(bare["cpu"])
            bare_wall.append(bare_s)
            app_cpu.append(result["cpu"])
            app_wall.append(seconds)
            torch_loaded.add(result["torch"])
            order.append(result["painted"] is not None and result["decoded"] is not None
                         and result["painted"] <= result["decoded"])
    ratio = statistics.median(app_cpu) / statistics.median(bare_cpu)
    print(f"launch -> first frame: median {statistics.median(app_cpu):.2f} CPU-s, "
          f"{statistics.median(app_wall):.2f} s wall over {args.repeats} runs; bare Qt window "
          f"{statistics.median(bare_cpu):.2f} CPU-s, {statistics.median(bare_wall):.2f} s wall "
          f"({ratio:.1f}x); window painted before a clip was decoded: {all(order)}; torch "
          f"imported at start-up: {' / '.join(str(t) for t in sorted(torch_loaded))}; "
          f"load average {' '.join(f'{x:.1f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
