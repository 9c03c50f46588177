"""What a PyTorch weights file holds (keys and tensor shapes), read in milliseconds without torch.

``torch.save`` writes a zip whose ``data.pkl`` describes every tensor (its shape, and where its
bytes are) separately from the bytes themselves. :func:`read_shapes` unpickles only that
description with an allowlist as strict as ``torch.load(weights_only=True)``'s (an ordered dict,
tensors and their storages; anything else is refused, so nothing from the file is ever run) and
never reads the tensor bytes. This lets ``echoquality train`` refuse a wrong file before torch is
even imported. Files in torch's legacy (non-zip) format return ``None``: the caller then checks
them with ``torch.load(weights_only=True)``.

:func:`expected_shapes` is the state dict of our model (torchvision's R(2+1)D-18 with a
one-logit head), computed from the architecture; a test compares it with the real model.
"""
from __future__ import annotations

import collections
import io
import os
import pickle
import zipfile
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

_STATE_KEYS = ("model_state_dict", "state_dict")
_SHOWN = 5  # how many offending keys an error message lists
_TORCH_MAGIC = 0x1950A86A20F9469CFC6C  # first object of a legacy torch.save file
_TENSOR_BUILDERS = {"_rebuild_tensor_v2", "_rebuild_tensor", "_rebuild_parameter"}


class WeightsError(ValueError):
    """A file that is not usable weights for this model; ``str(e) == f"{path.name}: {reason}"``."""

    def __init__(self, path: str | os.PathLike, reason: str):
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"{self.path.name}: {reason}")


class Shape(tuple):
    """A tensor's shape, standing in for the tensor in what :func:`read_shapes` returns."""


class ForeignObject(pickle.UnpicklingError):
    """The file pickles a Python object other than tensors and plain data (``.name``)."""

    def __init__(self, name: str):
        super().__init__(f"GLOBAL {name}")
        self.name = name


def _shape(storage: Any, offset: Any, size: Any, *rest: Any) -> Shape:
    return Shape(int(n) for n in size)


def _parameter(data: Any, *rest: Any) -> Any:
    return data


class _Unpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        if module == "torch._utils" and name in _TENSOR_BUILDERS:
            return _parameter if name == "_rebuild_parameter" else _shape
        if module == "torch" and name.endswith("Storage"):
            return name
        raise ForeignObject(f"{module}.{name}")

    def persistent_load(self, pid: Any) -> Any:
        return None  # a tensor's bytes: never read


def read_shapes(path: str | os.PathLike) -> Any:
    """The object a weights file holds, with each tensor replaced by its :class:`Shape`;
    ``None`` for torch's legacy format. Raises :class:`ForeignObject` for pickled Python
    objects, ``ValueError`` for a file that is not a PyTorch file at all, ``OSError``."""
    path = Path(path)
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            names = [n for n in archive.namelist() if n.endswith("data.pkl")]
            if not names:
                raise ValueError("a zip file without data.pkl, not saved by torch.save")
            return _Unpickler(io.BytesIO(archive.read(min(names, key=len)))).load()
    with open(path, "rb") as fh:
        try:
            first = _Unpickler(fh).load()
        except ForeignObject:
            raise
        except Exception as exc:  # noqa: BLE001 (any unpickling failure: not a torch file)
            raise ValueError(f"not a PyTorch file ({type(exc).__name__})") from exc
    if first != _TORCH_MAGIC:
        raise ValueError("a plain Python pickle, not a file saved by torch.save")
    return None


def _bn(prefix: str, n: int) -> dict[str, tuple[int, ...]]:
    return {f"{prefix}.{k}": (n,) for k in ("weight", "bias", "running_mean", "running_var")} \
        | {f"{prefix}.num_batches_tracked": ()}


def _conv2plus1d(prefix: str, cin: int, cout: int, mid: int) -> dict[str, tuple[int, ...]]:
    return {f"{prefix}.0.weight": (mid, cin, 1, 3, 3), **_bn(f"{prefix}.1", mid),
            f"{prefix}.3.weight": (cout, mid, 3, 1, 1)}


