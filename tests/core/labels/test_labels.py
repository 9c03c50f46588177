"""The labels CSV: faithful round trips, validation messages, conflicts and crash-safe saves."""
from __future__ import annotations

import csv
import functools
import inspect
import io
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from echoquality_core.labels.store import (
    Label,
    LabelConflictError,
    LabelError,
    LabelStore,
    check_issues,
)

GUIDE_CSV = "video_path,quality_score\necho_videos/video1.dcm,1\necho_videos/video2.dcm,0\n"
STAMP = "2025-01-31T14:05:09+01:00"
REPO = Path(__file__).resolve().parents[3]


def rows_of(path: Path) -> list[list[str]]:
    with open(path, newline="", encoding="utf-8-sig") as f:
        return list(csv.reader(f))


def test_guide_file_round_trips_byte_identical(tmp_path):
    path = tmp_path / "echo_annotations.csv"
    path.write_bytes(GUIDE_CSV.encode())
    store = LabelStore(path)
    assert store.paths() == ["echo_videos/video1.dcm", "echo_videos/video2.dcm"]
    assert store.get("echo_videos/video1.dcm") == Label("echo_videos/video1.dcm", 1.0)
    assert not store.is_continuous() and len(store) == 2
    store.save()
    assert path.read_bytes() == GUIDE_CSV.encode()


def test_unchanged_rows_keep_their_bytes_bom_crlf_and_quoting(tmp_path):
    path = tmp_path / "labels.csv"
    original = (
        b"\xef\xbb\xbfvideo_path,quality_score,labeled_at,site\r\n"
        b'"a.dcm",1.0,,"Ward 3, bed 2"\r\n'
        b"b.dcm,0,,x\r\n"
        b"c.dcm,1,,y"  # no line end on the last line
    )
    path.write_bytes(original)
    store = LabelStore(path)
    store.save()
    assert path.read_bytes() == original

    store.set("b.dcm", 1.0, labeled_at=STAMP)
    store.set("d.dcm", 0.0, labeled_at=STAMP)
    data = path.read_bytes()
    assert data.startswith(b"\xef\xbb\xbfvideo_path,quality_score,labeled_at,site\r\n"
                           b'"a.dcm",1.0,,"Ward 3, bed 2"\r\n')
    assert data.endswith(f"b.dcm,1,{STAMP},x\r\nc.dcm,1,,y\r\nd.dcm,0,{STAMP},\r\n".encode())
    assert LabelStore(path).get("a.dcm").quality_score == 1.0


def test_values_are_kept_as_written_when_columns_are_added(tmp_path):
    path = tmp_path / "labels.csv"
    path.write_text(GUIDE_CSV + "echo_videos/video3.dcm,1.0\n")
    store = LabelStore(path)
    store.set("echo_videos/video4.dcm", 1, rater="Dr A", labeled_at=STAMP)
    assert rows_of(path) == [
        ["video_path", "quality_score", "rater", "labeled_at"],
        ["echo_videos/video1.dcm", "1", "", ""],
        ["echo_videos/video2.dcm", "0", "", ""],
        ["echo_videos/video3.dcm", "1.0", "", ""],
        ["echo_videos/video4.dcm", "1", "Dr A", STAMP],
    ]


def test_unknown_columns_keep_their_order_and_values(tmp_path):
    path = tmp_path / "labels.csv"
    path.write_text("site,video_path,comment,quality_score\nA,x.dcm,\"good, clear\",0\n"
                    "B,y.dcm,,1\n")
    store = LabelStore(path)
    store.set("x.dcm", 1.0, issues=["dropout"], labeled_at=STAMP)
    store.set("z.dcm", 0.0, notes="new clip", labeled_at=STAMP)
    assert rows_of(path) == [
        ["site", "video_path", "comment", "quality_score", "labeled_at", "issues", "notes"],
        ["A", "x.dcm", "good, clear", "1", STAMP, "dropout", ""],
        ["B", "y.dcm", "", "1", "", "", ""],
        ["", "z.dcm", "", "0", STAMP, "", "new clip"],
    ]
    frame = store.to_frame()
    assert list(frame.columns) == rows_of(path)[0]
    assert frame["comment"].tolist() == ["good, clear", "", ""]


