"""MLflow bookkeeping for training runs: a local SQLite store in the project folder by default.

The store is ``sqlite:///<project>/mlruns.db`` with artifacts in ``<project>/mlartifacts``;
any tracking URI can be set instead. Only settings, split sizes, file hashes, metrics, plots
and models are logged: nothing from DICOM headers, no patient keys.
"""
from __future__ import annotations

import contextlib
import logging
import math
import os
import socket
import sys
import warnings
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlparse
from urllib.request import url2pathname

from echoquality_core.labels.folder import RUNS_DIR, ProjectFolder
from echoquality_core.runs.folder import BEST_FILE, RunFolder

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

log = logging.getLogger(__name__)

_NOISY_LOGGERS = ("mlflow", "alembic", "mlflow.store.db.utils", "mlflow.pytorch")
_MAX_PARAM_LEN = 500
PID_TAG, HOST_TAG = "process_id", "host"  # who trains a run: to find runs left RUNNING
MODEL_CHECKPOINT_DIR = "artifacts"  # where a logged pyfunc model keeps best.pt


def quiet_mlflow() -> None:
    """Keep MLflow's and alembic's INFO chatter and known warnings out of the user's console."""
    for name in _NOISY_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", module=r"mlflow(\..*)?")
    warnings.filterwarnings("ignore", message=r".*pydantic.*", category=UserWarning)


def default_tracking_uri(project_dir: str | os.PathLike) -> str:
    """``sqlite:///<abs project dir>/mlruns.db``."""
    return f"sqlite:///{ProjectFolder(Path(project_dir).resolve()).tracking_db.as_posix()}"


def default_artifact_location(project_dir: str | os.PathLike) -> str:
    """``file://<abs project dir>/mlartifacts`` (where a new experiment keeps its artifacts)."""
    return ProjectFolder(Path(project_dir).resolve()).artifacts.as_uri()


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
        mark_stale_runs(tracking_uri, experiment)
        owner = {PID_TAG: str(os.getpid()), HOST_TAG: socket.gethostname()}
        run = mlflow.start_run(experiment_id=exp_id, run_name=run_name,
                               tags={**owner, **dict(tags or {})})
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


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True
    return True


def mark_stale_runs(tracking_uri: str, experiment: str = "echoquality") -> list[str]:
    """Mark KILLED the runs still RUNNING whose training process (on this computer) is gone:
    a training killed with ``kill -9``, or by a power cut, cannot end its own run. Returns
    their run ids. Runs of other computers, and of living processes, are left alone."""
    found = _experiment(tracking_uri, experiment)
    if found is None:
        return []
    client, exp = found
    stale = []
    for run in client.search_runs([exp.experiment_id], "attributes.status = 'RUNNING'"):
        tags = run.data.tags
        pid = tags.get(PID_TAG, "")
        if tags.get(HOST_TAG) != socket.gethostname() or not pid.isdigit():
            continue
        if not _process_alive(int(pid)):
            client.set_tag(run.info.run_id, "ended_by", "found running after its process died")
            client.set_terminated(run.info.run_id, status="KILLED")
            stale.append(run.info.run_id)
    return stale


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


def _experiment(tracking_uri: str, experiment: str) -> tuple[Any, Any] | None:
    """(MlflowClient, experiment) of a store, or None when the experiment, or the SQLite store
    file, does not exist (the file is not created)."""
    if not store_exists(tracking_uri):
        return None
    quiet_mlflow()
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri)
    exp = client.get_experiment_by_name(experiment)
    return None if exp is None else (client, exp)


def store_exists(tracking_uri: str) -> bool:
    """False only for a ``sqlite:///`` store whose file does not exist yet (no run was logged);
    other stores cannot be told without asking MLflow."""
    db = _sqlite_file(tracking_uri)
    return db is None or db.is_file()


