"""Run a training in a child process and get its events back.

The desktop app trains this way: the child has its own interpreter, so torch, MLflow and
SQLite never share a garbage collector or the GIL with the window (no UI stalls, no cross-thread
crashes), and a crash of the child is reported instead of taking the app down. Events are the
plain dataclasses of ``events.py``; Stop and Cancel reach the child through a lock-free shared
integer (a multiprocessing Event would deadlock the parent if the child died while waiting on it).

The child dies with the app: it watches its parent's pid and, once the app is gone (killed,
crashed), cancels the run (MLflow run KILLED, nothing kept) and exits within ``ORPHAN_SECONDS``.
"""
from __future__ import annotations

import ctypes
import multiprocessing as mp
import os
import queue
import signal
import threading
import time
from collections.abc import Iterator
from typing import Any

from echoquality_core.train.events import TrainEnd, TrainError

POLL_SECONDS = 0.1
ORPHAN_SECONDS = 1.5  # an orphaned child exits this long after its app died, at the latest
RUN, STOP, CANCEL = 0, 1, 2  # the parent's request, in a shared integer
CHILD_NICENESS = 5  # a model or training child yields the CPU to the window


def cpu_threads(ranks: int = 1) -> int:
    """Threads a CPU training (each of its ``ranks``) gets: all cores but one, which stays free
    for the window, shared by the ranks."""
    return max(1, ((os.cpu_count() or 1) - 1) // max(1, ranks))


def yield_to_window() -> None:
    """Lower this child process's CPU priority (``CHILD_NICENESS``): on a busy machine the
    window's process is scheduled first and keeps answering while the child computes."""
    try:
        os.nice(CHILD_NICENESS)
    except (AttributeError, OSError):  # no nice() on Windows; a refused change is harmless
        pass


def device_choices() -> list[tuple[str, dict[str, Any]]]:
    """Where this machine can train, as (label, settings): Auto, CPU, each CUDA device (or
    Apple's MPS) and, with more than one CUDA device, "All GPUs (N)": one DDP rank per GPU
    (``ranks``, see ``train_ranks``). Imports torch: call it off the GUI thread."""
    import torch

    choices = [("Auto", {"device": "auto"}), ("CPU", {"device": "cpu"})]
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    choices += [(f"GPU {i}: {torch.cuda.get_device_name(i)}", {"device": f"cuda:{i}"})
                for i in range(count)]
    if count > 1:
        choices.append((f"All GPUs ({count})", {"device": "cuda", "ranks": count}))
    if count == 0 and torch.backends.mps.is_available():
        choices.append(("GPU: Apple (MPS)", {"device": "mps"}))
    return choices


def end_on_sigterm() -> None:
    """SIGTERM (``kill``, a closing session) ends a training as an error: SystemExit unwinds
    the run, so its MLflow run is marked FAILED and its partial model is not offered. Call
    from the main thread."""
    def handler(signum: int, _frame: Any) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, handler)


def _orphaned(parent: int) -> bool:
    """True once the process that started us is gone (we were re-parented)."""
    return os.getppid() != parent


def exit_when_orphaned(parent: int, every: float = 0.5) -> None:
    """Exit this process (from a daemon thread) once ``parent`` is gone: a killed app leaves
    no child behind."""
    def watch() -> None:
        while not _orphaned(parent):
            time.sleep(every)
        os._exit(3)

    threading.Thread(target=watch, daemon=True).start()


def _exit_soon() -> None:
    """Leave without waiting for the event queue (no one reads it any more)."""
    timer = threading.Timer(ORPHAN_SECONDS, os._exit, (3,))
    timer.daemon = True
    timer.start()


def _child(settings: dict[str, Any], events: Any, request: Any, parent: int) -> None:
    """The child process: build the config, train (or cross-validate, with ``crossval_folds``
    in the settings; on ``ranks`` devices with DDP, see ``train_ranks``), send every event
    (the last is a TrainEnd or CrossValEnd)."""
    if _orphaned(parent):
        os._exit(3)
    ranks: list = []
    try:
        trainer, world, ranks = _make_trainer(dict(settings), events)
    except (ValueError, TypeError, RuntimeError, OSError) as exc:
        error = TrainError("settings", str(exc))
        events.put(error)
        events.put(TrainEnd(None, {}, None, error=error))
        return
    import torch

    yield_to_window()
    torch.set_num_threads(cpu_threads(world))

    def relay() -> None:  # the parent's Stop / Cancel -> the trainer; the app's death -> cancel
        stopped = False
        while True:
            if _orphaned(parent):
                trainer.cancel()
                _exit_soon()
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
        from echoquality_core.jobs.ranks import wait_for_ranks

        wait_for_ranks(ranks)
    if _orphaned(parent):
        os._exit(3)  # the run is closed; nobody will read the queue


def _make_trainer(settings: dict[str, Any], events: Any) -> tuple[Any, int, list]:
    """(trainer, number of ranks, the other ranks' processes) for the child's settings."""
    from echoquality_core.train.trainer import TrainConfig, Trainer

    folds = settings.pop("crossval_folds", None)  # the Train tab's "Cross-validate" mode
    world = int(settings.pop("ranks", None) or 1)  # "All GPUs (N)"
    config = TrainConfig(**settings)
    if folds:
        if world > 1:
            raise ValueError("cross-validation runs on one device; choose one GPU or the CPU")
        from echoquality_core.train.crossval import CrossValidator

        return CrossValidator(config, int(folds), callback=events.put), 1, []
    if world == 1:
        return Trainer(config, events.put), 1, []
    from echoquality_core.train.distributed import DistributedTrainer
    from echoquality_core.jobs.ranks import explain_rank_deaths, start_other_ranks

    ranks = start_other_ranks(settings, world)
    try:
        return DistributedTrainer(config, explain_rank_deaths(ranks, events.put)), world, ranks
    except BaseException:
        for rank in ranks:
            rank.kill()
        raise


class TrainProcess:
    """A training run of ``TrainConfig(**settings)`` in a child process.

    ``events()`` yields the run's events as they come, ending with the TrainEnd (one is made
    up, with an error, if the child dies without sending it). ``stop()`` / ``cancel()`` may be
    called from any thread.
    """

    def __init__(self, settings: dict[str, Any]):
        ctx = mp.get_context("spawn")  # no fork of a process that runs Qt or CUDA threads
        self._events = ctx.Queue()
        self._request = ctx.RawValue(ctypes.c_int, RUN)
        self.process = ctx.Process(target=_child, name="echoquality-train", daemon=True,
                                   args=(dict(settings), self._events, self._request,
                                         os.getpid()))

    def start(self) -> None:
        self.process.start()

    def stop(self) -> None:
        """Finish now, keeping (and testing) the best model so far."""
        if self._request.value == RUN:
            self._request.value = STOP

    def cancel(self) -> None:
        """Abandon the run; nothing is kept."""
        self._request.value = CANCEL

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
