"""Issues 21.1 and 24.4: a label key labels the clip the list highlights, at once after a click
and while the CPU is busy; labels are written in the background, in order, and show as saved
only once on disk."""
from __future__ import annotations

import multiprocessing
import time

import pytest
from PySide6.QtCore import QItemSelectionModel, Qt

from echoquality_core.labels.store import LabelStore


def _spin(seconds: float) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        pass


@pytest.fixture
def busy_cpu():
    """Three processes that keep the CPU busy (killed after the test)."""
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_spin, args=(120.0,), daemon=True) for _ in range(3)]
    for proc in procs:
        proc.start()
    yield
    for proc in procs:
        proc.kill()
        proc.join()


def unlabelled(csv_path):
    """The demo project with no label at all."""
    csv_path.write_text("video_path,quality_score\n")
    return csv_path


def on_disk(project) -> dict:
    store = LabelStore(project.csv_path, root=project.root)
    return {rel: store.get(rel) for rel in store.paths()}


def click_row(qtbot, clip_list, row: int) -> str:
    """Click a row of the clip list as a user does; returns the rel path the row shows."""
    view = clip_list.view
    index = view.model().index(row, 0)
    qtbot.mouseClick(view.viewport(), Qt.MouseButton.LeftButton,
                     pos=view.visualRect(index).center())
    return clip_list.visible_rels()[row]


def test_a_label_key_right_after_a_click_labels_the_clicked_clip(
        studio_window, open_project, tiny_project, qtbot, busy_cpu):
    csv_path = unlabelled(tiny_project(n_clips=8, n_frames=6, seed=21))
    project = open_project(csv_path.parent)
    before = on_disk(project)
    window, clip_list = studio_window, studio_window.clip_list
    expected: dict[str, float] = {}
    for row, key in ((4, "0"), (1, "1"), (6, "0"), (2, "1"), (7, "0"), (3, "1")):
        rel = click_row(qtbot, clip_list, row)
        # the list's highlight and the player's header name the clicked clip at once
        assert clip_list.highlighted() == rel == window.session.current.rel
        assert window.player.info.text().startswith(rel.rsplit("/", 1)[-1])
        qtbot.keyClick(clip_list.view, key)  # the focus is on the list, as for a user
        expected[rel] = float(key)
    window.session.saver.flush()
    after = on_disk(project)
    assert {rel: after[rel].quality_score for rel in expected} == expected
    assert set(after) == set(before) | set(expected)  # no clip nobody clicked got a label


def test_a_key_on_a_highlighted_clip_that_is_not_open_labels_nothing(
        studio_window, open_project, tiny_project, qtbot):
    csv_path = unlabelled(tiny_project(n_clips=4, n_frames=6, seed=22))
    project = open_project(csv_path.parent)
    view, session = studio_window.clip_list.view, studio_window.session
    other = next(r for r in range(4) if studio_window.clip_list.visible_rels()[r]
                 != session.current.rel)
    view.selectionModel().blockSignals(True)  # highlighted, but (yet) not opened
    view.selectionModel().select(view.model().index(other, 0),
                                 QItemSelectionModel.SelectionFlag.ClearAndSelect
                                 | QItemSelectionModel.SelectionFlag.Rows)
    view.selectionModel().blockSignals(False)
    qtbot.keyClick(studio_window, "1")
    session.saver.flush()
    assert on_disk(project) == {}
    assert studio_window.statusBar().currentMessage().startswith("Not labelled:")


def test_labels_are_saved_in_order_and_show_as_saved_once_on_disk(
        studio_window, open_project, tiny_project, qtbot):
    csv_path = unlabelled(tiny_project(n_clips=6, n_frames=6, seed=24))
    project = open_project(csv_path.parent)
    session = studio_window.session
    shown: list[str] = []
    session.saved.connect(lambda _stamp: shown.append(
        ",".join(sorted(r for r, label in on_disk(project).items()))))
    labelled = []
    for key in ("1", "0", "1", "0"):
        labelled.append(session.current.rel)
        qtbot.keyClick(studio_window, key)
        assert studio_window.saved_label.text() in ("saving…",) or \
            studio_window.saved_label.text().startswith("saved ")
    qtbot.waitUntil(lambda: not session.saver.busy, timeout=10000)
    after = on_disk(project)
    assert [after[rel].quality_score for rel in labelled] == [1.0, 0.0, 1.0, 0.0]
    assert studio_window.saved_label.text().startswith("saved ")
    # each "saved" came when the file held every label made before it: the last one, all
    assert shown and shown[-1] == ",".join(sorted(labelled))
    assert all(set(s.split(",")) <= set(labelled) for s in shown)
    # a label made after a write started waits for the next write (in order, none lost)
    assert session.project.store.snapshot().pending == {}


def test_a_csv_another_program_wrote_before_the_background_write_is_merged(
        studio_window, open_project, tiny_project, qtbot):
    csv_path = unlabelled(tiny_project(n_clips=4, n_frames=6, seed=25))
    project = open_project(csv_path.parent)
    session = studio_window.session
    mine = session.current.rel
    qtbot.keyClick(studio_window, "1")  # in memory; the write waits for the event loop
    other = next(c.rel for c in project.clips if c.rel != mine)
    LabelStore(project.csv_path, root=project.root).set(other, 0.0, rater="someone else")
    qtbot.waitUntil(lambda: not session.saver.busy, timeout=10000)
    after = on_disk(project)
    assert after[mine].quality_score == 1.0  # ours written ...
    assert after[other].rater == "someone else"  # ... over theirs merged in, not lost
    assert "another program" in studio_window.statusBar().currentMessage()
    assert studio_window.saved_label.text().startswith("saved ")
