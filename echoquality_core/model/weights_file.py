"""What a PyTorch weights file holds (keys and tensor shapes), read in milliseconds without torch.

``torch.save`` writes a zip whose ``data.pkl`` describes every tensor (its shape, and where its
bytes are) separately from the bytes themselves. :func:`read_shapes` unpickles only that
description with an allowlist as strict as ``torch.load(weights_only=True)``'s (an ordered dict,
tensors and their storages; anything else is refused, so nothing from the file is ever run) and
never reads the tensor bytes. This lets ``echoquality train`` refuse a wrong file before torch is
even imported. Files in torch's legacy (non-zip) format return ``None``: the caller then checks
them with ``torch.load(weights_only=True)``.

:func:`check_archive` reads the zip's own directory and that description before torch touches
the file: every tensor's declared shape against the network, and every stored entry's size
against the storage it declares, so a small file that would inflate to gigabytes (a "zip bomb")
is refused before anything is decompressed.

:func:`expected_shapes` is the state dict of our model (torchvision's R(2+1)D-18 with a
one-logit head), computed from the architecture; a test compares it with the real model.
"""
from __future__ import annotations

import collections
import dataclasses
import io
import math
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
_MAX_PICKLE = 16 << 20  # data.pkl: the description of the tensors, a few kB for our model
_MAX_OTHER = 1 << 20  # version, byteorder, ...: a few bytes each
_ITEM_SIZES = {"Double": 8, "Float": 4, "Half": 2, "BFloat16": 2, "Long": 8, "Int": 4,
               "Short": 2, "Char": 1, "Byte": 1, "Bool": 1, "ComplexDouble": 16,
               "ComplexFloat": 8, "UntypedStorage": 1}


class WeightsError(ValueError):
    """A file that is not usable weights for this model; ``str(e) == f"{path.name}: {reason}"``."""

    def __init__(self, path: str | os.PathLike, reason: str):
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"{self.path.name}: {reason}")


class Shape(tuple):
    """A tensor's shape, standing in for the tensor in what :func:`read_shapes` returns;
    ``storage`` is the :class:`StorageRef` it views (None where the file did not say)."""

    storage: StorageRef | None = None
    end: int = 0  # elements of the storage the tensor reaches (offset + extent)


@dataclasses.dataclass(frozen=True)
class StorageRef:
    """A storage as data.pkl declares it: its zip record ``key`` and size in bytes
    (``item_size`` 0: a dtype not known here, size unknown)."""

    key: str
    nbytes: int
    item_size: int
    kind: str = ""  # "Float", "BFloat16", "Long", ...


class ForeignObject(pickle.UnpicklingError):
    """The file pickles a Python object other than tensors and plain data (``.name``)."""

    def __init__(self, name: str):
        super().__init__(f"GLOBAL {name}")
        self.name = name


def _shape(storage: Any, offset: Any, size: Any, *rest: Any) -> Shape:
    shape = Shape(int(n) for n in size)
    if isinstance(storage, StorageRef):
        stride = rest[0] if rest and isinstance(rest[0], tuple) else None
        if not all(int(n) for n in size):
            extent = 0
        elif stride is None or len(stride) != len(size):
            extent = math.prod(shape)  # contiguous
        else:
            extent = 1 + sum((int(n) - 1) * int(k) for n, k in zip(size, stride, strict=True))
        shape.storage, shape.end = storage, int(offset) + extent
    return shape


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
        """A tensor's bytes are never read: ("storage", type, key, location, numel) becomes a
        :class:`StorageRef`."""
        if isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage":
            kind = str(pid[1]).removesuffix("Storage")
            size = _ITEM_SIZES.get(kind, _ITEM_SIZES.get(str(pid[1]), 0))
            return StorageRef(str(pid[2]), int(pid[4]) * size, size, kind)
        return None


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
            description = archive.getinfo(min(names, key=len))
            if description.file_size > _MAX_PICKLE:
                raise ValueError(f"its data.pkl inflates to {description.file_size:,} bytes")
            return _Unpickler(io.BytesIO(archive.read(description))).load()
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


