"""Saving the labels CSV from another thread: ``LabelStore.snapshot`` / ``write_snapshot`` /
``saved`` (issue 24.4), and a project's deferred saves."""
from __future__ import annotations

import threading

import pytest

from echoquality_core.labels.project import Project
from echoquality_core.labels.store import LabelError, LabelStore


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


def test_a_new_column_keeps_every_other_rows_text_and_a_save_formats_only_changed_rows(tmp_path):
    path = tmp_path / "labels.csv"
    path.write_text('video_path,quality_score,site\r\n"c0.dcm",1,"a, b"\r\nc1.dcm,0,x\r\n'
                    "c2.dcm,1,y\r\n")
    store = LabelStore(path, tmp_path)
    store.set("c1.dcm", 0.5, rater="ann", labeled_at="2026-01-02T03:04:05+00:00")
    assert path.read_bytes() == (
        b'video_path,quality_score,site,rater,labeled_at\r\n"c0.dcm",1,"a, b",,\r\n'
        b"c1.dcm,0.5,x,ann,2026-01-02T03:04:05+00:00\r\nc2.dcm,1,y,,\r\n")
    store.remove("c0.dcm", save=False)  # has a value in 'site': kept, unlabelled
    store.remove("c2.dcm", save=False)  # nothing else: the row goes
    store.set("c3.dcm", 0.0, rater="ann", labeled_at="2026-01-02T03:04:05+00:00", save=False)
    store.save()
    fresh = LabelStore(path, tmp_path)
    assert fresh.paths() == ["c1.dcm", "c3.dcm"]
    assert (len(fresh), fresh.rater_names(), fresh.is_continuous()) == (2, ["ann"], True)
    assert (len(store), store.rater_names(), store.is_continuous()) == (2, ["ann"], True)
    store.remove("c1.dcm", save=False)
    assert (len(store), store.is_continuous()) == (1, False)


@pytest.mark.parametrize("body", [
    ("video_path,quality_score,rater,labeled_at,issues,notes\n"  # read column by column
     "a.dcm,1,ann,2026-01-02T03:04:05+00:00,off_axis;foreshortened,hi\n"
     "b.dcm,0.25,,,,\nc.dcm,,,,,\nd.dcm,0,bob,,,\n"),
    ("video_path,quality_score,rater,labeled_at,issues,notes\n"  # row by row: spaces, a blank
     "a.dcm,1,ann,2026-01-02T03:04:05+00:00,off_axis;foreshortened,hi\n"
     "b.dcm, 0.25 ,,,,\n\nc.dcm,,,,,\nd.dcm,0\n"),
])
def test_a_file_without_quotes_reads_as_the_csv_module_reads_it(tmp_path, body):
    path = tmp_path / "labels.csv"
    path.write_text(body)
    quick = LabelStore(path, tmp_path)
    path.write_text(body.replace("hi", '"hi"'))  # one quote: every row read by the csv module
    general = LabelStore(path, tmp_path)
    assert quick.labels() == general.labels() and quick.paths() == general.paths()
    assert quick.get("a.dcm").issues == ("off_axis", "foreshortened")
    assert quick.get("b.dcm").quality_score == 0.25 and quick.get("c.dcm") is None
    assert quick.rater_names() == general.rater_names()


def test_a_bad_row_of_a_file_without_quotes_is_named(tmp_path):
    path = tmp_path / "labels.csv"
    path.write_text("video_path,quality_score\na.dcm,1\nb.dcm,2\na.dcm,0\n")
    with pytest.raises(LabelError) as caught:
        LabelStore(path, tmp_path)
    assert [row for row, _ in caught.value.problems] == [3, 4]
