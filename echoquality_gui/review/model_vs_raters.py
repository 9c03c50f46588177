"""The Review tab's "Model vs raters" box: the model's agreement with each rater next to the
raters' agreement with each other (good/poor calls, Cohen's kappa with a bootstrap 95% CI):
is the model within human variability? Computed in a child process (``workers.child_worker``); empty in blind mode or
with fewer than two raters."""
from __future__ import annotations

from PySide6.QtCore import QThread
from PySide6.QtWidgets import QLabel, QVBoxLayout, QWidget

from echoquality_core.labels.agreement import model_vs_raters
from echoquality_gui.raters.agreement_view import fill, table
from echoquality_gui.common.session import Session
from echoquality_gui.common.workers import Latest, child_worker

N_BOOT = 300


def verdict(with_model, between) -> str:
    """One line: the model's kappa range against the raters' range."""
    model = [p.kappa.value for p in with_model if p.kappa.value == p.kappa.value]
    human = [p.kappa.value for p in between if p.kappa.value == p.kappa.value]
    if not model or not human:
        return "Not enough clips labelled by two raters and scored by the model yet."
    def span(values: list[float]) -> str:
        low, high = min(values), max(values)
        return f"{low:.2f}" if low == high else f"{low:.2f} to {high:.2f}"

    inside = min(model) >= min(human)
    return (f"Cohen's kappa, model vs raters: {span(model)}; raters vs each other: "
            f"{span(human)}. The model is "
            + ("within human variability." if inside else "below the raters' agreement."))


class ModelVsRaters(QWidget):
    """Table: pair, clips, Cohen's kappa [CI], agreement [CI]; model rows first."""

    def __init__(self, session: Session, parent: QWidget | None = None):
        super().__init__(parent)
        self.session = session
        self.job = Latest()
        self._stale = True
        self.summary = QLabel("")
        self.summary.setWordWrap(True)
        self.summary.setObjectName("clipInfo")
        self.table = table(["Pair (good/poor calls)", "n", "κ [95% CI]", "Agree [95% CI]"])
        self.table.setMaximumHeight(120)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        title = QLabel("Model vs raters")
        title.setObjectName("sectionTitle")
        layout.addWidget(title)
        layout.addWidget(self.summary)
        layout.addWidget(self.table)
        for signal in (session.scores_changed, session.raters_changed, session.label_changed,
                       session.project_opened):
            signal.connect(lambda *_: self.refresh())
        self.refresh()

    def refresh(self) -> QThread | None:
        """Recompute from the raters' labels and the model's scores (in the background, and
        only while the Review tab shows: else when it is next shown)."""
        s, project = self.session, self.session.project
        self.job.abort()
        fill(self.table, [])
        if s.blind or project is None or len(project.raters.raters()) < 2 or not s.scores:
            self.setVisible(False)
            return None
        self.setVisible(True)
        self._stale = not self.isVisible()
        if self._stale:
            return None
        labels, scores, threshold = project.raters.labels(), dict(s.scores), s.threshold
        self.summary.setText("Computing…")
        return self.job.start(child_worker(model_vs_raters, labels, scores, threshold,
                                           n_boot=N_BOOT, name="echoquality-raters",
                                           parent=self).connect(
            returned=self._done, errored=lambda exc: self.summary.setText(
                f"Model vs raters failed: {exc or type(exc).__name__}")))

    def refresh_if_stale(self) -> None:
        """The Review tab is shown: compute what changed while it was hidden."""
        if self._stale:
            self.refresh()

    def _done(self, result) -> None:
        if self.session.blind:
            return
        with_model, between = result
        fill(self.table, [[f"{p.a} vs {p.b}", str(p.n), p.kappa.text(),
                           p.percent.text(percent=True)] for p in with_model + between])
        self.summary.setText(verdict(with_model, between))

    def shutdown(self) -> None:
        self.job.abort()  # its child is killed
        self.job.wait()
