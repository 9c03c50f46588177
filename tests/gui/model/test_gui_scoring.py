"""The current model in the GUI: background scoring of the project's clips (scores in the clip
list and the label panel), model-assisted labelling (U), hiding the score, and "Score a folder"
(CSV with every clip, progress, cancel and resume). A real tiny trained run, real DICOM files."""
from __future__ import annotations

import shutil

import pytest
from PySide6.QtCore import Qt

from echoquality_core.labels.store import LabelStore
from echoquality_core.scoring.score import ClipInput, read_scores, score_clips
from echoquality_core.train.events import Progress
from echoquality_gui.label.clip_list import COLUMNS, REL_ROLE

TIMEOUT = 60000


def column(panel, name: str) -> list[str]:
    col = COLUMNS.index(name)
    role = REL_ROLE if name == "File" else Qt.ItemDataRole.DisplayRole  # path, not the name
    return [panel.proxy.index(r, col).data(role) for r in range(panel.proxy.rowCount())]


@pytest.fixture
def trained_copy(trained_run, tmp_path):
    """A private copy of the trained run's project with half its clips unlabelled; and the run."""
    root, end = trained_run
    copy = shutil.copytree(root, tmp_path / "project", ignore=shutil.ignore_patterns(
        "mlruns.db", "mlartifacts", ".echoquality"))
    store = LabelStore(copy / "labels.csv")
    for rel in store.paths()[::2]:
        store.remove(rel, save=False)
    store.save()
    return copy, end


def load_model(qtbot, session, path, **kwargs):
    progress = []
    session.scoring_progress.connect(lambda done, total: progress.append((done, total)))
    with qtbot.waitSignal(session.scores_changed, timeout=TIMEOUT,
                          check_params_cb=lambda *_: bool(session.scores)):
        session.set_model(path, **kwargs)
    return progress


def test_set_model_scores_every_clip_into_the_clip_list(qtbot, studio_window, open_project,
                                                        trained_copy):
    root, end = trained_copy
    project = open_project(root)
    session, panel = studio_window.session, studio_window.clip_list
    models = []
    session.model_changed.connect(models.append)
    progress = load_model(qtbot, session, end.best_checkpoint, run_dir=end.run_dir)

    assert models == [end.best_checkpoint] and session.run_dir == end.run_dir
    assert session.threshold == pytest.approx(end.threshold)  # the checkpoint's own
    n = len(project.clips)
    assert set(session.scores) == {c.rel for c in project.clips}
    assert progress[-1] == (n, n) and not panel.scoring_bar.isVisible()
    assert not panel.view.isColumnHidden(COLUMNS.index("Model"))
    shown = dict(zip(column(panel, "File"), column(panel, "Model"), strict=True))
    assert shown == {rel: f"{score:.2f}" for rel, score in session.scores.items()}
    tip = panel.proxy.index(0, COLUMNS.index("Model")).data(Qt.ItemDataRole.ToolTipRole)
    assert tip.startswith("Model score") and f"{session.threshold:.2f}" in tip
    # The same numbers as the core gives (a few clips, to keep the test fast).
    some = project.clips[:4]
    direct = score_clips([ClipInput(c.path, c.rel) for c in some], end.best_checkpoint)
    assert dict(zip(direct["video_path"], direct["score"], strict=True)) == pytest.approx(
        {c.rel: session.scores[c.rel] for c in some}, abs=1e-5)
    assert any((project.root / ".echoquality" / "cache").glob("*.npy"))

    # A bad weights file: a message, and the trained model stays.
    bad = root / "bad_weights.pt"
    bad.write_bytes(b"this is not a model" * 100)
    scores = dict(session.scores)
    with qtbot.waitSignal(session.message, timeout=TIMEOUT,
                          check_params_cb=lambda text: "bad_weights.pt" in text):
        session.set_model(bad)
    qtbot.waitUntil(lambda: not session.scoring, timeout=TIMEOUT)
    assert session.model_path == end.best_checkpoint and models[-1] == end.best_checkpoint
    assert session.scores == scores and session.threshold == pytest.approx(end.threshold)

    session.set_model(None)
    assert session.model_path is None and not session.scores
    assert panel.view.isColumnHidden(COLUMNS.index("Model"))


@pytest.mark.slow
def test_u_opens_the_most_uncertain_clip_and_the_score_can_be_hidden(
        qtbot, studio_window, open_project, trained_run, trained_copy, screenshot):
    root, end = trained_copy
    shutil.copytree(trained_run[0] / ".echoquality", root / ".echoquality")  # cached clips
    project = open_project(root)
    session, window = studio_window.session, studio_window
    load_model(qtbot, session, end.best_checkpoint, threshold=0.5)
    assert session.threshold == 0.5

    def expected(after):
        candidates = [c.rel for c in project.clips
                      if session.label(c.rel) is None and c.rel != after]
        return min(candidates, key=lambda r: abs(session.scores[r] - 0.5))

    first = expected(session.current.rel)
    qtbot.keyClick(window, Qt.Key.Key_U)
    assert session.current.rel == first
    qtbot.keyClick(window, Qt.Key.Key_U)
    assert session.current.rel == expected(first) != first

    panel = window.label_panel
    score = session.scores[session.current.rel]
    assert panel.model_score.isVisible() and f"{score:.2f}" in panel.model_score.text()
    window.resize(1366, 768)
    qtbot.wait(200)
    screenshot(window, "label_with_scores.png")

    # Label it: U moves on to the next most uncertain unlabelled clip.
    labelled = session.current.rel
    qtbot.keyClick(window, Qt.Key.Key_1)
    assert session.label(labelled) is not None
    qtbot.keyClick(window, Qt.Key.Key_U)
    assert session.current.rel == expected(labelled)

    # Hiding the score (View menu) hides it while labelling and in the list; remembered.
    window.show_score_action.trigger()
    assert not panel.model_score.isVisible()
    assert window.clip_list.view.isColumnHidden(COLUMNS.index("Model"))
    from echoquality_gui.common import settings
    assert settings.show_model_score() is False
    window.show_score_action.trigger()
    assert panel.model_score.isVisible() and settings.show_model_score() is True

    # The unreadable tag moved from U to X.
    qtbot.keyClick(window, Qt.Key.Key_X)
    assert panel.tag_buttons["unreadable"].isChecked()


