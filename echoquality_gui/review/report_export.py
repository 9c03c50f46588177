"""File ▸ Export report: the current training run's HTML report (``echoquality_core.evaluation.report``),
written by a spawned child (its GradCAM stills run torch, which never enters the window's
process) with its progress in the status bar."""
from __future__ import annotations

from pathlib import Path

from PySide6.QtWidgets import QFileDialog, QMainWindow

from echoquality_core.evaluation.report import write_report
from echoquality_gui.common.session import Session
from echoquality_gui.common.workers import Worker, child_worker

NO_RUN = ("No training run to report on: train a model (Train tab) or load a run's model "
          "(Runs tab), then choose File ▸ Export report again.")


def report_worker(session: Session, out: Path, parent=None) -> Worker:
    """A worker (not started) that writes the report of ``session.run_dir`` to ``out``
    (ValueError: no run); it yields progress texts and returns the written file's path."""
    if session.run_dir is None:
        raise ValueError(NO_RUN)
    run_dir, root = Path(session.run_dir), (session.project.root if session.project is not None
                                            else None)

    writer = child_worker(
        write_report, run_dir, Path(out), project_root=root, name="echoquality-report",
        parent=parent, timeout=3600.0,
        progress=lambda i, n, text: writer.yielded.emit(f"Report: {text} ({i + 1}/{n})…"))
    return writer


def failure_text(run_dir: Path, exc: BaseException) -> str:
    return (f"The report was not written: {exc}. Check that the run folder {run_dir.name} is "
            "complete and the target folder writable, then export again.")


def export_report(window: QMainWindow, session: Session) -> Worker | None:
    """Ask where to save and start writing; the status bar tells how it goes."""
    bar = window.statusBar()
    if session.run_dir is None:
        bar.showMessage(NO_RUN, 12000)
        return None
    run_dir = Path(session.run_dir)
    default = run_dir.parent / f"report-{run_dir.name}.html"
    path, _ = QFileDialog.getSaveFileName(window, "Export report", str(default),
                                          "HTML report (*.html)")
    if not path:
        return None
    writer = report_worker(session, Path(path), window)
    writer.connect(yielded=bar.showMessage,
                   returned=lambda p: bar.showMessage(f"Report written to {p}", 15000),
                   errored=lambda exc: bar.showMessage(failure_text(run_dir, exc), 20000))
    writer.finished.connect(writer.deleteLater)
    bar.showMessage("Writing the report…")
    writer.start()
    return writer
