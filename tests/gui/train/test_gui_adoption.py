"""After a run, the Train tab shows whether its model beats chance (test AUC with its CI) and
makes it the project's model only as the core's adoption rule says; otherwise "Use this model"
does it. The run's end is given to the tab's end slot (no training: a real checkpoint and a
real test_predictions.csv in a run folder); the scoring that follows adoption is real."""
from __future__ import annotations

import pytest
from PySide6.QtCore import Qt

from echoquality_core.runs.folder import RunFolder
from echoquality_core.train.events import TrainEnd


def finished_run(path, checkpoint, rels, scores) -> TrainEnd:
    """A run folder whose test clips ``rels`` (alternately good and poor) got ``scores``."""
    labels = [float(i % 2 == 0) for i in range(len(rels))]
    path.mkdir(exist_ok=True)
    RunFolder(path).write_predictions(
        [{"path": rel, "label": y, "score": s} for rel, y, s in zip(rels, labels, scores)],
        {rel: rel for rel in rels})
    return TrainEnd(checkpoint, {"roc_auc": 0.5}, None, best_epoch=1, run_dir=path)


@pytest.mark.slow  # a few seconds: the fast tier stays under 4 minutes
def test_chance_needs_use_this_model_a_clear_model_is_adopted(studio_window, open_project, qtbot,
                                                             tiny_project, tiny_checkpoint,
                                                             tmp_path, screenshot):
    project = open_project(tiny_project(n_clips=10).parent)
    session, panel = studio_window.session, studio_window.train_panel
    studio_window.tabs.setCurrentWidget(panel)
    panel._project_root = project.root  # the runs below were trained on this project
    rels = [c.rel for c in project.clips][:10]

    chance = [0.5] * len(rels)  # every clip the same score: AUC 0.5
    end = finished_run(tmp_path / "run1", tiny_checkpoint, rels, chance)
    panel._on_end(end)
    qtbot.waitUntil(lambda: panel.verdict is not None, timeout=20000)
    assert not panel.verdict.adopt and not panel.verdict.beats_chance
    assert session.model_path is None and panel.results.use_button.isVisible()
    text = panel.summary.toPlainText()
    assert "Test AUC 0.50 (95% CI" in text and "includes 0.5" in text
    assert "This is now the project's model" not in text
    screenshot(panel, "train_tab_use_this_model.png")

    with qtbot.waitSignal(session.scores_changed, timeout=60000,
                          check_params_cb=lambda: bool(session.scores)):
        qtbot.mouseClick(panel.results.use_button, Qt.MouseButton.LeftButton)
    assert session.model_path == tiny_checkpoint and not panel.results.use_button.isVisible()
    assert "This is now the project's model" in panel.summary.toPlainText()

    # a clear model (AUC 1, CI above 0.5), at least as good as the current one on these clips
    clear = [0.9 if i % 2 == 0 else 0.1 for i in range(len(rels))]
    second = tmp_path / "run2"
    second_model = second / "best.pt"
    second.mkdir()
    second_model.write_bytes(tiny_checkpoint.read_bytes())
    panel._on_end(finished_run(second, second_model, rels, clear))
    qtbot.waitUntil(lambda: session.model_path == second_model, timeout=20000)
    assert panel.verdict.adopt and panel.verdict.beats_chance
    assert panel.verdict.current_auc is not None  # compared with the model it replaces
    assert "beats chance" in panel.summary.toPlainText()
    assert not panel.results.use_button.isVisible()


def test_a_long_run_is_called_out_from_its_measured_batches(studio_window, qtbot):
    """Issue 22.2: the batches the child timed give the run's duration; over 15 min the tab says
    so (its status, Messages and the status bar)."""
    from echoquality_core.train.estimate import StepClock
    from echoquality_core.train.events import BatchEnd

    panel = studio_window.train_panel
    studio_window.tabs.setCurrentWidget(panel)
    panel._clock = StepClock.for_settings({"epochs": 20})  # what start() sets for a run
    said = []
    studio_window.session.message.connect(said.append)
    for step, seconds in enumerate([30.0, 6.5, 5.5, 9.0], start=1):  # the first: warm-up
        panel._on_batch(BatchEnd(1, step, 18, 0.69, seconds))  # the fourth comes too late
    text = panel.status.estimate.text()
    assert panel.status.estimate.isVisible() and "Measured 6 s per batch" in text
    assert "about 39 min" in text and "over 15 min" in text
    assert said == [text] and "over 15 min" in panel.messages.toPlainText()


def test_the_next_run_is_estimated_from_the_speed_measured_here(studio_window, open_project,
                                                                project_copy):
    """Before Train is clicked: the speed measured on this computer for this kind of run,
    scaled to the form's batch size, frames and epochs, gives the next run's duration (on the
    same device; another device's speed is not used)."""
    from echoquality_core.train.estimate import StepSpeed, expected_run

    project = open_project(project_copy)
    panel = studio_window.train_panel
    controls = panel.controls
    speed = StepSpeed(trunk=0.2, train=0.1, evaluate=0.03)
    controls.remember_speed(speed, controls._next_run())  # as a measurement would
    studio_window.tabs.setCurrentWidget(panel)
    form, estimate = panel.form, panel.status.estimate
    form.batch_size.setValue(4)  # any change of the form estimates again
    assert estimate.isVisible() and estimate.text().startswith("About ")
    assert "(measured on this computer)" in estimate.text()
    assert estimate.text() == expected_run(controls._next_run(), len(project.store),
                                           speed).text()
    form.epochs.setValue(1000)
    assert "over 15 min" in estimate.text() and "#" in estimate.styleSheet()  # yellow
    form.augment.setChecked(True)  # no frozen-trunk cache: every epoch runs the trunk
    assert estimate.text() == expected_run(controls._next_run(), len(project.store),
                                           speed).text()
    form.set_device_choices([("Auto", {"device": "auto"}), ("CPU", {"device": "cpu"})])
    form.device.setCurrentIndex(1)  # nothing measured the CPU chosen by name yet
    assert not (estimate.isVisible() and estimate.text().startswith("About "))
