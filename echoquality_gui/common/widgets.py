"""Small widgets the tabs share."""
from __future__ import annotations

from PySide6.QtWidgets import QLabel


def section_title(text: str) -> QLabel:
    """A section heading (styled by ``#sectionTitle`` in the stylesheet)."""
    label = QLabel(text)
    label.setObjectName("sectionTitle")
    return label
