"""The trained model as an MLflow pyfunc: DICOM paths in, the score, pass/fail and assessment
under the saved threshold and calibration out, so ``mlflow models serve`` and
``mlflow.pyfunc.load_model(uri).predict(...)`` work without the app.

The logged model holds one file of weights, the run's ``best.pt`` checkpoint (threshold and
preprocessing inside); the code it runs is this package (``echoquality-studio`` must be
installed where the model is served, e.g. ``mlflow models serve --env-manager local``).
Input: a DataFrame with a ``video_path`` column (paths of DICOM files readable where the model
runs). Output: one row per input row with ``video_path, score, pass, assessment, error``,
exactly what ``echoquality score`` writes for the same clips.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pandas as pd

from echoquality_core.runs.tracking import quiet_mlflow

CHECKPOINT_ARTIFACT = "checkpoint"
OUTPUT_COLUMNS = ("video_path", "score", "pass", "assessment", "error")
REQUIREMENTS = ["echoquality-studio", "torch", "torchvision", "pydicom", "pandas"]

quiet_mlflow()
import mlflow.pyfunc  # noqa: E402  (after quieting MLflow's import-time logging)


class EchoQualityModel(mlflow.pyfunc.PythonModel):
    """Scores DICOM clips with the checkpoint logged next to it."""

    def load_context(self, context: Any) -> None:
        from echoquality_core.decision import Decision
        from echoquality_core.model.checkpoint import load_scoring_model, params_from_info

        self.net, info = load_scoring_model(context.artifacts[CHECKPOINT_ARTIFACT])
        self.params = params_from_info(info)
        self.decision = Decision.from_info(info)

    def predict(self, context: Any, model_input: pd.DataFrame,
                params: dict[str, Any] | None = None) -> pd.DataFrame:
        """Scores of the clips named in ``model_input["video_path"]``."""
        from echoquality_core.scoring.score import ClipInput, score_clips

        paths = _paths(model_input)
        if not paths:
            return pd.DataFrame(columns=list(OUTPUT_COLUMNS))
        clips = [ClipInput(Path(p), p) for p in paths]
        table = score_clips(clips, self.net, threshold=self.decision.threshold,
                            calibration=self.decision.calibration, params=self.params,
                            device=os.environ.get("ECHOQUALITY_DEVICE", "auto"))
        table = table.set_index("video_path").loc[paths]
        passed = table["pass"].astype(object)
        return pd.DataFrame({
            "video_path": paths,
            "score": table["score"].astype(float).to_numpy(),
            "pass": passed.where(passed.notna(), None).to_numpy(),
            "assessment": table["assessment"].to_numpy(),
            "error": table["error"].to_numpy(),
        })

def _paths(model_input: Any) -> list[str]:
    if isinstance(model_input, pd.DataFrame):
        if "video_path" not in model_input.columns:
            raise ValueError("input needs a 'video_path' column with DICOM file paths")
        values = model_input["video_path"].tolist()
    elif isinstance(model_input, dict):
        values = list(model_input.get("video_path", []))
    else:
        values = list(model_input)
    return [str(v) for v in values]


def signature():
    """Input: ``video_path`` (string); output: score, pass, assessment, error."""
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, Schema

    return ModelSignature(
        inputs=Schema([ColSpec("string", "video_path")]),
        outputs=Schema([ColSpec("string", "video_path"), ColSpec("double", "score"),
                        ColSpec("boolean", "pass"), ColSpec("string", "assessment"),
                        ColSpec("string", "error")]),
    )


def log_pyfunc_model(checkpoint: str | os.PathLike, name: str = "model") -> str:
    """Log ``checkpoint`` as a pyfunc model in the active MLflow run; returns its model URI."""
    info = mlflow.pyfunc.log_model(
        name=name,
        python_model=EchoQualityModel(),
        artifacts={CHECKPOINT_ARTIFACT: os.fspath(checkpoint)},
        signature=signature(),
        input_example=pd.DataFrame({"video_path": ["/data/echo/clip_0001.dcm"]}),
        pip_requirements=REQUIREMENTS,
    )
    return info.model_uri


def save_pyfunc_model(checkpoint: str | os.PathLike, path: str | os.PathLike) -> Path:
    """Write the pyfunc model into a folder (no tracking server needed)."""
    mlflow.pyfunc.save_model(
        os.fspath(path), python_model=EchoQualityModel(),
        artifacts={CHECKPOINT_ARTIFACT: os.fspath(checkpoint)}, signature=signature(),
        pip_requirements=REQUIREMENTS,
    )
    return Path(path)
