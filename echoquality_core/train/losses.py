"""Training losses on the model's single logit: binary cross-entropy or the guide's focal loss."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

LOSSES = ("bce", "focal")


class FocalLoss(nn.Module):
    """The training guide's focal loss: ``alpha * (1 - pt) ** gamma * BCE`` with ``pt = exp(-BCE)``.

    ``alpha`` scales every clip alike, as in the guide. (torchvision's
    ``sigmoid_focal_loss`` instead weights good clips by ``alpha`` and poor ones by
    ``1 - alpha``; for 0/1 targets the guide's loss equals torchvision's with ``alpha=-1``
    times ``alpha``.) Soft targets (e.g. 0.7) work: with ``pt = exp(-BCE)`` the loss is still
    smallest when the predicted probability equals the target, which torchvision's linear
    ``pt`` does not guarantee. ``pos_weight`` weights the good class inside the BCE term, as
    in ``BCEWithLogitsLoss``; ``pt`` is taken from the unweighted BCE.
    """

    def __init__(
        self,
        alpha: float = 0.25,
        gamma: float = 2,
        reduction: str = "mean",
        pos_weight: torch.Tensor | float | None = None,
    ):
        super().__init__()
        if reduction not in ("mean", "sum", "none"):
            raise ValueError(f"reduction must be 'mean', 'sum' or 'none', got {reduction!r}")
        if gamma < 0:
            raise ValueError(f"gamma must be >= 0, got {gamma!r}")
        self.alpha = float(alpha)
        self.gamma = float(gamma)
        self.reduction = reduction
        self.register_buffer("pos_weight", _as_weight(pos_weight))

    def forward(self, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        targets = targets.to(inputs.dtype)
        bce = F.binary_cross_entropy_with_logits(inputs, targets, reduction="none")
        pt = torch.exp(-bce)
        if self.pos_weight is not None:
            bce = F.binary_cross_entropy_with_logits(
                inputs, targets, reduction="none", pos_weight=self.pos_weight.to(inputs.device)
            )
        loss = self.alpha * (1 - pt) ** self.gamma * bce
        if self.reduction == "mean":
            return loss.mean()
        if self.reduction == "sum":
            return loss.sum()
        return loss


class WeightedBCE(nn.Module):
    """``BCEWithLogitsLoss`` whose ``pos_weight`` follows the inputs to their device."""

    def __init__(self, pos_weight: torch.Tensor | float | None = None, reduction: str = "mean"):
        super().__init__()
        self.reduction = reduction
        self.register_buffer("pos_weight", _as_weight(pos_weight))

    def forward(self, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        weight = None if self.pos_weight is None else self.pos_weight.to(inputs.device)
        return F.binary_cross_entropy_with_logits(
            inputs, targets.to(inputs.dtype), reduction=self.reduction, pos_weight=weight
        )


def make_criterion(
    loss: str = "bce",
    pos_weight: torch.Tensor | float | None = None,
    alpha: float = 0.25,
    gamma: float = 2.0,
) -> nn.Module:
    """The training loss by name: ``"bce"`` (alpha/gamma unused) or ``"focal"``."""
    if loss == "bce":
        return WeightedBCE(pos_weight)
    if loss == "focal":
        return FocalLoss(alpha=alpha, gamma=gamma, pos_weight=pos_weight)
    raise ValueError(f"unknown loss {loss!r}; choose from {', '.join(LOSSES)}")


def class_pos_weight(labels: Sequence[float] | torch.Tensor) -> torch.Tensor:
    """``n_poor / n_good`` as a 0-d tensor, to weight the good class (``pos_weight``).

    Soft labels count fractionally: a 0.7 adds 0.7 good and 0.3 poor.
    """
    y = torch.as_tensor(labels, dtype=torch.float64).reshape(-1)
    if y.numel() == 0:
        raise ValueError("class_pos_weight needs at least one label")
    if bool(((y < 0) | (y > 1) | torch.isnan(y)).any()):
        raise ValueError("class_pos_weight: labels must lie in [0, 1]")
    n_pos, n_neg = float(y.sum()), float((1 - y).sum())
    if n_pos == 0 or n_neg == 0:
        kind = "good (1)" if n_pos == 0 else "poor (0)"
        raise ValueError(f"class_pos_weight: no {kind} labels, so the classes cannot be weighted")
    return torch.tensor(n_neg / n_pos, dtype=torch.float32)


def _as_weight(value: torch.Tensor | float | None) -> torch.Tensor | None:
    if value is None:
        return None
    return torch.as_tensor(value, dtype=torch.float32).detach().clone()
