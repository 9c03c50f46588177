"""Our R(2+1)D-18 is torchvision's r2plus1d_18: same state dict, same initialisation for a
seed, same outputs; and scoring imports neither torchvision nor torch._dynamo."""
from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from torchvision.models.video import r2plus1d_18

from echoquality_core.model.network import build_model
from echoquality_core.model.r2plus1d import R2Plus1D18
from echoquality_core.model.weights_file import expected_shapes


def _same_state(a: dict, b: dict) -> None:
    assert list(a) == list(b)
    for key in a:
        assert a[key].shape == b[key].shape and a[key].dtype == b[key].dtype, key
        assert torch.equal(a[key], b[key]), key


def test_same_layers_and_initialisation_as_torchvision_for_a_seed():
    torch.manual_seed(3)
    ours = R2Plus1D18()
    torch.manual_seed(3)
    theirs = r2plus1d_18(weights=None)
    _same_state(ours.state_dict(), theirs.state_dict())
    # the one-logit model (fc replaced) too, with the keys weights files are checked against
    torch.manual_seed(5)
    model = build_model()
    torch.manual_seed(5)
    reference = r2plus1d_18(weights=None)
    reference.fc = torch.nn.Linear(512, 1)
    _same_state(model.state_dict(), reference.state_dict())
    assert {k: tuple(v.shape) for k, v in model.state_dict().items()} == expected_shapes(1)


def test_same_outputs_and_gradients_with_the_same_weights():
    torch.manual_seed(0)
    theirs = r2plus1d_18(weights=None, num_classes=1)
    ours = R2Plus1D18(num_classes=1)
    ours.load_state_dict(theirs.state_dict())
    videos = torch.randn(2, 3, 4, 32, 32)
    for train in (True, False):
        ours.train(train), theirs.train(train)
        a, b = ours(videos), theirs(videos)
        assert torch.equal(a, b)
        a.sum().backward(), b.sum().backward()
        assert torch.equal(ours.layer4[1].conv2[0][3].weight.grad,
                           theirs.layer4[1].conv2[0][3].weight.grad)
    _same_state(ours.state_dict(), theirs.state_dict())  # running statistics alike


@pytest.mark.slow  # a few seconds: the fast tier stays under 4 minutes
def test_loading_scoring_and_gradcam_modules_do_not_import_torchvision(tmp_path):
    code = ("import sys, torch\n"
            "from echoquality_core.model.network import build_model, save_checkpoint\n"
            "from echoquality_core.scoring import gradcam, score\n"
            "from echoquality_core.model.checkpoint import load_scoring_model, score_arrays\n"
            f"path = save_checkpoint(build_model(), {str(tmp_path / 'best.pt')!r})\n"
            "net, _ = load_scoring_model(path)\n"
            "score_arrays(net, torch.zeros(1, 3, 4, 32, 32))\n"
            "print('torchvision' in sys.modules, 'torch._dynamo' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=300, check=True)
    assert out.stdout.strip().splitlines()[-1] == "False False"  # nor torch._dynamo (~1.6 s)
