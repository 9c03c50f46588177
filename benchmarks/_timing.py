"""Helpers shared by the benchmark scripts (run as ``python benchmarks/<name>.py``)."""
from __future__ import annotations

import os
import platform
import statistics
import sys
import time
from pathlib import Path

AVX2_ENV = {"ONEDNN_MAX_CPU_ISA": "AVX2", "ATEN_CPU_CAPABILITY": "avx2"}


def hold_to_avx2_if_asked() -> str:
    """With ``--avx2`` among the arguments, re-run this script with oneDNN and ATen held to AVX2
    kernels (what a CPU without AVX-512 runs; oneDNN then reports no native bf16, so the
    precision rule picks fp32). Call before importing torch. Returns a note for the CPU line
    ("" when not held)."""
    if "--avx2" not in sys.argv:
        return ""
    if any(os.environ.get(k) != v for k, v in AVX2_ENV.items()):
        os.execve(sys.executable, [sys.executable, *sys.argv], dict(os.environ, **AVX2_ENV))
    return "; held to AVX2 kernels (" + ", ".join(f"{k}={v}" for k, v in AVX2_ENV.items()) + ")"


def cpu_model() -> str:
    """The CPU's name as /proc/cpuinfo gives it (else the platform's guess): every benchmark
    prints which CPU gave its figures."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def median_seconds(fn, repeats: int) -> float:
    """Median wall time of ``fn()`` over ``repeats`` calls, after one warm-up call."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def spin(app, until, timeout: float = 30.0) -> None:
    """Run the Qt event loop until ``until()`` is true (TimeoutError after ``timeout`` s)."""
    from PySide6.QtCore import QEventLoop

    end = time.perf_counter() + timeout
    while not until():
        if time.perf_counter() > end:
            raise TimeoutError("benchmark step timed out")
        app.processEvents(QEventLoop.ProcessEventsFlag.AllEvents, 5)
        time.sleep(0.001)


class Gaps:
    """Gaps between the ticks of a 10 ms timer on the UI thread (make it after the
    QApplication; ``start`` then ``stop`` around the work to watch)."""

    def __init__(self) -> None:
        from PySide6.QtCore import QElapsedTimer, Qt, QTimer

        self.gaps: list[int] = []
        self._clock = QElapsedTimer()
        self._timer = QTimer()
        self._timer.setTimerType(Qt.TimerType.PreciseTimer)
        self._timer.setInterval(10)
        self._timer.timeout.connect(lambda: self.gaps.append(self._clock.restart()))

    def start(self) -> None:
        self.gaps.clear()
        self._clock.start()
        self._timer.start()

    def stop(self) -> str:
        """Stop watching; the largest gap, the 99th percentile, the median and the count of
        gaps over 100 ms (the time since the last tick counts as a gap too)."""
        import numpy as np

        self.gaps.append(self._clock.restart())
        self._timer.stop()
        g = np.array(self.gaps or [0])
        return (f"largest {g.max()} ms, 99th percentile {np.percentile(g, 99):.0f} ms, "
                f"median {np.median(g):.0f} ms, {int((g > 100).sum())} gaps > 100 ms")
