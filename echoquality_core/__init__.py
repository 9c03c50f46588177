"""EchoQuality core: DICOM clips → EchoPrime-compatible tensors → R(2+1)D quality model.

No Qt here. The names of the original EchoQuality training guide are importable from this package
(`from echoquality_core import EchoDataset, evaluate_model, ...`); they load lazily so that
`import echoquality_core` stays cheap (no torch import until a model name is used).
"""
from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "read_clip": "dicom",
    "Clip": "dicom",
    "DicomReadError": "dicom",
    "preprocess_clip": "data.preprocess",
    "PreprocessParams": "data.preprocess",
    "LabelStore": "labels.store",
    "LabelError": "labels.store",
    "write_demo_project": "demo.project",
    "build_model": "model.network",
    "load_weights": "model.network",
    "freeze_model_except_final_layers": "model.network",
    "WeightsError": "model.network",
    "EchoVideoAugmentation": "data.augment",
    "create_synthetic_low_quality": "data.augment",
    "FocalLoss": "train.losses",
    "EchoDataset": "data.clips",
    "split_by_patient": "data.clips",
    "TrainConfig": "train.config",
    "Trainer": "train.trainer",
    "train_epoch": "train.loop",
    "evaluate_model": "evaluation.evaluate",
    "log_evaluation_to_mlflow": "evaluation.evaluate",
    "analyze_misclassifications": "evaluation.evaluate",
    "visualize_gradcam": "scoring.gradcam",
    "gradcam": "scoring.gradcam",
    "score_clips": "scoring.score",
}

__all__ = sorted(_EXPORTS)  # noqa: PLE0605 (names are the keys above)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'echoquality_core' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"echoquality_core.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(list(globals()) + __all__)
