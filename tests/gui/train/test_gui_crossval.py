"""The Review tab's threshold and calibration panel, review scope and label-noise list, and the
Train tab's Cross-validate mode, on a real tiny trained run (offscreen Qt, real model)."""
from __future__ import annotations

import csv
import shutil
from pathlib import Path

import pytest
import torch
from PySide6.QtCore import Qt

from echoquality_core.train.folds import write_oof
from echoquality_core.train.events import CrossValEnd
from echoquality_core.labels.store import LabelStore
from echoquality_core.scoring.score import score_clips

pytestmark = [pytest.mark.slow,
              pytest.mark.filterwarnings("ignore:No weights given:UserWarning")]
TIMEOUT = 300000


@pytest.fixture
def review_tab(qtbot, studio_window, open_project, trained_run, tmp_path):
    """The window on the Review tab with a private copy of the trained run's model loaded."""
    root, end = trained_run
    copy = Path(shutil.copytree(root, tmp_path / "project", ignore=shutil.ignore_patterns(
        "mlruns.db", "mlartifacts")))
    run_dir = copy / end.run_dir.relative_to(root)
    open_project(copy)
    session = studio_window.session
    with qtbot.waitSignal(session.scores_changed, timeout=TIMEOUT,
                          check_params_cb=lambda: bool(session.scores)):
        session.set_model(run_dir / "best.pt", run_dir=run_dir, threshold=end.threshold)
    studio_window.tabs.setCurrentWidget(studio_window.review)
    return studio_window.review, copy, run_dir


def _test_scores(run_dir: Path) -> dict[str, float]:
    with open(run_dir / "test_predictions.csv", newline="") as fh:
        return {r["video_path"]: float(r["score"]) for r in csv.DictReader(fh)}


def test_slider_lists_exactly_the_crossed_clips_and_save_is_what_score_uses(
        qtbot, review_tab, screenshot, studio_window):
    tab, root, run_dir = review_tab
    panel = tab.threshold_panel
    tab.lists.setCurrentWidget(panel)
    scores = _test_scores(run_dir)
    saved = panel.choice.saved
    assert set(panel.choice.rels) == set(scores)  # the run's own test split
    assert "test split" in tab.source.text()
    for new in sorted(scores.values())[1:4] + [0.0, 1.0, saved]:
        panel.set_threshold(new)
        tried = round(new * 1000) / 1000
        crossed = {rel for rel, s in scores.items() if (s >= saved) != (s >= tried)}
        assert set(panel.flipped_rels()) == crossed, (new, saved)
        assert panel.value.text() == f"{tried:.3f}"
    panel.set_threshold(0.5)
    qtbot.waitUntil(lambda: "95% CI" in panel.ci.text() or "one class" in panel.ci.text(),
                    timeout=TIMEOUT)
    assert "patient(s)" in panel.ci.text()
    screenshot(studio_window, "review_threshold_panel.png")

    session = studio_window.session
    qtbot.mouseClick(panel.save_button, Qt.MouseButton.LeftButton)
    with qtbot.waitSignal(session.scores_changed, timeout=TIMEOUT):
        qtbot.waitUntil(lambda: tab.save_worker.isFinished(), timeout=TIMEOUT)
    checkpoint = torch.load(run_dir / "best.pt", map_location="cpu", weights_only=True)
    assert checkpoint["threshold"] == pytest.approx(0.5)
    assert session.threshold == pytest.approx(0.5)
    table = score_clips(root / "clips", run_dir / "best.pt", device="cpu", num_workers=0)
    assert table.attrs["threshold"] == pytest.approx(0.5)
    assert list(table["pass"]) == [s >= 0.5 for s in table["score"]]
    assert (root / ".echoquality" / "decision.json").is_file()


def test_out_of_fold_scope_and_label_noise_list_keep_and_flip(qtbot, review_tab, screenshot,
                                                              studio_window):
    tab, root, run_dir = review_tab
    store = LabelStore(root / "labels.csv")
    labelled = store.paths()
    model_scores = studio_window.session.scores
    rows = [{"video_path": rel, "label": store.get(rel).quality_score,
             "score": model_scores[rel], "fold": 1 + i % 3, "threshold": 0.5,
             "group": f"p{i // 2:03d}", "n_scores": 1} for i, rel in enumerate(labelled)]
    write_oof(root / "crossval" / "cv-test" / "oof_scores.csv", rows)
    tab.refresh()
    tab.scope.choose(root / "crossval" / "cv-test" / "oof_scores.csv")
    assert len(tab.review_set.clips) == len(labelled)  # every labelled clip, out-of-fold
    assert "out-of-fold" in tab.source.text() and "cv-test" in tab.source.text()
    assert tab.metric_labels["n"].text() == str(len(labelled))

    issues = tab.label_issues
    tab.lists.setCurrentWidget(issues)
    qtbot.waitUntil(lambda: issues.table.rowCount() == len(labelled), timeout=TIMEOUT)
    first = issues.table.item(0, 0).data(Qt.ItemDataRole.UserRole)
    before = store.get(first).quality_score
    issues.select(first)
    assert tab.rel == first
    qtbot.waitUntil(lambda: tab.heat_map is not None, timeout=TIMEOUT)  # cine + GradCAM
    screenshot(studio_window, "review_label_issues.png")
    issues.flip.emit(first)
    studio_window.session.saver.flush()  # the CSV is written in the background
    after = LabelStore(root / "labels.csv").get(first)
    assert after.quality_score == (0.0 if before >= 0.5 else 1.0)
    assert "reviewed" in after.issues and after.rater and after.labeled_at

    qtbot.waitUntil(lambda: issues.table.rowCount() == len(labelled), timeout=TIMEOUT)
    other = next(r["video_path"] for r in issues.issues if r["video_path"] != first)
    kept = store.get(other).quality_score
    issues.select(other)
    issues.keep.emit(other)
    studio_window.session.saver.flush()
    now = LabelStore(root / "labels.csv").get(other)
    assert now.quality_score == kept and "reviewed" in now.issues


def test_train_tab_cross_validates_and_the_review_tab_offers_its_scores(
        qtbot, studio_window, open_project, tmp_path):
    from echoquality_core.demo.project import write_demo_project

    root = tmp_path / "p"
    write_demo_project(root, n_clips=12, n_frames=4, height=48, width=64, seed=2, unlabelled=0.0)
    open_project(root)
    panel = studio_window.train_panel
    studio_window.tabs.setCurrentWidget(panel)
    panel.form.epochs.setValue(1)
    panel.form.batch_size.setValue(4)
    panel.form.n_frames.setValue(4)
    panel.extra.update({"stride": 1, "size": 32, "device": "cpu", "use_mlflow": False})
    panel.crossval_mode.enabled.setChecked(True)
    panel.crossval_mode.folds.setValue(2)
    assert panel.settings()["crossval_folds"] == 2
    with qtbot.waitSignal(panel.ended, timeout=600000) as ended:
        qtbot.mouseClick(panel.train_button, Qt.MouseButton.LeftButton)
        qtbot.waitUntil(lambda: panel.stage.text().startswith("Fold"), timeout=600000)
    end = ended.args[0]
    assert isinstance(end, CrossValEnd) and end.error is None and end.folds_done == 2, end
    assert end.oof_csv.is_file()
    assert "Cross-validation: 2 of 2 folds done" in panel.summary.toPlainText()
    review = studio_window.review
    review.refresh()
    review.scope.choose(end.oof_csv)
    assert len(review.review_set.clips) == len(LabelStore(root / "labels.csv").paths())
