"""The Train tab runs a real (tiny, CPU) training in a thread: live plots, the run's measured
duration, summary; a tiny run's model cannot be shown to beat chance, so "Use this model" makes
it the project's model and scores the clips; Stop keeps the best model, Cancel discards it,
both promptly; errors show in the tab; the window stays responsive meanwhile."""
from __future__ import annotations

import dataclasses
import re
import time

import pytest
from PySide6.QtCore import QElapsedTimer, Qt, QTimer

from echoquality_core.demo.project import write_demo_project
from echoquality_core.train.events import BatchEnd, EpochEnd
from echoquality_core.labels.store import LabelStore
from echoquality_gui.label.clip_list import COLUMNS

RUN_TIMEOUT_MS = 300_000  # a loaded 2-core CI machine; an idle laptop needs ~30 s per run
HALT_SECONDS = 2.0
STOP_SHOWN_SECONDS = 0.1  # Stop: "Stopping — keeping the best model" is up (issue 22.4)
STOP_HALT_SECONDS = 1.0  # Stop: the training compute has halted
STOP_FREE_SECONDS = 2.0  # Stop: Train can be clicked again (saving goes on in the background)
MID_EPOCH_SPLIT = (0.75, 0.25, 0.0)  # 9 training clips: 5 batches, so a click lands mid-epoch
# Training itself runs in a child process and does not stall the window; the longest stalls
# measured (up to ~3.7 s on a loaded 2-core machine) come right after a run ends, while the new
# model is loaded and the clips scored in-process. Bound generously; the numbers are printed.
MAX_UI_STALL = 5.0


def demo_root(tmp_path):
    root = tmp_path / "project"
    write_demo_project(root, n_clips=12, n_frames=8, height=96, width=128, seed=3,
                       unlabelled=0.1)
    return root


def fast_settings(panel, epochs: int) -> None:
    """Small, fast CPU settings: through the form, plus TrainConfig overrides in ``extra``."""
    form = panel.form
    form.epochs.setValue(epochs)
    form.batch_size.setValue(2)
    form.n_frames.setValue(4)
    form.layers.setValue(1)
    form.learning_rate.setCurrentText("1e-3")
    panel.extra = {"stride": 1, "device": "cpu", "log_mlflow_model": False}


class Watch:
    """Arrival times of a run's batch/epoch signals and the largest gap between 10 ms UI ticks."""

    def __init__(self, panel):
        self.batches: list[tuple[float, BatchEnd]] = []
        self.epochs: list[EpochEnd] = []
        worker = panel.worker
        worker.batch_end.connect(lambda e: self.batches.append((time.perf_counter(), e)))
        worker.epoch_end.connect(self.epochs.append)
        self.testing_at: float | None = None  # when training halted (saving, testing began)
        worker.progress.connect(self._progress)
        self.max_gap_ms = 0
        self.long_gaps: list[tuple[float, int]] = []  # (seconds into the run, gap ms)
        self._started = time.perf_counter()
        self._clock = QElapsedTimer()
        self._clock.start()
        self._timer = QTimer()
        self._timer.setTimerType(Qt.TimerType.PreciseTimer)
        self._timer.setInterval(10)
        self._timer.timeout.connect(self._tick)
        self._timer.start()

    def _progress(self, event) -> None:
        if event.stage in ("finish", "test") and self.testing_at is None:
            self.testing_at = time.perf_counter()

    def _tick(self) -> None:
        gap = self._clock.restart()
        if gap > 200:
            self.long_gaps.append((round(time.perf_counter() - self._started, 1), gap))
        self.max_gap_ms = max(self.max_gap_ms, gap)

    def stop(self) -> None:
        self._timer.stop()

    def in_epoch(self, epoch: int) -> bool:
        return any(e.epoch == epoch for _, e in self.batches)

    def batches_after(self, clicked: float) -> int:
        return sum(t >= clicked for t, _ in self.batches)


def start(qtbot, window, epochs: int, **extra):
    panel = window.train_panel
    window.tabs.setCurrentWidget(panel)
    fast_settings(panel, epochs)
    panel.extra.update(extra)
    qtbot.mouseClick(panel.train_button, Qt.MouseButton.LeftButton)
    assert panel.running and not panel.train_button.isEnabled() and panel.stop_button.isEnabled()
    return panel, Watch(panel)


