"""Preferences: the user's own keyboard shortcuts (saved per user in QSettings; a key that
another action already uses is refused with a message) and whether clips play when they open.

The keybind registry stays the single source: the user's keys replace its defaults
(``keybinds.set_user_keys``), so the window's actions and the cheat-sheet both follow.
"""
from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QKeySequence
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QDialog,
    QDialogButtonBox,
    QHBoxLayout,
    QHeaderView,
    QInputDialog,
    QKeySequenceEdit,
    QLabel,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
)

from echoquality_gui.window import keybinds
from echoquality_gui.common import settings
from echoquality_gui.window.keybinds import KEYBINDS, Keybind

GROUP = "shortcuts"


def normalise(key: str) -> str:
    """A key string in Qt's portable form ("ctrl+z" -> "Ctrl+Z"); several keys joined by "; "."""
    sequences = QKeySequence.listFromString(key)
    return "; ".join(s.toString(QKeySequence.SequenceFormat.PortableText) for s in sequences
                     if not s.isEmpty())


def load_user_keys() -> dict[str, str]:
    """The user's keys (action -> key string) from the settings."""
    store = settings.app_settings()
    store.beginGroup(GROUP)
    try:
        return {action: str(store.value(action)) for action in store.childKeys()
                if store.value(action)}
    finally:
        store.endGroup()


def save_user_keys(keys: dict[str, str]) -> None:
    """Write the user's keys (only those that differ from the registry's defaults)."""
    store = settings.app_settings()
    store.remove(GROUP)
    defaults = {b.action: b.key for b in KEYBINDS}
    for action, key in keys.items():
        if defaults.get(action) != key:
            store.setValue(f"{GROUP}/{action}", key)
    store.sync()


def use_saved_keys() -> None:
    """Put the saved keys into the registry (call before building the window)."""
    keybinds.set_user_keys(load_user_keys())


def _may_clash(a: Keybind, b: Keybind) -> bool:
    """Two actions can be active at once (keys of the two label scales never are)."""
    return a.scale is None or b.scale is None or a.scale == b.scale


def find_conflict(action: str, key: str) -> str | None:
    """Why ``key`` cannot be given to ``action`` (None if it can): empty, or used by another
    action that can be active at the same time."""
    wanted = set(normalise(key).split("; ")) - {""}
    if not wanted:
        return "Press a key (or a key with Ctrl/Shift/Alt) first."
    mine = keybinds.keybind(action)
    for other in keybinds.keybinds():
        if other.action == action or not _may_clash(mine, other):
            continue
        taken = wanted & set(normalise(other.key).split("; "))
        if taken:
            return (f"{', '.join(sorted(taken))} is already the key of \u201c{other.help}\u201d. "
                    "Give that action another key first, or choose another key.")
    return None


class PreferencesDialog(QDialog):
    """Shortcut editor and playback preference; ``keys_changed`` after every accepted key."""

    keys_changed = Signal()
    autoplay_changed = Signal(bool)

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setWindowTitle("Preferences")
        self.autoplay = QCheckBox("Play clips (looped) as soon as they open",
                                  checked=settings.autoplay())
        self.autoplay.toggled.connect(self._autoplay_toggled)
        self.table = QTableWidget(0, 3)
        self.table.setHorizontalHeaderLabels(["Group", "Action", "Key"])
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.verticalHeader().hide()
        self.table.horizontalHeader().setSectionResizeMode(1, QHeaderView.ResizeMode.Stretch)
        self.table.itemSelectionChanged.connect(self._selected)
        self.key_edit = QKeySequenceEdit()
        self.key_edit.setMaximumSequenceLength(1)
        self.set_button = QPushButton("Use this key")
        self.set_button.clicked.connect(self._set_from_editor)
        self.reset_button = QPushButton("Default key")
        self.reset_button.clicked.connect(self._reset_selected)
        self.message = QLabel("Select an action, press its new key, then \u201cUse this key\u201d.")
        self.message.setObjectName("prefsMessage")
        self.message.setWordWrap(True)
        edit_row = QHBoxLayout()
        edit_row.addWidget(QLabel("New key"))
        edit_row.addWidget(self.key_edit, 1)
        edit_row.addWidget(self.set_button)
        edit_row.addWidget(self.reset_button)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.close)
        layout = QVBoxLayout(self)
        layout.addWidget(self.autoplay)
        layout.addWidget(QLabel("Keyboard shortcuts (saved for you on this computer)"))
        layout.addWidget(self.table, 1)
        layout.addLayout(edit_row)
        layout.addWidget(self.message)
        layout.addWidget(buttons)
        self.resize(640, 560)
        self.refresh()

    def refresh(self) -> None:
        """Show the registry's current keys."""
        binds = keybinds.keybinds()
        self.table.setRowCount(len(binds))
        for row, bind in enumerate(binds):
            for col, text in enumerate((bind.group, bind.help, bind.key)):
                item = QTableWidgetItem(text)
                item.setData(Qt.ItemDataRole.UserRole, bind.action)
                self.table.setItem(row, col, item)
        self.table.resizeColumnToContents(0)
        self.table.resizeColumnToContents(2)

    def _action(self) -> str | None:
        items = self.table.selectedItems()
        return items[0].data(Qt.ItemDataRole.UserRole) if items else None

    def _selected(self) -> None:
        action = self._action()
        if action:
            self.key_edit.setKeySequence(QKeySequence(keybinds.keybind(action).keys[0]))

    def _set_from_editor(self) -> None:
        action = self._action()
        if action is None:
            self.message.setText("Select an action in the list first.")
            return
        self.set_key(action, self.key_edit.keySequence().toString(
            QKeySequence.SequenceFormat.PortableText))

    def _reset_selected(self) -> None:
        action = self._action()
        if action is not None:
            default = next(b.key for b in KEYBINDS if b.action == action)
            self.set_key(action, default)

    def set_key(self, action: str, key: str) -> str | None:
        """Give ``action`` the key ``key`` (saved at once); returns the refusal, or None."""
        refusal = find_conflict(action, key)
        if refusal:
            self.message.setText(f"Not changed: {refusal}")
            return refusal
        keys = {b.action: b.key for b in keybinds.keybinds()}
        keys[action] = normalise(key)
        save_user_keys(keys)
        use_saved_keys()
        self.refresh()
        self.message.setText(f"\u201c{keybinds.keybind(action).help}\u201d: "
                             f"{keybinds.keybind(action).key}")
        self.keys_changed.emit()
        return None

    def _autoplay_toggled(self, on: bool) -> None:
        settings.set_autoplay(on)
        self.autoplay_changed.emit(on)


def prompt_rater(parent=None) -> QInputDialog:
    """Ask the rater's name without blocking (first start, Edit ▸ Rater name), offering the
    stored name or the OS user name; cancelled, the offered name is kept."""
    offered = settings.rater() or settings.default_rater()
    settings.set_rater(offered)
    dialog = QInputDialog(parent)
    dialog.setWindowTitle("Rater")
    dialog.setLabelText("Your name or initials (saved with every label you give; change it "
                        "later in Edit ▸ Rater name):")
    dialog.setTextValue(offered)
    dialog.textValueSelected.connect(lambda text: settings.set_rater(text.strip() or offered))
    dialog.open()
    return dialog
