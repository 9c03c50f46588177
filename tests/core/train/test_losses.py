"""Training losses (echoquality_core.train.losses)."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops import sigmoid_focal_loss

from echoquality_core.train.losses import FocalLoss, class_pos_weight, make_criterion


class GuideFocalLoss(nn.Module):
    """The focal loss exactly as TRAINING_GUIDE.md prints it."""

    def __init__(self, alpha=0.25, gamma=2):
        super().__init__()
        self.alpha = alpha
        self.gamma = gamma

    def forward(self, inputs, targets):
        BCE_loss = F.binary_cross_entropy_with_logits(inputs, targets, reduction="none")
        pt = torch.exp(-BCE_loss)
        F_loss = self.alpha * (1 - pt) ** self.gamma * BCE_loss
        return F_loss.mean()


def _batch(soft: bool = False, n: int = 64):
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(n, generator=g, dtype=torch.float64) * 3
    targets = torch.rand(n, generator=g, dtype=torch.float64)
    return logits, targets if soft else (targets > 0.5).to(torch.float64)


@pytest.mark.parametrize("soft", [False, True])
@pytest.mark.parametrize(("alpha", "gamma"), [(0.25, 2), (0.6, 0.5), (1.0, 0)])
def test_focal_loss_equals_the_guides_formula(soft, alpha, gamma):
    logits, targets = _batch(soft)
    ours = FocalLoss(alpha=alpha, gamma=gamma)(logits, targets)
    guide = GuideFocalLoss(alpha=alpha, gamma=gamma)(logits, targets)
    torch.testing.assert_close(ours, guide)


def test_focal_loss_is_torchvisions_unweighted_focal_loss_times_alpha_on_binary_targets():
    logits, targets = _batch()
    ours = FocalLoss(alpha=0.25, gamma=2, reduction="none")(logits, targets)
    tv = sigmoid_focal_loss(logits, targets, alpha=-1, gamma=2, reduction="none")
    torch.testing.assert_close(ours, 0.25 * tv)


def test_focal_loss_reductions():
    logits, targets = _batch()
    per_clip = FocalLoss(reduction="none")(logits, targets)
    assert per_clip.shape == logits.shape
    torch.testing.assert_close(FocalLoss(reduction="sum")(logits, targets), per_clip.sum())
    torch.testing.assert_close(FocalLoss()(logits, targets), per_clip.mean())
    with pytest.raises(ValueError, match="reduction"):
        FocalLoss(reduction="max")


def test_focal_loss_with_soft_target_is_smallest_where_the_prediction_equals_the_target():
    target = torch.tensor([0.7], dtype=torch.float64)
    logit = torch.logit(target).clone().requires_grad_(True)
    FocalLoss()(logit, target).backward()
    assert abs(float(logit.grad)) < 1e-9
    near = torch.logit(target) + torch.tensor([[-0.3], [0.3]], dtype=torch.float64)
    at = FocalLoss(reduction="none")(torch.logit(target), target)
    assert (FocalLoss(reduction="none")(near, target.expand(2, 1)) > at).all()


def test_focal_loss_pos_weight_scales_only_the_good_clips():
    logits, targets = _batch()
    plain = FocalLoss(reduction="none")(logits, targets)
    weighted = FocalLoss(reduction="none", pos_weight=3.0)(logits, targets)
    good = targets == 1
    torch.testing.assert_close(weighted[good], 3 * plain[good])
    torch.testing.assert_close(weighted[~good], plain[~good])


def test_make_criterion_builds_bce_or_focal():
    logits, targets = _batch()
    bce = make_criterion("bce", alpha=0.5, gamma=3)
    torch.testing.assert_close(bce(logits, targets),
                               F.binary_cross_entropy_with_logits(logits, targets))
    focal = make_criterion("focal", alpha=0.5, gamma=3)
    assert isinstance(focal, FocalLoss) and (focal.alpha, focal.gamma) == (0.5, 3.0)
    torch.testing.assert_close(focal(logits, targets),
                               GuideFocalLoss(0.5, 3)(logits, targets))
    with pytest.raises(ValueError, match="unknown loss 'mse'"):
        make_criterion("mse")


def test_make_criterion_bce_pos_weight_matches_torch():
    logits, targets = _batch()
    weight = class_pos_weight(targets)
    ours = make_criterion("bce", pos_weight=weight)(logits.float(), targets.float())
    torch_loss = nn.BCEWithLogitsLoss(pos_weight=weight)(logits.float(), targets.float())
    torch.testing.assert_close(ours, torch_loss)


def test_class_pos_weight_is_poor_over_good():
    assert float(class_pos_weight([0, 0, 0, 1])) == pytest.approx(3.0)
    assert float(class_pos_weight(torch.tensor([1.0, 1.0, 0.0]))) == pytest.approx(0.5)
    # soft labels count fractionally: good = 0.5 + 0.5 + 1 + 0.25 = 2.25, poor = 1.75
    assert float(class_pos_weight([0.5, 0.5, 1.0, 0.25])) == pytest.approx(1.75 / 2.25)
    assert class_pos_weight([0, 1]).dtype == torch.float32


@pytest.mark.parametrize(
    ("labels", "problem"),
    [([1, 1, 1], "no poor"), ([0, 0], "no good"), ([], "at least one"), ([0, 2], r"\[0, 1\]")],
)
def test_class_pos_weight_rejects_labels_it_cannot_weight(labels, problem):
    with pytest.raises(ValueError, match=problem):
        class_pos_weight(labels)
