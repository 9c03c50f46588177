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
    "preprocess_clip": "preprocess",
    "PreprocessParams": "preprocess",
    "LabelStore": "labels",
    "LabelError": "labels",
    "write_demo_project": "demo",
    "build_model": "model",
    "load_weights": "model",
    "freeze_model_except_final_layers": "model",
    "WeightsError": "model",
    "EchoVideoAugmentation": "augment",
    "create_synthetic_low_quality": "augment",
    "FocalLoss": "losses",
    "EchoDataset": "data",
    "split_by_patient": "data",
    "TrainConfig": "train_config",
    "Trainer": "train",
    "train_epoch": "train_loop",
    "evaluate_model": "evaluate",
    "log_evaluation_to_mlflow": "evaluate",
    "analyze_misclassifications": "evaluate",
    "visualize_gradcam": "gradcam",
    "gradcam": "gradcam",
    "score_clips": "scoring",
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
