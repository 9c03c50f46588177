"""Load a model and score clips in a child process (as training runs: ``train_process.py``).

The window does this so that torch never shares its GIL: loading a model and scoring a folder
used to stall the window for seconds. Events come back as tuples: ``("loaded", threshold)``,
``("progress", done, total)``, then one of ``("done", table)``, ``("failed", message)``,
``("cancelled",)``. Cancel reaches the child through a shared integer; the child dies with the
app (parent-death watch).
"""
from __future__ import annotations

import ctypes
import multiprocessing as mp
import os
import queue
import threading
import time
from collections.abc import Iterator
from typing import Any

from echoquality_core.train_process import ORPHAN_SECONDS, POLL_SECONDS, cpu_threads


class _Cancelled(Exception):
    pass


def _child(job: dict[str, Any], events: Any, cancel: Any, parent: int) -> None:
    """Load the model, score, send the outcome (last event)."""
    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(POLL_SECONDS)
        cancel.value = 1
        threading.Timer(ORPHAN_SECONDS, os._exit, (3,)).start()

    threading.Thread(target=watch, daemon=True).start()
    try:
        import torch

        from echoquality_core.checkpoint import (
            load_scoring_model,
            params_from_info,
            threshold_from_info,
        )
        from echoquality_core.scoring import score_clips

        torch.set_num_threads(cpu_threads())
        net, info = load_scoring_model(job["model"], trust_exported=job["trust_exported"])
        threshold = threshold_from_info(info, job["threshold"])
    except Exception as exc:  # noqa: BLE001 - any file the user picks: say why
        events.put(("failed", f"Cannot use the model {os.path.basename(job['model'])}: {exc}"))
        return
    events.put(("loaded", threshold))

    def progress(done: int, total: int, _name: str) -> None:
        events.put(("progress", done, total))
        if cancel.value:
            raise _Cancelled

    if cancel.value:
        events.put(("cancelled",))
        return
    if isinstance(job["clips"], list) and not job["clips"]:  # only check that the model loads
        import pandas as pd

        from echoquality_core.scoring import COLUMNS

        events.put(("done", pd.DataFrame(columns=list(COLUMNS))))
        return
    try:
        table = score_clips(job["clips"], net, out_csv=job["out_csv"], threshold=threshold,
                            batch_size=job["batch_size"], params=params_from_info(info),
                            cache_dir=job["cache_dir"], progress=progress)
    except _Cancelled:
        events.put(("cancelled",))
        return
    except Exception as exc:  # noqa: BLE001 - reported, never a dead worker
        events.put(("failed", f"Scoring stopped: {exc}"))
        return
    table.attrs["threshold"] = threshold
    events.put(("done", table))


class ScoreProcess:
    """One model load + scoring of ``clips`` in a child process; ``events()`` yields its events
    (the last is done, failed or cancelled, made up as failed if the child dies)."""

    def __init__(self, clips: Any, model: str | os.PathLike, *, threshold: float | None = None,
                 out_csv: str | os.PathLike | None = None,
                 cache_dir: str | os.PathLike | None = None, batch_size: int = 4,
                 trust_exported: bool = False):
        ctx = mp.get_context("spawn")
        self._events = ctx.Queue()
        self._cancel = ctx.RawValue(ctypes.c_int, 0)
        job = {"clips": clips, "model": os.fspath(model), "threshold": threshold,
               "out_csv": out_csv, "cache_dir": cache_dir, "batch_size": batch_size,
               "trust_exported": trust_exported}
        self.process = ctx.Process(target=_child, name="echoquality-score", daemon=True,
                                   args=(job, self._events, self._cancel, os.getpid()))

    def start(self) -> None:
        self.process.start()

    def cancel(self) -> None:
        self._cancel.value = 1

    def events(self) -> Iterator[tuple]:
        while True:
            try:
                event = self._events.get(timeout=POLL_SECONDS)
            except queue.Empty:
                if self.process.is_alive():
                    continue
                try:
                    event = self._events.get(timeout=1.0)
                except queue.Empty:
                    self.process.join(timeout=5)
                    yield ("failed", "The scoring process ended unexpectedly (exit code "
                                     f"{self.process.exitcode})")
                    return
            yield event
            if event[0] in ("done", "failed", "cancelled"):
                self.process.join(timeout=5)
                return