def test_continuous_scores_are_read_and_written_compactly(tmp_path):
    path = tmp_path / "labels.csv"
    path.write_text("video_path,quality_score\na.dcm,0.75\nb.dcm,1\nc.dcm,.5\n")
    store = LabelStore(path)
    assert store.is_continuous()
    assert [store.get(p).quality_score for p in store.paths()] == [0.75, 1.0, 0.5]
    store.set("d.dcm", 0.25)
    store.set("e.dcm", 1.0)
    assert [row[1] for row in rows_of(path)[1:]] == ["0.75", "1", ".5", "0.25", "1"]
    store.remove("a.dcm")
    store.remove("c.dcm")
    store.remove("d.dcm")
    assert not store.is_continuous()
    assert store.to_frame()["quality_score"].tolist() == [1.0, 1.0]


def test_set_get_remove_return_the_previous_label(tmp_path):
    store = LabelStore(tmp_path / "labels.csv")
    assert len(store) == 0 and store.get("a.dcm") is None
    assert store.set("a.dcm", 1, rater=" Dr B ", issues="off_axis; poor_gain",
                     notes="ok") is None
    first = store.get("a.dcm")
    assert first.rater == "Dr B" and first.issues == ("off_axis", "poor_gain")
    assert first.notes == "ok" and first.labeled_at
    assert first.labeled_at[10] == "T" and first.labeled_at[19] in "+-Z"

    assert store.set("a.dcm", 0, labeled_at=STAMP) == first
    assert store.get("a.dcm") == Label("a.dcm", 0.0, None, STAMP, (), None)  # whole label replaced
    store.set("b.dcm", 1, labeled_at=STAMP)
    assert store.paths() == ["a.dcm", "b.dcm"] and len(store) == 2
    assert store.remove("a.dcm") == Label("a.dcm", 0.0, None, STAMP, (), None)
    assert store.remove("a.dcm") is None and store.remove("never.dcm") is None
    assert LabelStore(store.csv_path).paths() == ["b.dcm"]


def test_set_with_save_false_writes_nothing_until_save(tmp_path):
    path = tmp_path / "labels.csv"
    path.write_text(GUIDE_CSV)
    store = LabelStore(path)
    store.set("new.dcm", 1, save=False)
    store.remove("echo_videos/video1.dcm", save=False)
    assert path.read_text() == GUIDE_CSV
    store.save()
    assert LabelStore(path).paths() == ["echo_videos/video2.dcm", "new.dcm"]


def test_remove_keeps_a_row_that_holds_other_columns(tmp_path):
    path = tmp_path / "labels.csv"
    path.write_text("video_path,quality_score,site,notes\na.dcm,1,Ward 3,blurry\nb.dcm,0,,\n")
    store = LabelStore(path)
    store.remove("a.dcm")
    store.remove("b.dcm")
    assert rows_of(path) == [["video_path", "quality_score", "site", "notes"],
                             ["a.dcm", "", "Ward 3", ""]]
    assert store.get("a.dcm") is None and store.paths() == []


def test_unlabelled_rows_stay_listed_and_are_labelled_in_place(tmp_path):
    path = tmp_path / "labels.csv"
    path.write_text("video_path,quality_score\na.dcm,\nb.dcm,1\n\n")
    store = LabelStore(path)
    assert store.get("a.dcm") is None and store.paths() == ["b.dcm"] and len(store) == 1
    assert store.to_frame(include_unlabelled=True)["video_path"].tolist() == ["a.dcm", "b.dcm"]
    store.save()
    assert path.read_text() == "video_path,quality_score\na.dcm,\nb.dcm,1\n\n"
    store.set("a.dcm", 0.5, labeled_at=STAMP)
    assert store.paths() == ["a.dcm", "b.dcm"]
    assert rows_of(path)[1] == ["a.dcm", "0.5", STAMP]