def check_archive(path: str | os.PathLike, *, new_head: bool = False) -> None:
    """Raise :class:`WeightsError` for a torch zip file that does not describe our network (but
    for the head when ``new_head``: a backbone whose head we replace), or
    whose stored records are not the sizes they declare (a compressed record inflating to more
    than its tensor needs), reading only the zip directory and data.pkl: milliseconds, and no
    tensor is decompressed. Where data.pkl cannot be read here (pickled objects, not a torch
    file) only records inflating over 100x are refused; those files and the legacy format are
    left to ``torch.load(weights_only=True)`` and its messages."""
    path = Path(path)
    if not zipfile.is_zipfile(path):
        return
    with zipfile.ZipFile(path) as archive:
        entries = archive.infolist()
        pickles = [e for e in entries if e.filename.endswith("data.pkl")]
        if not pickles:
            return
        description = min(pickles, key=lambda e: len(e.filename))
        if description.file_size > _MAX_PICKLE:
            raise WeightsError(path, f"its tensor description inflates to "
                               f"{description.file_size:,} bytes; not a weights file")
        try:
            data = _Unpickler(io.BytesIO(archive.read(description))).load()
        except Exception:  # noqa: BLE001 (torch.load says what is wrong with it)
            data = None
    if data is None:  # sizes unknown: torch.save stores records plain, a bomb deflates them
        for entry in entries:
            if entry.file_size > max(_MAX_OTHER, 100 * entry.compress_size):
                raise WeightsError(path, f"the record {entry.filename} inflates to "
                                   f"{entry.file_size:,} bytes from {entry.compress_size:,}; "
                                   "torch.save does not compress, so not a weights file")
        return
    storages = _storages(data)
    prefix = description.filename.removesuffix("data.pkl")
    for entry in entries:
        key = entry.filename.removeprefix(prefix + "data/") \
            if entry.filename.startswith(prefix + "data/") else None
        declared = storages[key].nbytes if key in storages else None
        if declared is not None and not storages[key].item_size:
            continue  # a dtype this check does not know: its size is torch.load's to check
        if declared is None and entry is not description and entry.file_size > _MAX_OTHER:
            raise WeightsError(path, f"the record {entry.filename} inflates to "
                               f"{entry.file_size:,} bytes that no tensor declares; "
                               "not a weights file")
        if declared is not None and entry.file_size != declared:
            raise WeightsError(path, f"the record {entry.filename} inflates to "
                               f"{entry.file_size:,} bytes but its tensor declares {declared:,}; "
                               "a damaged or forged file")
    _check_declared(path, data, new_head)


# float formats: (numpy float type or None, same-size integer, exponent bits: all set = NaN/inf)
_NOT_FINITE = {"Float": ("<f4", "<u4", 0x7F800000), "Double": ("<f8", "<u8", 0x7FF0000000000000),
               "Half": ("<f2", "<u2", 0x7C00), "BFloat16": (None, "<u2", 0x7F80)}


def check_finite(path: str | os.PathLike, state: Mapping[str, Any]) -> None:
    """Raise :class:`WeightsError` naming the first tensor of ``state`` (a state dict of
    :class:`Shape` from a torch zip file) holding NaN or infinity (a diverged training): its
    records are read one at a time with numpy, without torch (~0.3 s for our model): a sum
    per record first (NaN or infinity make it non-finite), the exponent bits only where it is
    not finite (possibly an overflow of finite values) or numpy has no such float."""
    import numpy as np

    path = Path(path)
    with zipfile.ZipFile(path) as archive:
        prefix = min((n for n in archive.namelist() if n.endswith("data.pkl")),
                     key=len).removesuffix("data.pkl")
        for name, shape in state.items():
            ref = shape.storage if isinstance(shape, Shape) else None
            if ref is None or ref.kind not in _NOT_FINITE:
                continue
            floats, ints, exponent = _NOT_FINITE[ref.kind]
            raw = archive.read(f"{prefix}data/{ref.key}")
            if floats is not None and np.isfinite(np.frombuffer(raw, dtype=floats).sum()):
                continue
            bits = np.frombuffer(raw, dtype=ints)
            if np.any((bits & np.asarray(exponent, dtype=ints)) == exponent):
                raise WeightsError(path, f"the weights {name} hold NaN or infinite values (the "
                                         "training diverged?); this model cannot score")


def _storages(data: Any) -> dict[str, StorageRef]:
    """The storages (by key) that the tensors anywhere in ``data`` view."""
    return {s.storage.key: s.storage for s in _shapes(data) if s.storage is not None}


def _check_declared(path: Path, data: Any, new_head: bool) -> None:
    """The state dict's shapes against the network (a backbone's head only bounded in size),
    no storage larger than the tensors viewing it reach, and tensors outside the state
    dict (an optimizer's state) no bigger than four fp32 copies of the network."""
    try:
        state, info = split_checkpoint(path, data, lambda value: isinstance(value, Shape))
    except WeightsError:
        return  # not a state dict: torch.load's reading says so
    expected = expected_shapes()
    check_state(path, state, expected, ignore=("fc.",) if new_head else ())
    head = sum(math.prod(v) for k, v in state.items() if k.startswith("fc."))
    if head > 1000 * 513:
        raise WeightsError(path, f"its head holds {head:,} values; not weights for this model")
    reach: dict[str, int] = {}
    for shape in _shapes(data):
        if shape.storage is not None:
            key = shape.storage.key
            reach[key] = max(reach.get(key, 0), shape.end * shape.storage.item_size)
    for ref in _storages(data).values():
        if ref.nbytes > reach.get(ref.key, 0) + _MAX_OTHER:
            raise WeightsError(path, f"a tensor's storage declares {ref.nbytes:,} bytes, far more "
                               "than its tensors use; not a weights file")
    extra = sum(math.prod(s) * (s.storage.item_size if s.storage else 4)
                for s in _shapes(info))
    budget = 16 * sum(math.prod(v) for v in expected.values())  # e.g. an AMSGrad state, fp32
    if extra > budget:
        raise WeightsError(path, f"besides the weights it holds {extra:,} bytes of other tensors, "
                           "several times the network; not a checkpoint of this model")


def _shapes(data: Any) -> Iterable[Shape]:
    if isinstance(data, Shape):
        yield data
    elif isinstance(data, Mapping):
        for value in data.values():
            yield from _shapes(value)
    elif isinstance(data, (list, tuple)):
        for value in data:
            yield from _shapes(value)


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
