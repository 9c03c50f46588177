"""The window's event loop, offscreen, on the real demo project (40 clips of 48x480x640, a
16x112x112 model input): the gaps between the ticks of a 10 ms timer on the UI thread

- control: a bare event loop (no window), the machine's own noise in the same run;
- idle: the window shown, the project open, nothing asked of it;
- opening the 40-clip project (from the call until the first clip is on screen and the
  header scan is done);
- loading a model and scoring every clip;
- GradCAM of a clip in the Review tab (first, then a second clip);
- right after (1 s);
- the Train tab shown (its device probe), then a real training run from it (1 epoch, batch 2,
  4 frames, CPU, on the project's clips; the Label tab in front);
- right after the training run: the run judged (a 1000-resample bootstrap, in a thread), its
  model made the project's (on its own, or as by "Use this model") and every clip scored, the
  Review tab shown on the run's test split, and 1 s more.

Each repeat starts a fresh window on a fresh copy of the project (no preprocessing cache).
Prints the longest stall and the 99th percentile per step and repeat, the longest over all
repeats, the load average and the CPU model, and whether torch was imported into the app's
process (it should not be: the model runs in a child process).

The checkpoint (a seeded, random R(2+1)D-18) is written by a separate interpreter, so the app
process starts without torch, as it does for a user.

    QT_QPA_PLATFORM=offscreen .venv/bin/python benchmarks/bench_event_loop.py [--repeats 3]
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import numpy as np
from _timing import Gaps, cpu_model, spin
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



def load() -> str:
    return " ".join(f"{x:.1f}" for x in os.getloadavg())


class Record:
    """Gaps per step over the repeats."""

    def __init__(self) -> None:
        self.steps: dict[str, list[list[int]]] = {}

    def watch(self, app: QApplication, name: str, work, until, timeout: float = 900.0) -> None:
        gaps = Gaps()
        gaps.start()
        started = time.perf_counter()
        work()
        spin(app, until, timeout)
        gaps.stop()
        self.steps.setdefault(name, []).append(list(gaps.gaps))
        g = np.array(gaps.gaps)
        print(f"  {name:<22} {time.perf_counter() - started:6.1f} s: longest {g.max():4d} ms, "
              f"99th percentile {np.percentile(g, 99):4.0f} ms, {int((g > 100).sum())} > 100 ms"
              f"  (load {load()})", flush=True)

    def summary(self) -> None:
        print(f"over {len(next(iter(self.steps.values())))} repeats:")
        for name, runs in self.steps.items():
            longest = [max(r) for r in runs]
            p99 = [np.percentile(r, 99) for r in runs]
            print(f"  {name:<22} longest stall {max(longest):4d} ms (per repeat "
                  f"{', '.join(map(str, longest))}), 99th percentile max {max(p99):4.0f} ms")


def after(seconds: float):
    start = time.perf_counter()
    return lambda: time.perf_counter() - start > seconds


class AfterTraining:
    """What follows a finished run, as the user sees it: the verdict, the run's model used
    ("Use this model" when it was not adopted on its own), every clip scored, then the Review
    tab on the run's test split for 1 s. Called as the step's ``until``."""

    def __init__(self, window) -> None:
        self.window, self.used, self.shown_at = window, False, None

    def __call__(self) -> bool:
        panel, session, review = self.window.train_panel, self.window.session, \
            self.window.review
        if panel.verdict is None:
            return False
        if not self.used:
            self.used = True
            if not panel.verdict.adopt:  # a 1-epoch run cannot show it beats chance
                panel.use_model()
            return False
        if session.scoring or session.model_path != panel.last_end.best_checkpoint \
                or len(session.scores) < len(session.project.clips):
            return False
        if self.shown_at is None:
            self.window.tabs.setCurrentWidget(review)
            self.shown_at = time.perf_counter()
        return (review.review_set is not None and review.review_set.source.startswith("Run")
                and time.perf_counter() - self.shown_at > 1.0)


def train_one_epoch(window) -> None:
    """Start a 1-epoch CPU run from the Train tab's form, the Label tab in front."""
    panel = window.train_panel
    panel.form.epochs.setValue(1)
    panel.form.batch_size.setValue(2)
    panel.form.n_frames.setValue(4)
    panel.extra = {"stride": 1, "device": "cpu", "log_mlflow_model": False}
    window.tabs.setCurrentIndex(0)
    panel.train_button.click()


