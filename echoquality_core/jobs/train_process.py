"""Run a training in a child process and get its events back.

The desktop app trains this way: the child has its own interpreter, so torch, MLflow and
SQLite never share a garbage collector or the GIL with the window (no UI stalls, no cross-thread
crashes), and a crash of the child is reported instead of taking the app down. Events are the
plain dataclasses of ``events.py``; Stop and Cancel reach the child through a lock-free shared
integer (a multiprocessing Event would deadlock the parent if the child died while waiting on it).

The child is started as every child of the app is (``child.py``), and its trainer is chosen
where every trainer is (``launch.py``). It dies with the app: it watches its parent's pid and,
once the app is gone (killed, crashed), cancels the run (MLflow run KILLED, nothing kept) and
exits within ``ORPHAN_SECONDS``.
"""
from __future__ import annotations

import os
import queue
import threading
import time
from collections.abc import Iterator
from typing import Any

from echoquality_core.jobs.child import (
    CANCEL,
    POLL_SECONDS,
    RUN,
    STOP,
    end_on_sigterm,
    enter_child,
    exit_soon,
    make_queue,
    orphaned,
    shared_int,
    start_child,
    stop,
    use_cpu_threads,
)
from echoquality_core.jobs.devices import run_device
from echoquality_core.jobs.launch import launch
from echoquality_core.train.events import TrainEnd, TrainError

ORPHAN_SECONDS = 1.5  # an orphaned child exits this long after its app died, at the latest


def _child(settings: dict[str, Any], events: Any, request: Any, parent: int) -> None:
    """The child process: say what it trains on (a ``RunDevice``), build the trainer
    (``launch``: one process, cross-validation or DDP ranks), train, send every event (the last
    is a TrainEnd or CrossValEnd)."""
    enter_child(parent, watch=False)  # an orphan first closes its run (see relay)
    events.put(run_device(settings))
    try:
        run = launch(settings, events.put)
    except (ValueError, TypeError, RuntimeError, OSError) as exc:
        error = TrainError("settings", str(exc))
        events.put(error)
        events.put(TrainEnd(None, {}, None, error=error))
        return
    use_cpu_threads(run.world)
    trainer = run.trainer

    def relay() -> None:  # the parent's Stop / Cancel -> the trainer; the app's death -> cancel
        stopped = False
        while True:
            if orphaned(parent):
                trainer.cancel()
                exit_soon(ORPHAN_SECONDS)  # nobody reads the event queue any more
                return
            if request.value == CANCEL:
                trainer.cancel()
                return
            if request.value == STOP and not stopped:
                trainer.stop()
                stopped = True
            time.sleep(POLL_SECONDS)

    threading.Thread(target=relay, daemon=True).start()
    end_on_sigterm()
    try:
        trainer.run()
    finally:
        run.wait_for_others()
    if orphaned(parent):
        os._exit(3)  # the run is closed; nobody will read the queue


class TrainProcess:
    """A training run of ``TrainConfig(**settings)`` in a child process.

    ``events()`` yields the run's events as they come, ending with the TrainEnd (one is made
    up, with an error, if the child dies without sending it). ``stop()`` / ``cancel()`` may be
    called from any thread.
    """

    def __init__(self, settings: dict[str, Any]):
        self.settings = dict(settings)
        self._events = make_queue()
        self._request = shared_int(RUN)
        self.process: Any = None

    def start(self) -> None:
        self.process = start_child(_child, self.settings, self._events, self._request,
                                   name="echoquality-train")

    def stop(self) -> None:
        """Finish now, keeping (and testing) the best model so far."""
        if self._request.value == RUN:
            self._request.value = STOP

    def cancel(self) -> None:
        """Abandon the run; nothing is kept."""
        self._request.value = CANCEL

    def kill(self) -> None:
        """End the child now (SIGTERM: the run unwinds as an error, nothing is kept; SIGKILL
        after a second); for a cancelled run that must not outlive the app."""
        if self.process is not None:
            stop(self.process, wait=1.0)

    def events(self) -> Iterator[Any]:
        """The child's events, in order; always ends with a TrainEnd."""
        while True:
            try:
                event = self._events.get(timeout=POLL_SECONDS)
            except queue.Empty:
                if self.process.is_alive():
                    continue
                try:  # the child may have put its last events just before it ended
                    event = self._events.get(timeout=1.0)
                except queue.Empty:
                    yield from self._died()
                    return
            yield event
            if isinstance(event, TrainEnd):
                return

    def join(self, timeout: float | None = None) -> None:
        """Wait for the child to exit (it does by itself after its TrainEnd)."""
        self.process.join(timeout)

    def _died(self) -> Iterator[Any]:
        self.process.join(timeout=5)
        error = TrainError("error", "The training process ended unexpectedly (exit code "
                                    f"{self.process.exitcode}); nothing was kept from this run.")
        yield error
        yield TrainEnd(None, {}, None, error=error)
