"""Labels per rater: the per-rater file, the training-table policy, adjudication, one-rater
projects unchanged, and a writer killed mid-save."""
from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from echoquality_core.labels.store import LabelError, LabelStore
from echoquality_core.labels.project import Project
from echoquality_core.labels.raters import (
    RaterStore,
    adjudication_queue,
    consensus,
    read_policy,
    training_table_params,
)

REPO = Path(__file__).parent.parent
STAMP = "2025-01-31T14:05:09+01:00"


def project_with(tmp_path: Path, text: str = "video_path,quality_score\n") -> Project:
    (tmp_path / "labels.csv").write_bytes(text.encode())
    return Project(tmp_path)


def rate(project: Project, rater: str, scores: dict[str, float]) -> None:
    for rel, score in scores.items():
        project.set_label(rel, score, rater=rater)


def table(project: Project) -> dict[str, float]:
    store = LabelStore(project.csv_path)
    return {rel: store.get(rel).quality_score for rel in store.paths()}


def test_two_raters_keep_their_own_labels_and_the_table_follows_the_policy(tmp_path):
    project = project_with(tmp_path)
    rate(project, "ann", {"a.dcm": 1, "b.dcm": 1, "c.dcm": 0, "d.dcm": 0.75})
    assert not project.raters.exists  # one rater: the labels CSV alone, as before
    rate(project, "bob", {"a.dcm": 1, "b.dcm": 0, "c.dcm": 0, "d.dcm": 0.25})
    rate(project, "cy", {"b.dcm": 0})
    store = RaterStore(tmp_path / "labels_by_rater.csv")
    assert store.raters() == ["ann", "bob", "cy"]
    assert [(la.rater, la.quality_score) for la in store.labels("b.dcm")] == [
        ("ann", 1.0), ("bob", 0.0), ("cy", 0.0)]
    project.rater = "bob"
    assert project.label("b.dcm").quality_score == 0.0  # the rater's own label
    # majority (default): b 2 of 3 say 0; d is a 1:1 tie -> left out until adjudicated
    assert read_policy(project.csv_path) == "majority"
    assert table(project) == {"a.dcm": 1.0, "b.dcm": 0.0, "c.dcm": 0.0}
    assert LabelStore(project.csv_path).get("b.dcm").rater == "ann+bob+cy"
    changed = project.set_policy("mean")
    assert sorted(changed) == ["b.dcm", "d.dcm"]
    assert table(project) == pytest.approx({"a.dcm": 1, "b.dcm": 1 / 3, "c.dcm": 0, "d.dcm": .5})
    project.set_policy("latest")  # the last label given: cy's 0 on b, bob's .25 on d
    assert table(project) == {"a.dcm": 1.0, "b.dcm": 0.0, "c.dcm": 0.0, "d.dcm": 0.25}
    assert training_table_params(project.csv_path) == {
        "label_policy": "latest", "n_raters": 3, "n_adjudicated": 0}
    with pytest.raises(ValueError, match="unknown label policy"):
        project.set_policy("loudest")


def test_adjudication_is_final_recorded_with_who_and_when_and_undoable(tmp_path):
    project = project_with(tmp_path)
    rate(project, "ann", {"a.dcm": 1, "b.dcm": 1, "c.dcm": 0.5})
    rate(project, "bob", {"a.dcm": 0, "b.dcm": 1, "c.dcm": 0})
    queue = adjudication_queue(project.raters)
    assert [(d.rel, d.spread) for d in queue] == [("a.dcm", 1.0), ("c.dcm", 0.5)]
    assert "a.dcm" not in table(project)  # a tie under majority
    change = project.adjudicate("a.dcm", 0, by="Dr Chief", notes="apex cut off")
    assert table(project)["a.dcm"] == 0.0
    row = LabelStore(project.csv_path).get("a.dcm")
    assert (row.rater, row.notes) == ("Dr Chief", "apex cut off")
    decided = RaterStore(project.raters.path).adjudication("a.dcm")
    assert decided.rater == "Dr Chief" and decided.labeled_at == change.after.labeled_at
    assert adjudication_queue(project.raters)[-1].adjudication == decided  # decided go last
    project.set_policy("mean")
    assert table(project)["a.dcm"] == 0.0  # adjudicated wins under every policy
    project.undo()
    assert RaterStore(project.raters.path).adjudication("a.dcm") is None
    assert table(project)["a.dcm"] == 0.5  # back to the policy (mean)
    project.redo()
    assert table(project)["a.dcm"] == 0.0


def test_one_rater_project_round_trips_byte_for_byte(tmp_path):
    text = ("\ufeffvideo_path;quality_score;site;rater\r\n"
            '"x/a.dcm";1;"north";ann\r\n'
            "x/b.dcm;0,75;south;\r\n"
            "x/c.dcm;;west;\r\n")
    data = text.encode()
    project = project_with(tmp_path, text)
    project.rater = "ann"
    assert project.label("x/b.dcm").quality_score == 0.75
    assert (tmp_path / "labels.csv").read_bytes() == data
    change = project.set_label("x/d.dcm", 1, rater="ann")
    assert change.rater is None and not project.raters.exists  # the labels CSV alone
    # the labels CSV alone, beside the hidden lock that keeps two writers apart
    assert sorted(p.name for p in tmp_path.iterdir()) == [".labels.csv.lock", "labels.csv"]
    plain = tmp_path / "plain" / "labels.csv"  # the label store alone writes the same bytes
    plain.parent.mkdir()
    plain.write_bytes(data)
    LabelStore(plain).set("x/d.dcm", 1, rater="ann", labeled_at=change.after.labeled_at)
    assert (tmp_path / "labels.csv").read_bytes() == plain.read_bytes()
    # a second rater starts the per-rater file; the rows she did not touch keep their bytes
    before = (tmp_path / "labels.csv").read_bytes().decode().split("\r\n")
    project.set_label("x/b.dcm", 0.75, rater="bob")
    after = (tmp_path / "labels.csv").read_bytes().decode().split("\r\n")
    assert [i for i, (x, y) in enumerate(zip(before, after)) if x != y] == [2]
    assert after[2].startswith("x/b.dcm;0,75;south;unnamed+bob;")
    assert [(la.rater, la.quality_score) for la in project.raters.labels("x/b.dcm")] == [
        ("unnamed", 0.75), ("bob", 0.75)]