def expected_shapes(n_outputs: int = 1) -> dict[str, tuple[int, ...]]:
    """Keys and shapes of torchvision's ``r2plus1d_18`` state dict with ``fc = Linear(512,
    n_outputs)``, in the model's order."""
    shapes = {"stem.0.weight": (45, 3, 1, 7, 7), **_bn("stem.1", 45),
              "stem.3.weight": (64, 45, 3, 1, 1), **_bn("stem.4", 64)}
    cin = 64
    for layer, planes in enumerate((64, 128, 256, 512), start=1):
        for block in range(2):
            p = f"layer{layer}.{block}"
            mid = (cin * planes * 27) // (cin * 9 + 3 * planes)
            shapes |= _conv2plus1d(f"{p}.conv1.0", cin, planes, mid) | _bn(f"{p}.conv1.1", planes)
            shapes |= _conv2plus1d(f"{p}.conv2.0", planes, planes, mid)
            shapes |= _bn(f"{p}.conv2.1", planes)
            if block == 0 and layer > 1:
                shapes |= {f"{p}.downsample.0.weight": (planes, cin, 1, 1, 1),
                           **_bn(f"{p}.downsample.1", planes)}
            cin = planes
    return shapes | {"fc.weight": (n_outputs, 512), "fc.bias": (n_outputs,)}


def split_checkpoint(
    path: Path, data: Any, is_tensor: Callable[[Any], bool]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """(state dict without 'module.' prefixes, extra info) from what a weights file holds: a
    plain state dict, or a dict with a ``model_state_dict`` / ``state_dict`` entry."""
    if not isinstance(data, Mapping):
        raise WeightsError(path, f"expected a dict of weights, found a {type(data).__name__}")
    info: dict[str, Any] = {}
    state = data
    for key in _STATE_KEYS:
        if isinstance(data.get(key), Mapping):
            state = data[key]
            info = {k: v for k, v in data.items() if k not in _STATE_KEYS}
            break
    not_tensors = [str(k) for k, v in state.items() if not is_tensor(v)]
    if not_tensors or not state:
        found = f"{few(not_tensors)} are not tensors" if not_tensors else "it is empty"
        raise WeightsError(
            path,
            "no model state dict found: expected parameter tensors (or a 'model_state_dict' "
            f"entry), but {found}",
        )
    return {str(k).removeprefix("module."): v for k, v in state.items()}, info


def check_state(
    path: Path, shapes: Mapping[str, tuple[int, ...]], expected: Mapping[str, tuple[int, ...]],
    *, ignore: Iterable[str] = (),
) -> None:
    """Raise :class:`WeightsError` naming the first unexpected, missing or mis-shaped keys of
    ``shapes`` (a state dict's key -> shape) against ``expected``; keys starting with a prefix
    in ``ignore`` are not compared (e.g. the head a backbone's weights replace)."""
    skip = tuple(ignore)
    shapes = {k: tuple(v) for k, v in shapes.items() if not (skip and k.startswith(skip))}
    expected = {k: tuple(v) for k, v in expected.items() if not (skip and k.startswith(skip))}
    unexpected = [k for k in shapes if k not in expected]
    missing = [k for k in expected if k not in shapes and not k.endswith("num_batches_tracked")]
    wrong = [f"{k} expected {expected[k]} got {v}" for k, v in shapes.items()
             if k in expected and v != expected[k]]
    problems = [f"{len(items)} {what}: {few(items)}" for what, items in (
        ("unexpected key(s)", unexpected), ("missing key(s)", missing),
        ("shape mismatch(es)", wrong)) if items]
    if problems:
        raise WeightsError(
            path,
            "not weights for this model (R(2+1)D-18 with fc = Linear(512, 1)): "
            + "; ".join(problems),
        )


def few(items: list[str]) -> str:
    """The first few items, and how many more."""
    shown = ", ".join(items[:_SHOWN])
    return shown + (f", ... ({len(items) - _SHOWN} more)" if len(items) > _SHOWN else "")
