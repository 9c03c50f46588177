"""The label panel: score buttons, issue-tag toggles and notes for the current clip. Labels are
written to the CSV at once (through the session); captions show the keys from the registry."""
from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QButtonGroup,
    QCheckBox,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from echoquality_core.labels.store import UNREADABLE, Label
from echoquality_core.labels.project import ClipInfo
from echoquality_core.decision import assessment, called_good
from echoquality_gui.common import settings
from echoquality_gui.label.clip_list import label_text
from echoquality_gui.window.keybinds import FIVE_POINT, ISSUE_KEYS, keybind
from echoquality_gui.common.resources import icon
from echoquality_gui.common.session import Session
from echoquality_gui.common.widgets import section_title


def ask_rater(parent: QWidget | None) -> str:
    """The rater's name for a label: the stored one, else the OS user name (then stored).
    Never a dialog, so no label key press is interrupted: the name is asked once at first
    start and changed with Edit ▸ Rater name."""
    name = settings.rater()
    if not name:
        name = settings.default_rater()
        settings.set_rater(name)
    return name


NOTES_TIP = "Notes of a labelled clip are saved when you press Enter or leave the clip."
DRAFT_TIP = ("Not saved yet: these notes and tags stay with this clip (until the app closes) "
             "and are saved with its score.")


