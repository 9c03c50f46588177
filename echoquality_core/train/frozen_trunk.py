"""Compute the frozen trunk once per clip: with the defaults (``num_unfrozen_layers = 2``, no
augmentation) every epoch would rerun stem…layer3 on every clip although their output cannot
change: their weights are frozen, their BatchNorm is in eval mode and the clip is the same.

:class:`TrunkFeatures` computes the output of the frozen blocks below the first trainable one
(the *trunk*) once per clip and hands a :class:`Head` (the blocks above it, the same module
objects) loaders of those outputs instead of videos, for training, validation and the final
test alike. The outputs are keyed by the clip's digest and preprocessing settings (the
``ClipCache`` entry name), the trunk's blocks, a hash of their weights and buffers, and the
precision and memory format; they are kept in memory up to ``memory_bytes`` (least recently
used first out) and spilled to ``<cache folder>/trunk`` beyond that (at most ``DISK_BYTES``
there, the least recently used pruned first). When progressive unfreezing makes a trunk block
trainable the boundary moves down and the blocks below it are computed anew (the key changes);
with no frozen block below the trainable ones the full forward runs.

It is off when a clip's input changes between epochs: with augmentation or synthetic pairs
(``config.off_reason``, which the duration estimate follows too).
"""
from __future__ import annotations

import contextlib
import hashlib
import logging
import pickle
from collections import OrderedDict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn

from echoquality_core.data.clips import ClipCache
from echoquality_core.files.atomic import atomic_write
from echoquality_core.model.interrupt import Interrupted, interruptible
from echoquality_core.model.network import _unwrap
from echoquality_core.model.precision import autocast, channels_last, dtype_name, training_dtype
from echoquality_core.train.config import off_reason

log = logging.getLogger(__name__)

TRUNK_BLOCKS = ("stem", "layer1", "layer2", "layer3", "layer4")  # forward order
MEMORY_BYTES = 1 << 30  # outputs kept in memory before spilling to disk
DISK_BYTES = 8 << 30  # spilled outputs kept on disk; the least recently used go first


def setup_message(config: Any, model: nn.Module, device: torch.device, folder: Path,
                  clips: ClipCache, off: str | None = None
                  ) -> tuple[TrunkFeatures | None, dict[str, str], str]:
    """(the run's :class:`TrunkFeatures` or None, MLflow params, one status line) for the
    precision and the frozen-trunk cache of a run; ``off`` turns the cache off for that
    reason."""
    dtype, precision = training_dtype(device, config.amp)
    off = off or off_reason(config)
    trunk = frozen_blocks(model)
    if off is None and not trunk:  # unfreezing only ever moves the boundary down
        off = "no frozen block below the trainable ones"
    if off is None:
        cache = f"on ({', '.join(trunk)} computed once per clip)"
        features = TrunkFeatures(folder, clips, device, dtype)
    else:
        cache, features = f"off: {off}", None
    return (features, {"precision": dtype_name(dtype), "frozen_trunk": cache[:250]},
            f"Precision {precision}; frozen-trunk cache {cache}.")


def frozen_blocks(model: nn.Module) -> list[str]:
    """The blocks below the first trainable one (``stem``, ``layer1``, …) whose parameters are
    all frozen: the trunk that can be computed once."""
    target = _unwrap(model)
    found: list[str] = []
    for name in TRUNK_BLOCKS:
        if any(p.requires_grad for p in getattr(target, name).parameters()):
            break
        found.append(name)
    return found


class Head(nn.Module):
    """The blocks of ``model`` after ``trunk`` (the same module objects, so training the head
    trains the model): trunk output -> logits."""

    def __init__(self, model: nn.Module, trunk: list[str]):
        super().__init__()
        target = _unwrap(model)
        self.names = [n for n in TRUNK_BLOCKS if n not in trunk] + ["avgpool", "fc"]
        for name in self.names:
            self.add_module(name, getattr(target, name))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for name in self.names:
            x = getattr(self, name)(x)
            if name == "avgpool":
                x = x.flatten(1)
        return x


