"""Training on several processes with DistributedDataParallel, when torchrun started us:
``torchrun --nproc_per_node N -m echoquality_core train ...`` (one rank per GPU, or CPU ranks
with gloo); ``jobs.launch.make_trainer`` chooses it.

Same run as the single-process :class:`train.Trainer` (the default), with: the data prepared and
the patient split made once on rank 0 and broadcast; a ``DistributedSampler`` per epoch for the
training clips; the validation clips sharded and their predictions gathered, so every rank sees
the same validation metrics (threshold, early stopping); the training loss averaged over ranks
(each rank's is logged as ``train_loss_rank<r>``); Stop/Cancel agreed between ranks after each
batch (a Stop on rank 0 stops all ranks at the same step). Only rank 0 logs to MLflow, writes
checkpoints, tests the best model and emits events.
"""
from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

import torch
from torch.utils.data import DataLoader, DistributedSampler, Subset

from echoquality_core.jobs import distributed as dist
from echoquality_core.data.clips import ClipCache
from echoquality_core.train.events import BatchEnd
from echoquality_core.train.trainer import Trainer
from echoquality_core.train.callbacks import BestCheckpoint
from echoquality_core.train.config import TrainConfig
from echoquality_core.train.loop import predict, run_epoch, seed_everything
from echoquality_core.train.preflight import _Abort, loader_args

log = logging.getLogger(__name__)


class _BestOnOtherRanks(BestCheckpoint):
    """Tracks the best epoch and threshold like rank 0 does, without writing a file."""

    def save(self, trainer: Trainer, epoch: int, val: dict[str, Any]) -> None:
        self.loss, self.epoch = val["loss"], epoch


class DistributedTrainer(Trainer):
    """One rank of a DDP training run (see the module docstring)."""

    stop_between_epochs = False  # a Stop holds only once the ranks agreed on it
    trunk_off = "DDP synchronises gradients in the whole model's forward"

    def __init__(self, config: TrainConfig, callback: Callable[[Any], None] | None = None):
        super().__init__(config, callback)
        self.device = torch.device(dist.init_from_env(config.device))
        self.run_name = dist.broadcast_object(self.run_name)
        self.run_dir = self.run_dir.parent / self.run_name
        self.folder = type(self.folder)(self.run_dir)
        if not dist.is_main():
            self.best = _BestOnOtherRanks()
            self.callbacks[0] = self.best
        self._wrapped_for: frozenset[str] = frozenset()

    def _emit(self, event: Any) -> None:
        if dist.is_main():
            super()._emit(event)

    def run(self):
        try:
            return super().run()
        finally:
            dist.shutdown()

    def _run(self):
        config = self.config
        if self.start is None:  # the CLI checks first; the app's training child does not
            self.preflight()
        generator = seed_everything(config.seed)
        cache = ClipCache(self.cache_dir, self.params)
        self.data = self._prepare_data_once(cache)
        self._make_loaders(cache, generator)
        if not dist.is_main():
            return self._fit(None)
        return self._fit_tracked({"world_size": dist.world_size()})

    def _prepare_data_once(self, cache: ClipCache):
        """Rank 0 decodes, caches and splits; every rank gets its records and split."""
        outcome: Any = None
        if dist.is_main():
            try:
                outcome = self._prepare_data(cache)
            except Exception as exc:  # every rank must learn about it, not wait forever
                outcome = exc
        outcome = dist.broadcast_object(outcome)
        if isinstance(outcome, Exception):
            raise outcome if dist.is_main() else _Abort("data", str(outcome))
        return outcome

    def _make_loaders(self, cache: ClipCache, generator: torch.Generator) -> None:
        super()._make_loaders(cache, generator)
        c, rank, world = self.config, dist.rank(), dist.world_size()
        args = loader_args(c, self.device)
        train_set = self.train_loader.dataset
        self.sampler = DistributedSampler(train_set, num_replicas=world, rank=rank,
                                          shuffle=True, seed=c.seed)
        self.train_loader = DataLoader(train_set, sampler=self.sampler, **args)
        val_set = self.val_loader.dataset
        self.val_loader = DataLoader(Subset(val_set, range(rank, len(val_set), world)),
                                     shuffle=False, **args)
        if not dist.is_main():
            self.test_loader = None

    def _build(self) -> None:
        super()._build()
        self._wrap()

    def _wrap(self) -> None:
        """(Re)wrap in DDP when the set of trainable parameters changed (unfreezing)."""
        from torch.nn.parallel import DistributedDataParallel

        inner = getattr(self.model, "module", self.model)
        trainable = frozenset(n for n, p in inner.named_parameters() if p.requires_grad)
        if trainable == self._wrapped_for:
            return
        ids = [self.device.index] if self.device.type == "cuda" else None
        self.model = DistributedDataParallel(inner, device_ids=ids)
        self._wrapped_for = trainable

    def _agree_on_halt(self) -> None:
        """Stop/Cancel pressed on any rank (the app talks to rank 0) holds on every rank."""
        stop, cancel = dist.all_reduce_sum(self._stop.is_set(), self._cancel.is_set())
        if stop:
            self._stop.set()
        if cancel:
            self._cancel.set()
        if stop or cancel:
            self._agreed.set()

    def _train_one(self, epoch: int) -> tuple[float, int]:
        self._agreed = threading.Event()
        self.sampler.set_epoch(epoch)
        self._wrap()

        def on_batch(step, n_steps, loss, seconds):
            self._emit(BatchEnd(epoch, step, n_steps, loss, seconds))
            self._agree_on_halt()

        loss, done = run_epoch(
            self.model, self.train_loader, self.criterion, self.optimizer, self.device,
            accum_steps=self.config.grad_accum_steps, steps=self.steps,
            scaler=self.scaler, on_batch=on_batch, should_stop=self._agreed.is_set,
        )
        losses = dist.gather_objects(loss)  # equal shard sizes: the mean of means is the mean
        if getattr(self, "run_log", None) is not None:
            self.run_log.log_metrics({f"train_loss_rank{r}": v for r, v in enumerate(losses)},
                                     step=epoch)
        return sum(losses) / len(losses), done

    def _validate(self) -> dict[str, Any]:
        """Every rank's share of the validation clips, gathered: the whole split's predictions."""
        mine = predict(self.model, self.val_loader, self.criterion, self.device)
        parts = dist.gather_objects(mine)
        n = sum(len(p["labels"]) for p in parts)
        loss = sum(p["loss"] * len(p["labels"]) for p in parts if p["labels"]) / max(1, n)
        return {"loss": loss if n else float("nan"),
                **{k: [v for p in parts for v in p[k]] for k in ("labels", "scores", "paths")}}

    def _finish(self) -> dict[str, Any]:
        """Rank 0 tests and saves the best model; the others wait for it."""
        self.model = getattr(self.model, "module", self.model)
        metrics: dict[str, Any] = {}
        if dist.is_main():
            try:
                metrics = super()._finish()
            finally:
                dist.barrier()
        else:
            dist.barrier()
        return metrics
