"""Starting work in a child process: the one place for how the app's children are made.

Every child (``ModelProcess``, ``TrainProcess``, the ranks of ``ranks.py``) is *spawned*, never
forked: the app runs Qt and maybe CUDA threads, which a fork would copy half-way. The parent
talks to a running child through a lock-free shared integer (``shared_int``: a job id, or
``RUN``/``STOP``/``CANCEL``); a multiprocessing Event would deadlock the parent if the child
died while holding its lock. A child dies with the app: ``enter_child`` leaves at once if the
app is already gone and otherwise watches its parent's pid (``exit_when_orphaned``). A child
gets ``cpu_threads`` for torch, so one core stays free for the window, and ``end_on_sigterm``
makes a SIGTERM unwind a run (its MLflow run is marked FAILED) instead of killing it mid-write.
"""
from __future__ import annotations

import ctypes
import multiprocessing as mp
import os
import queue
import signal
import threading
import time
import traceback
from collections.abc import Callable
from typing import Any

RUN, STOP, CANCEL = 0, 1, 2  # a parent's request to a training child, in a shared integer
POLL_SECONDS = 0.1  # how often a waiting parent looks whether its child is still there
CONTEXT = mp.get_context("spawn")  # no fork of a process that runs Qt or CUDA threads

CHILD_NICENESS = 5  # a model or training child yields the CPU to the window


def cpu_threads(ranks: int = 1) -> int:
    """Threads a child's torch gets (each of its ``ranks``): all cores but one, which stays
    free for the window, shared by the ranks."""
    return max(1, ((os.cpu_count() or 1) - 1) // max(1, ranks))


def use_cpu_threads(ranks: int = 1) -> None:
    """Give torch ``cpu_threads(ranks)`` in this child (imports torch), at a lower CPU priority
    (``yield_to_window``)."""
    import torch

    yield_to_window()
    torch.set_num_threads(cpu_threads(ranks))


def yield_to_window() -> None:
    """Lower this child process's CPU priority (``CHILD_NICENESS``): on a busy machine the
    window's process is scheduled first and keeps answering while the child computes."""
    try:
        os.nice(CHILD_NICENESS)
    except (AttributeError, OSError):  # no nice() on Windows; a refused change is harmless
        pass


def shared_int(value: int = 0) -> Any:
    """A lock-free integer shared with a spawned child (read and set ``.value``)."""
    return CONTEXT.RawValue(ctypes.c_long, value)


def make_queue() -> Any:
    """A queue between the parent and a spawned child."""
    return CONTEXT.Queue()


def start_child(target: Callable[..., None], *args: Any, name: str) -> Any:
    """Start ``target(*args, parent_pid)`` in a spawned daemon child (it dies with the app:
    see ``enter_child``) and return the started process."""
    process = CONTEXT.Process(target=target, name=name, daemon=True,
                              args=(*args, os.getpid()))
    process.start()
    return process


def call_in_child(func: Callable[..., Any], *args: Any, name: str,
                  cancelled: Callable[[], bool] = lambda: False,
                  timeout: float = 300.0,
                  progress: Callable[..., None] | None = None) -> Any:
    """``func(*args)`` (a module-level function) in a spawned child at a lower priority
    (``yield_to_window``), its result back here; blocks, so call it off the GUI thread. With
    ``progress``, the child calls ``func(*args, progress=report)`` and each ``report(*values)``
    arrives here as ``progress(*values)``. The child is killed, and RuntimeError raised, when
    ``cancelled()`` turns true, after ``timeout`` seconds, or if the child dies first."""
    results = make_queue()
    process = start_child(_call, func, args, results, progress is not None, name=name)
    deadline = time.monotonic() + timeout
    try:
        while not cancelled() and time.monotonic() < deadline:
            try:
                ok, value = results.get(timeout=POLL_SECONDS)
            except queue.Empty:
                if process.is_alive():
                    continue
                try:  # it may have put its result just before it ended
                    ok, value = results.get(timeout=1.0)
                except queue.Empty:
                    raise RuntimeError(f"{name} ended unexpectedly (exit code "
                                       f"{process.exitcode})") from None
            if ok is None:  # a progress report
                progress(*value)
                continue
            if ok:
                return value
            raise RuntimeError(value)
        raise RuntimeError(f"{name} was stopped" if cancelled() else
                           f"{name} did not answer within {timeout:g} s")
    finally:
        stop(process)
        results.cancel_join_thread()


def _call(func: Callable[..., Any], args: tuple, results: Any, reports: bool,
          parent: int) -> None:
    enter_child(parent)
    yield_to_window()
    try:
        if reports:
            value = func(*args, progress=lambda *values: results.put((None, values)))
        else:
            value = func(*args)
        results.put((True, value))
    except Exception as exc:  # noqa: BLE001 - carried back as text
        text = str(exc).strip() or type(exc).__name__
        if not isinstance(exc, (OSError, ValueError, RuntimeError)):  # a bug or a library's
            traceback.print_exc()  # own error: its type says what it is; the trace goes to
            text = f"{type(exc).__name__}: {text}"  # the app's stderr
        results.put((False, text))


def stop(process: Any, wait: float = 2.0) -> None:
    """End a child: SIGTERM, then SIGKILL if it is still there after ``wait`` seconds."""
    if process.is_alive():
        process.terminate()
        process.join(wait)
        if process.is_alive():
            process.kill()
            process.join(wait)


def orphaned(parent: int) -> bool:
    """True once the process that started us is gone (we were re-parented)."""
    return os.getppid() != parent


def exit_when_orphaned(parent: int, every: float = 0.5) -> None:
    """Exit this process (from a daemon thread) once ``parent`` is gone: a killed app leaves
    no child behind."""
    def watch() -> None:
        while not orphaned(parent):
            time.sleep(every)
        os._exit(3)

    threading.Thread(target=watch, daemon=True).start()


def enter_child(parent: int, *, watch: bool = True, every: float = 0.5) -> None:
    """The first call of a child: leave at once if the app is already gone; with ``watch``,
    exit as soon as it goes (a child that must close its work first watches by itself)."""
    if orphaned(parent):
        os._exit(3)
    if watch:
        exit_when_orphaned(parent, every)


def exit_soon(seconds: float) -> None:
    """Leave this process in ``seconds`` whatever it is doing (e.g. waiting to flush a queue
    that nobody reads any more)."""
    timer = threading.Timer(seconds, os._exit, (3,))
    timer.daemon = True
    timer.start()


def end_on_sigterm() -> None:
    """SIGTERM (``kill``, a closing session, the app's shutdown) ends a training as an error:
    SystemExit unwinds the run, so its MLflow run is marked FAILED and its partial model is not
    offered. Call from the main thread."""
    def handler(signum: int, _frame: Any) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, handler)
