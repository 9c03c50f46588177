"""Real hostile model files for the tests: a TorchScript program whose forward never returns
(what a broken or malicious export can do once the user trusts it)."""
from __future__ import annotations

from pathlib import Path


def write_hanging_torchscript(path: Path) -> Path:
    """Save a TorchScript module whose forward loops forever; returns ``path``."""
    import warnings

    import torch

    class Hang(torch.nn.Module):
        def forward(self, videos: torch.Tensor) -> torch.Tensor:
            i = 0
            while i >= 0:  # int64: never overflows in practice
                i = i + 1
            return videos.mean(dim=(1, 2, 3, 4))

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit is deprecated
        torch.jit.save(torch.jit.script(Hang()), str(path))
    return path
