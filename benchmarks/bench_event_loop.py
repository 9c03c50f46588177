"""The window's event loop while a model works, offscreen: the largest gap between the ticks
of a 10 ms timer on the UI thread while a model is loaded and the project's clips are scored,
while the Review tab computes GradCAM of a clip (first, then a second clip), and in the second
right after. Also says whether torch was ever imported into the app's process.

The checkpoint (a seeded, random R(2+1)D-18) is written by a separate interpreter, so the app
process starts without torch, as it does for a user.

    QT_QPA_PLATFORM=offscreen .venv/bin/python benchmarks/bench_event_loop.py [--clips 12]
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from _timing import Gaps, spin
from PySide6.QtCore import QSettings
from PySide6.QtWidgets import QApplication

from echoquality_core.demo.project import write_demo_project

WRITE_MODEL = """
import sys, warnings, torch
from echoquality_core.model.network import build_model, save_checkpoint
from echoquality_core.data.preprocess import PreprocessParams
torch.manual_seed(0)
with warnings.catch_warnings():
    warnings.simplefilter("ignore", UserWarning)
    net = build_model().eval()
save_checkpoint(net, sys.argv[1], threshold=0.5,
                preprocess=PreprocessParams(n_frames=int(sys.argv[2]), stride=1,
                                            size=int(sys.argv[3])))
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--clips", type=int, default=12)
    parser.add_argument("--frames", type=int, default=8, help="frames the model sees")
    parser.add_argument("--size", type=int, default=64, help="model input size (pixels)")
    args = parser.parse_args()
    app = QApplication.instance() or QApplication(sys.argv[:1])
    from echoquality_gui.app import configure_application
    from echoquality_gui.window.main_window import MainWindow

    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        QSettings.setPath(QSettings.Format.IniFormat, QSettings.Scope.UserScope,
                          str(tmp / "settings"))
        configure_application(app)
        root = tmp / "project"
        write_demo_project(root, n_clips=args.clips, n_frames=16, height=120, width=160,
                           seed=3, unlabelled=0.0)
        model = tmp / "best.pt"
        subprocess.run([sys.executable, "-c", WRITE_MODEL, str(model), str(args.frames),
                        str(args.size)], check=True)
        window = MainWindow()
        window.resize(1366, 768)
        window.show()
        try:
            window.open_project(root)
            session, review = window.session, window.review
            spin(app, lambda: not session.scanning and session.current is not None, 900.0)
            settle = time.perf_counter()  # the window's own start-up work done
            spin(app, lambda: time.perf_counter() - settle > 1.0, 10.0)
            gaps = Gaps()
            gaps.start()
            started = time.perf_counter()
            session.set_model(model)
            spin(app, lambda: bool(session.scores) and not session.scoring, 900.0)
            print(f"load the model + score {len(session.scores)} clips "
                  f"({time.perf_counter() - started:.1f} s): {gaps.stop()}")

            window.tabs.setCurrentWidget(review)
            rels = [c.rel for c in session.project.clips]
            for n, rel in enumerate(rels[:2], start=1):
                gaps.start()
                started = time.perf_counter()
                review.show_clip(rel)
                spin(app, lambda rel=rel: review.heat_map is not None and review.rel == rel,
                     900.0)
                print(f"GradCAM of clip {n} ({time.perf_counter() - started:.1f} s): "
                      f"{gaps.stop()}")

            gaps.start()
            after = time.perf_counter()
            spin(app, lambda: time.perf_counter() - after > 1.0, 10.0)
            print(f"right after (1 s): {gaps.stop()}")
            print(f"torch imported in the app process: {'torch' in sys.modules}")
        finally:
            window.close()
            window.deleteLater()
            app.processEvents()
    return 0


if __name__ == "__main__":
    sys.exit(main())
