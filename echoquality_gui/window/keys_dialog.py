"""The keyboard cheat-sheet, generated from the keybind registry."""
from __future__ import annotations

from html import escape

from PySide6.QtWidgets import QDialog, QDialogButtonBox, QLabel, QScrollArea, QVBoxLayout

from echoquality_gui.window.keybinds import groups

_SCALES = {"binary": " (good/poor scale)", "five_point": " (five-point scale)"}


def cheat_sheet_html() -> str:
    """All shortcuts as an HTML table, grouped as in the registry."""
    rows = []
    for group, binds in groups().items():
        rows.append(f"<tr><td colspan=2><h3>{escape(group)}</h3></td></tr>")
        for bind in binds:
            rows.append(
                f"<tr><td style='padding-right:18px'><b><code>{escape(bind.key)}</code></b></td>"
                f"<td>{escape(bind.help)}{_SCALES.get(bind.scale or '', '')}</td></tr>")
    return "<table>" + "".join(rows) + "</table>"


class KeysDialog(QDialog):
    """Modeless list of every shortcut."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setWindowTitle("Keyboard shortcuts")
        self.text = QLabel(cheat_sheet_html())
        self.text.setMargin(8)
        scroll = QScrollArea()
        scroll.setWidget(self.text)
        scroll.setWidgetResizable(True)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.close)
        layout = QVBoxLayout(self)
        layout.addWidget(scroll)
        layout.addWidget(buttons)
        self.resize(560, 600)
