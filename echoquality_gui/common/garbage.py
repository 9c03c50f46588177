"""Python's cyclic garbage collector in the app: only in the GUI thread, and short.

Collected from a decoding or GradCAM thread, a Qt object would be destroyed in the wrong thread
and crash the app, so automatic collection is off and the GUI thread collects on a timer, by
CPython's own thresholds (pyqtgraph's recipe). A collection scans every object of the
generations it collects, so two kinds of long-lived objects are frozen (``gc.freeze``) instead
of scanned again and again:

- the start-up's (``freeze_start_up``): ~170k objects once the window is up, a 60–280 ms
  full collection here;
- a background import's: the Review tab's "Possible label errors" list imports cleanlab and
  scikit-learn (~1,400 modules, ~100k objects in half a second) in a worker thread;
  collecting those young objects took 30–80 ms a tick here. While modules are being
  imported the timer freezes what is alive instead of collecting it.

Objects freed by their reference count are freed as before. Only reference cycles that were
already garbage when a freeze happened stay in memory: those of the start-up, and those made
while modules were imported (each module is imported once, so this is bounded)."""
from __future__ import annotations

import gc
import sys

from PySide6.QtCore import QTimer

INTERVAL_MS = 500  # how often the GUI thread looks whether a collection is due


class GuiThreadCollector:
    """Collects garbage in the GUI thread on a ``QTimer``; freezes instead while ``sys.modules``
    grows (see the module docstring)."""

    def __init__(self, interval_ms: int = INTERVAL_MS):
        self.threshold = gc.get_threshold()
        self._modules = len(sys.modules)
        gc.disable()
        self.timer = QTimer()
        self.timer.timeout.connect(self.check)
        self.timer.start(interval_ms)

    def check(self) -> None:
        """One tick: collect the generations CPython would collect now, or freeze."""
        modules = len(sys.modules)
        if modules != self._modules:  # an import ran since the last tick: what it made lives
            self._modules = modules  # as long as the app
            gc.freeze()
            return
        young, middle, old = gc.get_count()
        if young <= self.threshold[0]:
            return
        gc.collect(0)
        if middle > self.threshold[1]:
            gc.collect(1)
            if old > self.threshold[2]:
                gc.collect(2)


_collector: GuiThreadCollector | None = None


def collect_in_gui_thread() -> None:
    """Collect garbage only in the GUI thread (``GuiThreadCollector``). Needs a QApplication;
    idempotent."""
    global _collector
    if _collector is None:
        _collector = GuiThreadCollector()


def freeze_start_up() -> None:
    """Keep every object alive now out of later collections (the app, once its window is up;
    no collection first: a full one costs ~0.1 CPU-s before the first frame, for the few
    cycles of the start-up)."""
    gc.freeze()
