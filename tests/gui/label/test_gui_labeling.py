"""Labelling with the keyboard writes the CSV at once; undo/redo, N, Ctrl+Enter, five-point
scale, a CSV edited by another program, and the cheat-sheet."""
from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QApplication

from echoquality_core.labels.store import LabelStore
from echoquality_gui.window.keybinds import KEYBINDS, keybind

RATER = "Test Rater"  # set by the isolated_settings fixture


def on_disk(project) -> dict:
    """The labels as a fresh reader of the CSV sees them, once the window's background
    writes are done: rel -> Label."""
    settle_saves()
    store = LabelStore(project.csv_path, root=project.root)
    return {rel: store.get(rel) for rel in store.paths()}


def settle_saves() -> None:
    """Wait for every window's labels CSV writes (they run in a background thread)."""
    for widget in QApplication.topLevelWidgets():
        if hasattr(widget, "session"):
            widget.session.saver.flush()


def press(qtbot, window, key, modifier=Qt.KeyboardModifier.NoModifier) -> None:
    qtbot.keyClick(window, key, modifier)


def test_three_keypresses_label_three_clips_on_disk(studio_window, open_project, project_copy,
                                                     qtbot):
    project = open_project(project_copy)
    before = on_disk(project)
    session = studio_window.session
    rels = []
    for key in ("1", "0", "1"):
        rels.append(session.current.rel)
        assert session.label(session.current.rel) is None  # auto-advance lands on unlabelled
        press(qtbot, studio_window, key)
    after = on_disk(project)

    assert set(after) == set(before) | set(rels)
    assert [after[r].quality_score for r in rels] == [1.0, 0.0, 1.0]
    assert all(after[r].rater == RATER and after[r].labeled_at for r in rels)
    assert all(after[r] == before[r] for r in before)  # nobody else's row changed
    assert studio_window.saved_label.text().startswith("saved ")
    assert studio_window.clip_list.counter.text() == f"{len(after)} / {len(project.clips)} labelled"


