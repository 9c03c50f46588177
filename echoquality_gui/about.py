"""Help ▸ About: the app's name, version and where its pieces come from."""
from __future__ import annotations

from PySide6.QtWidgets import QMessageBox, QWidget

from echoquality_core import __version__


def about_text() -> str:
    """The About box's text (rich text)."""
    return (f"<h3>EchoQuality Studio {__version__}</h3>"
            "<p>Quality control of echocardiography clips: label, fine-tune an R(2+1)D "
            "quality model (EchoPrime's format), review and score.</p>"
            "<p>Starting weights: EchoPrime's quality model (github.com/patniko/ghl) or "
            "torchvision's Kinetics-400 backbone, downloaded on request and verified.</p>"
            "<p>MIT licence. Not a medical device.</p>")


def show_about(parent: QWidget) -> QMessageBox:
    """Open the About box (not blocking) and return it."""
    box = QMessageBox(QMessageBox.Icon.Information, "About EchoQuality Studio", about_text(),
                      QMessageBox.StandardButton.Ok, parent)
    box.setObjectName("aboutBox")
    box.open()
    return box
