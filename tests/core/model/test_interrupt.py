"""Stop/Cancel inside a batch: the model raises Interrupted at the next block boundary."""
from __future__ import annotations

import pytest
import torch

from echoquality_core.model.interrupt import Interrupted, checkpoints, interruptible
from echoquality_core.model.network import build_model, freeze_model_except_final_layers
from echoquality_core.train.loop import run_epoch as _run_epoch


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    with pytest.warns(UserWarning, match="random"):
        net = build_model(None)
    freeze_model_except_final_layers(net, 2)
    return net


def video(batch=2, frames=4, size=48):
    return torch.randn(batch, 3, frames, size, size)


def test_checks_every_block_forward_and_the_trained_blocks_backward(model):
    assert len(checkpoints(model)) == 11  # stem, 8 residual blocks, avgpool, fc
    calls = []
    with interruptible(model, lambda: calls.append(1) and False):
        model(video()).sum().backward()
    # 11 before each module's forward, then one per trained block's output on the way back
    # (layer4's two blocks, avgpool and fc; the frozen blocks' outputs carry no gradient)
    assert len(calls) == 11 + 4
    model.zero_grad(set_to_none=True)


@pytest.mark.parametrize("halt_at", [3, 13])  # in the forward pass, in the backward pass
def test_halting_raises_interrupted_and_removes_the_hooks(model, halt_at):
    calls = []

    def should_halt():
        calls.append(1)
        return len(calls) >= halt_at

    with pytest.raises(Interrupted), interruptible(model, should_halt):
        model(video()).sum().backward()
    assert len(calls) == halt_at
    assert all(not m._forward_pre_hooks and not m._forward_hooks for m in model.modules())
    model.zero_grad(set_to_none=True)
    model(video())  # runs unhindered afterwards


def test_a_stopped_batch_is_abandoned_without_an_optimiser_step(model):
    loader = [(video(), torch.tensor([1.0, 0.0])) for _ in range(3)]
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=1.0)
    before = [p.detach().clone() for p in model.parameters()]
    checks = []

    def should_stop():  # true part-way through the first batch
        checks.append(1)
        return len(checks) > 5

    _loss, done = _run_epoch(model, loader, torch.nn.functional.binary_cross_entropy_with_logits,
                            optimizer, torch.device("cpu"), should_stop=should_stop)
    assert done == 0
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))
    assert all(p.grad is None for p in model.parameters())
