"""The main window: clip list | cine player | label panel in a "Label" tab, menus, and the
shortcuts of the keybind registry. Later tabs (Train, Review) plug in with ``add_tab``."""
from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QEventLoop, Qt
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import (
    QApplication,
    QFileDialog,
    QLabel,
    QMainWindow,
    QMessageBox,
    QSplitter,
    QTabWidget,
    QWidget,
)

from echoquality_core.labels.project import ClipInfo
from echoquality_gui.window import commands
from echoquality_gui.window import preferences
from echoquality_gui.common import settings
from echoquality_gui.window import state as window_state
from echoquality_gui.window.about import show_about
from echoquality_gui.raters.adjudication import AdjudicationView
from echoquality_gui.raters.agreement_view import AgreementView
from echoquality_gui.label.clip_list import ClipListPanel
from echoquality_gui.window.drop import DropOpener
from echoquality_gui.window.keybinds import KEYBINDS, keybinds
from echoquality_gui.window.keys_dialog import KeysDialog, cheat_sheet_html
from echoquality_gui.label.panel import LabelPanel
from echoquality_gui.pacs.dialog import show_pacs_dialog
from echoquality_gui.review.report_export import export_report
from echoquality_gui.player.view import CinePlayer
from echoquality_gui.raters.menu import RaterMenu
from echoquality_gui.common.resources import icon
from echoquality_gui.review.tab import ReviewTab
from echoquality_gui.runs.tab import RunsPanel
from echoquality_gui.model.panel import ScoreFolderDialog, choose_model
from echoquality_gui.common.session import Session
from echoquality_gui.train.tab import TrainPanel

LABEL_GROUPS = ("Label", "Player", "Clips")  # keybind groups that act on the Label tab


