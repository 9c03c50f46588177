"""The video quality model: R(2+1)D-18 with one output logit (EchoPrime's ``video_quality_model.pt``).

Weights are only ever read with ``torch.load(weights_only=True)``: a weights file is data, and a
file that would need Python code executed to load it is refused with a :class:`WeightsError`.
"""

from __future__ import annotations

import dataclasses
import io
import logging
import numbers
import os
import pickle
import re
import warnings
import zipfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from echoquality_core.files.atomic import write_atomic
from echoquality_core.model.weights_file import (
    WeightsError,
    check_archive,
    check_state,
    split_checkpoint,
)
from echoquality_core.decision import TRAINING_THRESHOLD

log = logging.getLogger(__name__)

CHECKPOINT_FORMAT = "echoquality-v1"
BLOCKS = ("fc", "layer4", "layer3", "layer2", "layer1", "stem")  # trainable blocks, last first
RANDOM_INIT_WARNING = (
    "No weights given: the model starts from random initialisation; "
    "scores will be poor until it is trained"
)


def build_model(
    weights: str | os.PathLike | None = None, device: str | torch.device = "cpu"
) -> nn.Module:
    """R(2+1)D-18 with ``fc = Linear(512, 1)``, loaded from ``weights`` (a path) if given.

    Without weights the model is randomly initialised and a UserWarning (also logged) says so.
    """
    model = _architecture()
    if weights is None:
        warnings.warn(RANDOM_INIT_WARNING, UserWarning, stacklevel=2)
        log.warning(RANDOM_INIT_WARNING)
    else:
        load_weights(model, weights)
    return model.to(resolve_device(device))


def load_model_file(path: str | os.PathLike) -> tuple[nn.Module, dict[str, Any]]:
    """(model on the CPU, the file's extra info) from a weights file or checkpoint, read once and
    without a random initialisation first: the layers are made on the ``meta`` device and take
    the file's tensors as they are (``load_state_dict(assign=True)``). Same files and errors as
    :func:`load_weights`."""
    state, info = read_model_file(path)
    return model_from_state(path, state), info


def _architecture(initialise: bool = True) -> nn.Module:
    """R(2+1)D-18 with one logit: torchvision's ``r2plus1d_18`` with ``fc = Linear(512, 1)``
    (the same weights for a seed; see ``r2plus1d.py``)."""
    from echoquality_core.model.r2plus1d import R2Plus1D18

    model = R2Plus1D18(initialise=initialise)
    model.fc = nn.Linear(512, 1)
    return model


