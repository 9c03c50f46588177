"""What kind of model file a path is, without importing torch (the window asks before loading):
an export (TorchScript or torch.export: a program, loading it may run code) or weights/a
checkpoint (data only)."""
from __future__ import annotations

import os
import zipfile
from pathlib import Path

TORCHSCRIPT_FILE = "model.ts.pt"
EXPORT_FILE = "model.pt2"  # torch.export program
INFO_FILE = "model_info.json"


def is_torchscript(path: str | os.PathLike) -> bool:
    """True for a TorchScript archive (a zip holding ``code/`` and ``constants.pkl``)."""
    path = Path(path)
    if not path.is_file() or not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
    return any(n.endswith("constants.pkl") for n in names) and any("/code/" in n for n in names)


def is_export(path: str | os.PathLike) -> bool:
    """True for an export: its folder, its TorchScript file or its torch.export ``.pt2`` file
    (torch.export.load falls back to unpickling with code when its tensors need it)."""
    path = Path(path)
    return path.is_dir() or path.suffix == ".pt2" or is_torchscript(path)
