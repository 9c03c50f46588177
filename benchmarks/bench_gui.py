"""GUI timings, offscreen: next clip -> first frame (prefetched / cold), achieved frame rate at
1x, memory with a 300-frame clip open (and peak RSS of a 600x800 one with and without the
model-input view), and event-loop responsiveness while 1,000 headers are read.

    .venv/bin/python benchmarks/bench_gui.py [--quick] [--memory-only]
"""
from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import numpy as np
from _timing import spin
from PySide6.QtCore import QElapsedTimer, QEventLoop, QTimer
from PySide6.QtWidgets import QApplication

from echoquality_core.demo.project import synthetic_clip, write_dicom_clip


def run_for(app: QApplication, seconds: float) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        app.processEvents(QEventLoop.ProcessEventsFlag.AllEvents, 5)


def fill_cache(app: QApplication, player) -> None:
    """Show every frame once so the whole clip is decoded and cached."""
    for i in range(player.n_frames):
        player.seek(i)
        spin(app, lambda i=i: player.loader.cache.get(player.path, i) is not None)


def rss_mb(field: str = "VmRSS") -> float:
    """Resident memory now (VmRSS) or its peak since the last :func:`reset_peak` (VmHWM)."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def reset_peak() -> None:
    """Set the peak resident memory (VmHWM) to the current RSS (Linux)."""
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")


def write(path: Path, n_frames: int, h: int, w: int, fps: float, seed: int) -> Path:
    frames = synthetic_clip(np.random.default_rng(seed), "good", n_frames=n_frames, height=h,
                            width=w)
    return write_dicom_clip(path, frames, fps=fps, compression="jpeg")


def bench_first_frame(app, player, tmp: Path, repeats: int) -> None:
    clips = [write(tmp / f"next{i}.dcm", 24, 480, 640, 30.0, i) for i in range(2 * repeats + 1)]
    player.open_clip(clips[0])
    spin(app, lambda: player.first_frame_seconds is not None)
    warm, cold = [], []
    for i in range(repeats):
        nxt = clips[1 + 2 * i]
        player.prefetch(nxt)
        spin(app, lambda p=nxt: player.loader.cache.get(p, 0) is not None)
        player.open_clip(nxt)
        spin(app, lambda: player.first_frame_seconds is not None)
        warm.append(player.first_frame_seconds)
        player.open_clip(clips[2 + 2 * i])  # never prefetched
        spin(app, lambda: player.first_frame_seconds is not None)
        cold.append(player.first_frame_seconds)
    print(f"next clip -> first frame, 480x640 JPEG: prefetched median "
          f"{1000 * np.median(warm):.1f} ms (max {1000 * max(warm):.1f}), cold median "
          f"{1000 * np.median(cold):.1f} ms (max {1000 * max(cold):.1f})  [targets 100 / 400 ms]")


def bench_fps(app, player, tmp: Path, seconds: float) -> None:
    clip = write(tmp / "fps.dcm", 90, 600, 800, 30.0, 7)
    player.open_clip(clip)
    spin(app, lambda: player.first_frame_seconds is not None)
    for name in ("first pass (decoding while playing)", "cached loop"):
        shown, start = player.frames_shown, time.perf_counter()
        player.play()
        run_for(app, seconds)
        elapsed = time.perf_counter() - start
        player.pause()
        print(f"600x800 JPEG at 30 fps, 1x, {name}: "
              f"{(player.frames_shown - shown) / elapsed:.1f} frames/s shown")
        fill_cache(app, player)


def bench_memory(app, player, tmp: Path) -> None:
    clip = write(tmp / "long.dcm", 300, 480, 640, 30.0, 3)
    before = rss_mb()
    player.open_clip(clip)
    spin(app, lambda: player.first_frame_seconds is not None)
    fill_cache(app, player)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"300-frame 480x640 clip open, every frame shown: RSS {before:.0f} -> {rss_mb():.0f} MB "
          f"(peak {peak:.0f} MB), decoded-frame cache {player.loader.cache.nbytes / 2**20:.0f} MB "
          f"of {player.loader.cache.budget / 2**20:.0f} MB budget")


def bench_model_input_memory(app, player, tmp: Path) -> None:
    clip = write(tmp / "long600x800.dcm", 300, 600, 800, 30.0, 4)
    player.set_model_input(False)
    app.processEvents()
    reset_peak()
    before = rss_mb()
    player.open_clip(clip)
    spin(app, lambda: player.first_frame_seconds is not None)
    fill_cache(app, player)
    opened, opened_peak = rss_mb(), rss_mb("VmHWM")
    reset_peak()
    start = time.perf_counter()
    player.set_model_input(True)
    spin(app, lambda: player._model is not None, timeout=300)
    took = time.perf_counter() - start
    print(f"300-frame 600x800 clip, every frame shown: RSS {before:.0f} -> {opened:.0f} MB "
          f"(peak +{opened_peak - before:.0f} MB, cache "
          f"{player.loader.cache.nbytes / 2**20:.0f} MB); model-input view built in {took:.1f} s: "
          f"RSS {rss_mb():.0f} MB, peak {rss_mb('VmHWM'):.0f} MB "
          f"(+{rss_mb('VmHWM') - opened:.0f} MB over the open clip)")
    player.set_model_input(False)


def bench_scan(app, tmp: Path, n: int) -> None:
    from echoquality_gui.common.session import Session

    root = tmp / "many"
    root.mkdir()
    frames = synthetic_clip(np.random.default_rng(0), "good", n_frames=4, height=32, width=32)
    for i in range(n):
        write_dicom_clip(root / f"c{i:04d}.dcm", frames, fps=30.0, compression="none")
    session = Session()
    gaps, clock = [], QElapsedTimer()
    timer = QTimer()
    timer.setInterval(10)
    timer.timeout.connect(lambda: (gaps.append(clock.restart())))
    clock.start()
    timer.start()
    start = time.perf_counter()
    session.open_project(root)
    spin(app, lambda: not session.scanning, timeout=300)
    took = time.perf_counter() - start
    timer.stop()
    scanned = sum(c.scanned for c in session.project.clips)
    print(f"scan {n} files: {took:.2f} s ({scanned} headers), event loop max gap "
          f"{max(gaps)} ms, median {int(np.median(gaps))} ms (timer 10 ms)")
    session.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer repeats, 200-file scan")
    parser.add_argument("--memory-only", action="store_true",
                        help="only the 600x800 model-input memory measurement")
    args = parser.parse_args()
    app = QApplication.instance() or QApplication(sys.argv[:1])
    from echoquality_gui.player.view import CinePlayer

    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        player = CinePlayer()
        player.resize(900, 700)
        player.show()
        try:
            if not args.memory_only:
                bench_first_frame(app, player, tmp, repeats=2 if args.quick else 5)
                bench_fps(app, player, tmp, seconds=2.0 if args.quick else 4.0)
                bench_memory(app, player, tmp)
            bench_model_input_memory(app, player, tmp)
        finally:
            player.shutdown()
            player.close()
            player.deleteLater()
        if not args.memory_only:
            bench_scan(app, tmp, 200 if args.quick else 1000)
    app.processEvents()
    return 0


if __name__ == "__main__":
    sys.exit(main())