def read_model_file(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """(state dict, extra info) of a weights file or checkpoint, read once; the first half of
    :func:`load_model_file` (the info is known before the model is built)."""
    path = Path(path)
    return _split_checkpoint(path, _read_torch_file(path))


def model_from_state(path: str | os.PathLike, state: dict[str, torch.Tensor]) -> nn.Module:
    """The model holding ``state`` (from :func:`read_model_file` of ``path``, named in errors),
    built without a random initialisation; the second half of :func:`load_model_file`."""
    path = Path(path)
    with torch.device("meta"):
        model = _architecture(initialise=False)  # the file's tensors replace every value
    expected = model.state_dict()
    _check_state_matches(path, state, expected)
    _check_finite(path, state)
    state = {k: v.float() if v.is_floating_point() else v for k, v in state.items()}
    for key in expected:  # counters older files lack
        state.setdefault(key, torch.zeros((), dtype=torch.long))
    model.load_state_dict(state, assign=True)
    return model


def load_weights(model: nn.Module, path: str | os.PathLike) -> dict[str, Any]:
    """Load weights into ``model`` in place and return the file's extra info ({} if none).

    Accepted: a plain state dict (EchoPrime's ``video_quality_model.pt``), the same with a
    DataParallel ``module.`` prefix, a checkpoint dict holding ``model_state_dict`` or
    ``state_dict``, and our own ``echoquality-v1`` checkpoints (whose ``threshold``,
    ``preprocess``, ``config``... come back in the returned dict).
    Raises :class:`WeightsError` for anything else, saying what is wrong.
    """
    path = Path(path)
    data = _read_torch_file(path)
    state, info = _split_checkpoint(path, data)
    target = _unwrap(model)
    _check_state_matches(path, state, target.state_dict())
    _check_finite(path, state)
    target.load_state_dict(state, strict=False)  # only num_batches_tracked counters may be absent
    return info


def _check_finite(path: Path, state: Mapping[str, torch.Tensor]) -> None:
    """WeightsError naming the first tensor holding NaN or infinity (a diverged training).

    One sum per tensor first (a NaN or infinity makes its sum non-finite; ~15x faster than
    ``isfinite`` over 33 M weights); only when a sum is not finite (possibly an overflow of
    finite values) are the tensors searched element by element."""
    floats = [t for t in state.values() if t.is_floating_point() and t.numel()]
    if not floats or bool(torch.isfinite(torch.stack([t.sum().float() for t in floats])).all()):
        return
    for name, tensor in state.items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise WeightsError(path, f"the weights {name} hold NaN or infinite values (the "
                                     f"training diverged?); this model cannot score")


def _read_torch_file(path: Path, new_head: bool = False) -> Any:
    """What ``torch.load(weights_only=True)`` reads from ``path``, after ``check_archive``
    (``new_head``: a backbone, its head not compared); WeightsError otherwise."""
    if not path.exists():
        raise WeightsError(path, f"file not found ({path})")
    if not path.is_file():
        raise WeightsError(path, f"not a file ({path})")
    try:
        check_archive(path, new_head=new_head)  # before anything is decompressed
    except (OSError, zipfile.BadZipFile) as exc:
        raise WeightsError(path, f"not a PyTorch weights file or unreadable ({exc})") from exc
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        text = str(exc)
        if "Weights only load failed" not in text:
            raise WeightsError(path, f"not a PyTorch weights file ({exc})") from exc
        found = re.search(r"GLOBAL (\S+)", text)
        what = f" (it refers to the Python object {found.group(1)})" if found else ""
        raise WeightsError(
            path,
            "this file contains pickled Python objects, not just weights"
            f"{what}; loading it would mean running code from the file, which we refuse to do. "
            "Re-save only the model's state dict (torch.save(model.state_dict(), path)).",
        ) from exc
    except (OSError, EOFError, RuntimeError, KeyError, IndexError, ValueError, TypeError) as exc:
        detail = f"{type(exc).__name__}: {exc}".strip().rstrip(":")
        raise WeightsError(path, f"not a PyTorch weights file or unreadable ({detail})") from exc


def _split_checkpoint(path: Path, data: Any) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """(state dict without 'module.' prefixes, extra info) from whatever torch.load returned."""
    return split_checkpoint(path, data, lambda value: isinstance(value, torch.Tensor))


def _check_state_matches(
    path: Path, state: Mapping[str, torch.Tensor], expected: Mapping[str, torch.Tensor]
) -> None:
    check_state(path, {k: tuple(v.shape) for k, v in state.items()},
                {k: tuple(v.shape) for k, v in expected.items()})


def _unwrap(model: nn.Module) -> nn.Module:
    """The model inside a DataParallel / DistributedDataParallel wrapper."""
    return model.module if isinstance(getattr(model, "module", None), nn.Module) else model


def freeze_model_except_final_layers(model: nn.Module, num_layers_to_train: int = 2) -> list[str]:
    """Train only the last ``num_layers_to_train`` blocks; return their names, last first.

    Blocks are counted from the end over ``fc, layer4, layer3, layer2, layer1, stem``:
    1 trains fc only, 2 fc + layer4, ..., 6 everything; 0 freezes the whole model (for
    progressive schedules that then call :func:`unfreeze`).

    Difference from the original training script: it counted ``avgpool`` as a block although
    it has no parameters, so its "2" trained only ``fc``. Here every counted block has weights,
    so "2" really trains two blocks (fc and layer4); the old "2" is our 1.
    """
    n = num_layers_to_train
    if isinstance(n, bool) or not isinstance(n, numbers.Real) or n != int(n) \
            or not 0 <= n <= len(BLOCKS):
        raise ValueError(
            f"num_layers_to_train must be 0..{len(BLOCKS)} (blocks counted from the end: "
            f"{', '.join(BLOCKS)}), got {num_layers_to_train!r}"
        )
    for param in model.parameters():
        param.requires_grad = False
    names = list(BLOCKS[: int(n)])
    unfreeze(model, names)
    return names


def unfreeze(model: nn.Module, names: Iterable[str]) -> None:
    """Make the named blocks (any of ``fc, layer4, layer3, layer2, layer1, stem``) trainable."""
    target = _unwrap(model)
    for name in names:
        if name not in BLOCKS:
            raise ValueError(f"unknown block {name!r}; choose from {', '.join(BLOCKS)}")
        for param in getattr(target, name).parameters():
            param.requires_grad = True


def parse_unfreeze_schedule(spec: str) -> dict[int, list[str]]:
    """``"fc@0,layer4@3,layer3@6"`` -> ``{0: ['fc'], 3: ['layer4'], 6: ['layer3']}``.

    Each item is ``block@epoch`` (epochs 0-based): the block becomes trainable at the start of
    that epoch. An empty spec means no schedule.
    """
    schedule: dict[int, list[str]] = {}
    seen: set[str] = set()
    for item in (part.strip() for part in spec.split(",")) if spec.strip() else ():
        block, at, epoch_text = item.partition("@")
        block, epoch_text = block.strip(), epoch_text.strip()
        example = "expected block@epoch, e.g. 'fc@0,layer4@3,layer3@6'"
        if not at or not block or not epoch_text:
            raise ValueError(f"unfreeze schedule item {item!r}: {example}")
        if block not in BLOCKS:
            raise ValueError(
                f"unfreeze schedule item {item!r}: unknown block {block!r}; "
                f"choose from {', '.join(BLOCKS)}"
            )
        if not epoch_text.isdigit():
            raise ValueError(
                f"unfreeze schedule item {item!r}: epoch must be a whole number >= 0, "
                f"got {epoch_text!r}"
            )
        if block in seen:
            raise ValueError(f"unfreeze schedule names {block!r} more than once")
        seen.add(block)
        schedule.setdefault(int(epoch_text), []).append(block)
    return dict(sorted(schedule.items()))


def save_checkpoint(model: nn.Module, path: str | os.PathLike, **info: Any) -> Path:
    """Write ``{'format': 'echoquality-v1', 'model_state_dict', 'threshold', 'preprocess', **info}``.

    Atomic (temporary file in the same folder, then ``os.replace``); the state dict has no
    ``module.`` prefix and every value is a tensor or plain Python data (paths become strings,
    dataclasses dicts), so :func:`load_weights` reads it with ``weights_only=True``.
    """
    path = Path(path)
    info.setdefault("threshold", TRAINING_THRESHOLD)
    info.setdefault("preprocess", None)
    extra = {key: _plain(value, key) for key, value in info.items()}
    state = {
        k.removeprefix("module."): v.detach().cpu().clone() for k, v in model.state_dict().items()
    }
    checkpoint = {"format": CHECKPOINT_FORMAT, "model_state_dict": state, **extra}
    path.parent.mkdir(parents=True, exist_ok=True)
    save_torch_atomic(checkpoint, path)
    return path


def save_torch_atomic(data: Any, path: str | os.PathLike) -> None:
    """``torch.save`` all or nothing: serialised in memory first, so that a full disk raises
    ``atomic.DiskFullError`` ("disk full: ...") rather than a torch-internal error, and leaves
    the old file (or none)."""
    buffer = io.BytesIO()
    torch.save(data, buffer)
    write_atomic(path, buffer.getbuffer())


def _plain(value: Any, key: str) -> Any:
    """``value`` as data that ``torch.load(weights_only=True)`` accepts."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, torch.Tensor):
        return value.detach().cpu()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return torch.from_numpy(value.copy())
    if isinstance(value, os.PathLike):
        return str(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _plain(dataclasses.asdict(value), key)
    if isinstance(value, Mapping):
        return {str(k): _plain(v, f"{key}.{k}") for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v, key) for v in value]
    raise TypeError(
        f"checkpoint info {key!r}: a {type(value).__name__} cannot be stored as plain data"
    )


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"`` -> cuda if available else cpu; ``"cpu"``, ``"cuda"``, ``"cuda:N"``, ``"mps"``.

    Asking for a device this machine does not have raises ValueError saying so.
    """
    if isinstance(device, str) and device.strip().lower() == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device.strip() if isinstance(device, str) else device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(
            f"unknown device {device!r}; use 'auto', 'cpu', 'cuda' or 'cuda:N'"
        ) from exc
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(
                f"device {device!r} requested but CUDA is not available on this machine "
                "(no NVIDIA GPU, or torch was installed without CUDA); use 'cpu' or 'auto'"
            )
        count = torch.cuda.device_count()
        if dev.index is not None and dev.index >= count:
            raise ValueError(f"device {device!r} requested but only {count} CUDA device(s) exist")
    elif dev.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"device {device!r} requested but Apple MPS is not available")
    return dev


def model_summary(model: nn.Module) -> dict[str, Any]:
    """Parameter counts and which blocks train: {'n_params', 'n_trainable', 'trainable_blocks'}."""
    target = _unwrap(model)
    params = list(target.parameters())
    trainable = [
        name for name in BLOCKS
        if hasattr(target, name)
        and any(p.requires_grad for p in getattr(target, name).parameters())
    ]
    return {
        "n_params": sum(p.numel() for p in params),
        "n_trainable": sum(p.numel() for p in params if p.requires_grad),
        "trainable_blocks": trainable,
    }
