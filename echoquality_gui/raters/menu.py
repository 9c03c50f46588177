"""The "Rater" menu (who labels, blind mode, the training-label policy, Agreement and the
adjudication queue) and the Train tab's line that says which labels a run trains on."""
from __future__ import annotations

import getpass

from PySide6.QtGui import QAction, QActionGroup
from PySide6.QtWidgets import QInputDialog, QLabel, QMainWindow, QMenu, QMessageBox, QWidget

from echoquality_core.labels.raters import POLICIES, clip_raters, known_raters
from echoquality_gui.common import settings
from echoquality_gui.common.session import Session


def default_user() -> str:
    """The OS user name (the rater name offered the first time)."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return ""


def raters_text(session: Session, rel: str, own, column: str) -> str | None:
    """The clip list's Label / Rater / Model cell with several raters or blind mode (None:
    the usual text). Blind: "by you" and "by n others", never a value of theirs or the model's."""
    if column == "Model":
        return None if session.show_scores else ""
    project = session.project
    if not (session.blind or project.raters.exists):
        return None
    others = [r for r in clip_raters(project.store, project.raters, rel) if r != project.rater]
    if column == "Label":
        return ("by you" if own is not None else "") if session.blind else None
    if session.blind:
        return f"by {len(others)} other{'s' if len(others) > 1 else ''}" if others else ""
    return ", ".join(([project.rater] if own is not None else []) + others)


def policy_text(session: Session) -> str:
    """'Training labels: majority of 2 raters (…), adjudicated first' for the Train tab."""
    project = session.project
    if project is None:
        return ""
    raters = known_raters(project.store, project.raters)
    if len(raters) <= 1 and not project.raters.exists:
        return "Training labels: the labels CSV (one rater)"
    policy = project.policy
    return (f"Training labels: {policy} of {len(raters)} raters — {POLICIES[policy]}; an "
            "adjudicated label always wins (change: Rater ▸ Training label policy)")


class RaterDialog(QInputDialog):
    """Asks who labels (offering the stored name, else the OS user name); not modal-blocking:
    ``session.set_rater`` is called when accepted."""

    def __init__(self, session: Session, parent: QWidget | None = None):
        super().__init__(parent)
        self.session = session
        self.setWindowTitle("Rater")
        self.setLabelText("Your name or initials (saved with every label you give):")
        self.setTextValue(settings.rater() or default_user())
        self.textValueSelected.connect(self._chosen)

    def _chosen(self, name: str) -> None:
        if name.strip():
            self.session.set_rater(name.strip())


class RaterMenu(QMenu):
    """Rater ▸ current rater, Change rater…, Blind mode, Training label policy, Agreement,
    Adjudication queue."""

    def __init__(self, window: QMainWindow, session: Session, show_tab=None):
        super().__init__("&Rater", window)
        self.window_, self.session = window, session
        self.dialog: RaterDialog | None = None
        self.current = self.addAction("")
        self.current.setEnabled(False)
        self.change = self.addAction("Change rater…", self.ask)
        self.change.setObjectName("change_rater")
        self.blind = self.addAction("Blind mode (hide other raters' labels and model scores)")
        self.blind.setCheckable(True)
        self.blind.toggled.connect(self._blind_toggled)
        self.policy_menu = self.addMenu("Training label policy")
        group = QActionGroup(self)
        self.policies: dict[str, QAction] = {}
        for name, text in POLICIES.items():
            action = self.policy_menu.addAction(f"{name}: {text}")
            action.setCheckable(True)
            action.triggered.connect(lambda _=False, p=name: self.set_policy(p))
            group.addAction(action)
            self.policies[name] = action
        self.addSeparator()
        self.agreement = self.addAction("Agreement", lambda: show_tab and show_tab("agreement"))
        self.queue = self.addAction("Adjudication queue",
                                    lambda: show_tab and show_tab("adjudication"))
        session.raters_changed.connect(self.refresh)
        session.project_opened.connect(lambda _p: self.refresh())
        bar = window.menuBar()
        last = bar.actions()[-1] if bar.actions() else None  # before Help
        bar.insertMenu(last, self) if last is not None else bar.addMenu(self)
        self.refresh()

    def ask(self) -> RaterDialog:
        """Show the rater dialog (Change rater…)."""
        if self.dialog is None:
            self.dialog = RaterDialog(self.session, self.window_)
        self.dialog.setTextValue(settings.rater() or default_user())
        self.dialog.open()
        return self.dialog

    def _blind_toggled(self, on: bool) -> None:
        if on != self.session.blind:
            self.session.set_blind(on)

    def set_policy(self, policy: str) -> None:
        project = self.session.project
        if project is None:
            return
        try:
            changed = project.set_policy(policy)
        except (OSError, ValueError) as exc:
            QMessageBox.warning(self.window_, "Training label policy", str(exc))
            return
        self.session.message.emit(f"Training label policy: {policy}; {len(changed)} rows of "
                                  f"{project.csv_path.name} changed")
        self.session.raters_changed.emit()

    def refresh(self) -> None:
        s = self.session
        self.current.setText(f"Rater: {settings.rater() or '(not set)'}")
        self.blind.blockSignals(True)
        self.blind.setChecked(s.blind)
        self.blind.blockSignals(False)
        policy = s.project.policy if s.project else None
        for name, action in self.policies.items():
            action.setChecked(name == policy)
        for action in (self.agreement, self.queue):
            action.setEnabled(not s.blind)


class PolicyLabel(QLabel):
    """The Train tab's line saying which labels the run trains on."""

    def __init__(self, session: Session, parent: QWidget | None = None):
        super().__init__(parent)
        self.session = session
        self.setObjectName("clipInfo")
        self.setWordWrap(True)
        session.raters_changed.connect(self.refresh)
        session.project_opened.connect(lambda _p: self.refresh())
        self.refresh()

    def refresh(self) -> None:
        self.setText(policy_text(self.session))
