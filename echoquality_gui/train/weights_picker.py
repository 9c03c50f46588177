"""The Train tab's "Starting weights": EchoPrime quality model / Kinetics-400 / a file… / none,
with a Download button whose progress shows in the tab and can be cancelled. EchoPrime's model
is the default once cached; while it is not, random weights are the default, said plainly, and
the picker offers EchoPrime's download in one click.

The download runs in a ``workers.Worker`` (the core's verified, resumable ``download``); the
widget only shows its state and forwards clicks.
``spec()`` is what ``TrainConfig.model_weights`` takes: a starting point's name, a file's path,
or None.
"""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from PySide6.QtCore import Signal
from PySide6.QtWidgets import (
    QComboBox,
    QFileDialog,
    QGridLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QWidget,
)

from echoquality_core.files.download import DownloadProgress, download
from echoquality_core.model.weights import FILE, NONE, REGISTRY, StartingPoint, cache_dir
from echoquality_gui.common.workers import Worker

ECHOPRIME = "echoprime-quality"
_ORDER = (ECHOPRIME, "kinetics400", FILE, NONE)
RANDOM_TEXT = ("Random weights: the model starts knowing nothing about echo and learns only "
               "from this project's labelled clips; with a few dozen it will likely do no "
               "better than chance. EchoPrime's quality model is a far better start.")


def download_worker(point: StartingPoint, parent=None) -> Worker:
    """A worker (not started) that downloads one starting point into the cache: it yields
    ``DownloadProgress``, returns the cached file's path, stops on ``cancel()`` (DownloadError
    "cancelled") and reports any failure as one sentence (offline, wrong hash, ...)."""

    def fetch() -> str:
        return str(download(point.url, cache_dir() / point.filename, sha256=point.sha256,
                            size=point.size, progress=worker.yielded.emit,
                            should_cancel=worker.cancelled, manual_hint=_hint(point)))

    worker = Worker(fetch, parent=parent)
    return worker


def _hint(point: StartingPoint) -> str:
    from echoquality_core.model.weights import manual_download_hint

    return manual_download_hint(point).replace("--weights", "“a file…”")


