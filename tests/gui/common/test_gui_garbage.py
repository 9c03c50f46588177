"""The app keeps its start-up objects out of the GUI-timer garbage collections
(``echoquality_gui.common.garbage``). In a fresh interpreter: freezing is process-wide."""
from __future__ import annotations

import subprocess
import sys

SCRIPT = """
import gc
from echoquality_gui.common import garbage

print(gc.get_freeze_count())           # nothing frozen before the app's start-up
garbage.freeze_start_up()
at_start = gc.get_freeze_count()
print(at_start, len(gc.get_objects()))  # what a full collection still scans
made = [[i] for i in range(50_000)]   # objects made later stay collectable
print(gc.get_freeze_count() - at_start)
"""


def test_start_up_is_frozen_and_later_objects_are_not():
    out = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True,
                         check=True, timeout=120).stdout.split()
    before, at_start, scanned, added = map(int, out)
    assert before == 0
    assert at_start > 10_000 and scanned < 100  # pyqtgraph's, Qt's and numpy's objects
    assert added == 0
