"""The Review tab on a real tiny trained run: metrics of the run's test split, the model's
mistakes most confident first, GradCAM following playback, the clickable confusion matrix, and
relabel / confirm written to the labels CSV (undoable)."""
from __future__ import annotations

import csv
import shutil
from pathlib import Path

import numpy as np
import pytest
from PySide6.QtCore import Qt

from echoquality_core.scoring.heatmap import clip_frame_map, frame_importance
from echoquality_core.labels.store import LabelStore
from echoquality_core.labels.store import REVIEWED

TIMEOUT = 60000


@pytest.fixture
def review_copy(trained_run, tmp_path):
    """A private copy of the trained project and its run, with at least one test clip whose
    label the model disagrees with (a test clip is relabelled in the copy if the model happened
    to get every test clip right). Returns (root, checkpoint, run_dir, threshold)."""
    root, end = trained_run
    copy = Path(shutil.copytree(root, tmp_path / "project", ignore=shutil.ignore_patterns(
        "mlruns.db", "mlartifacts")))
    run_dir = copy / end.run_dir.relative_to(root)
    store = LabelStore(copy / "labels.csv")
    rows = run_rows(run_dir)
    if not any(is_wrong(store.get(rel).quality_score, score, end.threshold)
               for rel, score in rows.items()):
        rel, score = next(iter(rows.items()))
        store.set(rel, 0.0 if score >= end.threshold else 1.0)
    return copy, run_dir / end.best_checkpoint.name, run_dir, end.threshold


def run_rows(run_dir: Path) -> dict[str, float]:
    with open(run_dir / "test_predictions.csv", newline="") as fh:
        return {r["video_path"]: float(r["score"]) for r in csv.DictReader(fh)}




def is_wrong(label: float, score: float, threshold: float) -> bool:
    return (label >= 0.5) != (score >= threshold)


def cells(root: Path, run_dir: Path, threshold: float) -> dict[str, set[str]]:
    """The test clips of each confusion cell, from the files on disk."""
    store = LabelStore(root / "labels.csv")
    out: dict[str, set[str]] = {"tn": set(), "fp": set(), "fn": set(), "tp": set()}
    for rel, score in run_rows(run_dir).items():
        good, called = store.get(rel).quality_score >= 0.5, score >= threshold
        out[("t" if good == called else "f") + ("p" if called else "n")].add(rel)
    return out


@pytest.fixture
def review(qtbot, studio_window, open_project, review_copy):
    """The window on the Review tab with the trained run's model loaded."""
    root, checkpoint, run_dir, threshold = review_copy
    open_project(root)
    with qtbot.waitSignal(studio_window.session.model_changed, timeout=TIMEOUT):
        studio_window.session.set_model(checkpoint, run_dir=run_dir, threshold=threshold)
    studio_window.tabs.setCurrentWidget(studio_window.review)
    return studio_window.review


def wait_overlay(qtbot, tab, index: int) -> np.ndarray:
    """Show frame ``index`` and return the overlay image once it is the map of that frame."""
    tab.player.seek(index)
    result = None

    def shown() -> bool:
        nonlocal result
        if tab.heat_map is None or tab.player.index != index:
            return False
        r = tab.heat_map.result
        result = clip_frame_map(r.maps, index, r.shape_hw, r.n_frames, r.params)
        image = tab.player.overlay_item.image
        return image is not None and np.array_equal(image, result)

    qtbot.waitUntil(shown, timeout=TIMEOUT)
    return result


def test_mistakes_listed_and_played_with_gradcam_following_the_frame(
        qtbot, studio_window, review, review_copy, screenshot):
    root, _, run_dir, threshold = review_copy
    expected = cells(root, run_dir, threshold)
    wrong = expected["fp"] | expected["fn"]
    listed = review.listed()
    assert {c.rel for c in listed} == wrong
    scores = run_rows(run_dir)
    margins = [abs(scores[c.rel] - threshold) for c in listed]  # most confident mistake first
    assert margins == sorted(margins, reverse=True)
    n = len(run_rows(run_dir))
    assert review.metric_labels["n"].text() == str(n)
    assert review.metric_labels["accuracy"].text() == f"{(n - len(wrong)) / n:.3f}"
    assert review.metric_labels["threshold"].text() == f"{threshold:.3f}"
    assert review.source.text().startswith(f"Run {run_dir.name}")
    assert review.scope.combo.currentText() == "Test split of the model's run"

    # showing the tab plays the most confident mistake, with its GradCAM overlay
    qtbot.waitUntil(lambda: review.heat_map is not None, timeout=TIMEOUT)
    assert review.rel == listed[0].rel
    assert review.heat_map.result.explain == ("good" if listed[0].called_good else "poor")
    seen = wait_overlay(qtbot, review, 0)
    assert seen.max() > 0 and review.player.overlay_item.isVisible()
    n_frames, params = review.heat_map.result.n_frames, review.heat_map.result.params
    unseen = params.n_frames * params.stride  # frames after the stretch the model sampled
    assert unseen < n_frames
    assert not wait_overlay(qtbot, review, unseen).any()  # the overlay follows the frame
    assert wait_overlay(qtbot, review, 1).max() > 0
    frames, values = review.player.importance_curve.getData()
    assert review.player.importance_plot.isVisible()
    assert list(frames) == list(range(params.n_frames))  # the clip frames the model saw
    assert np.allclose(values, frame_importance(review.heat_map.result.maps))
    assert review.player.importance_marker.value() == 1

    qtbot.keyClick(studio_window, Qt.Key.Key_G)
    assert not review.player.overlay_item.isVisible() and review.player.overlay_item.image is None
    qtbot.keyClick(studio_window, Qt.Key.Key_G)
    assert review.player.overlay_item.isVisible()
    assert np.array_equal(review.player.overlay_item.image, seen_at_1 := wait_overlay(
        qtbot, review, 1)) and seen_at_1.max() > 0
    screenshot(studio_window, "review_tab_overlay.png")