def test_consensus_rules_and_bad_rows():
    from echoquality_core.labels.store import Label

    def lab(score, rater, at, tags=()):
        return Label("a.dcm", score, rater, at, tags, None)

    labels = [lab(1, "x", "2025-01-01T10:00:00+00:00", ("dropout",)),
              lab(0.75, "y", "2025-01-01T12:00:00+00:00", ("dropout", "off_axis")),
              lab(1, "z", "2025-01-01T09:00:00+00:00")]
    assert consensus(labels, "majority").quality_score == 1.0
    assert consensus(labels, "majority").issues == ("dropout",)  # given by half or more
    assert consensus(labels, "mean").quality_score == pytest.approx(2.75 / 3)
    assert consensus(labels, "latest").rater == "y"
    assert consensus(labels[:1], "mean") is labels[0]


def test_bad_per_rater_file_names_the_row(tmp_path):
    path = tmp_path / "labels_by_rater.csv"
    path.write_text("video_path,rater,role,quality_score\na.dcm,ann,rater,1\nb.dcm,ann,rater,7\n")
    with pytest.raises(LabelError, match="row 3.*out of range"):
        RaterStore(path)


def test_two_apps_writing_the_same_file_keep_each_others_labels(tmp_path):
    path = tmp_path / "labels_by_rater.csv"
    one, two = RaterStore(path), RaterStore(path)
    one.set("a.dcm", "ann", 1)
    two.set("a.dcm", "bob", 0)
    one.set("b.dcm", "ann", 1)
    assert [(la.video_path, la.rater) for la in RaterStore(path).labels()] == [
        ("a.dcm", "ann"), ("a.dcm", "bob"), ("b.dcm", "ann")]


N_KILLS = 8
WRITER = """
import sys
from echoquality_core.labels.raters import RaterStore
store = RaterStore(sys.argv[1])
version = int(store.get("marker.dcm", "ann").notes)
print("ready", flush=True)
while True:
    version += 1
    for k in range(300):
        store.set(f"c{k:03d}.dcm", f"r{k % 3}", (k + version) % 5 / 4, notes=f"v{version}",
                  labeled_at="2025-01-31T14:05:09+01:00", save=False)
    store.set("marker.dcm", "ann", 1, notes=str(version), save=False)
    store.save()
"""


@pytest.mark.slow
@pytest.mark.skipif(os.name != "posix", reason="SIGKILL is POSIX-only")
def test_writer_killed_mid_save_loses_nothing(tmp_path):
    path = tmp_path / "labels_by_rater.csv"
    RaterStore(path).set("marker.dcm", "ann", 1, notes="0")
    env = dict(os.environ, PYTHONPATH=str(REPO))
    rng = random.Random(12)
    seen = 0
    for _ in range(N_KILLS):
        before = path.stat().st_mtime_ns, path.stat().st_ino
        writer = subprocess.Popen([sys.executable, "-c", WRITER, str(path)], env=env,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert writer.stdout.readline() == "ready\n", writer.communicate()[1]
        deadline = time.monotonic() + 30
        while (path.stat().st_mtime_ns, path.stat().st_ino) == before:
            assert time.monotonic() < deadline, "the writer never saved"
            time.sleep(0.001)
        time.sleep(rng.uniform(0.0, 0.1))
        os.kill(writer.pid, signal.SIGKILL)
        writer.communicate()
        store = RaterStore(path)  # parses completely
        version = int(store.get("marker.dcm", "ann").notes)
        assert version > seen
        assert len(store) == 301  # every row of the last complete save
        assert {la.notes for la in store.labels() if la.video_path != "marker.dcm"} == {
            f"v{version}"}
        seen = version


def test_cli_raters_and_adjudicate(tmp_path, capsys):
    from echoquality_core.cli.main import main

    project = project_with(tmp_path)
    rate(project, "ann", {"a.dcm": 1, "b.dcm": 0})
    rate(project, "bob", {"a.dcm": 0, "b.dcm": 0})
    csv_arg = ["--csv", str(project.csv_path)]
    assert main(["raters", *csv_arg, "--policy", "mean"]) == 0
    out = capsys.readouterr().out
    assert "Policy set to mean: 1 training-table rows changed" in out
    assert "ann: 2 clips" in out and "Disagreements: 1 (0 adjudicated)" in out
    assert table(project)["a.dcm"] == 0.5
    assert main(["adjudicate", *csv_arg]) == 0
    assert capsys.readouterr().out.startswith("a.dcm  spread 1  ann 1, bob 0")
    assert main(["adjudicate", *csv_arg, "--clip", "a.dcm", "--score", "1", "--by", "Dr C"]) == 0
    assert "final label 1 by Dr C" in capsys.readouterr().out
    assert table(project)["a.dcm"] == 1.0
    assert main(["adjudicate", *csv_arg, "--clip", "a.dcm", "--score", "3", "--by", "C"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "out of range" in err
    lone = tmp_path / "lone"
    lone.mkdir()
    (lone / "labels.csv").write_text("video_path,quality_score\na.dcm,1\n")
    assert main(["agreement", "--csv", str(lone / "labels.csv")]) == 2
    assert "one rater only" in capsys.readouterr().err
