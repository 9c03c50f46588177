"""Python's cyclic garbage collector in the app: only in the GUI thread, and short.

Collected from a decoding or GradCAM thread, a Qt object would be destroyed in the wrong thread
and crash the app, so collections run on a timer in the GUI thread (pyqtgraph's recipe). A
full collection scans every object alive: ~170k once the window is up, 60–280 ms of a stalled
window here. The app therefore freezes (``gc.freeze``) the objects of its start-up: later
collections scan only newer objects. Objects freed by their reference count are freed as before; only reference
cycles among frozen objects would stay."""
from __future__ import annotations

import gc

from pyqtgraph.util.garbage_collector import GarbageCollector

_collector: GarbageCollector | None = None


def collect_in_gui_thread() -> None:
    """Collect garbage only in the GUI thread, on a 0.5 s timer. Needs a QApplication;
    idempotent."""
    global _collector
    if _collector is None:
        _collector = GarbageCollector(interval=0.5)


def freeze_start_up() -> None:
    """Keep every object alive now out of later collections (the app, once its window is up;
    no collection first: a full one costs ~0.1 CPU-s before the first frame, for the few
    cycles of the start-up)."""
    gc.freeze()
