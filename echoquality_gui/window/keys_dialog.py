"""The keyboard cheat-sheet, generated from the keybind registry: one row per key, grouped as
in the registry; a key with a meaning on each label scale (``1``) gets one row naming both.
The descriptions wrap, so the sheet never scrolls sideways."""
from __future__ import annotations

from html import escape

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QDialog, QDialogButtonBox, QLabel, QScrollArea, QVBoxLayout

from echoquality_gui.window.keybinds import groups

_SCALES = {"binary": "good/poor scale", "five_point": "five-point scale"}


def cheat_rows() -> dict[str, list[tuple[str, list[str]]]]:
    """group -> [(key, [what it does, ...])], each key once (in the group it first appears)."""
    rows: dict[str, list[tuple[str, list[str]]]] = {}
    seen: dict[str, list[str]] = {}
    for group, binds in groups().items():
        for bind in binds:
            scale = _SCALES.get(bind.scale or "", "")
            text = bind.help + (f" ({scale})" if scale and scale not in bind.help else "")
            if bind.key in seen:
                seen[bind.key].append(text)
                continue
            seen[bind.key] = [text]
            rows.setdefault(group, []).append((bind.key, seen[bind.key]))
    return rows


def cheat_sheet_html() -> str:
    """All shortcuts as an HTML table, grouped as in the registry."""
    rows = []
    for group, keys in cheat_rows().items():
        rows.append(f"<tr><td colspan=2><h3>{escape(group)}</h3></td></tr>")
        for key, texts in keys:
            what = "<br>".join(escape(text) for text in texts)
            rows.append(f"<tr><td style='padding-right:18px' nowrap><b><code>{escape(key)}"
                        f"</code></b></td><td>{what}</td></tr>")
    return "<table width='100%'>" + "".join(rows) + "</table>"


class KeysDialog(QDialog):
    """Modeless list of every shortcut (wrapped to the dialog's width, scrolled up and down)."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setWindowTitle("Keyboard shortcuts")
        self.text = QLabel(cheat_sheet_html())
        self.text.setMargin(8)
        self.text.setWordWrap(True)
        self.text.setAlignment(Qt.AlignmentFlag.AlignTop | Qt.AlignmentFlag.AlignLeft)
        self.scroll = QScrollArea()
        self.scroll.setWidget(self.text)
        self.scroll.setWidgetResizable(True)
        self.scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.close)
        layout = QVBoxLayout(self)
        layout.addWidget(self.scroll)
        layout.addWidget(buttons)
        self.resize(680, 640)