class LabelPanel(QWidget):
    """Score the current clip (binary good/poor or five-point), tag issues, add notes.

    Edited notes (and tags) are written before the session leaves the clip; an unlabelled
    clip's are kept as a draft in memory, shown again with the clip and saved with its score.
    """

    def __init__(self, session: Session, parent=None):
        super().__init__(parent)
        self.session = session
        self._score_buttons: dict[float, QPushButton] = {}
        self._score_group = QButtonGroup(self)
        self._score_group.setExclusive(True)
        self._edited = False  # notes or tags changed since the clip was shown
        self._shown_tags: frozenset[str] = frozenset()
        self._drafts: dict[str, tuple[str, frozenset[str]]] = {}  # unlabelled rel -> edits

        self.current = QLabel("No clip")
        self.current.setObjectName("currentLabel")
        self.current.setWordWrap(True)
        self.model_score = QLabel("")
        self.model_score.setObjectName("modelScore")
        self.model_score.setWordWrap(True)
        self.scores_box = QGridLayout()
        tags = self._build_tags()
        self.notes = QLineEdit(placeholderText="Notes (Enter keeps them)")
        self.notes.setToolTip(NOTES_TIP)
        self.notes.textEdited.connect(lambda _text: setattr(self, "_edited", True))
        self.notes.editingFinished.connect(self._notes_edited)
        self.notes.returnPressed.connect(self.notes.clearFocus)  # hand the keys back
        self.auto_advance = QCheckBox("Go to the next unlabelled clip after labelling",
                                      checked=True)
        self.auto_advance.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.auto_advance.toggled.connect(lambda on: setattr(session, "auto_advance", on))
        actions = self._build_actions()
        self.hint = QLabel("")
        self.hint.setWordWrap(True)

        layout = QVBoxLayout(self)
        layout.setContentsMargins(6, 4, 6, 4)
        layout.addWidget(self.current)
        layout.addWidget(self.model_score)
        layout.addWidget(section_title("Quality"))
        layout.addLayout(self.scores_box)
        layout.addWidget(section_title("Issues"))
        layout.addLayout(tags)
        layout.addWidget(section_title("Notes"))
        layout.addWidget(self.notes)
        layout.addLayout(actions)
        layout.addWidget(self.uncertain_button)
        layout.addWidget(self.auto_advance)
        layout.addWidget(self.hint)
        layout.addStretch(1)

        session.scale_changed.connect(self._build_scores)
        session.about_to_change_clip.connect(self.flush)
        session.current_changed.connect(self._show_clip)
        session.label_changed.connect(self._label_changed)
        session.project_opened.connect(lambda _project: self._drafts.clear())
        for signal in (session.scores_changed, session.score_visibility_changed):
            signal.connect(self._show_model_score)
        self._build_scores(session.scale)
        self._show_clip(None)

    def _build_tags(self) -> QGridLayout:
        """One checkable button per issue tag, two columns."""
        self.tag_buttons: dict[str, QPushButton] = {}
        tags = QGridLayout()
        for i, (tag, key) in enumerate(ISSUE_KEYS.items()):
            button = QPushButton(f"{tag.replace('_', ' ')}  [{key}]", checkable=True)
            button.setFocusPolicy(Qt.FocusPolicy.NoFocus)
            button.clicked.connect(lambda _=False, t=tag: self._tags_edited(t))
            self.tag_buttons[tag] = button
            tags.addWidget(button, i // 2, i % 2)
        return tags

    def _build_actions(self) -> QHBoxLayout:
        """Save and Next unlabelled (returned as a row); Next most uncertain on its own."""
        save = QPushButton(f"Save  [{keybind('save_label').keys[0]}]")
        save.setToolTip(keybind("save_label").help)
        save.clicked.connect(self.save)
        nxt = QPushButton(f"Next unlabelled  [{keybind('next_unlabelled').key}]")
        nxt.clicked.connect(self.session.next_unlabelled)
        self.uncertain_button = QPushButton(
            f"Next most uncertain (model)  [{keybind('next_uncertain').key}]")
        self.uncertain_button.setToolTip(keybind("next_uncertain").help)
        self.uncertain_button.clicked.connect(self.session.next_most_uncertain)
        for button in (save, nxt, self.uncertain_button):
            button.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        actions = QHBoxLayout()
        actions.addWidget(save)
        actions.addWidget(nxt)
        return actions

    def _build_scores(self, scale: str) -> None:
        self.flush()
        for button in self._score_buttons.values():
            self._score_group.removeButton(button)
            button.deleteLater()
        self._score_buttons.clear()
        if scale == "five_point":
            items = [(score, f"{key}", None, key) for key, score in FIVE_POINT.items()]
        else:
            items = [(1.0, "Good", "good", "1"), (0.0, "Poor", "poor", "0")]
        for col, (score, text, name, key) in enumerate(items):
            button = QPushButton(f"{text}  [{key}]", checkable=True)
            button.setFocusPolicy(Qt.FocusPolicy.NoFocus)
            button.setMinimumHeight(34)
            if name:
                button.setIcon(icon(name))
                button.setObjectName(f"{name}Button")
            button.setToolTip(f"Score {score:g}")
            button.clicked.connect(lambda _=False, s=score: self.give_score(s))
            self._score_group.addButton(button)
            self._score_buttons[score] = button
            self.scores_box.addWidget(button, 0, col)
        self._show_clip(self.session.current)

    # --- what the keys and buttons do ------------------------------------------------------
    def issues(self) -> tuple[str, ...]:
        """The checked tags, plus the current label's tags that have no button (e.g.
        "reviewed", or a tag another tool wrote): those are kept, never dropped."""
        label = self._label()
        kept = tuple(t for t in (label.issues if label else ()) if t not in self.tag_buttons)
        return tuple(t for t, b in self.tag_buttons.items() if b.isChecked()) + kept

    def give_score(self, score: float, *, advance: bool | None = None) -> bool:
        """Label the current clip with ``score`` and the checked tags (written now)."""
        current = self.session.current
        if current is None or not ask_rater(self):
            return False
        written = self.session.label_current(score, self.issues(), self.notes.text().strip(),
                                             advance=advance)
        if written:
            self._drafts.pop(current.rel, None)
        return written

    def save(self) -> bool:
        """Write the chosen score, tags and notes; stay on this clip."""
        button = self._score_group.checkedButton()
        if button is None:
            self.session.message.emit("Choose a score first (the keys are on the buttons)")
            return False
        score = next(s for s, b in self._score_buttons.items() if b is button)
        return self.give_score(score, advance=False)

    def toggle_issue(self, tag: str) -> None:
        self.tag_buttons[tag].toggle()
        self._tags_edited(tag)

    def _tags_edited(self, _tag: str) -> None:
        self._edited = True
        self._rewrite_if_labelled()

    def _notes_edited(self) -> None:
        label = self._label()
        if label is not None and ((label.notes or "") != self.notes.text().strip()
                                  or self._checked_tags() != frozenset(
                                      t for t in label.issues if t in self.tag_buttons)):
            self._rewrite_if_labelled()

    def flush(self, info: ClipInfo | None = None) -> None:
        """Write the edited notes of the clip on screen (the session is about to leave it); an
        unlabelled clip's notes and tags are kept as its draft instead (no score is made up)."""
        current = self.session.current
        if not self._edited or current is None or (info is not None and info.rel != current.rel):
            return
        self._edited = False
        if self._label() is not None:
            self._notes_edited()
        elif self.notes.text().strip() or self._checked_tags() != self._shown_tags:
            self._drafts[current.rel] = (self.notes.text(), self._checked_tags())
        else:
            self._drafts.pop(current.rel, None)

    def _checked_tags(self) -> frozenset[str]:
        return frozenset(t for t, b in self.tag_buttons.items() if b.isChecked())

    def _rewrite_if_labelled(self) -> None:
        """A labelled clip's tags/notes are saved as they change; an unlabelled clip's wait
        for its score."""
        label = self._label()
        if label is not None and not self.give_score(label.quality_score, advance=False):
            self._edited = True  # refused (the labels are still being read): written later

    # --- showing the current clip's label --------------------------------------------------
    def _label(self) -> Label | None:
        current = self.session.current
        return self.session.label(current.rel) if current else None

    def _label_changed(self, rel: str) -> None:
        if self.session.current is not None and self.session.current.rel == rel:
            self._show_clip(self.session.current)

    def _show_clip(self, info: ClipInfo | None) -> None:
        label = self._label() if info else None
        self._score_group.setExclusive(False)
        for score, button in self._score_buttons.items():
            button.setChecked(label is not None and label.quality_score == score)
            button.setEnabled(info is not None)
        self._score_group.setExclusive(True)
        issues = set(label.issues) if label else set()
        if info is not None and info.error and label is None:
            issues.add(UNREADABLE)
        self._edited = False
        self._shown_tags = frozenset(issues)
        draft = self._drafts.get(info.rel) if info is not None and label is None else None
        if draft is not None:
            issues = set(draft[1])
        for tag, button in self.tag_buttons.items():
            button.setChecked(tag in issues)
            button.setEnabled(info is not None)
        self.notes.setText(draft[0] if draft else (label.notes or "") if label else "")
        self.notes.setToolTip(DRAFT_TIP if draft else NOTES_TIP)
        if info is None:
            self.current.setText("No clip")
        elif label is None:
            self.current.setText("Unlabelled")
        else:
            who = f" · {label.rater}" if label.rater else ""
            when = f" · {label.labeled_at[11:19]}" if label.labeled_at else ""
            self.current.setText(f"{label_text(label.quality_score)}{who}{when}")
        self.hint.setText(f"Cannot be read: {info.error}" if info and info.error else "")
        self._show_model_score()

    def _show_model_score(self, *_args) -> None:
        """The model's score of the current clip, unless hidden (to label without bias)."""
        current, session = self.session.current, self.session
        score = session.scores.get(current.rel) if current else None
        self.uncertain_button.setEnabled(bool(session.scores))
        shown = score is not None and session.show_scores
        self.model_score.setVisible(shown)
        self.model_score.setText("")  # hidden means gone (blind mode), not just out of sight
        if shown:
            verdict = "good" if called_good(score, session.threshold) else "poor"
            self.model_score.setText(
                f"Model: {score:.2f} · {assessment(score, session.threshold)} · {verdict} at "
                f"threshold {session.threshold:.2f}")

    def mark_unreadable(self, reason: str) -> None:
        """The player could not decode the clip: show why and pre-select the 'unreadable' tag."""
        if self._label() is None:
            self.tag_buttons[UNREADABLE].setChecked(True)
        self.hint.setText(f"Cannot be shown: {reason}")
