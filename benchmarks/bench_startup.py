"""Start-up of the desktop app, offscreen: CPU-seconds and wall seconds from launching a fresh
interpreter to the first clip frame on screen (``echoquality-gui DEMO``, a demo project of
480x640 clips), against a bare Qt window (QApplication + an empty QMainWindow shown and painted)
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
import json, resource, sys, time
from PySide6.QtCore import QEvent, QObject, QTimer
from PySide6.QtWidgets import QApplication
import echoquality_core.dicom as dicom
stamps = {}
frame = dicom.Clip.frame
def timed_frame(self, i):
    stamps.setdefault("decoded", time.time())
    return frame(self, i)
dicom.Clip.frame = timed_frame
class Painted(QObject):
    def eventFilter(self, obj, event):
        if event.type() == QEvent.Type.Paint and getattr(obj, "isWindow", bool)():
            stamps.setdefault("painted", time.time())
        return False
app = QApplication(sys.argv[:1])
painted = Painted()
app.installEventFilter(painted)
def check():
    window = next((w for w in app.topLevelWidgets() if hasattr(w, "player")), None)
    if window is not None and window.player.frames_shown > 0:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        stamps.update(shown=time.time(), frames=window.player.frames_shown,
                      cpu=usage.ru_utime + usage.ru_stime, torch="torch" in sys.modules)
        app.quit()
timer = QTimer()
timer.timeout.connect(check)
timer.start(1)
QTimer.singleShot(60_000, app.quit)
from echoquality_gui.app import main
main([sys.argv[1]])
stamps.setdefault("frames", 0)
print(json.dumps(stamps))
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


def launch(code: str, config: Path, *args: str) -> tuple[dict, float]:
    """Run ``code`` in a fresh interpreter (byte code cached as for an installed app; the
    user's settings under ``config``)."""
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", XDG_CONFIG_HOME=str(config))
    env.pop("PYTHONDONTWRITEBYTECODE", None)
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
            bare, bare_s = launch(BARE, Path(tmp))
            result, seconds = launch(APP, Path(tmp), str(demo))
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
