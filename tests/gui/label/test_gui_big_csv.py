"""Issue 24.4: labelling in a 100,000-row labels CSV. A label key changes the table at once and
the file is written by the background saver, off the GUI thread, while the event loop runs; the
label lands on disk on the clip it was given to; an undo goes the same way. (How long the window
stalls is measured by benchmarks/bench_big_csv.py, not asserted here.)"""
from __future__ import annotations

import threading

from PySide6.QtCore import QElapsedTimer, QTimer

from echoquality_core.labels.store import LabelStore

ROWS = 100_000


def big_csv(csv_path):
    """The demo project's CSV, unlabelled, with ``ROWS`` rows of other clips after its header."""
    lines = ["video_path,quality_score\n"]
    lines += [f"elsewhere/clip_{i:06d}.dcm,{i % 2}\n" for i in range(ROWS)]
    csv_path.write_text("".join(lines))
    return csv_path


def test_a_label_in_a_100k_row_csv_is_written_off_the_gui_thread(
        studio_window, open_project, tiny_project, qtbot, monkeypatch):
    csv_path = big_csv(tiny_project(n_clips=6, n_frames=6, seed=24))
    project = open_project(csv_path.parent)
    session = studio_window.session
    assert len(project.store) == ROWS
    writers: list[threading.Thread] = []
    write = LabelStore._write_data

    def watched(store, snap):  # the real write, noting which thread runs it
        writers.append(threading.current_thread())
        return write(store, snap)

    monkeypatch.setattr(LabelStore, "_write_data", watched)
    ticks: list[int] = []
    clock, probe = QElapsedTimer(), QTimer()
    probe.setInterval(10)
    probe.timeout.connect(lambda: ticks.append(clock.elapsed()))
    clock.start()
    probe.start()
    rel = session.current.rel
    studio_window.give_score(1.0)
    assert project.store.get(rel).quality_score == 1.0  # in memory at once
    with qtbot.waitSignal(session.saved, timeout=20000):
        pass
    probe.stop()

    assert ticks, "the event loop ran while the label was written"
    assert writers and all(t is not threading.main_thread() for t in writers)
    on_disk = LabelStore(csv_path, root=project.root)
    assert len(on_disk) == ROWS + 1
    assert on_disk.get(rel).quality_score == 1.0 and on_disk.get(rel).rater == "Test Rater"
    assert on_disk.get("elsewhere/clip_000001.dcm").quality_score == 1.0

    writers.clear()
    with qtbot.waitSignal(session.saved, timeout=20000):
        session.undo()
    assert writers and all(t is not threading.main_thread() for t in writers)
    assert LabelStore(csv_path, root=project.root).get(rel) is None


def test_label_keys_wait_for_the_labels_and_a_newer_open_drops_an_older_load(
        studio_window, open_project, tiny_project, qtbot):
    big = big_csv(tiny_project(n_clips=4, n_frames=6, seed=25))
    small = tiny_project(n_clips=4, n_frames=6, seed=26)
    session = studio_window.session
    open_project(small.parent)
    messages: list[str] = []
    session.message.connect(messages.append)
    before = big.read_bytes()

    assert studio_window.open_project(big.parent)  # read in the background
    assert session.loading is not None
    studio_window.give_score(1.0)
    assert session.undo() is None
    assert sum("still being read" in m for m in messages) == 2
    project = open_project(small.parent)  # a newer open: the big project's load is dropped
    qtbot.waitUntil(lambda: not session._load._running, timeout=30000)
    qtbot.wait(50)
    assert session.project is project and project.root == small.parent.resolve()
    assert session.loading is None and big.read_bytes() == before


def test_a_tag_refused_while_labels_load_is_written_once_they_are_read(
        studio_window, open_project, tiny_project, qtbot):
    """A tag ticked on the clip still on screen while another project's labels are read is
    refused with the label keys, but not lost: it is written (to its own project) once the
    load ends and the window leaves that clip."""
    big = big_csv(tiny_project(n_clips=4, n_frames=6, seed=27))
    small = tiny_project(n_clips=4, n_frames=6, seed=28)
    session, panel = studio_window.session, studio_window.label_panel
    open_project(small.parent)
    rel = session.current.rel
    session.auto_advance = False
    assert panel.give_score(1.0, advance=False)
    session.saver.flush()

    assert studio_window.open_project(big.parent)  # read in the background
    assert session.loading is not None
    panel.toggle_issue("off_axis")  # refused: the labels are still being read
    qtbot.waitUntil(lambda: session.loading is None, timeout=60000)
    session.saver.flush()
    assert "off_axis" in LabelStore(small, root=small.parent).get(rel).issues