def use_model(qtbot, panel) -> None:
    """The run's model was judged and not adopted on its own (no test clips, or too few to
    beat chance): click "Use this model"."""
    qtbot.waitUntil(lambda: panel.verdict is not None, timeout=RUN_TIMEOUT_MS)
    assert not panel.verdict.adopt and panel.results.use_button.isVisible()
    assert panel.session.model_path != panel.last_end.best_checkpoint
    qtbot.mouseClick(panel.results.use_button, Qt.MouseButton.LeftButton)


def assert_prompt(what: str, latency: float, watch: Watch, clicked: float) -> None:
    """Training halted within 2 s of the click: the core checks Stop/Cancel at every block of
    the network, so the batch in flight is abandoned rather than finished."""
    print(f"{what}: training halted {latency:.2f} s after the click")
    assert latency <= HALT_SECONDS
    assert watch.batches_after(clicked) <= 1  # at most the batch that was about to end


def test_form_defaults_are_the_core_defaults(studio_window, open_project, project_copy):
    from echoquality_core.train.trainer import TrainConfig

    defaults = {f.name: f.default for f in dataclasses.fields(TrainConfig)}
    form = studio_window.train_panel.form
    assert form.DEFAULTS == {k: defaults[k] for k in form.DEFAULTS}
    assert form.values() == {**form.DEFAULTS, "model_weights": None, "device": "auto"}
    assert form.weights_warning.isVisibleTo(form)
    form.weights.set_spec("/models/video_quality_model.pt")
    assert not form.weights_warning.isVisibleTo(form)

    project = open_project(project_copy)
    panel = studio_window.train_panel
    panel.extra = {"stride": 1}
    assert panel.settings() | {"model_weights": None} == {
        **form.DEFAULTS, "model_weights": None, "annotations_csv": str(project.csv_path),
        "videos_dir": str(project.root), "stride": 1, "device": "auto"}
    form.learning_rate.setCurrentText("fast")
    assert not panel.start()
    assert "not a number" in panel.error_banner.text() and panel.error_banner.isVisibleTo(panel)


@pytest.mark.slow  # a few seconds: the fast tier stays under 4 minutes
def test_device_choice_reaches_the_training_config(studio_window, open_project, project_copy,
                                                   qtbot):
    """The Device list is found in a worker when the tab is first shown (torch is not imported
    at start-up): Auto, CPU and each GPU of this machine; the choice is what the training child
    gets, "All GPUs (N)" as N DDP ranks (see e2e/test_train_process for such a run)."""
    from echoquality_core.train.trainer import TrainConfig
    from echoquality_core.jobs.devices import device_choices

    open_project(project_copy)
    panel = studio_window.train_panel
    studio_window.tabs.setCurrentWidget(panel)
    qtbot.waitUntil(lambda: panel.form.device_info.text() != "finding…", timeout=60_000)
    combo = panel.form.device
    expected = [label for label, _ in device_choices()]
    assert [combo.itemText(i) for i in range(combo.count())] == expected
    assert expected[:2] == ["Auto", "CPU"] and panel.form.device_info.text()
    combo.setCurrentIndex(combo.findText("CPU"))
    settings = panel.settings()
    assert settings["device"] == "cpu" and "ranks" not in settings
    assert TrainConfig(**settings).device == "cpu"

    # a machine with two GPUs lists them and "All GPUs (2)" (this one has none to find)
    panel.form.set_device_choices([*device_choices()[:2], ("GPU 0: A", {"device": "cuda:0"}),
                                   ("GPU 1: B", {"device": "cuda:1"}),
                                   ("All GPUs (2)", {"device": "cuda", "ranks": 2})])
    assert combo.currentText() == "CPU"  # the choice is kept when the list is refreshed
    combo.setCurrentIndex(combo.findText("All GPUs (2)"))
    settings = panel.settings()
    assert settings["device"] == "cuda" and settings["ranks"] == 2


