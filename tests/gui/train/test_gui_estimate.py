"""Issue 22.2: before the very first run on this computer, the Train tab times one training
step of the real network in a child process and shows the run's duration from it."""
from __future__ import annotations

import time

import pytest

from echoquality_core.train.estimate import expected_run


@pytest.mark.slow  # one real (small) training step in a child: ~10-20 s on 2 busy cores
def test_a_fresh_project_gets_an_estimate_before_any_run(studio_window, open_project,
                                                          project_copy, qtbot):
    """No speed stored: showing the Train tab starts the measurement (after the device probe,
    in a child, off the GUI thread); its result is stored and estimates the run, before any
    run was started."""
    from echoquality_gui.common import settings

    project = open_project(project_copy)
    panel = studio_window.train_panel
    controls, estimate = panel.controls, panel.status.estimate
    panel.form.batch_size.setValue(1)  # a cheap step: 1 clip of 4 frames
    panel.form.n_frames.setValue(4)
    assert controls.stored_speed(controls._next_run()) is None
    assert not estimate.isVisible()  # nothing measured before the tab is shown
    studio_window.tabs.setCurrentWidget(panel)
    qtbot.waitUntil(lambda: estimate.text().startswith("Estimating"), timeout=120000)
    assert estimate.isVisible() and controls._measuring.worker is not None
    qtbot.waitUntil(lambda: estimate.text().startswith("About "), timeout=240000)
    assert "(measured on this computer)" in estimate.text()
    speed = controls.stored_speed(controls._next_run())
    assert speed is not None and speed.trunk > 0 and speed.train > 0
    assert settings.train_speed(controls._speed_kind(controls._next_run())) == speed.to_text()
    assert estimate.text() == expected_run(controls._next_run(), len(project.store),
                                           speed).text()
    assert panel.last_end is None and not panel.running and panel._clock is None  # no run yet
    panel.form.epochs.setValue(1000)  # the stored speed answers at once, no new measurement
    assert controls._measuring.worker is None
    assert estimate.text() == expected_run(controls._next_run(), len(project.store),
                                           speed).text()


def test_train_and_closing_kill_the_measurement(studio_window, open_project, project_copy,
                                                qtbot):
    """A measurement in flight ends (its child killed) when a run starts and when the window
    closes: nothing waits for it and nothing is stored."""
    open_project(project_copy)
    panel = studio_window.train_panel
    controls = panel.controls
    studio_window.tabs.setCurrentWidget(panel)
    qtbot.waitUntil(lambda: controls._measuring.worker is not None, timeout=60000)
    controls.stop_measuring()  # what Train does before its run starts
    # ended (the owner lets go of it once its thread has finished): killed, since a step's child
    # on a busy 2-core machine would still be importing torch. (A lambda connected to the
    # running worker's ``finished`` here was not always called: CI failed on that.)
    qtbot.waitUntil(lambda: controls._measuring.worker is None, timeout=30000)
    assert controls.stored_speed(controls._next_run()) is None

    panel.form.epochs.setValue(3)  # the next change measures again
    assert controls._measuring.worker is not None
    started = time.monotonic()
    studio_window.close()  # waits for the measurement's thread: its child is killed
    assert time.monotonic() - started < 15
    assert controls._measuring.worker is None or controls._measuring.worker.isFinished()
    assert controls.stored_speed(controls._next_run()) is None
