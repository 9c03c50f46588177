"""The hot loops of training, torchvision-reference style: one pass over a loader that trains
(``run_epoch``) and one that predicts (``predict``), plus seeding. No bookkeeping here; the
Trainer (``train.py``) wires them up.
"""
from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from echoquality_core.model.interrupt import Interrupted, interruptible
from echoquality_core.model.precision import dtype_name, training_dtype
from echoquality_core.train.losses import class_pos_weight
from echoquality_core.train.config import TrainConfig

log = logging.getLogger(__name__)


def criterion_args(config: TrainConfig, train_labels: list[float]) -> dict[str, Any]:
    pos_weight = class_pos_weight(train_labels) if config.class_weighting else None
    return {"alpha": config.focal_alpha, "gamma": config.focal_gamma, "pos_weight": pos_weight}


REDO_LIMIT = 3  # reduced-precision steps redone in fp32 before the rest of a run is fp32


@dataclass
class StepPrecision:
    """The autocast dtype of a run's training steps and its finite-gradient guard.

    A reduced-precision (bf16) step whose loss or gradients are not finite is redone in fp32
    from the same batches; after ``limit`` such redos the rest of the run trains (and
    validates) in fp32: ``dtype`` becomes None. torch 2.14.1's oneDNN bf16 weight gradient of
    layer4's temporal convolutions is NaN now and then on the CPU (see ``model/precision.py``).
    ``report(step, message)`` is told about every redo and the switch.
    """

    dtype: torch.dtype | None
    limit: int = REDO_LIMIT
    report: Callable[[int, str], None] | None = None
    redone: int = 0
    switched: bool = False

    def __post_init__(self) -> None:
        self.start = dtype_name(self.dtype)  # the precision the run started in

    def effective(self) -> str:
        """The precision the run trained in, for MLflow: ``"bf16"``, ``"fp32"``, ``"bf16 (2
        steps redone in fp32)"`` or ``"bf16, then fp32 (3 steps redone in fp32)"``."""
        if not self.redone:
            return dtype_name(self.dtype)
        first = f"{self.start}, then fp32" if self.switched else self.start
        return f"{first} ({self.redone} step{'s' * (self.redone != 1)} redone in fp32)"

    def redid(self, step: int) -> None:
        """Count a redone step; switch to fp32 at the limit; tell ``report``."""
        self.redone += 1
        message = (f"step {step}: the {self.start} loss or gradients were not finite; the step was "
                   f"redone in fp32 ({self.redone} of at most {self.limit})")
        if self.redone >= self.limit:
            self.dtype, self.switched = None, True
            message += "; the rest of the run trains in fp32"
        log.warning(message)
        if self.report is not None:
            self.report(step, message + ".")


def run_epoch(
    model: torch.nn.Module,
    loader: Any,
    criterion: Callable,
    optimizer: torch.optim.Optimizer,
    device: torch.device,
    *,
    accum_steps: int = 1,
    amp_dtype: torch.dtype | None = None,
    scaler: torch.amp.GradScaler | None = None,
    on_batch: Callable[[int, int, float, float], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    steps: StepPrecision | None = None,
) -> tuple[float, int]:
    """One pass over ``loader`` with gradient accumulation and optional autocast.

    ``steps`` (a run's :class:`StepPrecision`, kept across epochs; made from ``amp_dtype``
    when None) gives the autocast dtype and guards reduced-precision steps: an optimiser step
    whose accumulated gradients (or a loss) are not finite is redone in fp32 from the same
    batches before it is applied (not with a GradScaler, which skips such steps itself).
    Returns (mean loss per clip, batches done). Raises FloatingPointError on a non-finite fp32
    loss or gradient (its args: step number). ``should_stop`` is checked after every batch and
    inside the model at every block; a batch interrupted that way is abandoned (no optimiser
    step).
    """
    steps = steps if steps is not None else StepPrecision(amp_dtype)
    model.train()
    for module in model.modules():  # frozen blocks keep their pretrained BatchNorm statistics
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm) and not any(
                p.requires_grad for p in module.parameters(recurse=False)):
            module.eval()
    n_steps = len(loader)
    total, count, done = 0.0, 0, 0
    window: list[tuple[torch.Tensor, torch.Tensor]] = []  # batches of the step, for a redo
    finite = True  # the window's losses so far
    # with several ranks only the (all-reduced, so shared) gradients decide a redo: a rank
    # redoing alone would wait forever for the others' all-reduce
    ranks = torch.distributed.is_available() and torch.distributed.is_initialized()
    optimizer.zero_grad(set_to_none=True)
    for step, batch in enumerate(loader, start=1):
        t0 = time.perf_counter()
        videos, labels = batch[0].to(device), batch[1].to(device).float().reshape(-1)
        guard = steps.dtype is not None and scaler is None
        window.append((videos, labels))
        try:
            with interruptible(model, should_stop):
                loss = _forward_backward(model, criterion, videos, labels, device, steps.dtype,
                                         accum_steps, scaler)
                finite = finite and bool(torch.isfinite(loss))
                if not (finite or guard):
                    optimizer.zero_grad(set_to_none=True)
                    raise FloatingPointError(step)
                last = step % accum_steps == 0 or step == n_steps
                if guard and last and not (_grads_finite(optimizer) and (finite or ranks)):
                    loss = _redo_in_fp32(model, criterion, window, optimizer, device,
                                         accum_steps, step)
                    finite = True
                    steps.redid(step)
        except Interrupted:
            break
        if last:
            if scaler is not None:
                scaler.step(optimizer)
                scaler.update()
            else:
                optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            window.clear()
        total += float(loss.detach()) * len(labels)
        count += len(labels)
        done = step
        if on_batch is not None:
            on_batch(step, n_steps, float(loss.detach()), time.perf_counter() - t0)
        if should_stop is not None and should_stop():
            break
    optimizer.zero_grad(set_to_none=True)
    return (total / count if count else float("nan")), done