def _sqlite_file(tracking_uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` URI (None for other stores)."""
    if not tracking_uri.startswith("sqlite:///"):
        return None
    return Path(tracking_uri[len("sqlite:///"):])


def list_runs(tracking_uri: str, experiment: str = "echoquality") -> list[dict[str, Any]]:
    """Runs of an experiment, newest first: run_id, run_name, status, start_time/end_time (ISO
    UTC), metrics (latest values), params, tags (without MLflow's own ``mlflow.*``) and
    artifact_uri. Empty if the experiment, or the SQLite store file, does not exist yet (the
    file is not created)."""
    found = _experiment(tracking_uri, experiment)
    if found is None:
        return []
    client, exp = found
    runs = client.search_runs([exp.experiment_id], order_by=["attributes.start_time DESC"])
    models = _model_locations(client, exp.experiment_id)
    return [
        {
            "run_id": r.info.run_id,
            "run_name": r.info.run_name,
            "status": r.info.status,
            "start_time": _iso(r.info.start_time),
            "end_time": _iso(r.info.end_time),
            "metrics": dict(r.data.metrics),
            "params": dict(r.data.params),
            "tags": {k: v for k, v in r.data.tags.items() if not k.startswith("mlflow.")},
            "artifact_uri": r.info.artifact_uri,
            "model_artifact_uri": models.get(r.info.run_id),
        }
        for r in runs
    ]


def _model_locations(client: Any, experiment_id: str) -> dict[str, str]:
    """{run id: artifact location of the model it logged} (MLflow 3 keeps a logged model's
    files outside its run's artifacts); the first model a run logged wins."""
    found: dict[str, str] = {}
    for model in client.search_logged_models(experiment_ids=[experiment_id]):
        if model.source_run_id and model.artifact_location:
            found.setdefault(model.source_run_id, model.artifact_location)
    return found


def _local_path(uri: str | None) -> Path | None:
    if not uri:
        return None
    if uri.startswith("file:"):
        return Path(url2pathname(urlparse(uri).path))
    return Path(uri) if "://" not in uri else None


def local_artifact_dir(run: Mapping[str, Any]) -> Path | None:
    """The folder of a run's artifacts when they are stored on this computer (``file:`` URI)."""
    return _local_path(run.get("artifact_uri"))


def run_folder(run: Mapping[str, Any], project_dir: str | os.PathLike) -> Path | None:
    """Where a run's files are on disk: its training folder (``<project>/<save_dir>/<run_dir
    tag>``, with best.pt, summary.json, plots) if it still exists, else its local artifact
    folder; None when neither exists (e.g. a cancelled run)."""
    name = (run.get("tags") or {}).get("run_dir")
    save_dir = (run.get("params") or {}).get("save_dir") or RUNS_DIR
    if name:
        folder = Path(project_dir) / save_dir / name
        if folder.is_dir():
            return folder.resolve()
    artifacts = local_artifact_dir(run)
    return artifacts if artifacts is not None and artifacts.is_dir() else None


def run_checkpoint(run: Mapping[str, Any], project_dir: str | os.PathLike) -> Path | None:
    """The run's best model file (``best*.pt``; ``best.pt`` first) in its training folder, its
    artifacts' ``checkpoints/`` or its logged pyfunc model; None when the run kept no model
    (cancelled, failed early, or deleted) or did not finish: a killed, failed or running run's
    best.pt may be partial."""
    if run.get("status", "FINISHED") != "FINISHED":
        return None
    model = _local_path(run.get("model_artifact_uri"))
    folders = [run_folder(run, project_dir), local_artifact_dir(run),
               None if model is None else model / MODEL_CHECKPOINT_DIR]
    for folder in folders:
        found = RunFolder(folder).find_checkpoint() if folder is not None else None
        if found is not None:
            return found
    return None


def download_checkpoint(run_id: str, tracking_uri: str, dest: str | os.PathLike) -> Path:
    """Download the best checkpoint of an MLflow run into ``dest``: the one its pyfunc model
    holds, else its ``checkpoints/best.pt`` artifact (runs logged without a model, or before
    the model held it); ValueError naming the run and store when there is none."""
    quiet_mlflow()
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    import mlflow
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    try:
        client = MlflowClient(tracking_uri)
        models = _model_locations(client, client.get_run(run_id).info.experiment_id)
        where = {"run_id": run_id, "artifact_path": f"checkpoints/{BEST_FILE}"}
        if run_id in models and not client.list_artifacts(run_id, "checkpoints"):
            where = {"artifact_uri": f"{models[run_id]}/{MODEL_CHECKPOINT_DIR}/{BEST_FILE}"}
        local = mlflow.artifacts.download_artifacts(**where, dst_path=str(dest),
                                                    tracking_uri=tracking_uri)
    except (MlflowException, OSError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ValueError(f"no best checkpoint for MLflow run {run_id!r} in {tracking_uri} "
                         f"({first})") from exc
    return Path(local)


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free on ``host`` right now (asked from the operating system)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


# Environment for the MLflow UI process: no background job runner (not needed to browse runs;
# it slows start-up and shutdown), no telemetry.
MLFLOW_UI_ENV = {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false", "MLFLOW_DISABLE_TELEMETRY": "true"}


def mlflow_ui_command(tracking_uri: str, port: int = 5000, workers: int = 1) -> list[str]:
    """argv that starts the MLflow web UI on this store (open http://127.0.0.1:<port>); run it
    with ``MLFLOW_UI_ENV`` added to the environment. One worker process is plenty for one user."""
    return [
        sys.executable, "-m", "mlflow", "ui",
        "--backend-store-uri", tracking_uri,
        "--host", "127.0.0.1",
        "--port", str(int(port)),
        "--workers", str(int(workers)),
    ]