@pytest.mark.slow
@pytest.mark.usefixtures("app_heap")  # times the event loop
def test_train_click_plots_summary_model_and_scores(studio_window, open_project, qtbot, tmp_path,
                                                    screenshot):
    from echoquality_core.runs.tracking import default_tracking_uri, list_runs

    project = open_project(demo_root(tmp_path))
    session = studio_window.session
    clicked = time.perf_counter()
    panel, watch = start(qtbot, studio_window, epochs=1)
    qtbot.waitUntil(lambda: bool(watch.batches), timeout=RUN_TIMEOUT_MS)
    first_point = time.perf_counter() - clicked
    qtbot.waitUntil(lambda: panel.plots.point_counts()["batch"] > 0, timeout=1000)

    # labelling and playback go on while it trains
    studio_window.tabs.setCurrentIndex(0)
    rel = session.current.rel
    assert session.label(rel) is None
    qtbot.keyClick(studio_window, "1")
    session.saver.flush()  # the CSV is written in the background
    assert LabelStore(project.csv_path, root=project.root).get(rel).quality_score == 1.0
    studio_window.player.play()
    shown = studio_window.player.frames_shown
    qtbot.waitUntil(lambda: studio_window.player.frames_shown >= shown + 5, timeout=5000)
    studio_window.tabs.setCurrentWidget(panel)

    with qtbot.waitSignal(session.scores_changed, timeout=RUN_TIMEOUT_MS,
                          check_params_cb=lambda: bool(session.scores)):
        with qtbot.waitSignal(panel.ended, timeout=RUN_TIMEOUT_MS) as ended:
            pass
        watch.stop()
        use_model(qtbot, panel)
    end = ended.args[0]
    assert "Test AUC" in panel.summary.toPlainText() and "includes 0.5" in \
        panel.summary.toPlainText()  # 2 test clips cannot show that it beats chance
    assert re.search(r"Measured [\d.]+ s per batch: this run takes about",
                     panel.messages.toPlainText())  # the run's duration from its first batches
    print(f"first plotted point {first_point:.1f} s after the click; largest UI stall "
          f"{watch.max_gap_ms} ms; stalls > 200 ms (s into run, ms): {watch.long_gaps}")
    assert end.error is None and not end.stopped and end.best_epoch == 1, end
    counts = panel.plots.point_counts()
    assert counts["batch"] == counts["smooth"] == len(watch.batches) > 0
    assert counts["train"] == counts["val"] == counts["lr"] == 1
    assert panel.plots.best_epoch == 1 and panel.plots.best_lines[0].isVisible()
    assert end.best_checkpoint.is_file() and end.run_id in panel.summary.toPlainText()
    assert "Test:" in panel.summary.toPlainText() and "Finished" in panel.stage.text()
    assert "; frozen-trunk cache on (stem, layer1, layer2, layer3, layer4 computed once per clip)" \
        in panel.messages.toPlainText()  # the setup line, with the precision before it
    runs = list_runs(default_tracking_uri(project.root))
    assert [(r["run_id"], r["status"]) for r in runs] == [(end.run_id, "FINISHED")]
    assert session.model_path == end.best_checkpoint and session.threshold == end.threshold
    assert set(session.scores) == {c.rel for c in project.clips}
    assert not studio_window.clip_list.view.isColumnHidden(COLUMNS.index("Model"))
    qtbot.waitUntil(lambda: "Scored" in panel.summary.toPlainText(), timeout=2000)
    assert watch.max_gap_ms <= MAX_UI_STALL * 1000
    screenshot(studio_window, "train_tab_finished.png")