def test_paths_relative_absolute_and_windows_style(tmp_path):
    root = tmp_path / "data"
    (root / "echo").mkdir(parents=True)
    csv_path = tmp_path / "labels.csv"
    inside = root / "echo" / "b.dcm"
    csv_path.write_text(f"video_path,quality_score\necho\\a.dcm,1\n{inside},0\n")
    store = LabelStore(csv_path, root=root)
    assert store.root == root
    assert store.paths() == ["echo/a.dcm", "echo/b.dcm"]
    assert store.get(root / "echo" / "a.dcm").quality_score == 1.0
    assert store.get("./echo/b.dcm").quality_score == 0.0
    assert store.get("echo/sub/../a.dcm").quality_score == 1.0
    assert store.resolve("echo/a.dcm") == root / "echo" / "a.dcm"
    assert store.resolve(inside) == inside
    assert store.relative(root / "echo" / "c.dcm") == "echo/c.dcm"

    store.set(root / "echo" / "c.dcm", 1, labeled_at=STAMP)
    store.set(inside, 1, labeled_at=STAMP)
    assert [row[0] for row in rows_of(csv_path)[1:]] == ["echo\\a.dcm", str(inside), "echo/c.dcm"]

    for outside in (tmp_path / "other.dcm", "../other.dcm", "echo/../../x.dcm"):
        with pytest.raises(LabelError, match="outside the dataset folder"):
            store.relative(outside)
    with pytest.raises(LabelError, match="outside the dataset folder"):
        store.set(tmp_path / "other.dcm", 1)


def test_symlinked_root_accepts_real_paths(tmp_path):
    real = tmp_path / "real"
    real.mkdir()
    link = tmp_path / "link"
    link.symlink_to(real, target_is_directory=True)
    store = LabelStore(link / "labels.csv")
    store.set(real / "a.dcm", 1)
    assert store.paths() == ["a.dcm"] and store.get(link / "a.dcm") is not None


BAD_FILES = [
    ("path,quality_score\na.dcm,1\n", 1, ["missing column 'video_path'", "path, quality_score"]),
    ("video_path,score\na.dcm,1\n", 1, ["missing column 'quality_score'"]),
    ("video_path,quality_score,x,x\na.dcm,1,,\n", 1, ["column 'x' appears more than once"]),
    ("video_path,quality_score\na.dcm,1\nb.dcm,good\n", 3, ["'good'", "not a number"]),
    ("video_path,quality_score\na.dcm,nan\n", 2, ["not a number"]),
    ("video_path,quality_score\na.dcm,1\nb.dcm,1.5\n", 3, ["1.5", "out of range"]),
    ("video_path,quality_score\na.dcm,-1\n", 2, ["out of range"]),
    ("video_path,quality_score\na.dcm,1\nb.dcm,0\nc.dcm,1\n./a.dcm,0\n", 5,
     ["duplicate video_path 'a.dcm'", "row 2"]),
    ("video_path,quality_score\na.dcm,1\n../up.dcm,0\n", 3, ["'../up.dcm'", "outside"]),
    ("video_path,quality_score\n/elsewhere/x.dcm,0\n", 2, ["'/elsewhere/x.dcm'", "outside"]),
    ("video_path,quality_score\na.dcm,1\n,1\n", 3, ["empty video_path"]),
    ("video_path,quality_score,notes\na.dcm,1,\"two\nlines\"\nb.dcm,x\n", 3, ["not a number"]),
    ("video_path,quality_score\na.dcm,1,extra\n", 2, ["3 values", "2 columns"]),
    ("video_path,quality_score,issues\na.dcm,1,Off Axis\n", 2, ["'Off Axis'", "issue tag"]),
    ("video_path,quality_score,labeled_at\na.dcm,1,yesterday\n", 2, ["'yesterday'", "ISO 8601"]),
]


@pytest.mark.parametrize(("text", "row", "words"), BAD_FILES)
def test_bad_file_error_names_the_row_and_the_problem(tmp_path, text, row, words):
    path = tmp_path / "labels.csv"
    path.write_text(text)
    with pytest.raises(LabelError) as info:
        LabelStore(path)
    message = str(info.value)
    assert message.startswith(f"row {row}: ") and info.value.row == row
    for word in words:
        assert word in message
    assert path.read_text() == text  # nothing rewritten


def test_every_bad_row_is_listed(tmp_path):
    path = tmp_path / "labels.csv"
    path.write_text("video_path,quality_score\n" + "".join(f"c{k}.dcm,9\n" for k in range(8)))
    with pytest.raises(LabelError) as info:
        LabelStore(path)
    assert [row for row, _ in info.value.problems] == list(range(2, 10))
    assert "row 2:" in str(info.value) and "row 6:" in str(info.value)
    assert "(and 3 more problems)" in str(info.value)


