"""Where this machine can train, in words, and how fast: the Train tab's Device choices, what a
run trains on and the speed of one training step. Finding out imports torch, which never enters
the app's process: the app calls ``probe`` and ``measure_speed`` (a spawned child answers), and
a training child says what it trains on itself (``RunDevice``, the first message of
``train_process``)."""
from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from echoquality_core.jobs.child import call_in_child, cpu_threads
from echoquality_core.train.estimate import StepSpeed


@dataclass(frozen=True)
class RunDevice:
    """What a training run trains on, in words (or why its device is unavailable)."""
    text: str


def device_choices() -> list[tuple[str, dict[str, Any]]]:
    """Where this machine can train, as (label, settings): Auto, CPU, each CUDA device (or
    Apple's MPS) and, with more than one CUDA device, "All GPUs (N)": one DDP rank per GPU
    (``ranks``, see ``jobs.ranks``). Imports torch."""
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


def describe_device(device: str = "auto", ranks: int = 1) -> str:
    """What a run with ``device`` (on ``ranks`` GPUs) would train on, in words: the GPU's name
    or "CPU" (imports torch; ValueError for a device this machine does not have)."""
    import torch

    from echoquality_core.model.network import resolve_device

    dev = resolve_device(device)
    if dev.type == "cuda":
        if ranks > 1:
            return f"{ranks} GPUs ({torch.cuda.get_device_name(dev)}), one process each"
        return f"GPU: {torch.cuda.get_device_name(dev)}"
    if dev.type == "mps":
        return "GPU: Apple (MPS)"
    return f"CPU, {cpu_threads()} of {os.cpu_count() or 1} cores"


def run_device(settings: dict[str, Any]) -> RunDevice:
    """What a training run with these settings trains on (imports torch)."""
    try:
        return RunDevice(describe_device(settings.get("device", "auto"),
                                         int(settings.get("ranks") or 1)))
    except (ValueError, RuntimeError) as exc:
        return RunDevice(f"unavailable ({exc})")


def _found() -> tuple[str, list[tuple[str, dict[str, Any]]]]:
    return describe_device("auto"), device_choices()


def probe(cancelled: Callable[[], bool] = lambda: False) -> tuple[str, list[tuple[str, dict]]]:
    """(what "Auto" trains on, in words; the Device choices), found by a spawned child: blocks
    for seconds (torch's import), so call it off the GUI thread. RuntimeError when the child
    fails or ``cancelled()`` turns true."""
    return call_in_child(_found, name="echoquality-devices", cancelled=cancelled)


def _measure(settings: dict[str, Any]) -> StepSpeed:
    from echoquality_core.train.step_speed import measure_step  # imports torch: seconds

    return measure_step(settings)


def measure_speed(settings: dict[str, Any],
                  cancelled: Callable[[], bool] = lambda: False) -> StepSpeed:
    """This machine's speed for a run of TrainConfig fields ``settings``, one step timed by a
    spawned child at a lower priority (``train.step_speed``): blocks for seconds, so call it
    off the GUI thread. RuntimeError when the child fails or ``cancelled()`` turns true."""
    return call_in_child(_measure, dict(settings), name="echoquality-speed",
                         cancelled=cancelled)