@pytest.mark.slow
@pytest.mark.usefixtures("app_heap")  # times the event loop
def test_stop_in_epoch_two_keeps_epoch_one_model(studio_window, open_project, qtbot, tmp_path,
                                                 screenshot):
    """Issue 22.4: "Stopping — keeping the best model" shows within 100 ms of the click, the
    training compute halts within 1 s, Train is usable again within 2 s; saving, testing and
    logging the kept model go on in the background and are reported when done."""
    open_project(demo_root(tmp_path))
    panel, watch = start(qtbot, studio_window, epochs=2, split=MID_EPOCH_SPLIT,
                         frozen_trunk_cache=False)  # epoch 2 as slow as epoch 1: Stop lands in it
    ends = []
    panel.ended.connect(ends.append)
    qtbot.waitUntil(lambda: watch.in_epoch(2), timeout=RUN_TIMEOUT_MS)
    assert len(watch.epochs) == 1 and watch.epochs[0].best
    screenshot(studio_window, "train_tab_running.png")
    clicked = time.perf_counter()
    qtbot.mouseClick(panel.stop_button, Qt.MouseButton.LeftButton)
    shown_after = time.perf_counter() - clicked
    assert panel.stage.text().startswith("Stopping — keeping the best model")
    qtbot.waitUntil(panel.train_button.isEnabled, timeout=RUN_TIMEOUT_MS)
    free_after = time.perf_counter() - clicked
    assert not ends and not panel.running and not panel.stop_button.isEnabled()
    assert "in the background" in panel.stage.text()  # the kept model is still being saved
    qtbot.waitUntil(lambda: bool(ends), timeout=RUN_TIMEOUT_MS)
    ended_after = time.perf_counter() - clicked
    watch.stop()
    end = ends[0]
    # halted = saving of the kept model began (or, with no test split, the run ended)
    halted_after = (watch.testing_at or clicked + ended_after) - clicked
    print(f"Stop: stage shown {shown_after * 1000:.0f} ms, compute halted {halted_after:.2f} s, "
          f"Train usable {free_after:.2f} s, run ended (best model saved, logged) "
          f"{ended_after:.1f} s after the click; largest UI stall {watch.max_gap_ms} ms "
          f"{watch.long_gaps}")
    assert shown_after <= STOP_SHOWN_SECONDS
    assert halted_after <= STOP_HALT_SECONDS and watch.batches_after(clicked) <= 1
    assert free_after <= STOP_FREE_SECONDS
    assert end.stopped and end.error is None and end.best_epoch == 1
    assert end.best_checkpoint.is_file() and len(watch.epochs) == 1
    assert "Stopped" in panel.stage.text() and "epoch 1" in panel.summary.toPlainText()
    use_model(qtbot, panel)  # no test clips: never adopted on its own
    assert "no test clips" in panel.summary.toPlainText()
    assert studio_window.session.model_path == end.best_checkpoint
    assert watch.max_gap_ms <= MAX_UI_STALL * 1000