def test_non_utf8_file_is_refused_with_advice(tmp_path):
    path = tmp_path / "labels.csv"
    path.write_bytes("video_path,quality_score\nSéance.dcm,1\n".encode("cp1252"))
    with pytest.raises(LabelError, match="not UTF-8.*CSV UTF-8"):
        LabelStore(path)


@pytest.mark.parametrize(("score", "words"), [
    (1.5, "out of range"), (-0.1, "out of range"), ("high", "not a number"),
    (float("nan"), "not a number"), (None, "not a number")])
def test_set_refuses_bad_scores(tmp_path, score, words):
    store = LabelStore(tmp_path / "labels.csv")
    with pytest.raises(LabelError, match=words):
        store.set("a.dcm", score)
    assert len(store) == 0 and not store.csv_path.exists()


def test_set_refuses_bad_issue_tags_and_dates(tmp_path):
    store = LabelStore(tmp_path / "labels.csv")
    with pytest.raises(LabelError, match="issue tag 'Off axis'"):
        store.set("a.dcm", 1, issues=["Off axis"])
    with pytest.raises(LabelError, match="ISO 8601"):
        store.set("a.dcm", 1, labeled_at="31/01/2025")
    with pytest.raises(LabelError, match="empty video_path"):
        store.set("  ", 1)
    assert check_issues("dropout;my_tag_2;dropout") == ("dropout", "my_tag_2")


def test_semicolon_file_with_decimal_commas(tmp_path):
    path = tmp_path / "labels.csv"
    text = "video_path;quality_score;site\na.dcm;0,75;x\nb.dcm;1;y\n"
    path.write_text(text)
    store = LabelStore(path)
    assert store.get("a.dcm").quality_score == 0.75 and store.is_continuous()
    store.save()
    assert path.read_text() == text
    store.set("b.dcm", 0, labeled_at=STAMP)
    assert path.read_text().splitlines()[2] == f"b.dcm;0;y;{STAMP}"


def test_multiline_notes_round_trip(tmp_path):
    store = LabelStore(tmp_path / "labels.csv")
    notes = 'first line\nsecond, "quoted" line\r\nthird'
    store.set("a.dcm", 1, notes=notes, labeled_at=STAMP)
    store.set("b.dcm", 0, labeled_at=STAMP)
    again = LabelStore(store.csv_path)
    assert again.get("a.dcm").notes == notes and again.paths() == ["a.dcm", "b.dcm"]
    before = store.csv_path.read_bytes()
    again.save()
    assert store.csv_path.read_bytes() == before


def test_new_store_saves_the_guide_header(tmp_path):
    store = LabelStore(tmp_path / "labels.csv")
    assert not store.changed_on_disk()
    store.save()
    assert store.csv_path.read_text() == "video_path,quality_score\n"
    store.csv_path.write_text("")
    assert len(LabelStore(store.csv_path)) == 0


def test_conflicting_save_is_refused_then_merged(tmp_path):
    path = tmp_path / "labels.csv"
    path.write_text(GUIDE_CSV)
    gui = LabelStore(path)
    other = LabelStore(path)
    other.set("echo_videos/video2.dcm", 1, rater="Other", labeled_at=STAMP)
    other.set("echo_videos/video9.dcm", 0, labeled_at=STAMP)
    written_by_other = path.read_bytes()

    assert gui.changed_on_disk()
    with pytest.raises(LabelConflictError, match="changed by another program"):
        gui.set("echo_videos/video1.dcm", 0, rater="Me", labeled_at=STAMP)
    gui.remove("echo_videos/video9.dcm", save=False)  # not known here yet: nothing to undo
    gui.set("echo_videos/video3.dcm", 0.5, labeled_at=STAMP, save=False)
    assert path.read_bytes() == written_by_other  # nothing overwritten

    assert gui.merge_from_disk() == ["echo_videos/video1.dcm", "echo_videos/video3.dcm"]
    gui.save()
    merged = LabelStore(path)
    assert merged.paths() == ["echo_videos/video1.dcm", "echo_videos/video2.dcm",
                              "echo_videos/video9.dcm", "echo_videos/video3.dcm"]
    assert merged.get("echo_videos/video1.dcm").rater == "Me"
    assert merged.get("echo_videos/video2.dcm").rater == "Other"
    assert not gui.changed_on_disk() and other.changed_on_disk()


