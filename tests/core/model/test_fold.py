"""BatchNorm folding for scoring: the folded copy scores as the network does (fp32, 1e-4), the
network itself is left as it was, and there is nothing to fold in training mode or in a wrapper.

A real R(2+1)D-18 with random weights and random BatchNorm statistics (a fresh network's are
0 / 1, which would hide a wrong fold).
"""
from __future__ import annotations

import pytest
import torch
from torch import nn

from echoquality_core.model.checkpoint import forward_scores
from echoquality_core.model.fold import fold_batchnorm
from echoquality_core.model.precision import precision


@pytest.fixture(scope="module")
def net(random_model) -> nn.Module:
    torch.set_num_threads(1)
    model = random_model(3)
    generator = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for bn in model.modules():
            if isinstance(bn, nn.BatchNorm3d):
                n = bn.num_features
                bn.running_mean.copy_(torch.randn(n, generator=generator) * 0.2)
                bn.running_var.copy_(torch.rand(n, generator=generator) + 0.5)
                bn.weight.copy_(torch.rand(n, generator=generator) + 0.5)
                bn.bias.copy_(torch.randn(n, generator=generator) * 0.1)
    return model.eval()


def _logits(model: nn.Module, videos: torch.Tensor) -> torch.Tensor:
    with torch.inference_mode():
        return model(videos).reshape(-1)


@pytest.mark.parametrize("frames,size", [(16, 112), (4, 48), (2, 32)])
def test_folded_scores_equal_the_network_s_in_fp32(net, frames, size):
    videos = torch.randn(2, 3, frames, size, size, generator=torch.Generator().manual_seed(1))
    before = {k: v.clone() for k, v in net.state_dict().items()}
    folded = fold_batchnorm(net)

    assert folded is not net
    assert not any(isinstance(m, nn.BatchNorm3d) for m in folded.modules())
    assert sum(isinstance(m, nn.BatchNorm3d) for m in net.modules()) == 37
    plain, fast = _logits(net, videos), _logits(folded, videos)
    assert torch.allclose(plain, fast, atol=1e-4, rtol=1e-4), (plain, fast)
    with precision("fp32"):
        dev = torch.device("cpu")
        scores = forward_scores(net, videos, dev), forward_scores(folded, videos, dev)
    assert max(abs(a - b) for a, b in zip(*scores)) < 1e-4
    after = net.state_dict()  # the network itself is untouched
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert {name for name, _ in folded.named_children()} == {
        name for name, _ in net.named_children()}


def test_folding_in_place_changes_the_network_and_nothing_to_fold_returns_it(net, random_model):
    videos = torch.randn(1, 3, 4, 48, 48, generator=torch.Generator().manual_seed(2))
    copy = fold_batchnorm(net)
    own = fold_batchnorm(random_model(3).eval(), in_place=True)
    assert not any(isinstance(m, nn.BatchNorm3d) for m in own.modules())

    training = random_model(4).train()  # batch statistics: nothing can be folded
    assert fold_batchnorm(training) is training
    wrapper = nn.Module()
    object.__setattr__(wrapper, "inner", net)  # not a child (as the app's watched model)
    assert fold_batchnorm(wrapper) is wrapper
    assert torch.allclose(_logits(copy, videos), _logits(net, videos), atol=1e-4, rtol=1e-4)


def test_moving_the_folded_copy_leaves_the_network_where_it_was(random_model):
    """The app keeps the unfolded network for GradCAM and scores with a folded copy that
    ``score_clips`` moves to the device: ``Module.to`` swaps a parameter's data in place, so a
    parameter the copy shared (``fc``) would move the kept network's too (half on the GPU)."""
    net = random_model(4)
    folded = fold_batchnorm(net)
    folded.to(torch.float64)  # what .to("cuda") does to each parameter, on a CPU-only machine
    assert {p.dtype for p in net.parameters()} == {torch.float32}
    assert folded.fc.weight.dtype == torch.float64
