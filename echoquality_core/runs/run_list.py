"""A project's training runs as the app lists them (``RunRow``: the run and its model file and
folder on disk), read by a spawned child (``read_runs``): listing runs does not import MLflow
(~1,400 modules) into the app's process, where importing it in a worker thread stalled the
window 100–300 ms after a project's first training run."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from echoquality_core.jobs.child import call_in_child
from echoquality_core.runs.tracking import (
    list_runs,
    mark_stale_runs,
    run_checkpoint,
    run_folder,
    store_exists,
)


@dataclass(frozen=True)
class RunRow:
    """One run of the store with its files found on disk."""

    run: dict[str, Any]
    checkpoint: Path | None
    folder: Path | None

    @property
    def threshold(self) -> float | None:
        value = self.run["metrics"].get("threshold")
        return None if value is None else float(value)


def load_runs(tracking_uri: str, project_dir: Path) -> list[RunRow]:
    """The runs of a store, newest first, with their model files and folders (imports MLflow).
    Runs left RUNNING by a training that was killed are marked KILLED first."""
    mark_stale_runs(tracking_uri)
    return [RunRow(run, run_checkpoint(run, project_dir), run_folder(run, project_dir))
            for run in list_runs(tracking_uri)]


def read_runs(tracking_uri: str, project_dir: Path,
              cancelled: Callable[[], bool] = lambda: False) -> list[RunRow]:
    """``load_runs`` in a spawned child (seconds: call it off the GUI thread); [] at once while
    the project has no store. RuntimeError when the child fails or ``cancelled()`` turns true."""
    if not store_exists(tracking_uri):
        return []
    return call_in_child(load_runs, tracking_uri, Path(project_dir), name="echoquality-runs",
                         cancelled=cancelled, timeout=120.0)