class MemoryThenDisk:
    """Tensors by key: in memory up to ``memory_bytes`` (least recently used evicted first),
    evicted ones written to ``folder`` and read back from there."""

    def __init__(self, folder: Path, memory_bytes: int = MEMORY_BYTES,
                 disk_bytes: int = DISK_BYTES):
        self.folder = Path(folder)
        self.memory_bytes = memory_bytes
        self.disk_bytes = disk_bytes
        self.used = 0
        self.spilled = 0
        self._memory: OrderedDict[str, torch.Tensor] = OrderedDict()
        self.prune()

    def prune(self) -> int:
        """Delete the least recently used spilled outputs (file times; a read touches its file)
        until those left take at most ``disk_bytes``: outputs of earlier starting weights or
        settings are never asked for again. Returns the number deleted."""
        try:
            files = [(f.stat().st_mtime, f.stat().st_size, f) for f in self.folder.glob("*.pt")]
        except OSError:
            return 0
        total, deleted = sum(size for _, size, _ in files), 0
        for _, size, path in sorted(files, key=lambda entry: entry[0]):
            if total <= self.disk_bytes:
                break
            path.unlink(missing_ok=True)
            total, deleted = total - size, deleted + 1
        return deleted

    def get(self, key: str) -> torch.Tensor | None:
        if key in self._memory:
            self._memory.move_to_end(key)
            return self._memory[key]
        path = self.folder / f"{key}.pt"
        if not path.is_file():
            return None
        try:
            tensor = torch.load(path, map_location="cpu", weights_only=True)
        except (OSError, RuntimeError, EOFError, ValueError, IndexError, KeyError,
                pickle.UnpicklingError) as exc:  # a torn or foreign file: compute it again
            log.warning("trunk cache entry %s unreadable (%s); computing it again", path.name, exc)
            return None
        with contextlib.suppress(OSError):
            path.touch()  # recently used: pruned last
        self.put(key, tensor)
        return tensor

    def put(self, key: str, tensor: torch.Tensor) -> None:
        if key in self._memory:
            return
        self._memory[key] = tensor
        self.used += tensor.nbytes
        while self.used > self.memory_bytes and len(self._memory) > 1:
            old_key, old = self._memory.popitem(last=False)
            self.used -= old.nbytes
            self._spill(old_key, old)

    def clear(self) -> None:
        """Forget what is in memory (entries on disk stay: their keys still hold)."""
        self._memory.clear()
        self.used = 0

    def _spill(self, key: str, tensor: torch.Tensor) -> None:
        path = self.folder / f"{key}.pt"
        if path.is_file():
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        with atomic_write(path) as fh:
            torch.save(tensor, fh)
        self.spilled += 1


def weights_hash(model: nn.Module, blocks: list[str]) -> str:
    """SHA-1 over the parameters and buffers of ``blocks`` (names, shapes and values)."""
    target = _unwrap(model)
    sha = hashlib.sha1()
    for name in blocks:
        for key, tensor in getattr(target, name).state_dict().items():
            value = tensor.detach().cpu().contiguous()
            sha.update(f"{name}.{key}{tuple(value.shape)}{value.dtype}".encode())
            sha.update(value.reshape(-1).view(torch.uint8).numpy().tobytes())
    return sha.hexdigest()


