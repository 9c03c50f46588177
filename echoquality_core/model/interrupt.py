"""Stop a model part-way through a batch.

On a CPU one training batch of full-size clips takes many seconds, so checking Stop/Cancel only
between batches is too slow for a user. ``interruptible`` checks a flag before every residual
block in the forward pass and again as the gradient reaches each block in the backward pass.
"""
from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import nn


class Interrupted(Exception):
    """Raised inside the model when ``should_halt()`` turned true; the batch is abandoned."""


def checkpoints(model: nn.Module) -> list[nn.Module]:
    """The modules checked: each block of a Sequential of blocks (``layer1.0``, ...), else each
    top-level child (``stem``, ``avgpool``, ``fc``)."""
    found: list[nn.Module] = []
    for child in model.children():
        blocks = list(child.children())
        if isinstance(child, nn.Sequential) and blocks and all(any(b.children()) for b in blocks):
            found += blocks
        else:
            found.append(child)
    return found


@contextlib.contextmanager
def interruptible(model: nn.Module, should_halt: Callable[[], bool] | None) -> Iterator[None]:
    """Within the block, forward and backward passes of ``model`` raise :class:`Interrupted`
    at the next block boundary once ``should_halt()`` is true. Hooks are removed on exit."""
    if should_halt is None:
        yield
        return

    def check(*_args: Any) -> None:
        if should_halt():
            raise Interrupted

    def check_on_backward(_module: nn.Module, _inputs: Any, output: Any) -> None:
        if isinstance(output, torch.Tensor) and output.requires_grad:
            output.register_hook(check)

    handles = []
    for module in checkpoints(model):
        handles.append(module.register_forward_pre_hook(check))
        handles.append(module.register_forward_hook(check_on_backward))
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()
