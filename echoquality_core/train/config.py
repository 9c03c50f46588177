"""Training settings: ``TrainConfig`` (the training guide's names and defaults, then ours), its
TOML form and the choices it accepts. No torch here: the GUI's form reads its defaults from it.
"""
from __future__ import annotations

import dataclasses
import os
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from echoquality_core.data.preprocess import PreprocessParams
from echoquality_core.labels.folder import RUNS_DIR

LOSSES = ("bce", "focal")
SCHEDULERS = ("plateau", "cosine_restarts", "none")
PATH_FIELDS = ("annotations_csv", "videos_dir", "model_weights", "save_dir", "cache_dir",
               "split_csv")


@dataclass
class TrainConfig:
    """Training settings; the first block has the training guide's names and defaults.

    ``model_weights=None`` starts from random weights (with a warning); the guide's file is
    ``video_quality_model.pt``. ``cache_dir=None`` means ``<CSV folder>/.echoquality/cache``;
    ``tracking_uri=None`` means ``sqlite:///<CSV folder>/mlruns.db`` (artifacts in
    ``<CSV folder>/mlartifacts``).
    """

    batch_size: int = 8
    epochs: int = 20
    learning_rate: float = 1e-4
    weight_decay: float = 1e-5
    device: str = "auto"
    annotations_csv: str = "echo_annotations.csv"
    videos_dir: str | None = "echo_videos"
    model_weights: str | None = None
    save_dir: str = RUNS_DIR
    use_mlflow: bool = True
    num_unfrozen_layers: int = 2

    loss: str = "bce"  # "bce" | "focal"
    focal_alpha: float = 0.25
    focal_gamma: float = 2.0
    class_weighting: bool = False  # weight the good class by n_poor / n_good
    scheduler: str = "plateau"  # "plateau" | "cosine_restarts" | "none"
    cosine_t0: int = 5  # cosine_restarts: epochs until the first restart
    cosine_t_mult: int = 2  # cosine_restarts: each restart period is this many times longer
    grad_accum_steps: int = 1
    amp: bool = True  # mixed precision where native: bf16 CPUs (AVX512-BF16/AMX), CUDA
    unfreeze_schedule: str = ""  # e.g. "fc@0,layer4@3,layer3@6"; overrides num_unfrozen_layers
    early_stopping_patience: int = 0  # epochs without improvement; 0 = off
    seed: int = 42
    augment: bool = False
    synthetic_pairs: bool = False  # degraded copies of good training clips, labelled 0
    frozen_trunk_cache: bool = True  # frozen blocks' outputs computed once per clip (if allowed)
    n_frames: int = 16
    stride: int = 2
    size: int = 112  # model input height/width (EchoPrime: 112)
    mask: str = "sector"
    split: tuple[float, float, float] = (0.7, 0.15, 0.15)
    num_workers: int = 0
    cache_dir: str | None = None
    tracking_uri: str | None = None
    experiment: str = "echoquality"
    threshold: str | float = "youden"
    log_mlflow_model: bool = True
    run_name: str | None = None
    split_csv: str | None = None  # a given split (video_path, split); clips not in it are unused
    parent_run_id: str | None = None  # MLflow run this one is nested under (cross-validation)

    def __post_init__(self) -> None:
        self.split = tuple(float(f) for f in self.split)  # TOML gives a list
        problems = []
        for name in ("batch_size", "epochs", "grad_accum_steps", "n_frames", "stride", "size",
                     "cosine_t0", "cosine_t_mult"):
            if int(getattr(self, name)) < 1:
                problems.append(f"{name} must be at least 1")
        if self.learning_rate <= 0:
            problems.append("learning_rate must be positive")
        if self.loss not in LOSSES:
            problems.append(f"loss must be one of {LOSSES}")
        if self.scheduler not in SCHEDULERS:
            problems.append(f"scheduler must be one of {SCHEDULERS}")
        if len(self.split) != 3 or min(self.split) < 0 or self.split[0] <= 0 or self.split[1] <= 0:
            problems.append("split must be three fractions (train, val, test) with train, val > 0")
        if self.unfreeze_schedule:
            from echoquality_core.model.network import parse_unfreeze_schedule

            try:
                if 0 not in parse_unfreeze_schedule(self.unfreeze_schedule):
                    problems.append("unfreeze_schedule must make a block trainable at epoch 0 "
                                    "(e.g. 'fc@0,layer4@3'); otherwise nothing can learn")
            except ValueError as exc:
                problems.append(str(exc))
        if problems:
            raise ValueError("Invalid training settings: " + "; ".join(problems))

    @property
    def preprocess(self) -> PreprocessParams:
        """Preprocessing settings of this run."""
        return PreprocessParams(n_frames=self.n_frames, stride=self.stride, size=self.size,
                                mask=self.mask)

    def to_dict(self) -> dict[str, Any]:
        """Plain dict of the settings (JSON/TOML/MLflow friendly)."""
        out = dataclasses.asdict(self)
        out["split"] = list(self.split)
        return out

    @classmethod
    def from_toml(cls, path: str | os.PathLike, **overrides: Any) -> TrainConfig:
        """Settings from a TOML file (top level or a ``[train]`` table; keys are the field
        names); relative paths in it are taken relative to the TOML file's folder."""
        path = Path(path)
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
        data = dict(data.get("train", data))
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"{path.name}: unknown setting(s) {unknown}")
        for name in PATH_FIELDS:
            if data.get(name) and not Path(data[name]).is_absolute():
                data[name] = str((path.parent / data[name]).resolve())
        data.update(overrides)
        return cls(**data)


def loggable_config(config: TrainConfig) -> dict[str, Any]:
    """Settings for MLflow params: paths reduced to file/folder names (no local paths)."""
    out = config.to_dict()
    out.pop("tracking_uri")
    for name in PATH_FIELDS:
        if out.get(name):
            out[name] = Path(out[name]).name
    return out


def off_reason(config: Any) -> str | None:
    """Why the frozen trunk cannot be cached for a run of ``config`` (a TrainConfig or any
    object with its ``frozen_trunk_cache``, ``augment`` and ``synthetic_pairs``): a clip's input
    changes between epochs; None when it is cached."""
    if not config.frozen_trunk_cache:
        return "turned off in the settings"
    if config.augment:
        return "augmentation changes each clip every epoch"
    if config.synthetic_pairs:
        return "synthetic pairs degrade clips at random every epoch"
    return None
