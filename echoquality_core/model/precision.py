"""Which number format the model runs in, per device: bf16 autocast where the hardware does bf16
natively, fp32 elsewhere, and a setting that forces fp32; and the memory format
(``channels_last_3d`` where it is faster: :func:`channels_last`).

On a CPU with native bf16 (AVX512-BF16 or AMX) the R(2+1)D-18 forward runs in about 0.4x the
fp32 time with scores within ~1e-3; on a CPU without it (AVX2) bf16 is emulated and slower, so
fp32 is kept. On CUDA: bf16 where the GPU supports it, else fp16. ``ECHOQUALITY_PRECISION=fp32``
(or :func:`set_precision` ``("fp32")``) forces full precision everywhere. Training follows the
same rule (:func:`training_dtype`), in ``channels_last_3d`` too. On the CPU, torch 2.14.1's
oneDNN bf16 weight gradient of layer4's temporal convolutions (2 frames at 16x112x112) is NaN
on some steps, in either memory format and not reproducible from the same tensors (a few
steps in 100 with one thread): the training step owner (``train.loop.StepPrecision``) redoes
such a step in fp32 and after 3 of them trains the rest of the run in fp32.
"""
from __future__ import annotations

import contextlib
import functools
import os
from pathlib import Path

import torch
from torch import nn

PRECISION_ENV = "ECHOQUALITY_PRECISION"
CHOICES = ("auto", "fp32")
_CPU_BF16_FLAGS = ("avx512_bf16", "amx_bf16")


def set_precision(choice: str) -> None:
    """``"auto"`` (reduced precision where the hardware is fast at it) or ``"fp32"``; also
    passed on to child processes (torchrun ranks, the training child) via the environment."""
    if choice not in CHOICES:
        raise ValueError(f"precision must be one of {CHOICES}, got {choice!r}")
    os.environ[PRECISION_ENV] = choice


def forced_fp32() -> bool:
    """True when the user asked for full precision."""
    return os.environ.get(PRECISION_ENV, "auto").strip().lower() == "fp32"


@functools.cache
def cpu_has_native_bf16() -> bool:
    """True when this CPU computes bf16 natively (AVX512-BF16 or AMX flags, and oneDNN sees
    it); emulated bf16 on older CPUs is slower than fp32."""
    try:
        flags = Path("/proc/cpuinfo").read_text(encoding="ascii", errors="ignore").split()
    except OSError:
        flags = []
    try:
        onednn = bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        onednn = False
    return onednn and any(flag in flags for flag in _CPU_BF16_FLAGS)


def inference_dtype(device: torch.device | str) -> torch.dtype | None:
    """The autocast dtype for ``device``, or None for plain fp32."""
    device = torch.device(device)
    if forced_fp32():
        return None
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device.type == "cpu" and cpu_has_native_bf16():
        return torch.bfloat16
    return None


def dtype_name(dtype: torch.dtype | None) -> str:
    """``"bf16"``, ``"fp16"`` or ``"fp32"`` (None) for logs and MLflow."""
    return {torch.bfloat16: "bf16", torch.float16: "fp16"}.get(dtype, "fp32")


def training_dtype(device: torch.device | str, amp: bool = True) -> tuple[torch.dtype | None, str]:
    """(autocast dtype or None, why) for training on ``device``: the rule of
    :func:`inference_dtype` (``ECHOQUALITY_PRECISION=fp32`` overrides); None with ``amp`` off."""
    device = torch.device(device)
    if not amp:
        return None, "fp32 (mixed precision turned off)"
    dtype = inference_dtype(device)
    if forced_fp32():
        why = f"{PRECISION_ENV}=fp32"
    elif device.type == "cpu":
        why = "this CPU computes bf16 natively" if dtype else "this CPU has no native bf16"
    else:
        why = f"mixed precision on {device.type}"
    return dtype, f"{dtype_name(dtype)} ({why})"


