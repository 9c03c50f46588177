"""Issue 22.1: at the default window size the clip list shows each demo clip's whole name, also
once the Rater column appears and in blind mode (whose words fit their column too)."""
from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QStyle

from echoquality_gui.label.clip_list import COLUMNS


def _fits(view, column: int, text: str) -> bool:
    """Whether the cell shows ``text`` whole (the delegate's margins, the grid line)."""
    margin = 2 * (view.style().pixelMetric(QStyle.PixelMetric.PM_FocusFrameHMargin) + 1) + 2
    return view.fontMetrics().horizontalAdvance(text) + margin <= view.columnWidth(column)


def _cells(view, column: int) -> list[str]:
    model = view.model()
    return [model.index(row, column).data() or "" for row in range(model.rowCount())]


def test_whole_names_with_the_rater_column_and_in_blind_mode(
        studio_window, open_project, tiny_project, qtbot, screenshot):
    csv_path = tiny_project(n_clips=40, n_frames=4, height=48, width=64, seed=22,
                            unlabelled=0.5)
    open_project(csv_path.parent)
    studio_window.resize(1366, 768)  # the default size (earlier tests may have left another)
    view, session = studio_window.clip_list.view, studio_window.session
    qtbot.keyClick(studio_window, "1")  # a label that names its rater: the Rater column shows
    session.saver.flush()
    rater, label = COLUMNS.index("Rater"), COLUMNS.index("Label")
    qtbot.waitUntil(lambda: not view.isColumnHidden(rater))
    qtbot.waitUntil(view.verticalScrollBar().isVisible)  # 40 clips: the bar takes its width
    names = _cells(view, 0)
    screenshot(studio_window, "clip_list_names.png")
    assert len(names) == 40 and all(_fits(view, 0, name) for name in names), \
        (view.columnWidth(0), [n for n in names if not _fits(view, 0, n)])
    assert all(_fits(view, rater, text) for text in _cells(view, rater))

    session.set_blind(True)
    qtbot.waitUntil(lambda: "by you" in _cells(view, label))
    screenshot(studio_window.clip_list, "clip_list_blind.png")
    assert all(_fits(view, 0, name) for name in _cells(view, 0)), \
        (view.columnWidth(0), [n for n in _cells(view, 0) if not _fits(view, 0, n)])
    assert all(_fits(view, col, text) for col in (label, rater) for text in _cells(view, col))
    first = view.model().index(0, 0)
    assert first.data(Qt.ItemDataRole.ToolTipRole) == "clips/" + first.data()  # the full path
