"""Help ▸ About: the app's name, version, where its pieces come from and their licences."""
from __future__ import annotations

import PySide6
from PySide6.QtCore import qVersion
from PySide6.QtWidgets import QMessageBox, QWidget

from echoquality_core import __version__


def about_text() -> str:
    """The About box's text (rich text)."""
    return (f"<h3>EchoQuality Studio {__version__}</h3>"
            "<p>Quality control of echocardiography clips: label, fine-tune an R(2+1)D "
            "quality model (EchoPrime's format), review and score.</p>"
            "<p><b>Model:</b> torchvision's <code>r2plus1d_18</code> video network with a "
            "one-logit quality head, in the format of EchoPrime's "
            "<code>video_quality_model.pt</code> (EchoPrime, github.com/echonet/EchoPrime). "
            "Starting weights: EchoPrime's quality model or torchvision's Kinetics-400 "
            "backbone, downloaded on request and verified.</p>"
            f"<p><b>Qt {qVersion()}</b> and <b>PySide6 {PySide6.__version__}</b> (Qt for "
            "Python) are used under the GNU Lesser General Public License v3 (LGPL-3.0); "
            "their source is at code.qt.io. You may replace them with your own build.</p>"
            "<p>pyqtgraph (MIT), PyTorch and torchvision (BSD), pydicom (MIT), MLflow "
            "(Apache-2.0).</p>"
            "<p>MIT licence. Not a medical device.</p>")


def show_about(parent: QWidget) -> QMessageBox:
    """Open the About box (not blocking) and return it."""
    box = QMessageBox(QMessageBox.Icon.Information, "About EchoQuality Studio", about_text(),
                      QMessageBox.StandardButton.Ok, parent)
    box.setObjectName("aboutBox")
    box.open()
    return box
