"""The Review tab's tabs under the charts: the clip table, the threshold and calibration panel
and the possible label errors; what the two scope-dependent panels get from a ``ReviewSet``,
and saving the threshold panel's choice into the model."""
from __future__ import annotations

from PySide6.QtWidgets import QSizePolicy, QTabWidget, QWidget

from echoquality_core.evaluation.review import ReviewSet
from echoquality_core.evaluation.threshold import ThresholdChoice
from echoquality_gui.common.session import Session
from echoquality_gui.common.workers import Worker, child_worker
from echoquality_gui.review.clip_table import ClipTable
from echoquality_gui.review.label_issues_panel import LabelIssuesPanel
from echoquality_gui.review.threshold_panel import ThresholdPanel


class ReviewLists(QTabWidget):
    """Disagreements · Threshold & calibration · Possible label errors."""

    def __init__(self, clips: ClipTable, parent: QWidget | None = None):
        super().__init__(parent)
        self.clips = clips
        self.threshold_panel = ThresholdPanel()
        self.label_issues = LabelIssuesPanel()
        self.addTab(clips, "Disagreements")
        self.addTab(self.threshold_panel, "Threshold && calibration")
        self.addTab(self.label_issues, "Possible label errors")
        self.currentChanged.connect(self._size_by_current_page)
        self._size_by_current_page(self.currentIndex())

    def _size_by_current_page(self, index: int) -> None:
        """Only the page shown asks for room: a hidden page's minimum height (the threshold
        panel's plots) would otherwise hold the whole Review column open and make the window
        scroll at 1280x720 (150-200 % scaling)."""
        ignored, preferred = QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred
        for i in range(self.count()):
            shown = i == index
            self.widget(i).setSizePolicy(preferred if shown else ignored,
                                         preferred if shown else ignored)
        self.updateGeometry()

    def show_scope(self, rs: ReviewSet | None, session: Session) -> None:
        """Give the threshold panel a ThresholdChoice over the review set's clips (keeping the
        threshold and calibration being tried when the clips are the same) and, for
        out-of-fold scores, the label-noise list its rows."""
        panel, issues = self.threshold_panel, self.label_issues
        if rs is None or not rs.clips or session.project is None:
            panel.set_choice(None)
            issues.set_rows(None, set())
            return
        clips = rs.clips
        groups = [rs.groups[c.rel] for c in clips] if rs.groups else None
        choice = ThresholdChoice([c.rel for c in clips], [c.label for c in clips],
                                 [c.score for c in clips], rs.threshold, groups)
        old = panel.choice
        if old is not None and old.rels == choice.rels and panel.source == rs.source:
            if old.calibration:
                try:
                    choice.set_calibration(old.calibration["method"])
                except ValueError:
                    pass
            choice.set_threshold(old.threshold)
        store = session.project.store
        paths = None if groups else [store.resolve(c.rel) for c in clips]
        panel.set_choice(choice, rs.source, paths,
                         "Out-of-fold scores" if rs.groups else "Held-out scores")
        if rs.groups is None:
            issues.set_rows(None, set())
            return
        rows = [{"video_path": c.rel, "label": c.label, "score": c.score} for c in clips]
        issues.set_rows(rows, {c.rel for c in clips if c.reviewed})

    def save_threshold(self, session: Session) -> Worker | None:
        """Save the panel's threshold (and calibration) into the session's model checkpoint,
        the project and its MLflow run, in a child process (torch rewrites the checkpoint,
        MLflow records it: neither is imported into the window); then the model is used with
        it (rescoring). None (with the reason shown) when there is nothing to save into."""
        from echoquality_core.evaluation.calibration import save_decision
        from echoquality_core.runs.tracking import default_tracking_uri

        choice = self.threshold_panel.choice
        model = session.model_path
        if choice is None or session.project is None:
            return None
        if model is None or model.is_dir() or model.name.endswith(".ts.pt"):
            session.message.emit("Load or train a model (a checkpoint) first: the threshold is "
                                 "saved into it")
            return None
        root, run_dir = session.project.folder.path, session.run_dir
        source = self.threshold_panel.source.split(" (")[0]

        def saved(decision: dict) -> None:
            choice.saved = decision["threshold"]
            cal = decision.get("calibration")
            session.message.emit(f"Threshold {decision['threshold']:.3f} saved in {model.name}"
                                 + (f" with {cal['method']} calibration" if cal else "")
                                 + ("" if decision.get("recorded_in_mlflow") else
                                    " (its MLflow run is not in this project's store)"))
            session.set_model(model, run_dir=run_dir, threshold=decision["threshold"])

        worker = child_worker(
            save_decision, model, choice.threshold, name="threshold-save", parent=self,
            calibration=choice.calibration, source=source, project_dir=root,
            tracking_uri=default_tracking_uri(root),
        ).connect(
            returned=saved, errored=lambda exc: session.message.emit(
                f"Threshold not saved: {exc}"))  # the child's message names the error
        worker.start()
        return worker

    def wait(self) -> None:
        """End the panels' work (their children killed) and wait for their threads (before the
        widget goes away)."""
        self.threshold_panel.wait_for_ci()
        self.label_issues.wait()
