"""The Review tab reads a run's test scores and out-of-fold scores as the model's decision does:
once a calibration is saved into the model, the tab calls each clip as score, gradcam, pyfunc,
SR and the report do (``decision.Decision.verdicts``), not the raw scores at the threshold."""
from __future__ import annotations

import json

import pytest

from echoquality_core.decision import Decision
from echoquality_core.demo.project import write_demo_project
from echoquality_core.labels.store import LabelStore
from echoquality_core.runs.folder import RunFolder
from echoquality_gui.common.session import Session
from echoquality_gui.review.collect import collect_review

CALIBRATION = {"method": "platt", "a": 3.0, "b": -1.2}  # moves scores across the threshold


@pytest.fixture
def session_with_run(qtbot, tmp_path):
    csv_path = write_demo_project(tmp_path / "p", n_clips=8, n_frames=4, height=64, width=80,
                                  unlabelled=0.0)
    session = Session()
    session.open_project(csv_path.parent)
    qtbot.waitUntil(lambda: not session.scanning, timeout=60_000)
    store = LabelStore(csv_path)
    rels = store.paths()
    raw = [0.30, 0.45, 0.52, 0.58, 0.62, 0.40, 0.70, 0.35][: len(rels)]
    run = RunFolder(tmp_path / "run")
    run.path.mkdir()
    run.write_predictions([{"path": rel, "label": store.get(rel).quality_score, "score": s}
                           for rel, s in zip(rels, raw)], {rel: rel for rel in rels})
    run.summary.write_text(json.dumps({"threshold": 0.5}), encoding="utf-8")
    session.model_path, session.run_dir = tmp_path / "run" / "best.pt", run.path
    yield session, dict(zip(rels, raw))
    session.close()


def test_a_runs_test_split_is_read_with_the_models_saved_calibration(session_with_run):
    session, raw = session_with_run
    session.threshold, session.calibration = 0.5, None
    plain = {c.rel: (c.score, c.called_good) for c in collect_review(session).clips}
    assert plain == {rel: (pytest.approx(s), s >= 0.5) for rel, s in raw.items()}

    session.threshold, session.calibration = 0.55, CALIBRATION  # saved in the threshold panel
    reviewed = {c.rel: (c.score, c.called_good) for c in collect_review(session).clips}
    decision = Decision(0.55, CALIBRATION)
    expected = {rel: (pytest.approx(v.score), v.passed)
                for rel, v in zip(raw, decision.verdicts(list(raw.values())))}
    assert reviewed == expected
    assert {rel for rel in raw if plain[rel][1] != reviewed[rel][1]}  # the calls really moved