def test_undo_and_redo_rewrite_the_csv(studio_window, open_project, project_copy, qtbot):
    project = open_project(project_copy)
    session = studio_window.session
    first = session.current.rel
    press(qtbot, studio_window, "0")
    assert on_disk(project)[first].quality_score == 0.0
    press(qtbot, studio_window, "1")  # next clip: good
    second = [r for r in on_disk(project) if r != first and on_disk(project)[r].rater == RATER]

    press(qtbot, studio_window, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    assert second[0] not in on_disk(project)  # back to unlabelled, on disk
    assert session.current.rel == second[0]  # undo shows the clip it changed
    press(qtbot, studio_window, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    assert first not in on_disk(project)

    redo = Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.ShiftModifier
    press(qtbot, studio_window, Qt.Key.Key_Z, redo)
    assert on_disk(project)[first].quality_score == 0.0
    press(qtbot, studio_window, Qt.Key.Key_Z, redo)
    assert on_disk(project)[second[0]].quality_score == 1.0
    assert not studio_window.action("redo").isEnabled()


def test_relabelling_then_undo_restores_previous_value(studio_window, open_project,
                                                       project_copy, qtbot):
    project = open_project(project_copy)
    session = studio_window.session
    labelled = next(c.rel for c in project.clips if session.label(c.rel) is not None)
    old = on_disk(project)[labelled]
    session.open_clip(labelled)
    new_score = "0" if old.quality_score >= 0.5 else "1"
    press(qtbot, studio_window, new_score)
    assert on_disk(project)[labelled].quality_score == float(new_score)
    press(qtbot, studio_window, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    restored = on_disk(project)[labelled]
    assert (restored.quality_score, restored.rater, restored.issues, restored.notes) == (
        old.quality_score, old.rater, old.issues, old.notes)


def test_issue_tags_notes_and_ctrl_enter_stay_on_the_clip(studio_window, open_project,
                                                         project_copy, qtbot):
    project = open_project(project_copy)
    session = studio_window.session
    rel = session.current.rel
    press(qtbot, studio_window, "O")  # off_axis
    press(qtbot, studio_window, "S")  # foreshortened
    studio_window.label_panel.notes.setText("apex cut")
    studio_window.label_panel._score_buttons[0.0].setChecked(True)
    press(qtbot, studio_window, Qt.Key.Key_Return, Qt.KeyboardModifier.ControlModifier)
    assert session.current.rel == rel
    label = on_disk(project)[rel]
    assert label.quality_score == 0.0
    assert set(label.issues) == {"off_axis", "foreshortened"}
    assert label.notes == "apex cut"

    press(qtbot, studio_window, "S")  # a labelled clip's tag change is saved at once
    assert set(on_disk(project)[rel].issues) == {"off_axis"}


def test_n_opens_the_next_unlabelled_clip(studio_window, open_project, project_copy, qtbot):
    project = open_project(project_copy)
    session = studio_window.session
    start = session.current.rel
    press(qtbot, studio_window, "N")
    assert session.current.rel == project.next_unlabelled(start)
    assert session.label(session.current.rel) is None


def test_five_point_scale_maps_keys_to_quarter_steps(studio_window, open_project, project_copy,
                                                     qtbot):
    project = open_project(project_copy)
    session = studio_window.session
    session.set_scale("five_point")
    rel = session.current.rel
    press(qtbot, studio_window, "4")
    assert on_disk(project)[rel].quality_score == 0.75
    rel = session.current.rel
    press(qtbot, studio_window, "0")  # the binary key does nothing on this scale
    assert rel not in on_disk(project)


def test_csv_changed_by_another_program_is_merged_not_overwritten(
        studio_window, open_project, project_copy, qtbot):
    project = open_project(project_copy)
    session = studio_window.session
    other = [c.rel for c in project.clips if session.label(c.rel) is None][-1]
    elsewhere = LabelStore(project.csv_path, root=project.root)
    elsewhere.set(other, 0.0, rater="someone else")
    mine = session.current.rel
    assert mine != other

    press(qtbot, studio_window, "1")
    labels = on_disk(project)
    assert labels[other].rater == "someone else"
    assert labels[mine].quality_score == 1.0
    assert "another program" in studio_window.statusBar().currentMessage()


def test_question_mark_shows_every_shortcut(studio_window, qtbot):
    press(qtbot, studio_window, "?")
    dialog = studio_window._keys_dialog
    assert dialog is not None and dialog.isVisible()
    text = dialog.text.text()
    assert all(bind.help.split(" (")[0].replace("'", "&#x27;") in text for bind in KEYBINDS)
    assert keybind("toggle_gradcam").key == "G"
    assert keybind("next_uncertain").key == "U"


def test_notes_are_saved_on_down_kept_as_draft_unlabelled_and_saved_on_close(
        studio_window, open_project, project_copy, qtbot):
    project = open_project(project_copy)
    session, panel = studio_window.session, studio_window.label_panel
    labelled = next(c.rel for c in project.clips if session.label(c.rel) is not None)
    session.open_clip(labelled)
    panel.notes.setFocus()
    qtbot.keyClicks(panel.notes, "apex cut")
    qtbot.keyClick(panel.notes, Qt.Key.Key_Down)  # the window's "next clip" key
    assert session.current.rel != labelled
    assert on_disk(project)[labelled].notes == "apex cut"

    # An unlabelled clip: no label is made up, the notes wait for its score.
    unlabelled = session.next_unlabelled_rel()
    session.open_clip(unlabelled)
    qtbot.keyClicks(panel.notes, "blurry")
    qtbot.keyClick(panel.notes, Qt.Key.Key_Down)
    assert unlabelled not in on_disk(project) and panel.notes.text() != "blurry"
    qtbot.keyClick(panel.notes, Qt.Key.Key_Up)
    assert session.current.rel == unlabelled and panel.notes.text() == "blurry"
    assert "Not saved yet" in panel.notes.toolTip()
    panel.notes.clearFocus()
    press(qtbot, studio_window, "0")
    assert on_disk(project)[unlabelled].notes == "blurry"

    session.open_clip(labelled)
    qtbot.keyClicks(panel.notes, ", foreshortened")
    studio_window.close()
    assert on_disk(project)[labelled].notes == "apex cut, foreshortened"


def test_keypad_ctrl_enter_saves_without_advancing(studio_window, open_project, project_copy,
                                                   qtbot):
    project = open_project(project_copy)
    session, panel = studio_window.session, studio_window.label_panel
    rel = session.current.rel
    panel._score_buttons[1.0].setChecked(True)
    keypad = Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.KeypadModifier
    press(qtbot, studio_window, Qt.Key.Key_Enter, keypad)
    assert session.current.rel == rel and on_disk(project)[rel].quality_score == 1.0
    press(qtbot, studio_window, "?")
    assert "Ctrl+Return; Ctrl+Enter" in studio_window._keys_dialog.text.text()


def test_n_and_auto_advance_follow_the_sorted_filtered_table(studio_window, open_project,
                                                             project_copy, qtbot):
    project = open_project(project_copy)
    session, clip_list = studio_window.session, studio_window.clip_list

    def next_in_table(after):
        rels = clip_list.visible_rels()
        i = rels.index(after)
        return next(r for r in rels[i + 1:] + rels[:i] if session.label(r) is None)

    clip_list.view.sortByColumn(0, Qt.SortOrder.DescendingOrder)  # File, Z to A
    start = session.current.rel
    expected = next_in_table(start)
    assert expected != project.next_unlabelled(start)  # the project's order differs
    press(qtbot, studio_window, "N")
    assert session.current.rel == expected
    expected = next_in_table(expected)
    press(qtbot, studio_window, "1")  # auto-advance: the next one down the sorted table
    assert session.current.rel == expected

    clip_list.filter_box.setCurrentText("Labelled")  # no unlabelled clip in the table:
    current = session.current.rel  # the project's order
    press(qtbot, studio_window, "N")
    assert session.current.rel == project.next_unlabelled(current)
