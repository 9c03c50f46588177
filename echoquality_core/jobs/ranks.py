"""A training that the app runs on several devices of this machine ("All GPUs (N)" on the Train
tab): the app's training child (``train_process``) is rank 0 and starts ranks 1..N-1 as
processes of this module, with the environment torchrun gives its ranks (``RANK``,
``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``/``MASTER_PORT``); every rank then runs the same
``train_distributed.DistributedTrainer`` as under ``torchrun`` (NCCL on GPUs, gloo on CPUs).

Stop and Cancel reach rank 0 and are agreed between ranks after each batch. A rank whose
parent (rank 0) is gone exits within ``ORPHAN_SECONDS``, so a killed app leaves no rank behind.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

ORPHAN_SECONDS = 1.0
DEATH_SECONDS = 1.0  # how long an error waits for a rank's exit code


def rank_env(rank: int, world: int, port: int) -> dict[str, str]:
    """torchrun's variables for local rank ``rank`` of ``world`` on this machine."""
    return {"RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": str(world),
            "LOCAL_WORLD_SIZE": str(world), "MASTER_ADDR": "127.0.0.1",
            "MASTER_PORT": str(port)}


def start_other_ranks(settings: dict[str, Any], world: int) -> list[subprocess.Popen]:
    """Make this process rank 0 of ``world`` (its environment) and start ranks 1..world-1 with
    the same TrainConfig ``settings`` (JSON-able). Subprocesses, not multiprocessing: the
    training child is a daemon process, which may not have children of its own."""
    from echoquality_core.runs.tracking import free_port

    port = free_port()
    os.environ.update(rank_env(0, world, port))
    argv = [sys.executable, "-m", "echoquality_core.jobs.ranks", json.dumps(settings),
            str(os.getpid())]
    return [subprocess.Popen(argv, env=os.environ | rank_env(r, world, port),
                             stdout=subprocess.DEVNULL)
            for r in range(1, world)]


def explain_rank_deaths(ranks: list[subprocess.Popen],
                        put: Callable[[Any], None]) -> Callable[[Any], None]:
    """``put`` for rank 0's events, where the error that another rank's death causes (gloo:
    "Connection closed by peer") first says which process ended and how."""
    from dataclasses import replace
    from functools import cache

    from echoquality_core.train.events import TrainEnd, TrainError

    dead_rank = cache(lambda: _dead_rank(ranks))  # looked up once, at the first fatal error

    def said(error: TrainError) -> TrainError:
        why = dead_rank()
        return replace(error, message=f"{why}. ({error.message})") if why else error

    def report(event: Any) -> None:
        if isinstance(event, TrainError) and event.fatal:
            event = said(event)
        elif isinstance(event, TrainEnd) and event.error is not None:
            event = replace(event, error=said(event.error))
        put(event)

    return report


def _dead_rank(ranks: list[subprocess.Popen], wait: float = DEATH_SECONDS) -> str | None:
    """Which of the other ranks ended with an error, in words (None if none did)."""
    deadline = time.monotonic() + wait  # its exit may be a moment behind the broken connection
    for number, rank in enumerate(ranks, start=2):
        try:
            code = rank.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            continue
        if code != 0:
            return (f"Training process {number} of {len(ranks) + 1} ended unexpectedly "
                    f"(exit code {code}); the run was stopped")
    return None


def wait_for_ranks(ranks: list[subprocess.Popen], timeout: float = 30.0) -> None:
    """Wait for the other ranks to finish; kill those still running after ``timeout``."""
    deadline = time.monotonic() + timeout
    for rank in ranks:
        try:
            rank.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            rank.kill()
            rank.wait()


def main(argv: list[str]) -> int:
    """One rank > 0: ``python -m echoquality_core.jobs.ranks SETTINGS_JSON PARENT_PID``."""
    from echoquality_core.jobs.train_process import cpu_threads, exit_when_orphaned, yield_to_window

    settings, parent = json.loads(argv[0]), int(argv[1])
    exit_when_orphaned(parent, ORPHAN_SECONDS / 2)
    import torch

    from echoquality_core.train.config import TrainConfig
    from echoquality_core.train.distributed import DistributedTrainer

    yield_to_window()
    torch.set_num_threads(cpu_threads(int(os.environ["WORLD_SIZE"])))
    DistributedTrainer(TrainConfig(**settings)).run()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