@pytest.mark.slow
def test_train_again_while_the_stopped_run_saves(studio_window, open_project, qtbot, tmp_path):
    """Train is usable as soon as a stopped run's compute halted: a new run starts while the
    stopped one still saves its model; that one's end is a line in Messages, and the new
    run's model becomes the project's."""
    open_project(demo_root(tmp_path))
    panel, watch = start(qtbot, studio_window, epochs=2, split=MID_EPOCH_SPLIT,
                         frozen_trunk_cache=False)  # epoch 2 as slow as epoch 1: Stop lands in it
    ends = []
    panel.ended.connect(ends.append)
    qtbot.waitUntil(lambda: watch.in_epoch(2), timeout=RUN_TIMEOUT_MS)
    qtbot.mouseClick(panel.stop_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(panel.train_button.isEnabled, timeout=RUN_TIMEOUT_MS)
    watch.stop()
    stopped = panel.finishing
    panel.form.epochs.setValue(1)
    qtbot.mouseClick(panel.train_button, Qt.MouseButton.LeftButton)
    assert panel.running and panel.worker is not stopped
    qtbot.waitUntil(lambda: len(ends) == 2, timeout=RUN_TIMEOUT_MS)
    first, second = ends
    assert first.stopped and first.best_epoch == 1 and first.best_checkpoint.is_file()
    assert "The stopped run: Stopped; kept the best model (epoch 1)" in \
        panel.messages.toPlainText()
    assert not second.stopped and second.error is None and second.best_epoch == 1
    use_model(qtbot, panel)
    assert studio_window.session.model_path == second.best_checkpoint != first.best_checkpoint
    assert "Finished" in panel.stage.text() and panel.finishing is None


@pytest.mark.slow
@pytest.mark.usefixtures("app_heap")  # times the event loop
def test_cancel_in_epoch_two_discards_everything(studio_window, open_project, qtbot, tmp_path):
    from echoquality_core.runs.tracking import default_tracking_uri, list_runs

    project = open_project(demo_root(tmp_path))
    panel, watch = start(qtbot, studio_window, epochs=2, frozen_trunk_cache=False)
    qtbot.waitUntil(lambda: watch.in_epoch(2), timeout=RUN_TIMEOUT_MS)
    kept = list((project.root / "trained_models").rglob("best.pt"))
    assert len(kept) == 1  # epoch 1's best model, about to be thrown away
    clicked = time.perf_counter()
    qtbot.mouseClick(panel.cancel_button, Qt.MouseButton.LeftButton)
    with qtbot.waitSignal(panel.ended, timeout=RUN_TIMEOUT_MS) as ended:
        pass
    ended_after = time.perf_counter() - clicked
    watch.stop()
    end = ended.args[0]
    assert_prompt("Cancel (run ended, files deleted)", ended_after, watch, clicked)
    assert end.cancelled and end.best_checkpoint is None
    assert not kept[0].exists() and not list((project.root / "trained_models").rglob("*.pt"))
    assert [r["status"] for r in list_runs(default_tracking_uri(project.root))] == ["KILLED"]
    assert studio_window.session.model_path is None
    assert "nothing was kept" in panel.summary.toPlainText()
    assert panel.train_button.isEnabled() and not panel.stop_button.isEnabled()


@pytest.mark.slow
@pytest.mark.usefixtures("app_heap")  # times the event loop
def test_closing_the_window_during_a_run_finishes_it_then_closes(studio_window, open_project,
                                                                qtbot, tmp_path):
    open_project(demo_root(tmp_path))
    panel, watch = start(qtbot, studio_window, epochs=1)
    qtbot.waitUntil(lambda: bool(watch.batches), timeout=RUN_TIMEOUT_MS)
    clicked = time.perf_counter()
    assert not studio_window.close()  # not now: the run is stopped, not waited for
    returned = time.perf_counter() - clicked
    assert studio_window.isVisible() and "Finishing training" in panel.stage.text()
    assert "close again to cancel" in studio_window.statusBar().currentMessage()
    qtbot.waitUntil(lambda: not studio_window.isVisible(), timeout=RUN_TIMEOUT_MS)
    watch.stop()
    end = panel.last_end
    print(f"close returned after {returned * 1000:.0f} ms; window closed "
          f"{time.perf_counter() - clicked:.1f} s after; largest UI stall {watch.max_gap_ms} ms "
          f"{watch.long_gaps}")
    assert returned < 0.5 and watch.max_gap_ms <= MAX_UI_STALL * 1000
    assert end.stopped and not end.cancelled and end.error is None


@pytest.mark.slow
@pytest.mark.parametrize("broken", ["missing", "corrupt"])
def test_errors_show_in_the_tab(studio_window, qtbot, tmp_path, broken):
    root = demo_root(tmp_path)
    clips = sorted((root / "clips").glob("*.dcm"))
    if broken == "missing":
        for clip in clips:
            clip.unlink()
    else:
        clips[0].write_bytes(clips[0].read_bytes()[:1500])  # truncated: pixel data lost
    with qtbot.waitSignal(studio_window.session.scan_finished, timeout=20000):
        assert studio_window.open_project(root)
    panel, watch = start(qtbot, studio_window, epochs=1)
    if broken == "missing":
        with qtbot.waitSignal(panel.ended, timeout=RUN_TIMEOUT_MS) as ended:
            pass
        assert ended.args[0].error.kind == "data"
        assert panel.error_banner.isVisibleTo(panel)
        assert "usable labelled clip" in panel.error_banner.text()
        assert "file not found" in panel.messages.toPlainText()
        assert "Training failed" in studio_window.statusBar().currentMessage()
        assert "Failed" in panel.stage.text() and not panel.running
    else:  # a warning; training goes on
        qtbot.waitUntil(lambda: clips[0].name in panel.messages.toPlainText(),
                        timeout=RUN_TIMEOUT_MS)
        assert "left out" in panel.messages.toPlainText()
        assert not panel.error_banner.isVisibleTo(panel) and panel.running
        with qtbot.waitSignal(panel.ended, timeout=RUN_TIMEOUT_MS):
            qtbot.mouseClick(panel.cancel_button, Qt.MouseButton.LeftButton)
    watch.stop()
