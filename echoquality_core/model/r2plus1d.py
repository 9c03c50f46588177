"""The R(2+1)D-18 video network (Tran et al., CVPR 2018) as torchvision's ``r2plus1d_18``
builds it: the same layers in the same order, so the same state dict (EchoPrime's
``video_quality_model.pt`` and torchvision's Kinetics-400 file load as they are), the same
random initialisation for a given seed, and the same outputs.

Why not import it from torchvision: importing torchvision imports ``torch._dynamo`` (through
``torchvision.ops``), about 1.6 s of every ``echoquality score`` and of every model process's
start, for a network of 60 lines. Training still uses torchvision (its video transforms).
``tests/core/test_r2plus1d.py`` checks this module against torchvision's, layer for layer and
output for output. After torchvision's ``models/video/resnet.py`` (BSD-3-Clause).
"""
from __future__ import annotations

import torch
from torch import nn

STAGES = ((64, 1), (128, 2), (256, 2), (512, 2))  # (channels, stride) of layer1..layer4
BLOCKS = 2  # basic blocks per stage (the "18")


def _conv2plus1d(cin: int, cout: int, mid: int, stride: int = 1) -> nn.Sequential:
    """A 3x3x3 convolution split into a spatial 1x3x3 and a temporal 3x1x1 one."""
    return nn.Sequential(
        nn.Conv3d(cin, mid, (1, 3, 3), stride=(1, stride, stride), padding=(0, 1, 1),
                  bias=False),
        nn.BatchNorm3d(mid),
        nn.ReLU(inplace=True),
        nn.Conv3d(mid, cout, (3, 1, 1), stride=(stride, 1, 1), padding=(1, 0, 0), bias=False),
    )


class BasicBlock(nn.Module):
    """Two (2+1)D convolutions with a residual connection (downsampled where it changes)."""

    def __init__(self, cin: int, cout: int, stride: int = 1):
        super().__init__()
        mid = (cin * cout * 27) // (cin * 9 + 3 * cout)  # as many weights as a 3x3x3 conv
        self.conv1 = nn.Sequential(_conv2plus1d(cin, cout, mid, stride), nn.BatchNorm3d(cout),
                                   nn.ReLU(inplace=True))
        self.conv2 = nn.Sequential(_conv2plus1d(cout, cout, mid), nn.BatchNorm3d(cout))
        self.relu = nn.ReLU(inplace=True)
        self.downsample = (
            nn.Sequential(nn.Conv3d(cin, cout, 1, stride=stride, bias=False),
                          nn.BatchNorm3d(cout))
            if stride != 1 or cin != cout else None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv2(self.conv1(x))
        out += x if self.downsample is None else self.downsample(x)
        return self.relu(out)


class R2Plus1D18(nn.Module):
    """R(2+1)D-18: clips (N, 3, T, H, W) -> (N, ``num_classes``) logits. ``initialise=False``
    leaves the layers' default values (for layers made on the ``meta`` device that take a file's
    tensors: torchvision's ``normal_`` there would import ``torch._dynamo``)."""

    def __init__(self, num_classes: int = 400, *, initialise: bool = True):
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv3d(3, 45, (1, 7, 7), stride=(1, 2, 2), padding=(0, 3, 3), bias=False),
            nn.BatchNorm3d(45),
            nn.ReLU(inplace=True),
            nn.Conv3d(45, 64, (3, 1, 1), stride=(1, 1, 1), padding=(1, 0, 0), bias=False),
            nn.BatchNorm3d(64),
            nn.ReLU(inplace=True),
        )
        cin = 64
        for number, (cout, stride) in enumerate(STAGES, start=1):
            blocks = [BasicBlock(cin, cout, stride)]
            blocks += [BasicBlock(cout, cout) for _ in range(BLOCKS - 1)]
            setattr(self, f"layer{number}", nn.Sequential(*blocks))
            cin = cout
        self.avgpool = nn.AdaptiveAvgPool3d((1, 1, 1))
        self.fc = nn.Linear(512, num_classes)
        if initialise:
            self._initialise()

    def _initialise(self) -> None:
        for m in self.modules():  # torchvision's initialisation, in its order
            if isinstance(m, nn.Conv3d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm3d):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.constant_(m.bias, 0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(self.avgpool(x).flatten(1))
