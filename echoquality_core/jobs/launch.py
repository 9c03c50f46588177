"""Which trainer runs: the one place that chooses between ``Trainer`` (one process),
``DistributedTrainer`` (one rank of a DDP run: under torchrun, or the app's "All GPUs (N)")
and ``CrossValidator`` (k folds, one device). The CLI's ``train`` and ``crossval``, the app's
training child (``train_process``) and the ranks > 0 that it starts (``python -m
echoquality_core.jobs.launch``, see ``ranks.py``) all ask here.
"""
from __future__ import annotations

import json
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from echoquality_core.jobs import ranks as rank_processes
from echoquality_core.jobs.child import enter_child, use_cpu_threads
from echoquality_core.jobs.distributed import launched_by_torchrun, world_size

ORPHAN_SECONDS = 1.0  # a rank whose rank 0 is gone exits within this


def make_trainer(config: Any, callback: Callable[[Any], None] | None = None, *,
                 folds: int | None = None, repeats: int = 1,
                 val_fraction: float = 0.2) -> Any:
    """The trainer for ``config`` (a TrainConfig) in this process: a CrossValidator with
    ``folds`` (one device only), else a DistributedTrainer when this process is one rank of
    several (torchrun's environment), else the plain Trainer. Its ``run()`` returns the end
    event. ValueError for settings that do not go together."""
    if folds:
        if launched_by_torchrun():
            raise ValueError("cross-validation runs on one device; choose one GPU or the CPU")
        from echoquality_core.train.crossval import CrossValidator

        return CrossValidator(config, int(folds), repeats, callback, val_fraction=val_fraction)
    if launched_by_torchrun():
        from echoquality_core.train.distributed import DistributedTrainer

        return DistributedTrainer(config, callback)
    from echoquality_core.train.trainer import Trainer

    return Trainer(config, callback)


@dataclass
class Launch:
    """An app run's trainer, its number of ranks and the processes of ranks 1..N-1."""
    trainer: Any
    world: int = 1
    others: list = field(default_factory=list)

    def wait_for_others(self) -> None:
        """Wait for ranks 1..N-1 to finish (killed if they do not)."""
        rank_processes.wait_for_ranks(self.others)


def launch(settings: dict[str, Any], put: Callable[[Any], None]) -> Launch:
    """The app's run of ``settings`` (TrainConfig fields, plus the Train tab's
    ``crossval_folds`` and ``ranks``): with ``ranks`` > 1 this process becomes rank 0 and the
    other ranks are started. Events go to ``put``."""
    from echoquality_core.train.config import TrainConfig

    settings = dict(settings)
    folds = settings.pop("crossval_folds", None)  # the Train tab's "Cross-validate" mode
    world = int(settings.pop("ranks", None) or 1)  # "All GPUs (N)"
    config = TrainConfig(**settings)
    if folds and world > 1:
        raise ValueError("cross-validation runs on one device; choose one GPU or the CPU")
    if world == 1:
        return Launch(make_trainer(config, put, folds=folds))
    others = rank_processes.start_other_ranks(settings, world, __name__)
    try:
        return Launch(make_trainer(config, rank_processes.explain_rank_deaths(others, put)),
                      world, others)
    except BaseException:
        for rank in others:
            rank.kill()
        raise


def main(argv: list[str]) -> int:
    """One rank > 0 of the app's run: ``python -m echoquality_core.jobs.launch SETTINGS_JSON
    PARENT_PID`` with torchrun's environment (``ranks.rank_env``)."""
    from echoquality_core.train.config import TrainConfig

    settings, parent = json.loads(argv[0]), int(argv[1])
    enter_child(parent, every=ORPHAN_SECONDS / 2)
    use_cpu_threads(world_size())
    make_trainer(TrainConfig(**settings)).run()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
