"""MLflow bookkeeping for training runs: a local SQLite store in the project folder by default.

The store is ``sqlite:///<project>/mlruns.db`` with artifacts in ``<project>/mlartifacts``;
any tracking URI can be set instead. Only settings, split sizes, file hashes, metrics, plots
and models are logged: nothing from DICOM headers, no patient keys.
"""
from __future__ import annotations

import contextlib
import hashlib
import logging
import math
import os
import sys
import warnings
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

log = logging.getLogger(__name__)

_NOISY_LOGGERS = ("mlflow", "alembic", "mlflow.store.db.utils", "mlflow.pytorch")
_MAX_PARAM_LEN = 500


def quiet_mlflow() -> None:
    """Keep MLflow's and alembic's INFO chatter and known warnings out of the user's console."""
    for name in _NOISY_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", module=r"mlflow(\..*)?")
    warnings.filterwarnings("ignore", message=r".*pydantic.*", category=UserWarning)


def default_tracking_uri(project_dir: str | os.PathLike) -> str:
    """``sqlite:///<abs project dir>/mlruns.db``."""
    return f"sqlite:///{(Path(project_dir).resolve() / 'mlruns.db').as_posix()}"


def default_artifact_location(project_dir: str | os.PathLike) -> str:
    """``file://<abs project dir>/mlartifacts`` (where a new experiment keeps its artifacts)."""
    return (Path(project_dir).resolve() / "mlartifacts").as_uri()


def file_sha256(path: str | os.PathLike) -> str:
    """SHA-256 of a file's bytes (logged to tie a run to the exact labels and split)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def flatten(config: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """Nested settings as flat MLflow params: {"a.b": "1"}; values stringified and truncated."""
    flat: dict[str, str] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, prefix=f"{name}."))
        else:
            text = "" if value is None else str(value)
            flat[name] = text[:_MAX_PARAM_LEN]
    return flat


def _experiment_id(client: Any, name: str, artifact_location: str | None) -> str:
    exp = client.get_experiment_by_name(name)
    if exp is not None:
        if exp.lifecycle_stage == "deleted":
            client.restore_experiment(exp.experiment_id)
        return exp.experiment_id
    return client.create_experiment(name, artifact_location=artifact_location)


class RunLog:
    """The active MLflow run of a training run; thin, typed wrappers over the fluent API."""

    def __init__(self, run_id: str, mlflow_module: Any):
        self.run_id = run_id
        self._mlflow = mlflow_module
        self.status = "FINISHED"

    def log_params(self, params: Mapping[str, Any]) -> None:
        """Log settings (nested mappings are flattened with dots)."""
        self._mlflow.log_params(flatten(params))

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        self._mlflow.set_tags({k: str(v) for k, v in tags.items()})

    def log_metrics(self, metrics: Mapping[str, Any], step: int | None = None) -> None:
        """Log the finite numeric values of ``metrics`` (others are skipped)."""
        clean = {}
        for key, value in metrics.items():
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                continue
            if not math.isfinite(value):
                continue
            clean[key] = float(value)
        if clean:
            self._mlflow.log_metrics(clean, step=step)

    def log_artifact(self, path: str | os.PathLike, artifact_path: str | None = None) -> None:
        self._mlflow.log_artifact(os.fspath(path), artifact_path=artifact_path)

    def log_model(self, model: Any, name: str = "model") -> str:
        """Log a torch model as an MLflow PyTorch model (pickle format, no dependency inference,
        so it works offline); returns its model URI."""
        import mlflow.pytorch

        info = mlflow.pytorch.log_model(
            model,
            name=name,
            pip_requirements=["torch", "torchvision"],
            serialization_format="pickle",
        )
        return info.model_uri


@contextlib.contextmanager
def start_run(
    config: Mapping[str, Any] | None = None,
    *,
    tracking_uri: str,
    experiment: str = "echoquality",
    run_name: str | None = None,
    artifact_location: str | None = None,
    tags: Mapping[str, Any] | None = None,
) -> Iterator[RunLog]:
    """Open an MLflow run (creating the experiment if needed), log ``config`` as params, and end
    it with ``RunLog.status`` ("FINISHED", "KILLED" or "FAILED"; FAILED when an exception
    escapes). The previous global tracking URI is restored afterwards."""
    quiet_mlflow()
    import mlflow
    from mlflow import MlflowClient

    previous_uri = mlflow.get_tracking_uri() if _uri_was_set(mlflow) else None
    mlflow.set_tracking_uri(tracking_uri)
    try:
        client = MlflowClient(tracking_uri)
        exp_id = _experiment_id(client, experiment, artifact_location)
        run = mlflow.start_run(experiment_id=exp_id, run_name=run_name, tags=dict(tags or {}))
        run_log = RunLog(run.info.run_id, mlflow)
        try:
            if config:
                run_log.log_params(config)
            yield run_log
        except BaseException:
            mlflow.end_run(status="FAILED")
            raise
        else:
            mlflow.end_run(status=run_log.status)
    finally:
        if previous_uri is not None:
            mlflow.set_tracking_uri(previous_uri)


def _uri_was_set(mlflow_module: Any) -> bool:
    try:
        from mlflow.tracking._tracking_service.utils import is_tracking_uri_set

        return bool(is_tracking_uri_set())
    except ImportError:  # older/newer MLflow layouts
        return False


def _iso(ms: int | None) -> str | None:
    if ms is None:
        return None
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat(timespec="seconds")


def list_runs(tracking_uri: str, experiment: str = "echoquality") -> list[dict[str, Any]]:
    """Runs of an experiment, newest first: run_id, run_name, status, start_time/end_time (ISO
    UTC), metrics (latest values), params. Empty if the experiment does not exist yet."""
    quiet_mlflow()
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri)
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        return []
    runs = client.search_runs([exp.experiment_id], order_by=["attributes.start_time DESC"])
    return [
        {
            "run_id": r.info.run_id,
            "run_name": r.info.run_name,
            "status": r.info.status,
            "start_time": _iso(r.info.start_time),
            "end_time": _iso(r.info.end_time),
            "metrics": dict(r.data.metrics),
            "params": dict(r.data.params),
            "artifact_uri": r.info.artifact_uri,
        }
        for r in runs
    ]


def mlflow_ui_command(tracking_uri: str, port: int = 5000) -> list[str]:
    """argv that starts the MLflow web UI on this store (open http://127.0.0.1:<port>)."""
    return [
        sys.executable, "-m", "mlflow", "ui",
        "--backend-store-uri", tracking_uri,
        "--host", "127.0.0.1",
        "--port", str(int(port)),
    ]