class TrunkFeatures:
    """The frozen trunk's outputs of a run's clips, computed once (see the module docstring).

    ``hits`` and ``computed`` count clips served from the cache and clips run through the
    trunk.
    """

    def __init__(self, folder: str | Path, clips: ClipCache, device: torch.device,
                 dtype: torch.dtype | None, memory_bytes: int = MEMORY_BYTES):
        self.store = MemoryThenDisk(Path(folder), memory_bytes)
        self.clips = clips
        self.device = device
        self.dtype = dtype
        self.hits = 0
        self.computed = 0
        self._boundary: tuple[str, ...] = ()
        self._hash: tuple[Any, str] | None = None

    def wrap(self, model: nn.Module, loader: Any,
             should_stop: Callable[[], bool] | None = None) -> tuple[nn.Module, Any]:
        """(network, loader) to run instead of (``model``, ``loader``): the :class:`Head` and a
        loader of trunk outputs when ``model`` has frozen blocks below its trainable ones, else
        the two unchanged. ``loader`` yields (videos, labels, paths) batches."""
        trunk = frozen_blocks(model)
        if not trunk:
            return model, loader
        if tuple(trunk) != self._boundary:  # unfreezing moved the boundary: old outputs are stale
            self.store.clear()
            self._boundary = tuple(trunk)
        cl3d = channels_last(self.device, self.dtype, training=True)
        layout = "cl3d" if cl3d else "contiguous"
        prefix = f"{'+'.join(trunk)}|{self._weights_hash(model, trunk)}|{self.dtype}|{layout}"
        return Head(model, trunk), _TrunkLoader(self, model, trunk, prefix, loader, should_stop)

    def _weights_hash(self, model: nn.Module, trunk: list[str]) -> str:
        """Memoised by the tensors' identities and versions (an in-place change, e.g. loading
        the best checkpoint, bumps a version)."""
        target = _unwrap(model)
        tensors = [t for name in trunk
                   for t in getattr(target, name).state_dict(keep_vars=True).values()]
        stamp = tuple((id(t), t._version) for t in tensors)
        if self._hash is None or self._hash[0] != stamp:
            self._hash = (stamp, weights_hash(model, trunk))
        return self._hash[1]

    def features(self, model: nn.Module, trunk: list[str], prefix: str, videos: torch.Tensor,
                 paths: list[str], should_stop: Callable[[], bool] | None) -> torch.Tensor:
        """The trunk outputs (float32, on the device) of a batch; the missing ones computed."""
        keys = [hashlib.sha1(f"{self.clips.entry(p).stem}|{prefix}".encode()).hexdigest()
                for p in paths]
        found = [self.store.get(k) for k in keys]
        missing = [i for i, f in enumerate(found) if f is None]
        self.hits += len(keys) - len(missing)
        if missing:
            outputs = trunk_forward(model, trunk, videos[missing], self.device, self.dtype,
                                    should_stop)
            for i, out in zip(missing, outputs):
                found[i] = out.clone()
                self.store.put(keys[i], found[i])
            self.computed += len(missing)
        return torch.stack(found).to(self.device, torch.float32)


class _TrunkLoader:
    """Batches of (trunk outputs, labels, paths) over a loader of (videos, labels, paths); an
    interrupted trunk forward ends the iteration early (as a Stop between batches would)."""

    def __init__(self, features: TrunkFeatures, model: nn.Module, trunk: list[str], prefix: str,
                 loader: Any, should_stop: Callable[[], bool] | None):
        self.features, self.model, self.trunk, self.prefix = features, model, trunk, prefix
        self.loader, self.should_stop = loader, should_stop

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor, list[str]]]:
        for videos, labels, paths in self.loader:
            try:
                x = self.features.features(self.model, self.trunk, self.prefix, videos,
                                           list(paths), self.should_stop)
            except Interrupted:
                return
            yield x, labels, paths


@torch.no_grad()
def trunk_forward(model: nn.Module, trunk: list[str], videos: torch.Tensor, device: torch.device,
                  dtype: torch.dtype | None,
                  should_stop: Callable[[], bool] | None = None) -> torch.Tensor:
    """The output of ``model``'s frozen blocks ``trunk`` for ``videos`` (in eval mode, under
    ``dtype`` autocast), on the CPU in ``dtype`` (float32 when None)."""
    target = _unwrap(model)
    blocks = nn.Sequential(*(getattr(target, name) for name in trunk))
    with _eval(blocks), interruptible(blocks, should_stop), autocast(device, dtype):
        x = blocks(videos.to(device))
    return x.to(dtype or torch.float32).cpu()


@contextlib.contextmanager
def _eval(module: nn.Module) -> Iterator[None]:
    """``module`` and its children in eval mode inside the block, as they were after it."""
    modes = [(m, m.training) for m in module.modules()]
    module.eval()
    try:
        yield
    finally:
        for m, mode in modes:
            m.training = mode