def _forward_backward(model, criterion, videos, labels, device, dtype, accum_steps,
                      scaler=None) -> torch.Tensor:
    """One batch's loss (returned) and its gradients added to the parameters'."""
    with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
        logits = model(videos).reshape(-1)
    loss = criterion(logits.float(), labels)
    scaled = loss / accum_steps
    (scaler.scale(scaled) if scaler is not None else scaled).backward()
    return loss


def _grads_finite(optimizer: torch.optim.Optimizer) -> bool:
    """Whether every gradient is finite, from their sums (a NaN or inf makes a sum non-finite;
    10 ms for layer4 + fc on one core, 15x less than ``isfinite`` over every element)."""
    sums = [p.grad.sum() for group in optimizer.param_groups for p in group["params"]
            if p.grad is not None]
    return not sums or bool(torch.isfinite(torch.stack(sums)).all())


def _redo_in_fp32(model, criterion, window, optimizer, device, accum_steps,
                  step: int) -> torch.Tensor:
    """The gradients of ``window``'s batches again, in fp32; the last batch's loss. Raises
    FloatingPointError(step) when they are not finite in fp32 either."""
    optimizer.zero_grad(set_to_none=True)
    for videos, labels in window:
        loss = _forward_backward(model, criterion, videos, labels, device, None, accum_steps)
        if not torch.isfinite(loss):
            break
    if not (torch.isfinite(loss) and _grads_finite(optimizer)):
        optimizer.zero_grad(set_to_none=True)
        raise FloatingPointError(step)
    return loss


def train_epoch(
    model: torch.nn.Module,
    loader: Any,
    criterion: Callable,
    optimizer: torch.optim.Optimizer,
    device: torch.device | str,
) -> float:
    """Train one epoch, as in the guide; batches are (video, label[, path]). Returns the mean
    training loss. Raises FloatingPointError if the loss becomes NaN or infinite."""
    loss, _ = run_epoch(model, loader, criterion, optimizer, torch.device(device))
    return loss


@torch.no_grad()
def predict(model, loader, criterion, device, should_cancel=None,
            amp_dtype: torch.dtype | None = None) -> dict[str, Any]:
    """Mean loss, labels, scores (sigmoid) and paths over a loader (under autocast to
    ``amp_dtype`` when given); stops early on cancel."""
    model.eval()
    device = torch.device(device)
    total, labels, scores, paths = 0.0, [], [], []
    for batch in loader:
        videos, y = batch[0].to(device), batch[1].to(device).float().reshape(-1)
        try:
            with interruptible(model, should_cancel), torch.autocast(
                    device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
                logits = model(videos).reshape(-1).float()
        except Interrupted:
            break
        total += float(criterion(logits, y)) * len(y)
        labels += y.cpu().tolist()
        scores += torch.sigmoid(logits).cpu().tolist()
        if len(batch) > 2:
            paths += list(batch[2])
        if should_cancel is not None and should_cancel():
            break
    return {
        "loss": total / len(labels) if labels else float("nan"),
        "labels": labels,
        "scores": scores,
        "paths": paths,
    }


def seed_everything(seed: int) -> torch.Generator:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def seed_worker(worker_id: int) -> None:
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)


def make_optimizer(c: TrainConfig, model: torch.nn.Module):
    """AdamW over every parameter (frozen ones get no gradient and are skipped until their
    block is unfrozen) and the configured learning-rate scheduler (or None)."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=c.learning_rate,
                                  weight_decay=c.weight_decay)
    if c.scheduler == "plateau":
        scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode="min", factor=0.1,
                                                               patience=3)
    elif c.scheduler == "cosine_restarts":
        scheduler = torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(
            optimizer, T_0=c.cosine_t0, T_mult=c.cosine_t_mult)
    else:
        scheduler = None
    return optimizer, scheduler


def mixed_precision(c: TrainConfig, device: torch.device):
    """(autocast dtype or None, GradScaler or None): the precision scoring uses
    (``precision.training_dtype``: bf16 on CPUs that compute it natively and on GPUs that have
    it, fp16 with a scaler on other GPUs, fp32 elsewhere, with ``amp=False`` or
    ``ECHOQUALITY_PRECISION=fp32``)."""
    dtype, _ = training_dtype(device, c.amp)
    if dtype is torch.float16:
        return dtype, torch.amp.GradScaler("cuda")
    return dtype, None
