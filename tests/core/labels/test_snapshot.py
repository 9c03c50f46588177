"""Saving the labels CSV from another thread: ``LabelStore.snapshot`` / ``write_snapshot`` /
``saved`` (issue 24.4), and a project's deferred saves."""
from __future__ import annotations

import threading

from echoquality_core.labels.project import Project
from echoquality_core.labels.store import LabelStore


def _csv(tmp_path, rows: int = 5):
    path = tmp_path / "labels.csv"
    path.write_text("video_path,quality_score\n"
                    + "".join(f"c{i}.dcm,{i % 2}\n" for i in range(rows)))
    return path


def test_a_snapshot_written_in_another_thread_holds_the_changes_made_before_it(tmp_path):
    store = LabelStore(_csv(tmp_path), tmp_path)
    store.set("c0.dcm", 0.5, save=False)
    snap = store.snapshot()
    store.set("c1.dcm", 0.25, save=False)  # after the snapshot: waits for the next write
    result = []
    thread = threading.Thread(target=lambda: result.append(store.write_snapshot(snap)))
    thread.start()
    thread.join()
    store.saved(snap, result[0])
    fresh = LabelStore(store.csv_path, tmp_path)
    assert fresh.get("c0.dcm").quality_score == 0.5
    assert fresh.get("c1.dcm").quality_score == 1.0  # not in that snapshot
    assert set(store.snapshot().pending) == {"c1.dcm"}
    assert not store.changed_on_disk()  # the store knows the file it wrote
    store.save()
    assert LabelStore(store.csv_path, tmp_path).get("c1.dcm").quality_score == 0.25


def test_a_snapshot_is_not_written_over_another_programs_change(tmp_path):
    store = LabelStore(_csv(tmp_path), tmp_path)
    store.set("c0.dcm", 0.5, save=False)
    snap = store.snapshot()
    theirs = LabelStore(store.csv_path, tmp_path)
    theirs.set("c3.dcm", 0.75)
    assert store.write_snapshot(snap) is None  # nothing written: merge first
    assert LabelStore(store.csv_path, tmp_path).get("c3.dcm").quality_score == 0.75
    store.merge_from_disk()
    store.saved(snap, store.write_snapshot(store.snapshot()))
    fresh = LabelStore(store.csv_path, tmp_path)
    assert (fresh.get("c0.dcm").quality_score, fresh.get("c3.dcm").quality_score) == (0.5, 0.75)


def test_a_deferred_label_is_in_memory_until_saved_and_undo_still_works(tmp_path):
    _csv(tmp_path)
    project = Project(tmp_path)
    assert project.defers_saves("ann")
    project.set_label("c4.dcm", 1.0, rater="ann", save=False)
    assert project.label("c4.dcm").quality_score == 1.0
    assert LabelStore(project.csv_path, tmp_path).get("c4.dcm").quality_score == 0.0
    store = project.store
    store.saved(snap := store.snapshot(), store.write_snapshot(snap))
    assert LabelStore(project.csv_path, tmp_path).get("c4.dcm").rater == "ann"
    project.undo()
    assert LabelStore(project.csv_path, tmp_path).get("c4.dcm").quality_score == 0.0


def test_labels_and_rater_names_follow_every_change(tmp_path):
    store = LabelStore(_csv(tmp_path, rows=3), tmp_path)
    assert len(store) == 3 and store.rater_names() == []
    store.set("c9.dcm", 1.0, rater="bo", save=False)
    store.remove("c0.dcm", save=False)
    assert [label.video_path for label in store.labels()] == ["c1.dcm", "c2.dcm", "c9.dcm"]
    assert store.rater_names() == ["bo"]