def clips_folder(root, tmp_path, n, corrupt=False):
    folder = tmp_path / "to_score"
    folder.mkdir()
    clips = sorted((root / "clips").glob("*.dcm"))[:n]
    for clip in clips:
        shutil.copy(clip, folder / clip.name)
    if corrupt:
        data = clips[0].read_bytes()
        (folder / "zz_truncated.dcm").write_bytes(data[: len(data) // 2])
    return folder


def run_dialog(qtbot, dialog, folder, model):
    progress = []
    dialog.set_folder(folder)
    dialog.model.setText(str(model))
    assert dialog.start()
    dialog.worker.on(Progress, lambda p: progress.append((p.done, p.total)))
    return progress


@pytest.mark.slow
def test_score_a_folder_writes_every_clip_with_errors_and_progress(
        qtbot, studio_window, trained_run, tmp_path, screenshot):
    root, end = trained_run
    folder = clips_folder(root, tmp_path, 4, corrupt=True)
    dialog = studio_window.score_folder()
    assert not dialog.model.text()  # no current model yet
    progress = run_dialog(qtbot, dialog, folder, end.best_checkpoint)
    assert dialog.output.text() == str(folder / "scores.csv")
    qtbot.waitUntil(lambda: not dialog.running, timeout=TIMEOUT)

    table = read_scores(folder / "scores.csv")
    assert sorted(table["video_path"]) == sorted(p.name for p in folder.glob("*.dcm"))
    bad = table[table["error"] != ""]
    assert list(bad["video_path"]) == ["zz_truncated.dcm"] and bad["score"].isna().all()
    assert table.drop(bad.index)["score"].between(0, 1).all()
    assert progress[-1] == (5, 5) and dialog.progress.value() == 5
    assert "5 clips" in dialog.status.text() and "1 unreadable" in dialog.status.text()
    assert not studio_window.session.scores  # not the open project: the list is untouched
    screenshot(dialog, "score_folder.png")
    dialog.close()


@pytest.mark.slow
def test_score_a_folder_cancel_stops_and_a_second_run_resumes(qtbot, studio_window, trained_run,
                                                              tmp_path):
    root, end = trained_run
    folder = clips_folder(root, tmp_path, 12)
    dialog = studio_window.score_folder()
    progress = run_dialog(qtbot, dialog, folder, end.best_checkpoint)
    # the list the dialog's progress fills, not a waitSignal: a cross-thread signal queued
    # twice reaches a finished pytest-qt blocker, which crashed the run once
    qtbot.waitUntil(lambda: any(done > 0 for done, _total in progress), timeout=TIMEOUT)
    dialog.cancel_button.click()
    qtbot.waitUntil(lambda: not dialog.running, timeout=TIMEOUT)
    assert "Cancelled" in dialog.status.text()
    partial = read_scores(folder / "scores.csv")
    assert 0 < len(partial) < 12 and progress[-1][0] < 12

    dialog.start()
    qtbot.waitUntil(lambda: not dialog.running, timeout=TIMEOUT)
    table = read_scores(folder / "scores.csv")
    assert len(table) == 12 and table["video_path"].is_unique
    assert f"{len(partial)} already there" in dialog.status.text()


@pytest.mark.slow
def test_scoring_the_project_folder_with_another_model_makes_it_the_model_and_runs_closed(
        qtbot, studio_window, open_project, trained_run, trained_copy):
    root, end = trained_copy
    shutil.copytree(trained_run[0] / ".echoquality", root / ".echoquality")  # cached clips
    project = open_project(root)
    session = studio_window.session
    load_model(qtbot, session, end.best_checkpoint, run_dir=end.run_dir, threshold=0.5)
    other = shutil.copy(end.best_checkpoint, root / "other_model.pt")
    messages, models = [], []
    session.message.connect(messages.append)
    session.model_changed.connect(models.append)

    dialog = studio_window.score_folder()
    assert dialog.folder.text() == str(project.root)
    dialog.model.setText(str(other))
    assert dialog.start()
    dialog.close()  # scoring goes on in the background, its progress in the status bar
    assert dialog.running and not dialog.isVisible()
    qtbot.waitUntil(lambda: not dialog.running, timeout=TIMEOUT)

    assert any(m.startswith("Scoring the folder project: ") for m in messages)
    assert f"Done: {len(project.clips)} clips" in studio_window.statusBar().currentMessage()
    table = read_scores(root / "scores.csv")
    assert len(table) == len(project.clips)
    assert models == [other] and session.model_path == other and session.run_dir is None
    assert session.scores == pytest.approx(dict(zip(table["video_path"], table["score"],
                                                    strict=True)))
    assert session.threshold == pytest.approx(end.threshold)  # the new model's, not 0.5
    assert not session.scoring  # nothing scored twice
