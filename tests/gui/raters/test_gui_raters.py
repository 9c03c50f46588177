"""Two raters label the same 20 clips in the app (real key presses, rater switched through the
Rater menu): both labels on disk, blind mode shows neither the other rater's labels nor the
model's scores in any widget; the Agreement tab, model vs raters and adjudication by key."""
from __future__ import annotations

import pytest
from PySide6.QtCore import QAbstractListModel, QModelIndex, Qt
from PySide6.QtWidgets import (
    QAbstractButton,
    QAbstractItemView,
    QComboBox,
    QLabel,
    QLineEdit,
    QTableView,
    QWidget,
)

from echoquality_core.labels.agreement import agreement_report
from echoquality_core.demo.project import write_demo_project
from echoquality_core.labels.store import LabelStore
from echoquality_core.labels.raters import RaterStore
from echoquality_gui.raters.menu import PolicyLabel

ANN, BOB = "Dr Ann Xu", "Dr Bob Yi"
N = 20


def ann_says(i: int) -> float:
    return 1.0 if i % 2 == 0 else 0.0


def bob_says(i: int) -> float:
    return 1.0 if i % 3 else 0.0


def shown_texts(window) -> list[str]:
    """Every text the window shows: labels, buttons, line edits, combo items, the cells and
    headers of every table or list (hidden columns left out) and the status bar."""
    texts = [window.statusBar().currentMessage(), window.windowTitle()]
    for w in window.findChildren(QWidget):
        if isinstance(w, QLabel | QAbstractButton | QLineEdit):
            texts.append(w.text())
        elif isinstance(w, QComboBox):
            texts += [w.itemText(i) for i in range(w.count())]
        elif isinstance(w, QAbstractItemView) and w.model() is not None:
            model = w.model()
            root = QModelIndex()
            columns = 1 if isinstance(model, QAbstractListModel) else model.columnCount(root)
            for c in range(columns):  # a list model's columnCount is private in PySide6
                if isinstance(w, QTableView) and w.isColumnHidden(c):
                    continue
                texts.append(str(model.headerData(c, Qt.Orientation.Horizontal) or ""))
                texts += [str(model.index(r, c).data() or "") for r in range(model.rowCount(root))]
    return texts


def switch_rater(qtbot, window, name: str) -> None:
    """Rater ▸ Change rater…, type the name, Enter."""
    menu = window.rater_menu
    menu.change.trigger()
    dialog = menu.dialog
    qtbot.waitUntil(dialog.isVisible)
    edit = dialog.findChild(QLineEdit)
    edit.selectAll()
    qtbot.keyClicks(edit, name)
    qtbot.keyClick(edit, Qt.Key.Key_Return)
    qtbot.waitUntil(lambda: window.session.project is None
                    or window.session.project.rater == name)
    qtbot.waitUntil(lambda: not dialog.isVisible())
    window.activateWindow()  # the keys go to the window again
    qtbot.waitUntil(window.isActiveWindow)


def label_all(qtbot, window, says) -> dict[str, float]:
    """Label every clip with the keys 1/0 (auto-advance moves on); rel -> score given."""
    session = window.session
    order = sorted(c.rel for c in session.project.clips)
    given = {}
    for _ in range(N):
        rel = session.current.rel
        assert session.label(rel) is None
        score = says(order.index(rel))
        qtbot.keyClick(window, Qt.Key.Key_1 if score else Qt.Key.Key_0)
        assert session.label(rel).quality_score == score
        given[rel] = score
    return given


@pytest.fixture
def twenty_clips(tmp_path):
    root = tmp_path / "study"
    csv_path = write_demo_project(root, n_clips=N, n_frames=8, height=64, width=80, seed=5)
    csv_path.write_text("video_path,quality_score\n")  # nobody has labelled yet
    return root


