"""The Train tab while a real CPU training runs, offscreen: time from the "Train" click to the
first plotted point, the largest UI stall (gap between 10 ms timer ticks on the UI thread) and
the frame rate the cine player achieves playing a 480x640 30 fps clip meanwhile, and the largest
stall right after the run (the new model loaded and the project's clips scored).

    QT_QPA_PLATFORM=offscreen .venv/bin/python benchmarks/bench_gui_train.py [--epochs 2]
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import numpy as np
from _timing import Gaps, spin
from PySide6.QtCore import QSettings
from PySide6.QtWidgets import QApplication

from echoquality_core.demo.project import synthetic_clip, write_demo_project, write_dicom_clip


def played_fps(app: QApplication, player, seconds: float | None, until=None) -> float:
    """Frames the player put on screen per second while playing (for ``seconds`` or until)."""
    shown, start = player.frames_shown, time.perf_counter()
    player.play()
    if seconds is not None:
        spin(app, lambda: time.perf_counter() - start > seconds, timeout=900.0)
    else:
        spin(app, until, timeout=900.0)
    fps = (player.frames_shown - shown) / (time.perf_counter() - start)
    player.pause()
    return fps


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--clips", type=int, default=12)
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
        write_demo_project(root, n_clips=args.clips, n_frames=8, height=96, width=128, seed=3,
                           unlabelled=0.1)
        cine = write_dicom_clip(tmp / "cine.dcm", synthetic_clip(
            np.random.default_rng(1), "good", n_frames=60, height=480, width=640), fps=30.0)
        window = MainWindow()
        window.resize(1366, 768)
        window.show()
        try:
            window.open_project(root)
            spin(app, lambda: not window.session.scanning, timeout=900.0)
            panel, player = window.train_panel, window.player
            window.tabs.setCurrentWidget(panel)  # showing the tab starts its device probe
            spin(app, lambda: "finding" not in panel.form.device_info.text(), timeout=600)
            window.tabs.setCurrentIndex(0)  # the Label tab stays in front
            player.open_clip(cine)
            spin(app, lambda: player.first_frame_seconds is not None, timeout=900.0)
            played_fps(app, player, 3.0)  # decode and cache the clip once
            gaps = Gaps()
            gaps.start()
            idle_fps = played_fps(app, player, 3.0)
            print(f"idle: cine {idle_fps:.1f} frames/s shown (clip 30 fps); UI timer "
                  f"{gaps.stop()}")

            form = panel.form
            form.epochs.setValue(args.epochs)
            form.batch_size.setValue(2)
            form.n_frames.setValue(4)
            panel.extra = {"stride": 1, "device": "cpu", "log_mlflow_model": False}
            gaps.start()
            clicked = time.perf_counter()
            panel.train_button.click()  # the Label tab stays in front; training runs behind it
            first_point: list[float] = []
            panel.worker.batch_end.connect(
                lambda _e: first_point or first_point.append(time.perf_counter() - clicked))
            fps = played_fps(app, player, None, until=lambda: not panel.running)
            took = time.perf_counter() - clicked
            stalls = gaps.stop()
            end = panel.last_end
            print(f"training ({form.device_info.text()}, {args.clips} clips, {args.epochs} epochs, "
                  f"batch 2, 4 frames): {took:.1f} s, outcome: {panel.stage.text()}")
            print(f"  Train click -> first plotted point: {first_point[0]:.1f} s")
            print(f"  while training: cine {fps:.1f} frames/s shown; UI timer {stalls}")
            if end is None or end.error is not None:
                print(f"  training did not finish cleanly: {end}")
                return 1
            gaps.start()  # right after: the new model is loaded and the project scored
            after = time.perf_counter()
            spin(app, lambda: panel.verdict is not None, timeout=900.0)
            if not panel.verdict.adopt:  # a tiny run cannot show it beats chance
                panel.use_model()
            spin(app, lambda: time.perf_counter() - after > 1.0 and not window.session.scoring,
                 timeout=900.0)
            print(f"  right after the run ({time.perf_counter() - after:.1f} s, new model "
                  f"loaded and {len(window.session.scores)} clips scored): UI timer {gaps.stop()}")
        finally:
            window.close()
            window.deleteLater()
            app.processEvents()
    return 0


if __name__ == "__main__":
    sys.exit(main())
