"""A project's folder on disk, one owner for every path in it (like ``runs.folder.RunFolder``).

The project folder is the labels CSV's folder. Beside the CSV (``labels.csv`` by default) lie
the per-rater labels ``<stem>_by_rater.csv``, the rater policy ``<stem>_raters.json`` and the
lock ``.<name>.lock``; in the folder lie the clip cache ``.echoquality/cache``, the saved
decision ``.echoquality/decision.json``, clips imported from the PACS ``pacs/<study>/``,
cross-validations ``crossval/<run>/``, the MLflow store
``mlruns.db`` with its artifacts ``mlartifacts/``, and training runs ``trained_models/<run>/``.

ONE lock covers every label file (the CSV, the per-rater file, the policy): every save of any of
them is one read-merge-replace under it, so programs labelling the same project at once lose
nothing. It is an advisory ``filelock`` lock: a script that rewrites a label file must take it
too (``ProjectFolder(...).lock``, or ``filelock.FileLock`` on :attr:`ProjectFolder.lock_file`).
"""
from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator
from pathlib import Path

from filelock import FileLock, Timeout

from echoquality_core.labels.values import LabelError

LABELS_FILE = "labels.csv"
RATERS_SUFFIX = "_by_rater.csv"  # labels.csv -> labels_by_rater.csv
POLICY_SUFFIX = "_raters.json"  # labels.csv -> labels_raters.json
STATE_DIR = ".echoquality"
CACHE_DIR = f"{STATE_DIR}/cache"
DECISION_FILE = f"{STATE_DIR}/decision.json"
PACS_DIR = "pacs"  # clips imported from the PACS, one folder per study
CROSSVAL_DIR = "crossval"
OOF_FILE = "oof_scores.csv"  # a cross-validation's out-of-fold table, in crossval/<run>/
TRACKING_DB = "mlruns.db"
ARTIFACTS_DIR = "mlartifacts"
RUNS_DIR = "trained_models"
LOCK_TIMEOUT = 15.0  # seconds to wait for another program's save (it takes milliseconds)

_locks: dict[str, FileLock] = {}
_locks_guard = threading.Lock()


class ProjectFolder:
    """The paths of one project: its folder and (default ``<folder>/labels.csv``) labels CSV."""

    def __init__(self, path: str | os.PathLike, labels_csv: str | os.PathLike | None = None):
        self.path = Path(os.path.abspath(path))
        self.labels_csv = Path(os.path.abspath(labels_csv or self.path / LABELS_FILE))

    @classmethod
    def of_labels(cls, labels_csv: str | os.PathLike) -> ProjectFolder:
        """The project of a labels CSV (or of its per-rater file): the CSV's folder."""
        csv_path = labels_table(labels_csv)
        return cls(csv_path.parent, csv_path)

    # the label files, beside the labels CSV
    rater_csv = property(lambda self: _beside(self.labels_csv, RATERS_SUFFIX),
                         doc="every rater's label, long format")
    policy_file = property(lambda self: _beside(self.labels_csv, POLICY_SUFFIX),
                           doc="how the training table follows the raters")
    lock_file = property(lambda self: self.labels_csv.with_name(f".{self.labels_csv.name}.lock"),
                         doc="the lock of every label file")
    # the project's own files
    cache = property(lambda self: self.path / CACHE_DIR, doc="preprocessed clips")
    decision = property(lambda self: self.path / DECISION_FILE, doc="the saved threshold")
    pacs = property(lambda self: self.path / PACS_DIR, doc="clips imported from the PACS")
    crossval = property(lambda self: self.path / CROSSVAL_DIR, doc="cross-validations")
    tracking_db = property(lambda self: self.path / TRACKING_DB, doc="the MLflow store")
    artifacts = property(lambda self: self.path / ARTIFACTS_DIR, doc="MLflow artifacts")
    trained_models = property(lambda self: self.path / RUNS_DIR, doc="training runs")

    def resolve(self, value: str | os.PathLike) -> Path:
        """A path of the settings: absolute as is (``~`` expanded), else under the folder."""
        p = Path(value).expanduser()
        return p if p.is_absolute() else (self.path / p).resolve()

    # --- the label lock ------------------------------------------------------------------------
    @property
    def lock(self) -> FileLock:
        """The lock of every label file; one object per file in this process (re-entrant)."""
        key = os.path.normcase(str(self.lock_file))
        with _locks_guard:
            if key not in _locks:
                _locks[key] = FileLock(self.lock_file, timeout=LOCK_TIMEOUT)
            return _locks[key]

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the label lock; LabelError when another program held it for too long."""
        lock = self.lock
        try:
            lock.acquire()
        except Timeout:
            raise LabelError(f"{self.labels_csv.name} is being saved by another program (its "
                             f"lock {self.lock_file.name} was held for over {LOCK_TIMEOUT:g} s); "
                             f"try again") from None
        try:
            yield
        finally:
            lock.release()

    # --- cross-validations -----------------------------------------------------------------------
    def crossvals(self) -> list[Path]:
        """``oof_scores.csv`` of every cross-validation of the project, newest first."""
        found = self.crossval.glob(f"*/{OOF_FILE}")
        return sorted(found, key=lambda p: p.stat().st_mtime, reverse=True)

    def find_crossval(self, run: str | os.PathLike) -> Path:
        """The out-of-fold table of cross-validation ``run``: a folder name under ``crossval/``,
        a folder, or an ``oof_scores.csv`` path. Raises ValueError."""
        for candidate in (Path(run), self.crossval / run):
            if candidate.is_file():
                return candidate
            if (candidate / OOF_FILE).is_file():
                return candidate / OOF_FILE
        raise ValueError(f"no cross-validation {str(run)!r} (no {OOF_FILE} under "
                         f"{self.crossval})")


def labels_table(path: str | os.PathLike) -> Path:
    """The labels CSV of ``path``: itself, or the table a per-rater file belongs to."""
    path = Path(os.path.abspath(path))
    if path.name.endswith(RATERS_SUFFIX):
        return path.with_name(path.name[: -len(RATERS_SUFFIX)] + ".csv")
    return path


def _beside(csv_path: Path, suffix: str) -> Path:
    return csv_path.with_name(f"{csv_path.stem}{suffix}")
