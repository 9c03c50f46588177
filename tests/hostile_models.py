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


def write_weights_bomb(path: Path, inflate: int = 1 << 30) -> Path:
    """A weights file of our network whose records are deflated (torch.save stores them
    plain), one of them inflating to ``inflate`` bytes of zeros though data.pkl declares the
    tensor's real size: about 1 MB on disk. Returns ``path``."""
    import io
    import zipfile

    import torch

    from echoquality_core.model.weights_file import expected_shapes

    state = {k: torch.zeros(shape, dtype=torch.long if k.endswith("num_batches_tracked")
                            else torch.float32) for k, shape in expected_shapes().items()}
    plain = io.BytesIO()
    torch.save(state, plain)
    del state
    with zipfile.ZipFile(plain) as src, zipfile.ZipFile(path, "w") as out:
        entries = src.infolist()
        biggest = max(entries, key=lambda e: e.file_size)
        for entry in entries:
            info = zipfile.ZipInfo(entry.filename)
            info.compress_type = zipfile.ZIP_DEFLATED
            if entry is not biggest:
                out.writestr(info, src.read(entry), compresslevel=1)
                continue
            chunk = bytes(16 << 20)
            with out.open(info, "w", force_zip64=True) as fh:
                for start in range(0, inflate, len(chunk)):
                    fh.write(chunk[:inflate - start])
    return path