def autocast(device: torch.device | str, dtype: torch.dtype | None | str = "auto"):
    """An autocast context for ``device``: ``dtype="auto"`` picks :func:`inference_dtype`;
    None disables it (fp32)."""
    device = torch.device(device)
    dtype = inference_dtype(device) if isinstance(dtype, str) else dtype
    if dtype is None:
        return torch.autocast(device.type, enabled=False)
    return torch.autocast(device.type, dtype=dtype)


def channels_last(device: torch.device | str, dtype: torch.dtype | None | str = "auto",
                  training: bool = False) -> bool:
    """True when ``channels_last_3d`` helps (``bench_memory_format.py``): with reduced precision
    (oneDNN, cuDNN), and on an x86 CPU in fp32 too: for scoring always (oneDNN then convolves
    without reordering each layer's data: the forward 1.3-1.4x faster with AVX-512 and with
    AVX2 kernels alike), for ``training`` where ATen runs AVX-512 kernels (a step 1.2x faster;
    with AVX2 kernels 0.84x, slower, so it stays contiguous there). Other CPUs (Arm) are
    unmeasured and stay contiguous in fp32."""
    device = torch.device(device)
    dtype = inference_dtype(device) if isinstance(dtype, str) else dtype
    if dtype is not None:
        return True
    if device.type != "cpu":
        return False
    kernels = torch.backends.cpu.get_cpu_capability()
    return kernels == "AVX512" or (kernels == "AVX2" and not training)


def prepare_model(net: nn.Module, device: torch.device | str,
                  dtype: torch.dtype | None | str = "auto", training: bool = False) -> nn.Module:
    """``net`` on ``device``, in ``channels_last_3d`` when that helps, else contiguous (in
    place; returned): a module scored earlier is made contiguous again for training where that
    is faster."""
    net.to(device)
    if not isinstance(net, torch.jit.ScriptModule):
        net.to(memory_format=torch.channels_last_3d if channels_last(device, dtype, training)
               else torch.contiguous_format)
    return net


def prepare_input(videos: torch.Tensor, device: torch.device | str,
                  dtype: torch.dtype | None | str = "auto", training: bool = False
                  ) -> torch.Tensor:
    """A (N,3,T,H,W) batch on ``device`` in the memory format :func:`prepare_model` chose."""
    videos = videos.to(device, non_blocking=True)
    if channels_last(device, dtype, training):
        videos = videos.contiguous(memory_format=torch.channels_last_3d)
    return videos


def batch_that_fits(batch_size: int, peak_bytes: int, total_bytes: int,
                    message: str = "") -> int:
    """The largest batch size expected to fit after a CUDA out-of-memory error: memory scales
    with the batch, and the failed step needed ``peak_bytes`` plus what the error says it
    "Tried to allocate"; a 10 % margin is kept. At least 1."""
    import re

    tried = 0.0
    found = re.search(r"Tried to allocate ([\d.]+) (GiB|MiB|KiB)", message)
    if found:
        tried = float(found.group(1)) * {"GiB": 2**30, "MiB": 2**20, "KiB": 2**10}[found.group(2)]
    needed = max(1.0, float(peak_bytes) + tried)
    return max(1, min(batch_size - 1, int(batch_size * 0.9 * total_bytes / needed)))


def cuda_batch_that_fits(batch_size: int, device: torch.device, error: BaseException) -> int:
    """:func:`batch_that_fits` from this CUDA device's peak and total memory."""
    peak = torch.cuda.max_memory_allocated(device)
    total = torch.cuda.get_device_properties(device).total_memory
    return batch_that_fits(batch_size, peak, total, str(error))


@contextlib.contextmanager
def precision(choice: str):
    """Temporarily set the precision choice (tests, benchmarks)."""
    old = os.environ.get(PRECISION_ENV)
    set_precision(choice)
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(PRECISION_ENV, None)
        else:
            os.environ[PRECISION_ENV] = old
