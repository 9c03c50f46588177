"""Start-up of the desktop app, offscreen: seconds from launching a fresh interpreter to the
first clip frame on screen (a small demo project opened from the command line), and whether
torch got imported on the way (it should not: it loads lazily when a model is needed).

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

CHILD = r"""
import json, sys, time
from PySide6.QtWidgets import QApplication
from echoquality_gui.app import configure_application
from echoquality_gui.window.main_window import MainWindow
app = QApplication(sys.argv[:1])
configure_application(app)
window = MainWindow()
window.open_project(sys.argv[1])
window.show()
deadline = time.monotonic() + 60
while window.player.frames_shown == 0 and time.monotonic() < deadline:
    app.processEvents()
    time.sleep(0.001)
shown = time.time()
print(json.dumps({"shown": shown, "frames": window.player.frames_shown,
                  "torch": "torch" in sys.modules}))
window.close()
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    from echoquality_core.demo.project import write_demo_project

    env = dict(os.environ, QT_QPA_PLATFORM="offscreen")
    with tempfile.TemporaryDirectory() as tmp:
        write_demo_project(Path(tmp) / "demo", n_clips=4, n_frames=16, seed=0)
        seconds, torch_loaded = [], set()
        for _ in range(args.repeats + 1):  # the first run warms the disk cache
            start = time.time()
            out = subprocess.run([sys.executable, "-c", CHILD, str(Path(tmp) / "demo")],
                                 capture_output=True, text=True, env=env, check=True)
            result = json.loads(out.stdout.strip().splitlines()[-1])
            if result["frames"] == 0:
                raise RuntimeError("no frame shown within 60 s")
            seconds.append(result["shown"] - start)
            torch_loaded.add(result["torch"])
    print(f"launch -> first frame: median {statistics.median(seconds[1:]):.2f} s over "
          f"{args.repeats} runs (min {min(seconds[1:]):.2f} s); torch imported at start-up: "
          f"{' / '.join(str(t) for t in sorted(torch_loaded))}")


if __name__ == "__main__":
    main()