class WeightsPicker(QWidget):
    """Choice of starting weights; ``changed`` fires when the choice (or its file) changes.
    ``registry`` can be replaced (e.g. by a test pointing at a local server)."""

    changed = Signal()

    def __init__(self, parent: QWidget | None = None,
                 registry: Mapping[str, StartingPoint] = REGISTRY):
        super().__init__(parent)
        self.registry = dict(registry)
        self.file: str = ""
        self.worker: Worker | None = None
        self.choice = QComboBox()
        for key in _ORDER:
            self.choice.addItem("A file…" if key == FILE else self.registry[key].title, key)
        self.download_button = QPushButton("Download")
        self.cancel_button = QPushButton("Cancel")
        self.browse_button = QPushButton("Browse…")
        self.offer_button = QPushButton()  # "Use EchoPrime's model", shown while random
        self.offer_button.setToolTip(self.registry[ECHOPRIME].description)
        self.progress = QProgressBar()
        self.progress.setRange(0, 1000)
        self.progress.setTextVisible(False)
        self.status = QLabel()  # always short; longer messages go to warning_text()
        self.status.setObjectName("weightsStatus")
        self.failure = ""  # the last download's failure, in full
        for button in (self.download_button, self.cancel_button, self.browse_button):
            button.setMinimumWidth(button.fontMetrics().horizontalAdvance(button.text()) + 28)
        grid = QGridLayout(self)
        grid.setContentsMargins(0, 0, 0, 0)
        grid.setSpacing(4)
        grid.addWidget(self.choice, 0, 0, 1, 3)
        grid.addWidget(self.progress, 1, 0)
        grid.addWidget(self.download_button, 1, 1)
        grid.addWidget(self.browse_button, 1, 1)
        grid.addWidget(self.cancel_button, 1, 2)
        grid.addWidget(self.status, 2, 0, 1, 3)
        grid.addWidget(self.offer_button, 3, 0, 1, 3)
        grid.setColumnStretch(0, 1)
        self.choice.currentIndexChanged.connect(self._chosen)
        self.download_button.clicked.connect(self.start_download)
        self.cancel_button.clicked.connect(self.cancel_download)
        self.browse_button.clicked.connect(self.browse)
        self.offer_button.clicked.connect(self.use_echoprime)
        self.set_spec(self.default_spec())

    # --- the choice ------------------------------------------------------------------------
    def key(self) -> str:
        return str(self.choice.currentData())

    def cached(self, key: str) -> bool:
        point = self.registry.get(key)
        return bool(point and point.filename and (cache_dir() / point.filename).is_file())

    def default_spec(self) -> str | None:
        """EchoPrime's model when it is downloaded, else none."""
        return ECHOPRIME if self.cached(ECHOPRIME) else None

    def spec(self) -> str | None:
        """``TrainConfig.model_weights``: a name, a file's path, or None (random)."""
        key = self.key()
        if key == FILE:
            return self.file or None
        return None if key == NONE else key

    def set_spec(self, spec: str | None) -> None:
        """Show ``spec`` (a name, a path, ''/None)."""
        spec = (spec or "").strip()
        self.failure = ""
        if spec in self.registry:
            key = spec
        elif spec:
            key, self.file = FILE, spec
        else:
            key = NONE
        self.choice.blockSignals(True)
        self.choice.setCurrentIndex(self.choice.findData(key))
        self.choice.blockSignals(False)
        self._refresh()
        self.changed.emit()

    def ready(self) -> bool:
        """Whether training can start from the choice (a file chosen, a download done)."""
        key = self.key()
        if key == FILE:
            return bool(self.file)
        return key == NONE or self.cached(key)

    def warning_text(self) -> str:
        """What the user should know about the choice ('' if nothing)."""
        key = self.key()
        if self.failure:
            return self.failure
        if self.worker is not None:
            return ""
        if key == NONE or (key == FILE and not self.file):
            return RANDOM_TEXT
        if key in self.registry and not self.cached(key):
            return "Not downloaded yet: click Download (or choose another starting point)."
        if key == "kinetics400":
            return "The backbone knows videos, not echo; its one-logit head starts random."
        return ""

    def use_echoprime(self) -> None:
        """Choose EchoPrime's quality model, downloading it when it is not cached."""
        self.set_spec(ECHOPRIME)
        if not self.cached(ECHOPRIME):
            self.start_download()

    def browse(self) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self, "Starting model weights", self.file or str(Path.home()),
            "PyTorch model (*.pt *.pth *.ckpt);;All files (*)")
        if path:
            self.file = path
            self._refresh()
            self.changed.emit()

    def _chosen(self) -> None:
        self.failure = ""
        self._refresh()
        self.changed.emit()

    # --- download ----------------------------------------------------------------------------
    def start_download(self) -> None:
        point = self.registry.get(self.key())
        if self.worker is not None or point is None or point.url is None:
            return
        worker = download_worker(point, self).connect(
            yielded=self._on_progress, returned=self._on_done,
            errored=lambda exc: self._on_failed(str(exc)))
        worker.finished.connect(self._on_finished)
        self.worker = worker
        self.failure = ""
        self.status.setText("Connecting…")
        self._refresh_buttons()
        self.changed.emit()
        worker.start()

    def cancel_download(self) -> None:
        if self.worker is not None:
            self.worker.cancel()
            self.status.setText("Cancelling…")

    def _on_progress(self, p: DownloadProgress) -> None:
        if p.total:
            self.progress.setValue(int(1000 * p.done / p.total))
        total = f" of {p.total / 1e6:.0f}" if p.total else ""
        self.status.setText(f"{p.done / 1e6:.0f}{total} MB, {p.speed / 1e6:.1f} MB/s")
        self.status.setToolTip(p.text())

    def _on_done(self, path: str) -> None:
        self._refresh()
        self.status.setText("Downloaded and verified.")
        self.status.setToolTip(path)
        self.changed.emit()

    def _on_failed(self, message: str) -> None:
        cancelled = "cancelled" in message
        self.status.setText("Download cancelled." if cancelled else "Download failed.")
        self.failure = "" if cancelled else message
        self.changed.emit()

    def _on_finished(self) -> None:
        worker, self.worker = self.worker, None
        if worker is not None:
            worker.deleteLater()
        self._refresh_buttons()
        self.changed.emit()

    def shutdown(self) -> None:
        """Cancel a download and wait for its thread (before the window closes)."""
        if self.worker is not None:
            self.worker.cancel()
            self.worker.wait()

    # --- display -------------------------------------------------------------------------------
    def _refresh(self) -> None:
        key = self.key()
        point = self.registry.get(key)
        size = f" ({point.size / 1e6:.0f} MB)" if point is not None and point.size else ""
        if key == FILE:
            text, tip = (Path(self.file).name, self.file) if self.file else ("No file chosen.", "")
        elif point is not None and point.url and not self.cached(key):
            text, tip = f"Not downloaded yet{size}.", point.description
        elif point is not None and point.url:
            text, tip = f"Downloaded{size}.", str(cache_dir() / point.filename)
        else:
            text, tip = "Random weights.", point.description if point is not None else ""
        self.status.setText(text)
        self.status.setToolTip(tip)
        self.choice.setToolTip(point.description if point is not None else
                               "A weights file: one of our checkpoints or an EchoPrime-format "
                               "state dict.")
        self.progress.setValue(1000 if self.cached(key) else 0)
        self._refresh_buttons()

    def _refresh_buttons(self) -> None:
        key = self.key()
        busy = self.worker is not None
        point = self.registry.get(key)
        can_download = point is not None and point.url is not None and not self.cached(key)
        self.download_button.setVisible(key not in (FILE, NONE) and not busy)
        self.download_button.setEnabled(can_download and not busy)
        self.browse_button.setVisible(key == FILE)
        self.cancel_button.setVisible(busy)
        self.progress.setVisible(busy or (point is not None and point.url is not None))
        echoprime = self.registry[ECHOPRIME]
        self.offer_button.setText(
            "Use EchoPrime's model" if self.cached(ECHOPRIME) else
            f"Get EchoPrime ({(echoprime.size or 0) / 1e6:.0f} MB)")
        self.offer_button.setVisible(key == NONE and not busy and echoprime.url is not None)
        self.choice.setEnabled(not busy)
