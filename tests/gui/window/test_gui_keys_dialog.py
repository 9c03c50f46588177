"""Issue 22.5 (first half): the ``?`` cheat-sheet lists every shortcut once, grouped, whole,
without sideways scrolling at 1366x768."""
from __future__ import annotations

from echoquality_gui.window.keybinds import KEYBINDS, groups
from echoquality_gui.window.keys_dialog import cheat_rows


def test_every_key_once_grouped_and_whole(studio_window, qtbot, screenshot):
    qtbot.keyClick(studio_window, "?")
    dialog = studio_window._keys_dialog
    qtbot.waitExposed(dialog)
    rows = cheat_rows()
    keys = [key for group in rows.values() for key, _ in group]
    assert len(keys) == len(set(keys)) == len({b.key for b in KEYBINDS})  # each key once
    assert list(rows) == list(groups())  # the registry's groups, in order
    one = dict(rows["Label"])["1"]
    assert len(one) == 2 and "good/poor scale" in one[0] and "five-point scale" in one[1]
    text = dialog.text.text()
    assert text.count("<code>1</code>") == 1
    for bind in KEYBINDS:  # every description, whole
        assert bind.help.replace("'", "&#x27;") in text
    assert dialog.frameGeometry().width() <= 1366 and dialog.frameGeometry().height() <= 768
    # no sideways scrolling: the text wraps to the viewport, and nothing lies beyond it
    bar, viewport = dialog.scroll.horizontalScrollBar(), dialog.scroll.viewport()
    assert not bar.isVisible() and bar.maximum() == 0
    assert dialog.text.width() <= viewport.width()
    assert dialog.text.minimumSizeHint().width() <= viewport.width()
    screenshot(dialog, "keys_dialog.png")