def test_merge_reapplies_removals_and_survives_a_bad_disk_file(tmp_path):
    path = tmp_path / "labels.csv"
    path.write_text(GUIDE_CSV)
    store = LabelStore(path)
    store.remove("echo_videos/video1.dcm", save=False)
    path.write_text(GUIDE_CSV + "echo_videos/video5.dcm,oops\n")
    with pytest.raises(LabelError, match="row 4: quality_score 'oops'"):
        store.merge_from_disk()
    assert store.paths() == ["echo_videos/video2.dcm"]  # our state and change are kept
    path.write_text(GUIDE_CSV + "echo_videos/video5.dcm,1\n")
    store.merge_from_disk()
    store.save()
    assert LabelStore(path).paths() == ["echo_videos/video2.dcm", "echo_videos/video5.dcm"]


def test_changed_on_disk_ignores_touch_and_sees_replace_and_delete(tmp_path):
    path = tmp_path / "labels.csv"
    path.write_text(GUIDE_CSV)
    store = LabelStore(path)
    assert not store.changed_on_disk()
    os.utime(path, ns=(1_000_000_000, 1_000_000_000))
    assert not store.changed_on_disk()
    path.write_text(GUIDE_CSV.replace(",1\n", ",0\n"))  # same size, other bytes
    assert store.changed_on_disk()
    store.load()
    assert not store.changed_on_disk()
    path.unlink()
    assert store.changed_on_disk()
    store.set("a.dcm", 1, save=False)
    with pytest.raises(LabelConflictError):
        store.save()
    store.save(force=True)
    assert LabelStore(path).paths() == ["echo_videos/video1.dcm", "echo_videos/video2.dcm",
                                        "a.dcm"]


def test_save_keeps_the_file_mode_and_leaves_no_temp_file(tmp_path):
    path = tmp_path / "labels.csv"
    path.write_text(GUIDE_CSV)
    os.chmod(path, 0o640)
    store = LabelStore(path)
    store.set("a.dcm", 1)
    assert os.stat(path).st_mode & 0o777 == 0o640
    assert sorted(p.name for p in tmp_path.iterdir()) == [".labels.csv.lock", "labels.csv"]


@pytest.mark.slow
@pytest.mark.skipif(os.name != "posix", reason="process probe is POSIX-only")
def test_save_removes_temp_files_left_by_dead_writers(tmp_path):
    path = tmp_path / "labels.csv"
    store = LabelStore(path)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    alive = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        dead_tmp = tmp_path / f".labels.csv.tmp-{dead.stdout.strip()}-0001"
        alive_tmp = tmp_path / f".labels.csv.tmp-{alive.pid}-0002"
        old_tmp = tmp_path / f".labels.csv.tmp-{alive.pid}-0003"
        for tmp in (dead_tmp, alive_tmp, old_tmp):
            tmp.write_text("video_path,quality_score\ntorn")
        os.utime(old_tmp, (time.time() - 2 * 3600,) * 2)
        store.set("a.dcm", 1)
        assert not dead_tmp.exists() and not old_tmp.exists()
        assert alive_tmp.exists()  # another writer may still be using it
    finally:
        alive.kill()
        alive.wait()
    assert LabelStore(path).paths() == ["a.dcm"]


# --- a writer killed mid-save never leaves a torn file ------------------------------------------
N_CLIPS = 20_000
N_KILLS = 30


def apply_version(store, version):
    """Make ``store`` version ``version`` of the big test file (a pure function of the number)."""
    stamp = "2025-01-31T14:05:09+01:00"
    store.set("marker.dcm", version % 2, notes=f"version {version}", labeled_at=stamp, save=False)
    for k in range(0, 20_000, 67):  # the same rows each time, spread over the file
        store.set(f"clips/c{k:05d}.dcm", (k + version) % 4 / 4, rater=f"rater {version % 3}",
                  notes=f'v{version}, row "{k}"', labeled_at=stamp, save=False)
    for k in range(30):  # the file grows and shrinks from version to version
        if k < version % 30:
            store.set(f"extra/e{k:02d}.dcm", 1, issues="dropout", labeled_at=stamp, save=False)
        else:
            store.remove(f"extra/e{k:02d}.dcm", save=False)


