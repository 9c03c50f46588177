"""torch.distributed plumbing shared by distributed scoring and training: the process group from
torchrun's environment, rank/world helpers, stable-hash sharding, reductions and rank-0 guards.

Nothing here runs unless torchrun (``torch.distributed.run``) started the process: it sets
``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK`` and ``MASTER_ADDR``/``MASTER_PORT``. The backend is NCCL
when every rank has a CUDA device, gloo otherwise (CPU, tests).
"""
from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from typing import Any, TypeVar

T = TypeVar("T")


def launched_by_torchrun() -> bool:
    """True when this process is one rank of a torchrun job with more than one rank."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1 and "RANK" in os.environ


def _dist():
    import torch.distributed as dist

    return dist


def active() -> bool:
    """True when a process group is initialised."""
    dist = _dist()
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    """This process's rank (0 without a process group)."""
    return _dist().get_rank() if active() else int(os.environ.get("RANK", "0"))


def world_size() -> int:
    """Number of ranks (1 without a process group)."""
    return _dist().get_world_size() if active() else int(os.environ.get("WORLD_SIZE", "1"))


def local_rank() -> int:
    """The rank on this machine (torchrun's ``LOCAL_RANK``): which GPU this rank uses."""
    return int(os.environ.get("LOCAL_RANK", "0"))


def is_main() -> bool:
    """True on rank 0 (and in a plain single process): the rank that prints, logs and writes."""
    return rank() == 0


def init_from_env(device: str = "auto") -> str:
    """Initialise the default process group from torchrun's environment (once) and return the
    device this rank should use: ``cuda:<LOCAL_RANK>`` with NCCL when CUDA is there and wanted,
    else ``cpu`` with gloo."""
    import torch

    dist = _dist()
    use_cuda = device != "cpu" and torch.cuda.is_available()
    dev = f"cuda:{local_rank()}" if use_cuda else "cpu"
    if use_cuda:
        torch.cuda.set_device(local_rank())
    if not dist.is_initialized():
        dist.init_process_group("nccl" if use_cuda else "gloo")
    return dev


def shutdown() -> None:
    """Destroy the process group if one exists."""
    if active():
        _dist().destroy_process_group()


def barrier() -> None:
    """Wait for every rank (no-op in a single process)."""
    if active():
        _dist().barrier()


def shard_of(name: str, world: int) -> int:
    """The rank (0..world-1) that owns ``name``: a stable hash (SHA-1), the same on every
    machine and Python run (unlike ``hash()``)."""
    digest = hashlib.sha1(name.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % max(1, world)


def my_shard(items: Sequence[T], key=str, rank_: int | None = None,
             world: int | None = None) -> list[T]:
    """The items whose ``key(item)`` hashes to this rank, in their original order."""
    r = rank() if rank_ is None else rank_
    w = world_size() if world is None else world
    return [it for it in items if shard_of(key(it), w) == r]


def broadcast_object(value: Any, src: int = 0) -> Any:
    """``value`` from rank ``src`` on every rank (pickled; for small objects such as a split)."""
    if not active():
        return value
    box = [value]
    _dist().broadcast_object_list(box, src=src)
    return box[0]


def gather_objects(value: Any) -> list[Any]:
    """Every rank's ``value``, in rank order, on every rank."""
    if not active():
        return [value]
    out: list[Any] = [None] * world_size()
    _dist().all_gather_object(out, value)
    return out


def all_reduce_sum(*values: float) -> list[float]:
    """Element-wise sums of ``values`` over all ranks (float64 on the CPU; gloo and NCCL)."""
    import torch

    if not active():
        return [float(v) for v in values]
    dist = _dist()
    device = "cuda" if dist.get_backend() == "nccl" else "cpu"
    tensor = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor.cpu().tolist()


def any_rank(flag: bool) -> bool:
    """True on every rank when ``flag`` is true on any rank (e.g. Stop pressed on rank 0)."""
    return all_reduce_sum(1.0 if flag else 0.0)[0] > 0


def default_store():
    """The process group's key-value store (for progress counters), or None."""
    if not active():
        return None
    try:
        from torch.distributed.distributed_c10d import _get_default_store

        return _get_default_store()
    except (ImportError, RuntimeError):
        return None
