"""Fine-tuning the last blocks leaves the frozen blocks exactly as loaded, BatchNorm statistics
included (in train mode BatchNorm would otherwise drift towards the new clips)."""
from __future__ import annotations

import pytest
import torch

from echoquality_core.model.network import build_model, freeze_model_except_final_layers
from echoquality_core.train.trainer import train_epoch


def test_frozen_blocks_keep_their_batchnorm_statistics():
    torch.manual_seed(0)
    with pytest.warns(UserWarning, match="random"):
        model = build_model(None)
    freeze_model_except_final_layers(model, 2)  # fc and layer4 train
    before = {k: v.clone() for k, v in model.state_dict().items()}
    loader = [(torch.randn(2, 3, 4, 48, 48) * 3 + 1, torch.tensor([1.0, 0.0]))]
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    train_epoch(model, loader, torch.nn.functional.binary_cross_entropy_with_logits, optimizer,
                "cpu")
    after = model.state_dict()
    frozen = [k for k in before if not k.startswith(("layer4.", "fc."))]
    assert all(torch.equal(before[k], after[k]) for k in frozen)
    assert not torch.equal(before["layer4.0.conv1.1.running_mean"],
                           after["layer4.0.conv1.1.running_mean"])  # trained block adapts
