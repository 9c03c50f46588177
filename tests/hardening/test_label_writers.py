"""Labels under hostile conditions: two processes saving at once, clips both changed, a full disk,
the user's umask. Real processes, a real lock file, a real (tiny) tmpfs when we are root."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from echoquality_core.files.atomic import DiskFullError, append_atomic, atomic_write
from echoquality_core.labels.store import LabelClash, LabelStore
from echoquality_core.labels.project import Project

ROOT = Path(__file__).resolve().parents[2]

WRITER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from echoquality_core.labels.project import Project
    root, name, n, start = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
    while time.time() < start:
        time.sleep(0.001)
    project = Project(root)
    for i in range(n):
        project.set_label(f"{name}/clip{i:03d}.dcm", i % 2, rater=name)
        print(i, flush=True)  # acknowledged: set_label returned
""")


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}


@pytest.mark.slow
def test_two_processes_labelling_200_clips_each_end_with_400_rows(tmp_path):
    start = time.time() + 2.0  # both start together, after their imports
    writers = [subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path), name, "200",
                                 str(start)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, env=_env()) for name in ("app", "script")]
    outputs = [w.communicate(timeout=240) for w in writers]
    for writer, (out, err) in zip(writers, outputs, strict=True):
        assert writer.returncode == 0, err
        assert len(out.split()) == 200  # every save acknowledged
    store = LabelStore(tmp_path / "labels.csv")
    assert len(store) == 400
    for name in ("app", "script"):
        for i in range(200):
            label = store.get(f"{name}/clip{i:03d}.dcm")
            assert label is not None and label.quality_score == i % 2 and label.rater == name
    assert not list(tmp_path.glob(".labels.csv.tmp-*"))


def test_rows_of_another_writer_are_merged_into_each_save(tmp_path):
    # one sonographer, two windows (two raters would each keep their own label: test_raters)
    mine, theirs = Project(tmp_path), Project(tmp_path)
    mine.set_label("a.dcm", 1, rater="Me")
    theirs.set_label("b.dcm", 1, rater="Me")
    theirs.set_label("a.dcm", 0, rater="Me")  # after seeing ours: an edit, not a clash
    mine.set_label("c.dcm", 0, rater="Me")
    assert mine.clashes == [] and theirs.clashes == []
    on_disk = LabelStore(tmp_path / "labels.csv")
    assert on_disk.paths() == ["a.dcm", "b.dcm", "c.dcm"]
    assert on_disk.get("a.dcm").quality_score == 0


def test_a_clip_both_changed_since_reading_is_a_visible_clash(tmp_path):
    path = tmp_path / "labels.csv"
    LabelStore(path).save()
    mine, theirs = LabelStore(path), LabelStore(path)
    theirs.set("c.dcm", 0, rater="Other")
    theirs.set("d.dcm", 1, rater="Other")
    mine.set("c.dcm", 1, rater="Me", save=False)
    mine.set("e.dcm", 1, rater="Me", save=False)
    clashes = mine.save_merged()
    assert [c.video_path for c in clashes] == ["c.dcm"]
    assert isinstance(clashes[0], LabelClash) and clashes[0].theirs.rater == "Other"
    assert str(clashes[0]) == ("c.dcm: also changed by another program (0); "
                               "yours (1) was kept")
    on_disk = LabelStore(path)
    assert on_disk.paths() == ["c.dcm", "d.dcm", "e.dcm"]
    assert on_disk.get("c.dcm").rater == "Me"
    assert mine.save_merged() == []  # reported once


def test_a_save_waits_for_the_lock_held_by_another_process(tmp_path):
    store = LabelStore(tmp_path / "labels.csv")
    holder = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(f"""
            import time
            from filelock import FileLock
            with FileLock({str(store.lock_path)!r}):
                print("held", flush=True)
                time.sleep(1.0)
        """)], stdout=subprocess.PIPE, text=True, env=_env())
    assert holder.stdout.readline().strip() == "held"
    began = time.monotonic()
    store.set("a.dcm", 1)
    assert time.monotonic() - began > 0.3  # it waited for the other writer
    holder.wait(timeout=30)
    assert LabelStore(store.csv_path).paths() == ["a.dcm"]


def test_written_files_follow_the_umask(tmp_path):
    old = os.umask(0o002)  # a shared lab folder: group-writable
    try:
        LabelStore(tmp_path / "labels.csv").set("a.dcm", 1)
        with atomic_write(tmp_path / "summary.json", "w") as fh:
            fh.write("{}")
    finally:
        os.umask(old)
    for name in ("labels.csv", "summary.json"):
        assert os.stat(tmp_path / name).st_mode & 0o777 == 0o664, name


@pytest.fixture
def tiny_disk(tmp_path):
    """A 1 MiB tmpfs (root only): a real full disk."""
    if os.geteuid() != 0 or not shutil.which("mount"):
        pytest.skip("needs root to mount a tmpfs")
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)],
                          capture_output=True, text=True, check=False)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_full_disk_leaves_labels_complete_with_a_disk_full_message(tiny_disk):
    store = LabelStore(tiny_disk / "labels.csv")
    store.set("a.dcm", 1)
    before = store.csv_path.read_bytes()
    filler = tiny_disk / "filler"
    with pytest.raises(OSError):
        with open(filler, "wb") as fh:
            fh.write(b"x" * (2 << 20))  # fill the disk
    with pytest.raises(DiskFullError, match="disk full: could not write labels.csv"):
        store.set("b.dcm", 0, notes="n" * 5000)
    assert store.csv_path.read_bytes() == before  # complete: the old file
    assert not list(tiny_disk.glob(".labels.csv.tmp-*"))
    filler.unlink()
    store.save()  # the change was kept in memory and is saved once there is room
    assert LabelStore(store.csv_path).paths() == ["a.dcm", "b.dcm"]


def test_an_append_on_a_full_disk_leaves_no_torn_row(tiny_disk):
    path = tiny_disk / "scores.csv"
    path.write_bytes(b"video_path,score\n")
    with pytest.raises(OSError):
        with open(tiny_disk / "filler", "wb") as fh:
            fh.write(b"x" * (2 << 20))
    os.truncate(tiny_disk / "filler", os.path.getsize(tiny_disk / "filler") - 3000)
    with pytest.raises(DiskFullError, match="disk full"):
        append_atomic(path, b"".join(b"clip%05d.dcm,0.5\n" % i for i in range(2000)))
    assert path.read_bytes() == b"video_path,score\n"
