"""The Review tab's right side: the chosen clip's title, the player with the model's GradCAM
heat map (computed in the GradCAM process) and the Relabel / Confirm buttons."""
from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QHBoxLayout, QLabel, QPushButton, QVBoxLayout, QWidget

from echoquality_core.evaluation.review import KINDS, ReviewClip
from echoquality_core.model.file_kind import is_export
from echoquality_core.scoring.heatmap import ClipExplanation, ClipHeatMap
from echoquality_gui.common.session import Session
from echoquality_gui.label.clip_list import label_text
from echoquality_gui.model.gradcam_worker import GradcamWorker
from echoquality_gui.player.view import CinePlayer
from echoquality_gui.window.keybinds import FIVE_POINT, keybind

NO_CLIP = "Select a clip to see where the model looked"


class ClipPanel(QWidget):
    """Plays one reviewed clip with its heat map; ``relabel(score)`` and ``confirm()`` are the
    user's buttons."""

    relabel = Signal(float)
    confirm = Signal()

    def __init__(self, session: Session, parent: QWidget | None = None):
        super().__init__(parent)
        self.session = session
        self.rel: str | None = None  # the clip in the player
        self.heat_map: ClipHeatMap | None = None
        self._request = 0
        self._score_buttons: list[QPushButton] = []
        self.worker = GradcamWorker(session.gradcam_process(), self)
        self.worker.ready.connect(self._on_gradcam)
        self.worker.failed.connect(self._on_gradcam_failed)
        self._build()
        session.model_changed.connect(self._warm_gradcam)
        session.scale_changed.connect(self._build_score_buttons)
        self._build_score_buttons(session.scale)

    def _build(self) -> None:
        self.clip_title = QLabel(NO_CLIP)
        self.clip_title.setObjectName("currentLabel")
        self.clip_title.setWordWrap(True)
        self.player = CinePlayer(parent=self)
        self.player.set_empty_text("Select a clip on the left to play it with the model's "
                                   "heat map")
        self.scores_row = QHBoxLayout()
        self.confirm_button = QPushButton(f"Confirm label  [{keybind('confirm_label').key}]")
        self.confirm_button.setToolTip("The label is right and the model is wrong: mark the "
                                       "clip as reviewed (tag 'reviewed' in the labels CSV)")
        self.confirm_button.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.confirm_button.clicked.connect(self.confirm)
        actions = QHBoxLayout()
        actions.addWidget(QLabel("Relabel"))
        actions.addLayout(self.scores_row)
        actions.addStretch(1)
        actions.addWidget(self.confirm_button)
        self.status = QLabel("")
        self.status.setObjectName("clipInfo")
        self.status.setWordWrap(True)
        side = QVBoxLayout(self)
        side.setContentsMargins(6, 4, 6, 4)
        side.addWidget(self.clip_title)
        side.addWidget(self.player, 1)
        side.addLayout(actions)
        side.addWidget(self.status)

    def _build_score_buttons(self, scale: str) -> None:
        for button in self._score_buttons:
            button.hide()  # gone now, not only when the event loop deletes it
            button.deleteLater()
        self._score_buttons = []
        if scale == "five_point":
            items = [(score, key, None) for key, score in FIVE_POINT.items()]
        else:
            items = [(1.0, f"Good  [{keybind('label_good').key}]", "goodButton"),
                     (0.0, f"Poor  [{keybind('label_poor').key}]", "poorButton")]
        for score, text, name in items:
            button = QPushButton(text)
            button.setFocusPolicy(Qt.FocusPolicy.NoFocus)
            if name:
                button.setObjectName(name)
            button.setToolTip(f"Relabel the clip: score {score:g} (written now; Ctrl+Z undoes)")
            button.clicked.connect(lambda _=False, s=score: self.relabel.emit(s))
            self.scores_row.addWidget(button)
            self._score_buttons.append(button)

    def show_clip(self, clip: ReviewClip | None, path: Path | None) -> None:
        """Play ``clip`` (its file: ``path``) and compute its GradCAM maps in the background;
        None empties the player."""
        self.rel, self.heat_map = (clip.rel if clip else None), None
        self.player.set_overlay(None)
        self.player.set_importance(None)
        if clip is None or path is None:
            self.rel = None
            self.worker.cancel()
            self.player.open_clip(None)
            self.clip_title.setText(NO_CLIP)
            self.status.setText("")
            return
        self.player.open_clip(path)
        self.show_title(clip)
        explain = "good" if clip.called_good else "poor"
        self._request = self.worker.request(self.session.model_path, path, explain)
        self.status.setText(f"Computing GradCAM (what made the model call it {explain})…")

    def show_title(self, clip: ReviewClip) -> None:
        """The clip's name, label, score, call and kind of (dis)agreement."""
        done = " · reviewed ✓" if clip.reviewed else ""
        self.clip_title.setText(
            f"{Path(clip.rel).name} · labelled {label_text(clip.label)} · model {clip.score:.3f}"
            f" ({'good' if clip.called_good else 'poor'}) · {KINDS[clip.kind]}{done}")

    def _warm_gradcam(self, path: Path | None) -> None:
        """Load a new model into the GradCAM process now (not for exports: GradCAM needs the
        checkpoint's layers)."""
        if path is not None and not is_export(path):
            self.worker.warm(path)

    def _on_gradcam(self, request: int, result: ClipExplanation) -> None:
        if request != self._request or self.rel is None:
            return
        self.heat_map = ClipHeatMap(result)
        caption = (f"GradCAM: what made the model call it {result.explain} "
                   f"(score {result.score:.3f})")
        self.player.set_overlay(self.heat_map, caption=caption)
        self.player.set_importance(*self.heat_map.importance())
        self.status.setText("Heat map: bright = where the model looked for its call; the curve "
                            "under the scrub bar = how much each frame mattered.")

    def _on_gradcam_failed(self, request: int, reason: str) -> None:
        if request == self._request:
            self.status.setText(reason)

    def shutdown(self) -> None:
        """Stop the GradCAM thread and the player."""
        self.worker.stop()
        self.player.shutdown()
