"""Opening a project: the clip list (headers, counter, filters, sorting), unreadable files,
recent projects, the app entry point, and screenshots for a human to look at."""
from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pydicom
import pytest
from PySide6.QtCore import Qt

from echoquality_core.demo.project import synthetic_clip, write_dicom_clip
from echoquality_core.labels.store import LabelStore
from echoquality_gui.label.clip_list import COLUMNS, REL_ROLE


def column(panel, name: str) -> list[str]:
    col = COLUMNS.index(name)
    proxy = panel.proxy
    role = REL_ROLE if name == "File" else Qt.ItemDataRole.DisplayRole  # path, not the name
    return [proxy.index(r, col).data(role) for r in range(proxy.rowCount())]


def add_unreadable_files(root):
    """A DICOM without pixel data and one cut short inside its pixel data."""
    good = next(root.rglob("*.dcm"))
    ds = pydicom.dcmread(good)
    del ds.PixelData
    no_pixels = root / "no_pixels.dcm"
    ds.save_as(no_pixels)
    data = good.read_bytes()
    truncated = root / "truncated.dcm"
    truncated.write_bytes(data[: len(data) // 2])
    return no_pixels, truncated


def test_opening_a_folder_lists_every_clip_with_header_fields(studio_window, open_project,
                                                              project_copy):
    project = open_project(project_copy)
    panel = studio_window.clip_list
    store = LabelStore(project.csv_path, root=project.root)
    assert panel.proxy.rowCount() == len(project.clips) == 10
    assert set(column(panel, "Frames")) == {"24"}
    assert all(float(v) > 0 for v in column(panel, "FPS"))
    assert panel.counter.text() == f"{len(store)} / 10 labelled"
    assert project.csv_path == (project_copy / "labels.csv").resolve()
    assert studio_window.session.current is not None
    assert studio_window.windowTitle().endswith(project_copy.name)


def test_filters_and_sorting(studio_window, open_project, project_copy):
    project = open_project(project_copy)
    panel, session = studio_window.clip_list, studio_window.session
    labelled = [c.rel for c in project.clips if session.label(c.rel) is not None]
    good = [r for r in labelled if session.label(r).quality_score >= 0.5]

    for text, expected in (("Unlabelled", 10 - len(labelled)), ("Labelled", len(labelled)),
                           ("Good", len(good)), ("Poor", len(labelled) - len(good))):
        panel.filter_box.setCurrentText(text)
        assert panel.proxy.rowCount() == expected, text

    panel.filter_box.setCurrentText("Disagree with model")
    assert panel.proxy.rowCount() == 0
    session.set_scores({r: 1.0 - session.label(r).quality_score for r in labelled[:2]})
    assert panel.proxy.rowCount() == 2
    assert sorted(column(panel, "File")) == sorted(labelled[:2])

    panel.filter_box.setCurrentText("All clips")
    panel.view.sortByColumn(COLUMNS.index("Label"), Qt.SortOrder.DescendingOrder)
    labels = column(panel, "Label")
    assert labels[: len(good)] == ["good"] * len(good)
    assert labels[-(10 - len(labelled)):] == [""] * (10 - len(labelled))

    panel.search.setText(project.clips[3].rel)
    assert column(panel, "File") == [project.clips[3].rel]


def test_labelling_with_unlabelled_filter_updates_counter(studio_window, open_project,
                                                          project_copy, qtbot):
    project = open_project(project_copy)
    panel = studio_window.clip_list
    panel.filter_box.setCurrentText("Unlabelled")
    n = panel.proxy.rowCount()
    labelled, total = project.counts()
    qtbot.keyClick(studio_window, "1")
    assert panel.proxy.rowCount() == n - 1
    assert panel.counter.text() == f"{labelled + 1} / {total} labelled"


def test_unreadable_files_show_their_error_and_stay_labellable(studio_window, open_project,
                                                               project_copy, qtbot, screenshot):
    add_unreadable_files(project_copy)
    project = open_project(project_copy)
    session, panel = studio_window.session, studio_window.clip_list
    assert len(project.clips) == 12  # both found by content, neither breaks the list

    broken = {c.rel: c for c in project.clips if c.error}
    assert "no_pixels.dcm" in broken and broken["no_pixels.dcm"].error
    panel.filter_box.setCurrentText("Unreadable")
    assert "no_pixels.dcm" in column(panel, "File")

    with qtbot.waitSignal(studio_window.player.clip_failed, timeout=5000):
        session.open_clip("no_pixels.dcm")
    message = studio_window.player.message.text()
    assert broken["no_pixels.dcm"].error in message
    assert studio_window.label_panel.tag_buttons["unreadable"].isChecked()
    screenshot(studio_window, "main_window_unreadable.png")

    qtbot.keyClick(studio_window, "0")
    studio_window.session.saver.flush()  # the CSV is written in the background
    label = LabelStore(project.csv_path, root=project.root).get("no_pixels.dcm")
    assert label.quality_score == 0.0 and label.issues == ("unreadable",)

    with qtbot.waitSignal(studio_window.player.clip_failed, timeout=5000):
        session.open_clip("truncated.dcm")


def test_no_patient_data_is_shown(studio_window, open_project, tmp_path, qtbot):
    frames = synthetic_clip(np.random.default_rng(2), "good", n_frames=8, height=64, width=80)
    root = tmp_path / "phi"
    root.mkdir()
    write_dicom_clip(root / "a.dcm", frames, fps=30.0, compression="none",
                     patient_id="PID-31337", patient_name="Doe^Jane")
    open_project(root)
    qtbot.waitUntil(lambda: studio_window.player.frames_shown > 0, timeout=5000)
    texts = [w.text() for w in studio_window.findChildren(type(studio_window.saved_label))]
    panel = studio_window.clip_list
    cells = [panel.proxy.index(0, c).data() for c in range(len(COLUMNS))]
    shown = " ".join(texts + [str(c) for c in cells] + [studio_window.windowTitle()])
    assert "31337" not in shown and "Doe" not in shown


def test_recent_projects_and_labels_csv_choice(studio_window, open_project, project_copy,
                                               isolated_settings, tmp_path):
    other_csv = tmp_path / "mine.csv"
    project = open_project(project_copy, other_csv)
    assert project.csv_path == other_csv.resolve() and other_csv.exists()  # created
    assert isolated_settings.recent_projects()[0] == str(project_copy.resolve())


def test_cancelling_the_scan_keeps_the_app_usable(studio_window, project_copy, qtbot):
    session = studio_window.session
    studio_window.open_project(project_copy)
    session.cancel_scan()
    assert not session.scanning
    with qtbot.waitSignal(session.scan_finished, timeout=20000):
        studio_window.open_project(project_copy)
    assert len(session.project.clips) == 10


def test_main_window_screenshot_with_clip_playing(studio_window, open_project, project_copy,
                                                  qtbot, screenshot):
    open_project(project_copy)
    player = studio_window.player
    qtbot.waitUntil(lambda: player.frames_shown > 0, timeout=5000)
    with qtbot.waitSignal(player.loader.model_ready, timeout=10000):
        qtbot.keyClick(studio_window, "M")
    if not player.playing:  # clips play as they open (autoplay); Space plays otherwise
        qtbot.keyClick(studio_window, Qt.Key.Key_Space)
    # playing, and the achieved rate measured (a busy machine may take a while)
    qtbot.waitUntil(lambda: player.index > 0 and "shown" in player.rate.text(), timeout=5000)
    assert player.playing
    path = screenshot(studio_window, "main_window.png")
    assert path.stat().st_size > 10_000


@pytest.mark.slow
def test_app_entry_point_opens_a_project_and_exits_cleanly(project_copy, tmp_path):
    # its own process: after QApplication.exec() returns, Qt runs no further event loops
    png = tmp_path / "window.png"
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", XDG_CONFIG_HOME=str(tmp_path / "cfg"))
    done = subprocess.run(
        [sys.executable, "-m", "echoquality_gui.app", str(project_copy), "--screenshot", str(png)],
        env=env, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr  # no crash while pyqtgraph tears down
    assert png.stat().st_size > 10_000
    assert (project_copy / "labels.csv").exists()