class MainWindow(QMainWindow):
    """EchoQuality Studio's window; ``session`` holds the open project."""

    def __init__(self, session: Session | None = None, parent: QWidget | None = None):
        super().__init__(parent)
        self.session = session or Session(self)
        self._closing = False  # hidden, shutting down
        preferences.use_saved_keys()  # the user's shortcuts, before captions are built
        self.setWindowTitle("")  # Qt shows the application's name; a project's name goes first
        self.setWindowIcon(icon("app"))
        self.clip_list = ClipListPanel(self.session)
        self.player = CinePlayer(parent=self)
        self.label_panel = LabelPanel(self.session)
        self.label_page = QSplitter(Qt.Orientation.Horizontal)
        self.label_page.setObjectName("labelSplitter")
        for widget in (self.clip_list, self.player, self.label_panel):
            self.label_page.addWidget(widget)
        self.label_page.setStretchFactor(0, 0)
        self.label_page.setStretchFactor(1, 1)
        self.label_page.setStretchFactor(2, 0)
        self.label_page.setSizes([420, 700, 300])  # most of the width to the cine; whole names
        self.tabs = QTabWidget()
        self.tabs.setDocumentMode(True)
        self.tabs.addTab(self.label_page, "Label")
        self.tabs.currentChanged.connect(self._tab_changed)
        window_state.scrollable_centre(self, self.tabs)
        self.saved_label = QLabel("")
        self.statusBar().addPermanentWidget(self.saved_label)
        self._keys_dialog: KeysDialog | None = None
        self._score_dialog: ScoreFolderDialog | None = None
        self.actions: dict[str, QAction] = {}
        self._make_actions()
        self._make_menus()
        self._connect()
        self.train_panel = TrainPanel(self.session)
        self.train_panel.closed_down.connect(self.close)  # closing waited for the run
        self.add_tab(self.train_panel, "Train")
        self.review = ReviewTab(self.session)
        self.add_tab(self.review, "Review")
        self.runs_panel = RunsPanel(self.session)
        self.add_tab(self.runs_panel, "Runs")
        self.agreement_view = AgreementView(self.session)
        self.add_tab(self.agreement_view, "Agreement")
        self.adjudication = AdjudicationView(self.session)
        self.add_tab(self.adjudication, "Adjudicate")
        self.rater_menu = RaterMenu(self, self.session, self.show_tab)
        self._tab_changed(self.tabs.currentIndex())
        self._prefs: preferences.PreferencesDialog | None = None
        self.drop_opener = DropOpener(self, lambda root, csv: self.open_project(root, csv))
        window_state.restore_state(self, self.tabs, self._headers())
        self.set_autoplay(settings.autoplay())  # echo review stations play clips on opening

    # --- seams for later tabs --------------------------------------------------------------
    def add_tab(self, widget: QWidget, title: str) -> int:
        """Add a tab (e.g. "Train", "Review"); the Label tab's shortcuts pause while it shows."""
        return self.tabs.addTab(widget, title)

    def show_tab(self, name: str) -> None:
        """Show the "agreement" or "adjudication" tab (Rater menu)."""
        self.tabs.setCurrentWidget(getattr(self, {"agreement": "agreement_view"}.get(name, name)))

    def action(self, name: str) -> QAction:
        """The QAction of a keybind-registry action (e.g. "label_good")."""
        return self.actions[name]

    # --- actions and menus -----------------------------------------------------------------
    def _make_actions(self) -> None:
        handlers = commands.handlers(self)
        for bind in keybinds():
            action = QAction(bind.help, self)
            action.setShortcuts(QKeySequence.listFromString(bind.key))
            action.setShortcutContext(Qt.ShortcutContext.WindowShortcut)
            action.triggered.connect(lambda _=False, h=handlers[bind.action]: h())
            self.addAction(action)
            self.actions[bind.action] = action
        self.actions["undo"].setEnabled(False)
        self.actions["redo"].setEnabled(False)
        self._scale_changed(self.session.scale)

    def _make_menus(self) -> None:
        bar = self.menuBar()
        file_menu = bar.addMenu("&File")
        file_menu.addAction(self._rename(self.actions["open_folder"], "Open folder…"))
        file_menu.addAction("Open labels CSV…", self.choose_csv)
        file_menu.addAction("Import from PACS…", lambda: show_pacs_dialog(self))
        file_menu.addSeparator()
        file_menu.addAction("Load model…", lambda: choose_model(self, self.session))
        file_menu.addAction("Score a folder…", self.score_folder)
        file_menu.addAction("Export report…", lambda: export_report(self, self.session))
        self.recent_menu = file_menu.addMenu("Recent projects")
        self.recent_menu.aboutToShow.connect(self._fill_recent)
        file_menu.addSeparator()
        file_menu.addAction("Quit", QKeySequence.StandardKey.Quit, self.close)

        edit = bar.addMenu("&Edit")
        edit.addAction(self._rename(self.actions["undo"], "Undo label change"))
        edit.addAction(self._rename(self.actions["redo"], "Redo label change"))
        edit.addSeparator()
        edit.addAction("Rater name…", self.change_rater)
        edit.addAction("Preferences…", QKeySequence.StandardKey.Preferences,
                       self.show_preferences)

        label = bar.addMenu("&Label")
        self.five_point_action = label.addAction("Five-point scale (1–5)")
        self.five_point_action.setCheckable(True)
        self.five_point_action.toggled.connect(
            lambda on: self.session.set_scale("five_point" if on else "binary"))
        label.addAction(self._rename(self.actions["next_unlabelled"], "Next unlabelled clip"))
        label.addAction(self._rename(self.actions["next_uncertain"],
                                     "Next most uncertain clip (model)"))

        view = bar.addMenu("&View")
        for name, text in (("toggle_model_input", "Model input"), ("reset_levels",
                           "Reset brightness/contrast"), ("toggle_loop", "Loop")):
            view.addAction(self._rename(self.actions[name], text))
        self.show_score_action = view.addAction("Show model score while labelling")
        self.show_score_action.setCheckable(True)
        self.show_score_action.setChecked(self.session.show_scores)
        self.show_score_action.toggled.connect(self.session.set_show_scores)
        self.autoplay_action = view.addAction("Play clips when they open")
        self.autoplay_action.setCheckable(True)
        self.autoplay_action.setChecked(settings.autoplay())
        self.autoplay_action.toggled.connect(self.set_autoplay)
        view.addAction(self._rename(self.actions["fit_view"], "Fit clip to the player"))
        help_menu = bar.addMenu("&Help")
        help_menu.addAction(self._rename(self.actions["show_keys"], "Keyboard shortcuts"))
        self.about_action = help_menu.addAction("About EchoQuality Studio",
                                                lambda: show_about(self))

    @staticmethod
    def _rename(action: QAction, text: str) -> QAction:
        action.setText(text)
        return action

    def _fill_recent(self) -> None:
        window_state.fill_recent_menu(self.recent_menu, self.open_project)

    def _headers(self) -> dict:
        return {"clips": self.clip_list.view.horizontalHeader()}

    # --- wiring ----------------------------------------------------------------------------
    def _connect(self) -> None:
        s = self.session
        s.project_opened.connect(lambda p: self.setWindowTitle(p.root.name))
        s.current_changed.connect(self._show_clip)
        s.saving.connect(lambda: self.saved_label.setText("saving…"))
        s.saver.failed.connect(lambda _why: self.saved_label.setText("NOT saved"))
        s.saved.connect(lambda stamp: self.saved_label.setText(f"saved {stamp}"))
        s.message.connect(lambda text: self.statusBar().showMessage(text, 8000))
        s.open_failed.connect(lambda why: QMessageBox.warning(self, "Cannot open project", why))
        s.undo_state_changed.connect(self._undo_state)
        s.scale_changed.connect(self._scale_changed)
        s.scan_finished.connect(self._scan_finished)
        self.clip_list.open_requested.connect(s.open_clip)
        s.clip_order = self.clip_list.visible_rels  # N, U and auto-advance follow the table
        self.player.clip_failed.connect(lambda _path, reason:
                                        self.label_panel.mark_unreadable(reason))

    def _show_clip(self, info: ClipInfo | None) -> None:
        self.player.open_clip(info.path if info else None)
        project = self.session.project
        if info is None or project is None:
            return
        nxt = self.session.next_unlabelled_rel() if self.session.auto_advance else None
        nxt = nxt or self.clip_list.neighbour(1)
        row = project.row(nxt) if nxt else None
        self.player.prefetch(project.clips[row].path if row is not None else None)

    def open_neighbour(self, step: int) -> None:
        rel = self.clip_list.neighbour(step)
        if rel is not None:
            self.session.open_clip(rel)

    def _labels_active(self) -> bool:
        """The label keys (and undo) work on the Label tab and, relabelling, on Review."""
        return self.tabs.currentIndex() == 0 or self._on_review_tab() or self._adjudicating()

    def _on_review_tab(self) -> bool:
        return self.tabs.currentWidget() is getattr(self, "review", None)

    def _adjudicating(self) -> bool:
        return self.tabs.currentWidget() is getattr(self, "adjudication", None)

    def active_player(self) -> CinePlayer:
        """The player the player keys act on: the Review (Adjudicate) tab's while it shows."""
        if self._adjudicating():
            return self.adjudication.player
        return self.review.player if self._on_review_tab() else self.player

    def give_score(self, score: float) -> None:
        if self._adjudicating():
            self.adjudication.decide(score)
        elif self._on_review_tab():
            self.review.relabel(score)
        elif self._label_tab_agrees():
            self.label_panel.give_score(score)

    def _label_tab_agrees(self) -> bool:
        """The clip the list highlights is the open one (else nothing is labelled, and the
        status bar says why): a label key never labels a clip the user did not pick."""
        rel, current = self.clip_list.highlighted(), self.session.current
        if rel is None or (current is not None and current.rel == rel):
            return True
        self.session.message.emit(f"Not labelled: {rel.rsplit('/', 1)[-1]} is not open yet; "
                                  "press the key again")
        return False

    def _undo_state(self, can_undo: bool, can_redo: bool) -> None:
        self.actions["undo"].setEnabled(can_undo and self._labels_active())
        self.actions["redo"].setEnabled(can_redo and self._labels_active())

    def _scale_changed(self, scale: str) -> None:
        on_label_tab = not hasattr(self, "tabs") or self._labels_active()
        for bind in KEYBINDS:
            if bind.scale is not None:
                self.actions[bind.action].setEnabled(on_label_tab and bind.scale == scale)
        if hasattr(self, "five_point_action"):
            self.five_point_action.blockSignals(True)
            self.five_point_action.setChecked(scale == "five_point")
            self.five_point_action.blockSignals(False)

    def _tab_changed(self, index: int) -> None:
        for bind in KEYBINDS:
            if bind.group == "Player":
                self.actions[bind.action].setEnabled(index == 0 or self._on_review_tab()
                                                     or self._adjudicating())
            elif bind.group in LABEL_GROUPS and bind.scale is None:
                self.actions[bind.action].setEnabled(index == 0)
            elif bind.group == "Review":
                self.actions[bind.action].setEnabled(
                    self.tabs.widget(index) is getattr(self, "review", None))
        self._scale_changed(self.session.scale)
        project = self.session.project
        self._undo_state(bool(project and project.can_undo), bool(project and project.can_redo))
        if index != 0:
            self.player.pause()

    def _scan_finished(self) -> None:
        project = self.session.project
        if (self.session.current is None and project is not None and project.clips
                and not self.session.next_unlabelled()):
            self.session.open_clip(project.clips[0].rel)

    # --- dialogs ---------------------------------------------------------------------------
    def open_project(self, root: str | Path, csv_path: str | Path | None = None) -> bool:
        """Open a dataset folder (and its labels CSV, read in the background); errors are
        shown, not raised."""
        try:
            self.session.open_project(root, csv_path, background=True)
        except (OSError, ValueError) as exc:
            QMessageBox.warning(self, "Cannot open project", str(exc))
            return False
        return True

    def choose_folder(self) -> None:
        root = QFileDialog.getExistingDirectory(self, "Open a folder of DICOM clips")
        if root:
            self.open_project(root)

    def choose_csv(self) -> None:
        project = self.session.project
        if project is None:
            QMessageBox.information(self, "Labels CSV", "Open a dataset folder first.")
            return
        path, _ = QFileDialog.getSaveFileName(
            self, "Open or create a labels CSV", str(project.csv_path), "CSV files (*.csv)",
            options=QFileDialog.Option.DontConfirmOverwrite)
        if path:
            self.open_project(project.root, path)

    def score_folder(self) -> ScoreFolderDialog:
        """Show the "Score a folder" dialog (default: the open project, the current model)."""
        if self._score_dialog is None:
            self._score_dialog = ScoreFolderDialog(self.session, self)
        self._score_dialog.reset_fields()
        self._score_dialog.show()
        self._score_dialog.raise_()
        return self._score_dialog

    def change_rater(self):
        """Edit ▸ Rater name: a non-blocking dialog offering the current name (it also switches
        the project's rater)."""
        return self.rater_menu.ask()

    def set_autoplay(self, on: bool) -> None:
        """Clips play (looped) as they open; off also stops the one playing."""
        settings.set_autoplay(on)
        for player in (self.player, self.review.player):
            player.set_autoplay(on)
        if self.autoplay_action.isChecked() != bool(on):
            self.autoplay_action.setChecked(bool(on))

    def show_preferences(self) -> preferences.PreferencesDialog:
        """Edit ▸ Preferences: shortcuts (saved per user) and autoplay."""
        if self._prefs is None:
            self._prefs = preferences.PreferencesDialog(self)
            self._prefs.keys_changed.connect(self.apply_shortcuts)
            self._prefs.autoplay_changed.connect(self.set_autoplay)
        self._prefs.show()
        self._prefs.raise_()
        return self._prefs

    def apply_shortcuts(self) -> None:
        """Give every action its key from the registry (after Preferences changed one)."""
        for bind in keybinds():
            self.actions[bind.action].setShortcuts(QKeySequence.listFromString(bind.key))
        if self._keys_dialog is not None:
            self._keys_dialog.text.setText(cheat_sheet_html())

    def show_keys(self) -> KeysDialog:
        """Show the keyboard cheat-sheet (built from the keybind registry)."""
        if self._keys_dialog is None:
            self._keys_dialog = KeysDialog(self)
        self._keys_dialog.text.setText(cheat_sheet_html())  # the user's keys
        self._keys_dialog.show()
        self._keys_dialog.raise_()
        return self._keys_dialog

    def closeEvent(self, event) -> None:
        """The window hides at once and the app's work stops behind it (``_shut_down``). A
        training run is first stopped, its best model kept (the window stays up until then);
        closing again cancels it and closes at once."""
        if self._closing:  # closed again (the app's exit, a test's teardown)
            super().closeEvent(event)
            return
        if self.train_panel.halt_for_close():  # closes again when the run has ended
            event.ignore()
            self.tabs.setCurrentWidget(self.train_panel)
            self.statusBar().showMessage(
                f"{self.train_panel.stage.text()} The window closes when it is done"
                + ("." if self.train_panel.cancelling else "; close again to cancel it."))
            return
        self._closing = True
        for window in (self, *(w for w in self.findChildren(QWidget) if w.isWindow())):
            window.hide()  # dialogs too
        QApplication.processEvents(QEventLoop.ProcessEventsFlag.ExcludeUserInputEvents)
        window_state.save_state(self, self.tabs, self._headers())
        self._shut_down()  # behind the hidden window
        super().closeEvent(event)

    def _shut_down(self) -> None:
        """Kill the child processes, then stop and wait for every background thread."""
        self.session.close_model_process()  # the GradCAM views' workers then end at once
        self.train_panel.shutdown()  # a cancelled run ends, or its process is ended
        self.review.shutdown()
        self.agreement_view.shutdown()
        self.adjudication.shutdown()
        self.runs_panel.shutdown()  # stops the MLflow UI server
        self.session.close()
        self.player.shutdown()