@pytest.mark.slow
def test_two_raters_blind_agreement_and_adjudication(studio_window, open_project, twenty_clips,
                                                     trained_run, qtbot, screenshot):
    window, session = studio_window, studio_window.session
    switch_rater(qtbot, window, ANN)
    project = open_project(twenty_clips)
    session.set_model(trained_run[1].best_checkpoint)
    qtbot.waitUntil(lambda: len(session.scores) == N, timeout=120000)
    scores = dict(session.scores)
    score_texts = {f"{s:.2f}" for s in scores.values()} | {f"{s:.3f}" for s in scores.values()}
    score_texts -= {"0.00", "1.00", "0.95"}  # the score filter's bounds and the threshold
    # presets' words ("Sens ≥ 0.95"), shown in any mode

    ann = label_all(qtbot, window, ann_says)
    assert not session.blind  # one rater so far: the model's scores are shown
    assert window.adjudication.player.empty_text == "The queue is empty: no clip to adjudicate"
    texts = shown_texts(window)
    assert any(t in text for text in texts for t in score_texts)  # the walk sees scores
    assert any(ANN in text for text in texts)

    switch_rater(qtbot, window, BOB)
    assert session.blind and window.rater_menu.blind.isChecked()  # two raters: blind
    qtbot.keyClick(window, Qt.Key.Key_N)
    bob = {}
    for half in range(2):
        texts = shown_texts(window)
        assert not any(ANN in text for text in texts)
        assert not any(t in text for text in texts for t in score_texts)
        assert not any(text.startswith("Model:") for text in texts)
        assert not {"good", "poor"} & set(texts)  # no label value in any cell or caption
        assert "by 1 other" in texts
        if half == 0:
            assert window.label_panel.current.text() == "Unlabelled"
            screenshot(window, "raters_blind_label.png")
            bob = label_all(qtbot, window, bob_says)
    assert set(bob) == set(ann)

    # both raters' labels on disk; the training table follows the majority policy
    store = RaterStore(project.raters.path)
    assert {la.video_path: la.quality_score for la in store.labels() if la.rater == ANN} == ann
    assert {la.video_path: la.quality_score for la in store.labels() if la.rater == BOB} == bob
    training = LabelStore(project.csv_path)
    agreed = {rel for rel in ann if ann[rel] == bob[rel]}
    assert set(training.paths()) == agreed
    assert all(training.get(rel).quality_score == ann[rel] for rel in agreed)

    # blind off: the Agreement tab shows the numbers of the library (and of the CLI)
    window.rater_menu.blind.trigger()
    assert not session.blind
    window.rater_menu.agreement.trigger()
    view = window.agreement_view
    qtbot.waitUntil(lambda: view.report is not None, timeout=60000)
    expected = agreement_report(store.labels(), n_boot=1000, seed=0)
    assert view.pairs.item(0, 3).text() == expected.pairs[0].kappa.text()
    assert view.overall["alpha"].text() == expected.alpha.text()
    assert view.pairs.item(0, 2).text() == str(N)
    screenshot(window, "raters_agreement.png")

    # Review: the model's agreement with each rater beside the raters' with each other
    window.tabs.setCurrentWidget(window.review)
    box = window.review.model_vs_raters
    qtbot.waitUntil(lambda: box.table.rowCount() == 3, timeout=60000)
    assert [box.table.item(r, 0).text() for r in range(3)] == [
        f"model vs {ANN}", f"model vs {BOB}", f"{ANN} vs {BOB}"]
    screenshot(window, "raters_review.png")

    # adjudication: the queue lists the disagreements; the label key sets the final label
    window.rater_menu.queue.trigger()
    adjudication = window.adjudication
    assert {d.rel for d in adjudication.queue} == set(ann) - agreed
    rel = adjudication.rel
    assert rel is not None
    assert adjudication.player.empty_text.startswith("Select a clip in the queue")
    screenshot(window, "raters_adjudicate.png")
    qtbot.keyClick(window, Qt.Key.Key_1)
    decided = RaterStore(project.raters.path).adjudication(rel)
    assert (decided.rater, decided.quality_score) == (BOB, 1.0) and decided.labeled_at
    assert LabelStore(project.csv_path).get(rel).quality_score == 1.0
    policy = window.train_panel.findChild(PolicyLabel)
    assert policy.text().startswith("Training labels: majority of 2 raters")


@pytest.mark.slow
def test_training_run_records_the_label_policy(trained_run):
    """The trainer logs how its labels were made (a one-rater project here)."""
    from mlflow.tracking import MlflowClient

    from echoquality_core.runs.tracking import default_tracking_uri

    root, end = trained_run
    params = MlflowClient(default_tracking_uri(root)).get_run(end.run_id).data.params
    assert (params["label_policy"], params["n_raters"], params["n_adjudicated"]) == (
        "majority", "1", "0")
