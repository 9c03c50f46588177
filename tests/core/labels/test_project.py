"""The plain Project, without a window: undo/redo on disk, next unlabelled, merging a CSV that
another program changed, and the scan steps the GUI's worker runs."""
from __future__ import annotations

from echoquality_core.labels.store import LabelStore
from echoquality_core.labels.project import Project


def _scanned(root) -> Project:
    project = Project(root)
    project.scan()
    return project


def test_undo_and_redo_rewrite_the_csv(project_copy):
    project = _scanned(project_copy)
    rel = project.next_unlabelled()
    assert rel is not None and not project.can_undo

    project.set_label(rel, 1.0, rater="A", issues=("dropout",))
    assert LabelStore(project.csv_path).get(rel).quality_score == 1.0
    assert project.can_undo and not project.can_redo

    change = project.undo()
    assert change.rel == rel and change.before is None
    assert LabelStore(project.csv_path).get(rel) is None
    assert project.can_redo

    project.redo()
    again = LabelStore(project.csv_path).get(rel)
    assert again.quality_score == 1.0 and again.issues == ("dropout",) and again.rater == "A"
    assert project.undo() is not None and project.undo() is None  # nothing more to undo


def test_next_unlabelled_follows_the_order_and_skips_the_clip_on_screen(project_copy):
    project = _scanned(project_copy)
    rels = [c.rel for c in project.clips]
    unlabelled = [r for r in rels if project.label(r) is None]
    assert len(unlabelled) >= 2
    assert project.next_unlabelled() == unlabelled[0]
    assert project.next_unlabelled(after=unlabelled[0]) == unlabelled[1]
    backwards = list(reversed(rels))
    assert project.next_unlabelled(order=backwards) == unlabelled[-1]
    for rel in unlabelled:
        project.set_label(rel, 0.0)
    assert project.next_unlabelled() is None


def test_a_csv_changed_by_another_program_is_merged_not_overwritten(project_copy):
    project = _scanned(project_copy)
    mine, theirs = [r for r in (c.rel for c in project.clips) if project.label(r) is None][:2]

    other = LabelStore(project.csv_path, root=project.root)  # e.g. a spreadsheet program
    other.set(theirs, 0.25, rater="Other", save=True)

    project.set_label(mine, 1.0, rater="Me")
    on_disk = LabelStore(project.csv_path)
    assert on_disk.get(mine).quality_score == 1.0
    assert on_disk.get(theirs).quality_score == 0.25 and on_disk.get(theirs).rater == "Other"

    project.undo()  # our change only
    on_disk = LabelStore(project.csv_path)
    assert on_disk.get(mine) is None and on_disk.get(theirs).quality_score == 0.25


def test_scan_steps_report_every_header_and_end_with_full_progress(project_copy):
    project = Project(project_copy)
    steps = [s for s in project.scan_steps(batch_seconds=0.0) if s is not None]
    kinds = [s[0] for s in steps]
    assert kinds[0] == "found" and kinds[-1] == "progress"
    paths = steps[0][1]
    rows = [row for s in steps if s[0] == "headers" for row, _ in s[1]]
    assert rows == list(range(len(paths)))
    assert steps[-1][1:] == (len(paths), len(paths))
    assert project.clips == []  # the steps only report; the caller applies them
