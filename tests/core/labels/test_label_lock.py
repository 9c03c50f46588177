"""One lock for every label file: processes labelling the same project at once lose nothing and
the training table always follows the per-rater file; rater names trimmed once; adjudication
refused for clips no rater labelled and kept visible on clips the raters agreed on."""
from __future__ import annotations

import multiprocessing
from pathlib import Path

import pytest

from echoquality_core.cli.main import main
from echoquality_core.labels.folder import ProjectFolder
from echoquality_core.labels.project import Project
from echoquality_core.labels.raters import RaterStore, adjudication_queue, consensus, read_policy
from echoquality_core.labels.store import LabelError, LabelStore

N_CLIPS, N_RATERS, PASSES = 20, 3, 2


def score(rater: int, clip: int, rounds: int) -> float:
    return ((rater * 7 + clip * 3 + rounds) % 5) / 4


def label_flat_out(root: str, rater: int, start) -> None:
    """One app: rater ``rater`` labels every clip PASSES times, as fast as it can."""
    project = Project(Path(root))
    start.wait()
    for rounds in range(PASSES):
        for clip in range(N_CLIPS):
            project.set_label(f"c{clip:03d}.dcm", score(rater, clip, rounds), rater=f"r{rater}")


def started_project(root: Path) -> ProjectFolder:
    folder = ProjectFolder(root)
    folder.labels_csv.write_text("video_path,quality_score\n", encoding="utf-8")
    folder.rater_csv.write_text("video_path,rater,role,quality_score,issues,notes,labeled_at\n",
                                encoding="utf-8")
    return folder


@pytest.mark.slow
def test_processes_labelling_at_once_lose_no_label_and_the_table_follows_the_raters(tmp_path):
    folder = started_project(tmp_path)
    spawn = multiprocessing.get_context("spawn")
    start = spawn.Event()
    apps = [spawn.Process(target=label_flat_out, args=(str(tmp_path), r, start))
            for r in range(N_RATERS)]
    for app in apps:
        app.start()
    start.set()
    for app in apps:
        app.join(timeout=240)
        assert app.exitcode == 0
    raters = RaterStore(folder.rater_csv)
    got = {(la.video_path, la.rater): la.quality_score for la in raters.labels()}
    assert got == {(f"c{c:03d}.dcm", f"r{r}"): score(r, c, PASSES - 1)
                   for r in range(N_RATERS) for c in range(N_CLIPS)}  # no label lost
    table = LabelStore(folder.labels_csv)
    policy = read_policy(folder.labels_csv)
    for clip in raters.clips():
        want = consensus(raters.labels(clip), policy)
        have = table.get(clip)
        assert (have and have.quality_score) == (want and want.quality_score), clip
    assert not list(tmp_path.glob(".*.tmp-*"))


def test_a_save_waits_for_the_lock_another_program_holds(tmp_path):
    started_project(tmp_path)
    project = Project(tmp_path)
    holder = multiprocessing.get_context("spawn")
    ready, release = holder.Event(), holder.Event()
    other = holder.Process(target=hold_lock, args=(str(tmp_path), ready, release))
    other.start()
    assert ready.wait(30)
    import filelock

    with pytest.raises(filelock.Timeout):  # a script's own FileLock on the named file waits too
        filelock.FileLock(project.folder.lock_file, timeout=0.1).acquire()
    release.set()
    other.join(30)
    project.set_label("a.dcm", 1, rater="ann")
    assert RaterStore(project.folder.rater_csv).get("a.dcm", "ann").quality_score == 1


def hold_lock(root: str, ready, release) -> None:
    with ProjectFolder(root).locked():
        ready.set()
        release.wait(30)


def test_a_rater_name_with_spaces_is_trimmed_for_the_label_and_its_undo(tmp_path):
    started_project(tmp_path)
    project = Project(tmp_path)
    change = project.set_label("a.dcm", 1, rater="  Ann ")
    assert change.rater == "Ann" and change.after.quality_score == 1
    assert RaterStore(project.folder.rater_csv).raters() == ["Ann"]
    project.rater = " Ann "
    assert project.rater == "Ann" and project.label("a.dcm").quality_score == 1
    project.undo()
    assert RaterStore(project.folder.rater_csv).get("a.dcm", "Ann") is None
    assert LabelStore(project.csv_path).get("a.dcm") is None
    project.redo()
    assert RaterStore(project.folder.rater_csv).get("a.dcm", "Ann").quality_score == 1


def test_adjudicating_a_clip_no_rater_labelled_is_refused_and_writes_nothing(tmp_path, capsys):
    folder = started_project(tmp_path)
    (tmp_path / "a.dcm").write_bytes(b"")  # a clip of the folder (the check needs no pixels)
    project = Project(tmp_path)
    project.set_label("a.dcm", 1, rater="ann")
    project.set_label("a.dcm", 0, rater="bob")
    (tmp_path / "b.dcm").write_bytes(b"")
    before = folder.labels_csv.read_bytes(), folder.rater_csv.read_bytes()
    csv_arg = ["--csv", str(folder.labels_csv)]
    for clip, why in (("clip_9999.dcm", "not a clip of the project"),
                      ("b.dcm", "no rater labelled b.dcm")):
        assert main(["adjudicate", *csv_arg, "--clip", clip, "--score", "1", "--by", "X"]) == 2
        err = capsys.readouterr().err
        assert why in err and len(err.strip().splitlines()) == 1
        with pytest.raises(LabelError, match=why):
            project.adjudicate(clip, 1, by="X")
    assert (folder.labels_csv.read_bytes(), folder.rater_csv.read_bytes()) == before


def test_a_decision_on_a_clip_the_raters_agreed_on_stays_visible(tmp_path, capsys):
    folder = started_project(tmp_path)
    project = Project(tmp_path)
    for rater in ("ann", "bob"):
        project.set_label("a.dcm", 1, rater=rater)
        project.set_label("b.dcm", 1 if rater == "ann" else 0, rater=rater)
    assert [d.rel for d in adjudication_queue(project.raters)] == ["b.dcm"]
    csv_arg = ["--csv", str(folder.labels_csv)]
    assert main(["adjudicate", *csv_arg, "--clip", "a.dcm", "--score", "0", "--by", "X"]) == 0
    out = capsys.readouterr().out
    assert "the raters agreed" in out and "1" in out  # said, not silently applied
    project.reload_if_changed()
    queue = adjudication_queue(project.raters)
    agreed = [d for d in queue if d.rel == "a.dcm"]
    assert len(agreed) == 1 and agreed[0].agreed and agreed[0].adjudication.quality_score == 0
    assert [d.rel for d in adjudication_queue(project.raters, include_decided=False)] == [
        "b.dcm"]  # the filter hides decided clips, agreed ones too
    assert main(["adjudicate", *csv_arg]) == 0
    listing = capsys.readouterr().out
    assert "a.dcm" in listing and "raters agreed" in listing and "by X" in listing
