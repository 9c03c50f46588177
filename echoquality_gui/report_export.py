"""File ▸ Export report: the current training run's HTML report (``echoquality_core.report``),
written in a worker thread (GradCAM runs torch) with its progress in the status bar."""
from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QThread, Signal
from PySide6.QtWidgets import QFileDialog, QMainWindow

from echoquality_gui.session import Session

NO_RUN = ("No training run to report on: train a model (Train tab) or load a run's model "
          "(Runs tab), then choose File ▸ Export report again.")


class ReportWriter(QThread):
    """Writes one report; ``progress(text)``, then ``done(path)`` or ``failed(reason)``."""

    progress = Signal(str)
    done = Signal(str)
    failed = Signal(str)

    def __init__(self, run_dir: Path, out: Path, project_root: Path | None, parent=None):
        super().__init__(parent)
        self.run_dir, self.out, self.project_root = run_dir, out, project_root

    def run(self) -> None:
        from echoquality_core.report import write_report

        try:
            path = write_report(self.run_dir, self.out, project_root=self.project_root,
                                progress=lambda i, n, text: self.progress.emit(
                                    f"Report: {text} ({i + 1}/{n})…"))
        except Exception as exc:  # noqa: BLE001 (any failure is reported, the app goes on)
            self.failed.emit(f"The report was not written: {exc}. Check that the run folder "
                             f"{self.run_dir.name} is complete and the target folder writable, "
                             "then export again.")
            return
        self.done.emit(str(path))


def start_report(session: Session, out: Path, parent=None) -> ReportWriter:
    """Start writing the report of ``session.run_dir`` to ``out`` (ValueError: no run)."""
    if session.run_dir is None:
        raise ValueError(NO_RUN)
    root = session.project.root if session.project is not None else None
    writer = ReportWriter(Path(session.run_dir), Path(out), root, parent)
    writer.start()
    return writer


def export_report(window: QMainWindow, session: Session) -> ReportWriter | None:
    """Ask where to save and start writing; the status bar tells how it goes."""
    bar = window.statusBar()
    if session.run_dir is None:
        bar.showMessage(NO_RUN, 12000)
        return None
    default = Path(session.run_dir).parent / f"report-{Path(session.run_dir).name}.html"
    path, _ = QFileDialog.getSaveFileName(window, "Export report", str(default),
                                          "HTML report (*.html)")
    if not path:
        return None
    writer = start_report(session, Path(path), window)
    writer.progress.connect(lambda text: bar.showMessage(text))
    writer.done.connect(lambda p: bar.showMessage(f"Report written to {p}", 15000))
    writer.failed.connect(lambda reason: bar.showMessage(reason, 20000))
    writer.finished.connect(writer.deleteLater)
    bar.showMessage("Writing the report…")
    return writer
