"""Which clips a tracked training run held out: the test split in its MLflow ``split.csv``."""
from __future__ import annotations

import csv
from pathlib import Path


def run_test_split(run_id: str, tracking_uri: str, folder: Path) -> set[str]:
    """video_paths of the test split of MLflow run ``run_id`` (its split.csv artifact,
    downloaded into ``folder``); ValueError when the run has none."""
    import mlflow
    from mlflow.exceptions import MlflowException

    try:
        local = mlflow.artifacts.download_artifacts(
            run_id=run_id, artifact_path="split.csv", dst_path=str(folder),
            tracking_uri=tracking_uri)
    except (MlflowException, OSError) as exc:
        raise ValueError(f"MLflow run {run_id!r} has no split.csv, so its test split is "
                         "unknown; use --all-clips to evaluate every labelled clip") from exc
    with open(local, newline="", encoding="utf-8") as fh:
        test = {row["video_path"] for row in csv.DictReader(fh) if row["split"] == "test"}
    if not test:
        raise ValueError(f"MLflow run {run_id!r} has no test split; use --all-clips to "
                         "evaluate every labelled clip (training clips included)")
    return test
