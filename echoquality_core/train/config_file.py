"""Training settings as a commented ``train.toml`` (``echoquality train --print-config``).

Every setting is written, with what it does; the file reads back into the same settings with
``TrainConfig.from_toml`` (TOML has no null: an unset path is written as ``""``, which means the
same as unset).
"""
from __future__ import annotations

import dataclasses
import json
from typing import Any

HELP = {
    "batch_size": "clips per optimiser step; lower it if the GPU runs out of memory",
    "epochs": "passes over the training clips",
    "learning_rate": "AdamW step size; 1e-4 is a safe start for fine-tuning",
    "weight_decay": "AdamW weight decay",
    "device": '"auto" (a GPU if there is one), "cpu", "cuda", "cuda:1", "mps"',
    "annotations_csv": "labels CSV (video_path, quality_score); relative to this file",
    "videos_dir": "folder the CSV's clip paths are relative to (besides the CSV's folder)",
    "model_weights": 'starting weights: "echoprime-quality", "kinetics400", a weights file, or '
                     '"" for random (see `echoquality weights list`)',
    "save_dir": "where each run's folder is written (relative to the CSV's folder)",
    "use_mlflow": "track the run in MLflow",
    "num_unfrozen_layers": "final blocks that learn: 1 = fc, 2 = fc + layer4, ... 6 = all",
    "loss": '"bce" (binary cross-entropy) or "focal" (hard clips count more)',
    "focal_alpha": "focal loss: weight of the good class",
    "focal_gamma": "focal loss: how much easy clips are down-weighted",
    "class_weighting": "weight the good class by n_poor / n_good",
    "scheduler": '"plateau" (divide the rate by 10 when validation stalls), '
                 '"cosine_restarts" or "none"',
    "cosine_t0": "cosine_restarts: epochs until the first restart",
    "cosine_t_mult": "cosine_restarts: each period is this many times longer",
    "grad_accum_steps": "batches whose gradients add up before each step",
    "amp": "mixed precision where native (bf16 CPU, CUDA)",
    "unfreeze_schedule": 'progressive unfreezing, e.g. "fc@0,layer4@3,layer3@6" (epochs from '
                         "0); overrides num_unfrozen_layers",
    "early_stopping_patience": "stop after this many epochs without improvement (0 = off)",
    "seed": "random seed (split, shuffling, initialisation)",
    "augment": "vary brightness, contrast, angle, position and zoom of training clips",
    "synthetic_pairs": "add degraded copies of good training clips, labelled poor",
    "frozen_trunk_cache": "compute the frozen blocks once per clip (not with augment, "
                          "synthetic_pairs)",
    "n_frames": "frames per clip the model sees (EchoPrime: 16)",
    "stride": "take every n-th frame (EchoPrime: 2)",
    "size": "model input height and width in pixels (EchoPrime: 112)",
    "mask": '"sector" (EchoPrime mask), "region" (DICOM ultrasound region) or "none"',
    "split": "train, validation, test fractions (grouped by patient)",
    "num_workers": "clip-loading processes (0 = in the training process)",
    "cache_dir": 'preprocessed clips; "" = <CSV folder>/.echoquality/cache',
    "tracking_uri": 'MLflow tracking URI; "" = sqlite:///<CSV folder>/mlruns.db',
    "experiment": "MLflow experiment name",
    "threshold": '"youden" (chosen on validation) or a fixed number such as 0.5',
    "log_mlflow_model": "also log the model in MLflow's model format",
    "run_name": 'name of the run folder and MLflow run; "" = date-time and a random suffix',
    "split_csv": 'a given split (video_path, split: train/val/test); clips not in it are '
                 'unused; "" = split by patient',
    "parent_run_id": 'MLflow run this one is nested under (set by cross-validation); "" = none',
}


def _value(value: Any) -> str:
    if value is None:
        return '""'
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    return json.dumps(str(value))


def config_toml(config: Any) -> str:
    """A ``[train]`` table with every field of ``config`` (a TrainConfig), one commented line
    each, in the dataclass's order."""
    lines = ["# EchoQuality training settings: echoquality train --config train.toml",
             "# Options given on the command line override these.", "[train]"]
    for field in dataclasses.fields(config):
        text = f"{field.name} = {_value(getattr(config, field.name))}"
        note = HELP.get(field.name)
        lines.append(f"{text:<40} # {note}" if note else text)
    return "\n".join(lines) + "\n"