def test_confusion_cell_click_lists_the_clips_of_that_cell(qtbot, review, review_copy):
    root, _, run_dir, threshold = review_copy
    expected = cells(root, run_dir, threshold)
    table = review.confusion
    for (row, col), kind in {(0, 0): "tn", (0, 1): "fp", (1, 0): "fn", (1, 1): "tp"}.items():
        rect = table.visualItemRect(table.item(row, col))
        qtbot.mouseClick(table.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())
        assert {c.rel for c in review.listed()} == expected[kind], kind
        assert review.table.rowCount() == len(expected[kind])
        assert table.item(row, col).text().startswith(str(len(expected[kind])))
    review.mistakes_button.click()
    assert {c.rel for c in review.listed()} == expected["fp"] | expected["fn"]


def test_relabel_undo_and_confirm_are_written_to_the_csv(qtbot, studio_window, review):
    session = studio_window.session
    csv_path = session.project.csv_path
    qtbot.waitUntil(lambda: review.rel is not None, timeout=TIMEOUT)
    clip = review._clip(review.rel)
    before = LabelStore(csv_path).get(clip.rel)
    assert REVIEWED not in before.issues

    # relabel to what the model says (key 1 / 0 on the Review tab): written now, reviewed
    qtbot.keyClick(studio_window, "1" if clip.called_good else "0")
    session.saver.flush()  # the CSV is written in the background
    after = LabelStore(csv_path).get(clip.rel)
    assert after.quality_score == (1.0 if clip.called_good else 0.0) != before.quality_score
    assert REVIEWED in after.issues
    assert clip.rel not in {c.rel for c in review.listed()}  # no longer a disagreement

    qtbot.keyClick(studio_window, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    session.saver.flush()  # an undo is written in the background too
    undone = LabelStore(csv_path).get(clip.rel)
    assert (undone.quality_score, undone.issues) == (before.quality_score, before.issues)
    assert clip.rel in {c.rel for c in review.listed()}

    # confirm the label: score kept, tagged reviewed on disk, marked done in the list
    assert review.select(clip.rel) and review.rel == clip.rel
    to_review = sum(not c.reviewed for c in review.listed())
    qtbot.keyClick(studio_window, Qt.Key.Key_C)
    session.saver.flush()
    confirmed = LabelStore(csv_path).get(clip.rel)
    assert confirmed.quality_score == before.quality_score and REVIEWED in confirmed.issues
    shown = {c.rel: c for c in review.listed()}
    assert shown[clip.rel].reviewed
    assert sum(not c.reviewed for c in shown.values()) == to_review - 1
    review.hide_reviewed.setChecked(True)
    assert clip.rel not in {c.rel for c in review.listed()}

    # the player keys act on the Review tab's player while it shows
    qtbot.waitUntil(lambda: review.player.n_frames > 1, timeout=TIMEOUT)
    review.player.first()
    qtbot.keyClick(studio_window, Qt.Key.Key_Right)
    assert review.player.index == 1 and studio_window.player.index == 0


def test_a_model_without_its_run_is_reviewed_on_its_scores_of_the_labelled_clips(
        qtbot, studio_window, open_project, review_copy):
    root, checkpoint, _, _ = review_copy
    project = open_project(root)
    session = studio_window.session
    with qtbot.waitSignal(session.scores_changed, timeout=TIMEOUT,
                          check_params_cb=lambda *_: bool(session.scores)):
        session.set_model(checkpoint)
    studio_window.tabs.setCurrentWidget(studio_window.review)
    review = studio_window.review
    labelled = {rel: project.label(rel).quality_score for rel in session.scores
                if project.label(rel) is not None}
    assert review.source.text().startswith(f"Model {checkpoint.name}")
    assert review.scope.combo.currentText() == ("Labelled clips, scored by the model (no "
                                                "training run)")  # not "Test split of ..."
    assert review.metric_labels["n"].text() == str(len(labelled))
    wrong = {rel for rel, label in labelled.items()
             if is_wrong(label, session.scores[rel], session.threshold)}
    assert {c.rel for c in review.listed()} == wrong
    right = len(labelled) - len(wrong)
    assert review.metric_labels["accuracy"].text() == f"{right / len(labelled):.3f}"
