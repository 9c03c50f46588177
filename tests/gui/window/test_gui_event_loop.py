"""The window never stalls while a model works: scoring the project and GradCAM run in a
child process (core ``ModelProcess``), so a 10 ms timer in the GUI thread keeps ticking, and a
model whose forward never returns is killed after the timeout and reported in the clip list.
A real event loop, real DICOM clips, a real tiny checkpoint, a real hostile TorchScript file."""
from __future__ import annotations

import time

import pytest
from PySide6.QtCore import QTimer

from hostile_models import write_hanging_torchscript

pytestmark = [pytest.mark.slow,  # child processes
              pytest.mark.usefixtures("app_heap")]

TIMEOUT = 120000
MAX_GAP_MS = 1000  # generous: the target is 100 ms, but a busy 2-core machine starves any
# process for hundreds of ms; with torch in the app process the gap was 3 s and more


class GapProbe:
    """A 10 ms QTimer in the GUI thread that records the largest time between its ticks."""

    def __init__(self) -> None:
        self.timer = QTimer(interval=10)
        self.timer.timeout.connect(self._tick)
        self.largest_ms = 0.0
        self._last = 0.0

    def start(self) -> None:
        self._last = time.perf_counter()
        self.timer.start()

    def _tick(self) -> None:
        now = time.perf_counter()
        self.largest_ms = max(self.largest_ms, (now - self._last) * 1000)
        self._last = now

    def stop(self) -> float:
        self._tick()
        self.timer.stop()
        return self.largest_ms


@pytest.fixture
def tiny(tiny_project, open_project):
    """A 6-clip project (4 frames of 48x64), every clip labelled, open in the window."""
    return open_project(tiny_project(n_clips=6, n_frames=4, height=48, width=64, seed=7).parent)


def test_scoring_and_gradcam_leave_the_event_loop_free(qtbot, studio_window, tiny,
                                                      tiny_checkpoint):
    session, review = studio_window.session, studio_window.review
    probe = GapProbe()
    probe.start()
    with qtbot.waitSignal(session.scores_changed, timeout=TIMEOUT,
                          check_params_cb=lambda *_: bool(session.scores)):
        session.set_model(tiny_checkpoint)
    scoring_gap = probe.largest_ms
    assert set(session.scores) == {c.rel for c in tiny.clips}

    rel = tiny.clips[-1].rel
    studio_window.tabs.setCurrentWidget(review)
    review.show_clip(rel)
    qtbot.waitUntil(lambda: review.heat_map is not None and review.rel == rel, timeout=TIMEOUT)
    assert review.heat_map.result.path == tiny.root / rel
    assert review.heat_map.result.maps.shape == (4, 48, 48)
    qtbot.wait(300)  # right after: results unpacked, nothing left to stall
    largest = probe.stop()
    assert largest < MAX_GAP_MS, (f"the event loop stalled {largest:.0f} ms "
                                  f"(scoring: {scoring_gap:.0f} ms)")
    # GradCAM of the next clip: the child is warm (torch and the model already loaded).
    other = tiny.clips[0].rel
    started = time.perf_counter()
    review.show_clip(other)
    qtbot.waitUntil(lambda: review.heat_map is not None and review.rel == other,
                    timeout=TIMEOUT)
    assert review.worker.process.pid is not None
    assert time.perf_counter() - started < 30
    # Adjudicate's GradCAM runs in the same warm child (one torch and model, not two)
    assert studio_window.adjudication.worker.process is review.worker.process
    assert review.worker.process is not session.model_process()  # scoring never blocks it


def test_a_model_whose_forward_never_returns_is_killed_and_reported(
        qtbot, studio_window, tiny, tmp_path):
    session, panel = studio_window.session, studio_window.clip_list
    session.forward_timeout = 2.0
    hang = write_hanging_torchscript(tmp_path / "hang.ts.pt")
    session.trusted_exports.add(hang)  # the user confirmed the TorchScript warning
    probe = GapProbe()
    probe.start()
    with qtbot.waitSignal(session.scoring_failed, timeout=TIMEOUT) as failed:
        session.set_model(hang)
    text = failed.args[0]
    assert text.startswith("Scoring stopped: the model did not answer within 2 s "
                           "(a forward pass)"), text
    qtbot.waitUntil(lambda: not session.scoring, timeout=TIMEOUT)
    assert panel.scoring_error.isVisible() and panel.scoring_error.text() == text
    assert not panel.scoring_bar.isVisible() and not session.scores
    assert session.model_process().pid is None  # the spinning child was killed
    assert probe.stop() < MAX_GAP_MS
