"""Eval-mode BatchNorm3d folded into the Conv3d before it: a scoring-only copy of a network.

In eval mode a BatchNorm3d is a fixed per-channel scale and shift, so the convolution that feeds
it can take both (``w * s``, ``(b - mean) * s + beta`` with ``s = gamma / sqrt(var + eps)``) and
the BatchNorm becomes an ``Identity``: one pass over the activations less per BatchNorm (37 of
them in R(2+1)D-18). Scores stay within 1e-4 of the unfolded network's in fp32
(``tests/core/model/test_fold.py``). Only scoring uses it (``scoring.score``): training needs
the BatchNorms, and GradCAM explains the network as it was trained. The module names stay the
same (``layer4``, ``fc``, …); the folded network holds new weight tensors and is eval-only.
"""
from __future__ import annotations

import copy

import torch
from torch import nn


def fold_batchnorm(net: nn.Module, *, in_place: bool = False) -> nn.Module:
    """``net`` with every eval-mode BatchNorm3d that directly follows a Conv3d in a Sequential
    (also when the Conv3d ends the Sequential before it, as in R(2+1)D's blocks) folded into
    that Conv3d and replaced by ``Identity``. A copy unless ``in_place`` (new modules and
    parameters, sharing the tensors it does not fold with ``net``, which is left as it was,
    also when the copy is moved to another device); ``net`` itself when
    there is nothing to fold (an export, a wrapper, a network in training mode)."""
    if not any(_pairs(m) for m in net.modules() if isinstance(m, nn.Sequential)):
        return net
    if not in_place:  # new Parameter objects over the same tensors: moving the copy to
        # another device (``Module.to`` swaps a parameter's data in place) leaves ``net`` as it is
        memo: dict[int, object] = {id(b): b for b in net.buffers()}
        memo.update({id(p): nn.Parameter(p.data, requires_grad=p.requires_grad)
                     for p in net.parameters()})
        net = copy.deepcopy(net, memo)
    for seq in [m for m in net.modules() if isinstance(m, nn.Sequential)]:
        for index, conv, bn in _pairs(seq):
            _fold_into(conv, bn)
            seq[index] = nn.Identity()
    return net


def _pairs(seq: nn.Sequential) -> list[tuple[int, nn.Conv3d, nn.BatchNorm3d]]:
    """(index of the BatchNorm, the Conv3d before it, the BatchNorm) for each foldable pair."""
    found = []
    children = list(seq)
    for index in range(1, len(children)):
        bn, before = children[index], _last_leaf(children[index - 1])
        if (isinstance(bn, nn.BatchNorm3d) and isinstance(before, nn.Conv3d)
                and not bn.training and bn.running_mean is not None
                and bn.num_features == before.out_channels):
            found.append((index, before, bn))
    return found


def _last_leaf(module: nn.Module) -> nn.Module:
    """The module that produces a Sequential's output (its last element, recursively)."""
    while isinstance(module, nn.Sequential) and len(module):
        module = module[-1]
    return module


@torch.no_grad()
def _fold_into(conv: nn.Conv3d, bn: nn.BatchNorm3d) -> None:
    """Give ``conv`` the scale and shift of ``bn`` (computed in fp32)."""
    var, mean = bn.running_var.float(), bn.running_mean.float()
    gamma = bn.weight.float() if bn.weight is not None else torch.ones_like(var)
    beta = bn.bias.float() if bn.bias is not None else torch.zeros_like(var)
    scale = gamma / torch.sqrt(var + bn.eps)
    bias = conv.bias.float() if conv.bias is not None else torch.zeros_like(var)
    weight = conv.weight.float() * scale.reshape(-1, *([1] * (conv.weight.dim() - 1)))
    conv.weight = nn.Parameter(weight.to(conv.weight.dtype), requires_grad=False)
    conv.bias = nn.Parameter(((bias - mean) * scale + beta).to(conv.weight.dtype),
                             requires_grad=False)