WRITER = """
import sys
from echoquality_core.labels.store import LabelStore
store = LabelStore(sys.argv[1])
version = int(store.get("marker.dcm").notes.split()[1])
print("ready", flush=True)
while True:
    version += 1
    apply_version(store, version)
    store.save()
"""


def write_base_file(path: Path) -> None:
    store = LabelStore(path)
    for k in range(N_CLIPS):
        notes = f'line one\nline "two", {k}' if k % 97 == 0 else f"clip {k}"
        store.set(f"clips/c{k:05d}.dcm", k % 2, rater=None if k % 3 else "Dr A", notes=notes,
                  issues="off_axis;poor_gain" if k % 5 == 0 else None, labeled_at=STAMP,
                  save=False)
    apply_version(store, 0)
    store.save()


@pytest.mark.slow
@pytest.mark.skipif(os.name != "posix", reason="SIGKILL is POSIX-only")
def test_writer_killed_mid_save_never_leaves_a_torn_file(tmp_path):
    path = tmp_path / "labels.csv"
    write_base_file(path)
    base = tmp_path / "base.csv"
    base.write_bytes(path.read_bytes())
    code = inspect.getsource(apply_version) + WRITER
    env = dict(os.environ, PYTHONPATH=str(REPO))
    rng = random.Random(1234)
    seen = [0]
    torn_temps = 0

    @functools.cache
    def expected(version):
        store = LabelStore(base)  # the base file, then straight to this version
        apply_version(store, version)
        return store.to_frame(include_unlabelled=True)

    for _ in range(N_KILLS):
        before = path.stat().st_mtime_ns, path.stat().st_ino
        writer = subprocess.Popen([sys.executable, "-c", code, str(path)], env=env, cwd=tmp_path,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        ready = writer.stdout.readline()
        assert ready == "ready\n", writer.communicate()[1]
        deadline = time.monotonic() + 30
        while (path.stat().st_mtime_ns, path.stat().st_ino) == before:  # one save at least
            assert time.monotonic() < deadline, "the writer never saved"
            time.sleep(0.001)
        time.sleep(rng.uniform(0.0, 0.15))
        os.kill(writer.pid, signal.SIGKILL)
        writer.communicate()
        assert writer.returncode == -signal.SIGKILL

        torn_temps += len(list(tmp_path.glob(".labels.csv.tmp-*")))
        store = LabelStore(path)  # parses completely
        version = int(store.get("marker.dcm").notes.split()[1])
        assert version >= seen[-1]
        assert len(store) == N_CLIPS + 1 + version % 30
        assert store.paths()[-1] == ("marker.dcm" if version % 30 == 0
                                     else f"extra/e{version % 30 - 1:02d}.dcm")
        frame = store.to_frame(include_unlabelled=True)
        assert frame.equals(expected(version)), f"version {version} differs from what was written"
        seen.append(version)

    assert seen[-1] >= N_KILLS  # every writer saved at least once before it was killed
    LabelStore(path).save()
    assert [p.name for p in tmp_path.glob(".labels.csv.tmp-*")] == []
    print(f"versions seen: {seen[1:]}; kills that left a temp file: {torn_temps}")


def test_label_rows_parse_as_plain_csv(tmp_path):
    """Other tools (pandas, the guide's script) read what we write."""
    import pandas

    store = LabelStore(tmp_path / "labels.csv")
    store.set("a.dcm", 1, issues=["off_axis"], notes="x, y", labeled_at=STAMP)
    store.set("b.dcm", 0.25, labeled_at=STAMP)
    frame = pandas.read_csv(io.StringIO(store.csv_path.read_text()))
    assert frame["video_path"].tolist() == ["a.dcm", "b.dcm"]
    assert frame["quality_score"].tolist() == [1.0, 0.25]
    assert frame["notes"].tolist()[0] == "x, y"
