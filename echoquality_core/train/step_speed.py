"""One training step of the real network timed on this machine, before any run: the
:class:`~echoquality_core.train.estimate.StepSpeed` the Train tab's first estimate scales.

It runs in a child process (``jobs.devices.measure_speed``): R(2+1)D-18 (random weights: the
speed does not depend on their values) frozen as the settings say, on their device, in the
precision ``model.precision`` picks for training, on a random batch of their batch size (at
most ``MAX_BATCH`` clips), frames and size. One warm-up round, then one timed round of the same
three parts a run has: the frozen blocks' forward (``frozen_trunk.trunk_forward``), a training
step of the trainable blocks (``loop.run_epoch``: forward, loss, backward, optimiser step) and
their forward (``loop.predict``).
"""
from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping
from typing import Any

import torch

from echoquality_core.jobs.child import cpu_threads
from echoquality_core.model.network import (_architecture, freeze_model_except_final_layers,
                                            resolve_device)
from echoquality_core.model.precision import prepare_input, prepare_model
from echoquality_core.train.config import TrainConfig
from echoquality_core.train.estimate import StepSpeed
from echoquality_core.train.frozen_trunk import Head, frozen_blocks, trunk_forward
from echoquality_core.train.losses import make_criterion
from echoquality_core.train.loop import make_optimizer, mixed_precision, predict, run_epoch

_FIELDS = {f.name for f in dataclasses.fields(TrainConfig)}
MAX_BATCH = 8  # clips timed at most: a larger batch scales linearly, but would take long


def measure_step(settings: Mapping[str, Any]) -> StepSpeed:
    """This machine's :class:`StepSpeed` for a run of TrainConfig fields ``settings`` (see the
    module docstring), on the CPU threads a training child gets. Takes about two training
    steps."""
    torch.set_num_threads(cpu_threads(int(settings.get("ranks") or 1)))  # what a run gets
    config = TrainConfig(**{k: v for k, v in settings.items() if k in _FIELDS})
    device = resolve_device(config.device)
    dtype, scaler = mixed_precision(config, device)
    model = _architecture()  # random weights, meant here: no warning
    freeze_model_except_final_layers(model, config.num_unfrozen_layers)
    prepare_model(model, device, dtype, training=True)
    trunk = frozen_blocks(model)
    head = Head(model, trunk) if trunk else model
    optimizer, _ = make_optimizer(config, model)
    criterion = make_criterion(config.loss)
    batch, frames = min(config.batch_size, MAX_BATCH), config.n_frames
    videos = prepare_input(torch.randn(batch, 3, frames, config.size, config.size), device, dtype,
                           training=True)
    labels = torch.arange(batch) % 2
    seconds: list[float] = []
    for _round in range(2):  # warm-up, then the timed round
        start = time.perf_counter()
        x = (trunk_forward(model, trunk, videos, device, dtype).to(device, torch.float32)
             if trunk else videos)
        trunk_seconds = time.perf_counter() - start if trunk else 0.0
        run_epoch(head, [(x, labels)], criterion, optimizer, device, amp_dtype=dtype,
                  scaler=scaler, on_batch=lambda *args: seconds.append(args[3]))
        start = time.perf_counter()
        predict(head, [(x, labels)], criterion, device, amp_dtype=dtype)
        forward_seconds = time.perf_counter() - start
    clip_frames = batch * frames
    return StepSpeed(trunk_seconds / clip_frames, seconds[-1] / clip_frames,
                     forward_seconds / clip_frames)
