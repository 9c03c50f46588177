"""A day at the echo cart (issue 13): autoplay, zoom/pan/fit, drag and drop, remembered window
state, editable shortcuts, the recent-projects menu, the words the app shows, and screenshots of
every tab at 1366x768 and at 150% on 1920x1080 with a geometry check (child process: the scale
factor must be set before the QApplication exists)."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from PySide6.QtCore import QMimeData, QPoint, QPointF, Qt, QUrl
from PySide6.QtGui import QDragEnterEvent, QDropEvent, QWheelEvent
from PySide6.QtWidgets import QApplication

from echoquality_gui.window import keybinds
from echoquality_gui.common import settings
from echoquality_gui.window.about import show_about
from echoquality_gui.window.main_window import MainWindow

ARTIFACTS = Path(__file__).parent / "artifacts"
SCREENS = Path(__file__).parent / "ui_screens.py"


@pytest.fixture(autouse=True)
def _default_keys():
    """Shortcuts changed by a test do not leak into the next."""
    yield
    keybinds.set_user_keys({})


def _new_window(qtbot) -> MainWindow:
    window = MainWindow()
    qtbot.addWidget(window)
    window.show()
    qtbot.waitExposed(window)
    window.activateWindow()  # shortcuts act in the active window
    qtbot.waitUntil(lambda: QApplication.activeWindow() is window, timeout=3000)
    return window


def test_clip_autoplays_looped_and_the_setting_stops_it(qtbot, studio_window, open_project,
                                                        project_copy):
    assert settings.autoplay()  # the default, as on echo review stations
    open_project(project_copy)
    player = studio_window.player
    qtbot.waitUntil(lambda: player.playing and player.index > 0, timeout=10000)  # no key
    assert player.loop
    qtbot.waitUntil(lambda: "ms" in player.position.text() and "from " in player.rate.text(),
                    timeout=2000)
    studio_window.autoplay_action.setChecked(False)
    assert not player.playing and not settings.autoplay()
    shown = player.index
    qtbot.wait(300)
    assert player.index == shown  # stopped
    studio_window.session.open_clip(studio_window.clip_list.neighbour(1))
    qtbot.waitUntil(lambda: player.frames_shown > 0 and player.n_frames > 0, timeout=5000)
    qtbot.wait(300)
    assert not player.playing and player.index == 0  # the next clip opens paused


def test_ctrl_wheel_zooms_plain_wheel_steps_and_f_key_refit(qtbot, studio_window,
                                                             open_project, project_copy):
    open_project(project_copy)
    studio_window.set_autoplay(False)
    player = studio_window.player
    qtbot.waitUntil(lambda: player.frames_shown > 0, timeout=5000)
    qtbot.wait(200)
    fitted = player.view_box.viewRange()
    viewport = player.view.viewport()
    centre = QPointF(viewport.width() / 2, viewport.height() / 2)

    def wheel(modifiers):
        event = QWheelEvent(centre, viewport.mapToGlobal(centre), QPoint(0, 0), QPoint(0, 120),
                            Qt.MouseButton.NoButton, modifiers, Qt.ScrollPhase.NoScrollPhase,
                            False)
        QApplication.sendEvent(viewport, event)

    wheel(Qt.KeyboardModifier.ControlModifier)
    zoomed = player.view_box.viewRange()
    assert zoomed[0][1] - zoomed[0][0] < fitted[0][1] - fitted[0][0]  # narrower: zoomed in
    player.seek(3)
    wheel(Qt.KeyboardModifier.NoModifier)
    assert player.index == 2  # wheel up: one frame back
    qtbot.keyClick(studio_window, Qt.Key.Key_F)
    qtbot.wait(100)
    refit = player.view_box.viewRange()
    assert refit[0] == pytest.approx(fitted[0], abs=0.5)


def test_dropping_a_folder_or_csv_opens_it(qtbot, studio_window, project_copy):
    def drop(path: Path) -> None:  # as a real drag: enter, then drop
        mime = QMimeData()
        mime.setUrls([QUrl.fromLocalFile(str(path))])
        enter = QDragEnterEvent(QPoint(200, 200), Qt.DropAction.CopyAction, mime,
                                Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier)
        QApplication.sendEvent(studio_window, enter)
        assert enter.isAccepted()  # a folder or CSV is welcome
        event = QDropEvent(QPointF(200, 200), Qt.DropAction.CopyAction, mime,
                           Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier)
        QApplication.sendEvent(studio_window, event)
        assert event.isAccepted()

    with qtbot.waitSignal(studio_window.session.scan_finished, timeout=20000):
        drop(project_copy)
    assert studio_window.session.project.root == project_copy
    assert studio_window.windowTitle() == project_copy.name  # Qt adds the app's name
    other = project_copy / "other.csv"
    shutil.copy(project_copy / "labels.csv", other)
    with qtbot.waitSignal(studio_window.session.scan_finished, timeout=20000):
        drop(other)
    assert studio_window.session.project.csv_path == other


def test_changed_shortcut_works_old_key_not_and_survives_restart(qtbot, studio_window):
    window = studio_window
    prefs = window.show_preferences()
    refusal = prefs.set_key("toggle_loop", "Space")
    assert refusal and "Play / pause" in refusal and "Space" in prefs.message.text()
    assert keybinds.keybind("toggle_loop").key == "L"  # refused: unchanged
    assert prefs.set_key("toggle_loop", "K") is None
    loop = window.player.loop
    qtbot.keyClick(window, Qt.Key.Key_L)
    assert window.player.loop == loop  # the old key does nothing now
    qtbot.keyClick(window, Qt.Key.Key_K)
    assert window.player.loop != loop
    assert "<code>K</code>" in window.show_keys().text.text()  # the cheat-sheet follows
    prefs.close()
    window.close()

    keybinds.set_user_keys({})  # a new window reads the keys from the settings again
    again = _new_window(qtbot)
    loop = again.player.loop
    qtbot.keyClick(again, Qt.Key.Key_L)
    assert again.player.loop == loop
    qtbot.keyClick(again, Qt.Key.Key_K)
    assert again.player.loop != loop


def test_window_size_splitter_and_last_tab_are_remembered(qtbot, studio_window):
    studio_window.resize(780, 580)  # within the offscreen screen (800 x 600)
    qtbot.wait(50)
    studio_window.label_page.setSizes([100, 300, 300])
    sizes = studio_window.label_page.sizes()
    studio_window.tabs.setCurrentWidget(studio_window.review)
    studio_window.close()
    again = _new_window(qtbot)
    assert (again.width(), again.height()) == (780, 580)
    assert again.tabs.currentWidget() is again.review
    again.tabs.setCurrentIndex(0)
    qtbot.waitUntil(lambda: again.label_page.sizes() == sizes, timeout=2000)


def test_recent_projects_menu_drops_missing_folders(qtbot, studio_window, project_copy,
                                                    tmp_path):
    gone = tmp_path / "gone"
    gone.mkdir()
    settings.add_recent_project(gone)
    settings.add_recent_project(project_copy)
    gone.rmdir()
    studio_window._fill_recent()
    texts = [a.text() for a in studio_window.recent_menu.actions()]
    assert texts == [project_copy.name]
    assert str(gone) not in (settings.app_settings().value("recent_projects") or [])


def test_words_review_hint_about_and_no_rater_dialog(qtbot, studio_window, open_project,
                                                     project_copy):
    assert studio_window.review.player.message.text().startswith("Select a clip on the left")
    box = show_about(studio_window)
    text = box.text()
    box.close()
    for word in ("LGPL", "PySide6", "EchoPrime", "r2plus1d_18", "0."):
        assert word in text
    settings.set_rater("")  # as before the first start's question was answered
    open_project(project_copy)
    rel = studio_window.session.current.rel
    studio_window.activateWindow()
    qtbot.waitUntil(lambda: QApplication.activeWindow() is studio_window, timeout=3000)
    qtbot.keyClick(studio_window, Qt.Key.Key_1)  # labels at once, no dialog in the way
    label = studio_window.session.label(rel)
    assert label is not None and label.rater == settings.default_rater()
    assert QApplication.activeModalWidget() is None


def test_clip_filter_by_tag_and_score_range_and_class_counts(qtbot, studio_window,
                                                             open_project, project_copy):
    open_project(project_copy)
    panel = studio_window.clip_list
    session = studio_window.session
    labelled = [c.rel for c in session.project.clips if session.label(c.rel)]
    session.project.store.set(labelled[0], 0.0, issues=("dropout",))
    session.clips_reset.emit()
    panel.filter_row.tag_box.setCurrentText("dropout")
    assert panel.visible_rels() == [labelled[0]]
    panel.filter_row.tag_box.setCurrentIndex(0)
    assert len(panel.visible_rels()) == len(session.project.clips)
    session.scores = {labelled[0]: 0.9, labelled[1]: 0.2}
    panel.filter_row.low.setValue(0.5)
    assert panel.visible_rels() == [labelled[0]]
    good = sum(session.label(r).quality_score >= 0.5 for r in labelled)
    assert panel.class_counter.text() == f"{good} good · {len(labelled) - good} poor"


@pytest.mark.slow
@pytest.mark.parametrize("screen,scale", [("1366x768", 1.0), ("1920x1080", 1.5),
                                          ("2560x1440", 2.0)])
def test_every_tab_fits_the_screen_with_a_clip_loaded(trained_run, tmp_path, screen, scale):
    root, end = trained_run
    project = Path(shutil.copytree(root, tmp_path / "project", ignore=shutil.ignore_patterns(
        "mlruns.db", "mlartifacts")))
    run_dir = project / Path(end.run_dir).relative_to(root)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(Path(__file__).parents[3]), os.environ.get("PYTHONPATH", "")]))
    done = subprocess.run([sys.executable, str(SCREENS), str(project), str(run_dir),
                           str(ARTIFACTS), "--screen", screen, "--scale", str(scale)],
                          capture_output=True, text=True, timeout=400, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["tabs"][:4] == ["Label", "Train", "Review", "Runs"]
    assert result["outside"] == []  # every visible button lies inside the window
    assert result["squashed"] == []  # no control smaller than its minimum size hint
    # every tab fits without scrolling, also 1280x720 logical (150-200 % scaling)
    assert result["scrolled"] == [], result["scrolled"]
    assert result["window"] == result["screen"]  # the window fits the screen
    assert result["minimum"][0] <= result["screen"][0]
    assert all(Path(p).stat().st_size > 10_000 for p in result["screenshots"])
