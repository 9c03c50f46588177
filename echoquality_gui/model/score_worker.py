"""Scoring clips with a model: a ``ProcessRelay`` of a core ``ModelProcess`` job (the core's
``score_clips`` in a child process). Its messages: ``Loaded`` (the model loaded, its threshold),
``Progress`` per clip, then one of ``Done`` (``ScoredClips``: the scores as plain data),
``Failed`` (the text to show) or ``Cancelled``; cancellable between clips (the batch being
scored is finished and, with an output CSV, written). A model call that hangs is killed after
the process's timeout and reported as ``Failed``.

Neither torch, nor pandas, nor the model is ever loaded in the app's process: the window keeps
its GIL."""
from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject

from echoquality_core.jobs.model_process import Failed, Loaded, ModelJob, ModelProcess
from echoquality_gui.common.workers import ProcessRelay

BATCH_SIZE = 4  # small batches: progress and Cancel answer within a few clips


def score_relay(clips: str | os.PathLike | list[tuple[Path, str]], model: str | os.PathLike,
                *, threshold: float | None = None, out_csv: str | os.PathLike | None = None,
                cache_dir: str | os.PathLike | None = None, trust_exported: bool = False,
                process: ModelProcess | None = None,
                parent: QObject | None = None) -> ProcessRelay:
    """A relay (not started) that loads ``model`` and scores ``clips`` (a folder, or a list of
    (path, name) pairs; an empty list only loads the model) in ``process`` (a shared, warm one,
    its owner closes it) or in a child of its own, closed when the relay ends."""
    own = process is None
    process = process or ModelProcess()
    job = process.score(clips, model, threshold=threshold, out_csv=out_csv, cache_dir=cache_dir,
                        trust_exported=trust_exported, batch_size=BATCH_SIZE)
    return ProcessRelay(_told(job, Path(model).name), cancel=job.cancel,
                        close=process.close if own else None, parent=parent)


def _told(job: ModelJob, model: str) -> Iterator[Any]:
    """The job's messages, with a failure in the words the user reads."""
    loaded = False
    try:
        for message in job:
            if isinstance(message, Loaded):
                loaded = True
            elif isinstance(message, Failed):
                load = message.stage == "load" or not loaded
                message = Failed(f"Cannot use the model {model}: {message.message}" if load
                                 else f"Scoring stopped: {message.message}",
                                 "load" if load else "run")
            yield message
    except Exception as exc:  # noqa: BLE001 - reported, never a dead relay
        yield Failed(f"Scoring stopped: {type(exc).__name__}: {exc}")
