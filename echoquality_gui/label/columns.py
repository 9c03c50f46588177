"""How wide the clip list's columns are (issue 22.1): every column but File is as wide as the
widest text it can show (its title, the rater names, blind mode's words), worked out from the
possible texts rather than the rows (cheap with 100,000 clips); File takes the rest, so a
clip's whole name shows, elided in the middle only when it cannot fit."""
from __future__ import annotations

from collections.abc import Sequence

from PySide6.QtGui import QFont, QFontMetrics
from PySide6.QtWidgets import QStyle, QTableView

from echoquality_core.labels.raters import known_raters
from echoquality_gui.common.session import Session

# texts each column shows whole (Issues fits its title: long tag lists are elided, and are
# whole in the cell's tooltip)
FITTED = {"Frames": ("8888", "error"), "FPS": ("888.8",), "Label": ("good", "poor", "0.75"),
          "Issues": (), "Rater": (), "Model": ("0.88",)}
MAX_FITTED = 140  # a longer rater name is elided


def column_texts(session: Session) -> dict[str, tuple[str, ...]]:
    """Column name -> the widest texts it may show for the session's project and mode."""
    project = session.project
    texts = dict(FITTED)
    raters = known_raters(project.store, project.raters, project.rater) if project else []
    texts["Rater"] = tuple(raters)
    if session.blind:  # the words of ``raters_text``: at most everyone but you
        others = max(len(raters) - 1, 1)
        texts["Label"] = (*texts["Label"], "by you")
        texts["Rater"] = (f"by {others} other{'s' if others > 1 else ''}",)
    return texts


def fit_columns(view: QTableView, columns: Sequence[str],
                texts: dict[str, tuple[str, ...]]) -> None:
    """Size each column of ``texts`` to its title and texts (the sort arrow included)."""
    header, cell = view.horizontalHeader(), view.fontMetrics()
    style, metric = view.style(), QStyle.PixelMetric
    margin = 2 * (style.pixelMetric(metric.PM_FocusFrameHMargin) + 1) + 2
    title_margin = 2 * style.pixelMetric(metric.PM_HeaderMargin) + 4
    bold = QFont(header.font())
    bold.setBold(True)  # the style may draw titles in bold
    arrow = style.pixelMetric(metric.PM_HeaderMarkSize) + style.pixelMetric(
        metric.PM_HeaderMargin)
    for name, candidates in texts.items():
        col = columns.index(name)
        title = QFontMetrics(bold).horizontalAdvance(name) + title_margin + (
            arrow if header.sortIndicatorSection() == col else 0)
        width = max([title] + [cell.horizontalAdvance(t) + margin for t in candidates])
        header.resizeSection(col, min(width, MAX_FITTED))