def one_repeat(app: QApplication, record: Record, source: Path, root: Path, model: Path) -> None:
    from echoquality_gui.common.garbage import freeze_start_up
    from echoquality_gui.window.main_window import MainWindow

    shutil.rmtree(root, ignore_errors=True)
    shutil.copytree(source, root)
    deadline = [0.0]
    record.watch(app, "control (no window)", lambda: deadline.__setitem__(
        0, time.perf_counter() + 2.0), lambda: time.perf_counter() > deadline[0])
    window = MainWindow()
    window.resize(1366, 768)
    window.show()
    freeze_start_up()  # as the app's main does once its window is up
    try:
        spin(app, after(1.0), 10.0)  # the window's own start-up work done
        session, review = window.session, window.review
        record.watch(app, "open 40-clip project", lambda: window.open_project(root),
                     lambda: (not session.scanning and window.player.frames_shown > 0))
        record.watch(app, "idle (2 s)", lambda: deadline.__setitem__(
            0, time.perf_counter() + 2.0), lambda: time.perf_counter() > deadline[0])
        record.watch(app, "model + score clips", lambda: session.set_model(model),
                     lambda: len(session.scores) == len(session.project.clips)
                     and not session.scoring)
        window.tabs.setCurrentWidget(review)
        for n, rel in enumerate([c.rel for c in session.project.clips][:2], start=1):
            record.watch(app, f"GradCAM clip {n}", lambda rel=rel: review.show_clip(rel),
                         lambda rel=rel: review.heat_map is not None and review.rel == rel)
        record.watch(app, "right after (1 s)", lambda: deadline.__setitem__(
            0, time.perf_counter() + 1.0), lambda: time.perf_counter() > deadline[0])
        panel = window.train_panel
        record.watch(app, "Train tab shown", lambda: window.tabs.setCurrentWidget(
            panel), lambda: "finding" not in panel.form.device_info.text())
        record.watch(app, "training run (1 epoch)", lambda: train_one_epoch(window),
                     lambda: panel.last_end is not None and not panel.running)
        end = panel.last_end
        if end.error is not None or end.best_checkpoint is None:
            raise RuntimeError(f"the training run did not finish: {end}")
        record.watch(app, "right after training", lambda: None, AfterTraining(window))
    finally:
        window.close()
        window.deleteLater()
        app.processEvents()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--clips", type=int, default=40)
    parser.add_argument("--frames", type=int, default=16, help="frames the model sees")
    parser.add_argument("--size", type=int, default=112, help="model input size (pixels)")
    args = parser.parse_args()
    app = QApplication.instance() or QApplication(sys.argv[:1])
    from echoquality_gui.app import configure_application

    print(f"{cpu_model()}, {os.cpu_count()} CPUs; load average {load()}", flush=True)
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        QSettings.setPath(QSettings.Format.IniFormat, QSettings.Scope.UserScope,
                          str(tmp / "settings"))
        configure_application(app)
        source = tmp / "demo"
        write_demo_project(source, n_clips=args.clips, seed=3, unlabelled=0.0)
        model = tmp / "best.pt"
        subprocess.run([sys.executable, "-c", WRITE_MODEL, str(model), str(args.frames),
                        str(args.size)], check=True)
        record = Record()
        for n in range(1, args.repeats + 1):
            print(f"repeat {n}:", flush=True)
            one_repeat(app, record, source, tmp / "project", model)
        record.summary()
        print(f"load average {load()}; torch imported in the app process: "
              f"{'torch' in sys.modules}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
