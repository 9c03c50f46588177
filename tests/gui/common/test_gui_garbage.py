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


TICKS = """
import gc, os, sys, threading, weakref
os.environ["QT_QPA_PLATFORM"] = "offscreen"
from PySide6.QtCore import QEventLoop, QTimer
from PySide6.QtWidgets import QApplication
from echoquality_gui.common import garbage

app = QApplication([])
collector = garbage.GuiThreadCollector(interval_ms=50)
garbage.freeze_start_up()

def run_ticks(ms):
    loop = QEventLoop()
    QTimer.singleShot(ms, loop.quit)
    loop.exec()

class Node:
    pass

def cycle():
    node = Node()
    node.me = node
    return weakref.ref(node)

# no import: a cycle is collected by a tick in the GUI thread
gone = cycle()
made = [[i] for i in range(5_000)]
run_ticks(400)
print(int(gone() is None), gc.isenabled())

# a worker thread imports a package: what the import made is frozen, not scanned
frozen_before = gc.get_freeze_count()
worker = threading.Thread(target=lambda: __import__("email.mime.multipart"))
worker.start()
while worker.is_alive():
    run_ticks(20)
run_ticks(200)
module = sys.modules["email.mime.multipart"]
print(gc.get_freeze_count() - frozen_before, int(not gc.is_tracked(module.__dict__)
      or module.__dict__ not in gc.get_objects()))

# imports over: collections again
gone = cycle()
kept = [[i] for i in range(5_000)]  # more objects alive: a collection is due
run_ticks(400)
print(int(gone() is None))
"""


def test_ticks_collect_in_the_gui_thread_and_freeze_what_an_import_made():
    """The app's collector: garbage cycles are collected on the GUI timer (automatic
    collection off); the objects a background import makes are frozen instead of scanned;
    after the import, cycles are collected again."""
    out = subprocess.run([sys.executable, "-c", TICKS], capture_output=True, text=True,
                         check=True, timeout=120).stdout.split()
    first, enabled, frozen, module_frozen, after = out
    assert first == "1" and enabled == "False"
    assert int(frozen) > 1_000 and module_frozen == "1"
    assert after == "1"
