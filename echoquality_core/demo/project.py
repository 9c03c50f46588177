"""The demo project: synthetic clips (`echoquality_core.demo.phantom`) written as DICOM files
(`echoquality_core.dicom.write`) with a labels CSV and a README, so the app can be tried and
tested without patient data.

Clips are written as real multi-frame ultrasound DICOMs (JPEG baseline YBR_FULL_422 or
uncompressed RGB) with obviously fake patients (``DEMO^PATIENT07``). The phantom's and the
writer's names stay importable from here.
"""
from __future__ import annotations

import csv
import os
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from echoquality_core.labels.folder import ProjectFolder
from echoquality_core.dicom.write import JPEG_QUALITY, US_MULTIFRAME_SOP_CLASS, _uid
from echoquality_core.dicom.write import write_dicom_clip as _write_dicom_clip
from echoquality_core.demo.phantom import (
    DEPTH_CM,
    POOR_QUALITIES,
    QUALITIES,
    sector_apex,
    sector_box,
    sector_cm_per_px,
    synthetic_clip,
)

__all__ = ["DEPTH_CM", "FRAME_RATES", "JPEG_QUALITY", "POOR_QUALITIES", "QUALITIES",
           "US_MULTIFRAME_SOP_CLASS", "sector_box", "synthetic_clip", "write_demo_project",
           "write_dicom_clip"]

FRAME_RATES = (25.0, 30.0, 50.0)
_README_MARK = "EchoQuality Studio demo project"
_CLIP_NAME = re.compile(r"p\d+_c\d+\.dcm")


def write_dicom_clip(path: str | os.PathLike, frames: np.ndarray, *,
                     regions: bool | Sequence[tuple[int, int, int, int]] = True,
                     **options) -> Path:
    """`echoquality_core.dicom.write.write_dicom_clip` with the phantom's geometry: regions=True
    writes the demo sector's box (`sector_box`) with its depth and apex, False none, or a list of
    (x0, y0, x1, y1) boxes. Other options are passed on (fps, compression, patient_id, ...)."""
    height, width = np.shape(frames)[1:3] if np.ndim(frames) == 4 else (0, 0)
    if regions is True:
        regions = [sector_box(height, width)]
    if regions and height and width:
        options.setdefault("cm_per_px", sector_cm_per_px(height, width))
        options.setdefault("apex", sector_apex(height, width))
    return _write_dicom_clip(path, frames, regions=list(regions or ()), **options)




@dataclass(frozen=True)
class _PlannedClip:
    name: str
    patient: int
    quality: str
    fps: float
    compression: str
    labelled: bool


def _plan(rng: np.random.Generator, n_clips: int, unlabelled: float) -> list[_PlannedClip]:
    """Who gets which clip: 2-4 clips per patient, half good, poor kinds in turn, 1 in 10
    uncompressed, `unlabelled` of them left out of the CSV (taken from both classes alike)."""
    sizes: list[int] = []
    while sum(sizes) < n_clips:
        sizes.append(int(rng.integers(2, 5)))
    sizes[-1] -= sum(sizes) - n_clips
    if sizes[-1] == 1 and len(sizes) > 1:
        last = sizes.pop()
        sizes[-1] += last
    poor = [POOR_QUALITIES[i % len(POOR_QUALITIES)] for i in range(n_clips // 2)]
    qualities = list(rng.permutation(["good"] * (n_clips - len(poor)) + poor))
    n_out = min(round(unlabelled * n_clips), max(0, n_clips - 2))
    goods = [i for i, q in enumerate(qualities) if q == "good"]
    poors = [i for i, q in enumerate(qualities) if q != "good"]
    rng.shuffle(goods)
    rng.shuffle(poors)
    left_out: set[int] = set()
    while len(left_out) < n_out:  # from the larger class first, then alternating
        bigger = goods if len(goods) >= len(poors) else poors
        left_out.add(bigger.pop())
    digits = max(2, len(str(len(sizes))))
    plan, i = [], 0
    for patient, size in enumerate(sizes, start=1):
        for clip in range(1, size + 1):
            plan.append(_PlannedClip(
                name=f"p{patient:0{digits}d}_c{clip}.dcm",
                patient=patient,
                quality=str(qualities[i]),
                fps=float(rng.choice(FRAME_RATES)),
                compression="none" if i % 10 == 3 else "jpeg",
                labelled=i not in left_out,
            ))
            i += 1
    return plan


def write_demo_project(
    root: str | os.PathLike,
    n_clips: int = 40,
    *,
    n_frames: int = 48,
    height: int = 480,
    width: int = 640,
    seed: int = 0,
    unlabelled: float = 0.2,
    progress: Callable[[int, int, str], None] | None = None,
) -> Path:
    """Write a synthetic project: ``root/clips/*.dcm``, ``root/labels.csv`` (video_path,
    quality_score: 1 good, 0 poor; some clips left unlabelled) and ``root/README.txt``.
    ``progress(done, total, name)`` is called after each clip.

    The same seed gives byte-identical files. Clips from an earlier demo project in the same
    folder that this one does not write again are removed. Returns the labels CSV's path.
    """
    if n_clips < 1:
        raise ValueError(f"n_clips must be at least 1, got {n_clips}")
    if not 0.0 <= unlabelled < 1.0:
        raise ValueError(f"unlabelled must be a fraction in [0, 1), got {unlabelled}")
    root = Path(root)
    clips_dir = root / "clips"
    clips_dir.mkdir(parents=True, exist_ok=True)
    plan_seed, *clip_seeds = np.random.SeedSequence(seed).spawn(n_clips + 1)
    plan = _plan(np.random.default_rng(plan_seed), n_clips, unlabelled)
    _remove_stale_clips(root, {p.name for p in plan})

    studies: dict[int, str] = {}
    for done, (planned, clip_seed) in enumerate(zip(plan, clip_seeds, strict=True), start=1):
        rng = np.random.default_rng(clip_seed)
        frames = synthetic_clip(rng, planned.quality, n_frames, height, width, fps=planned.fps)
        study_uid = studies.setdefault(planned.patient, _uid("study", seed, planned.patient))
        write_dicom_clip(
            clips_dir / planned.name, frames, fps=planned.fps, compression=planned.compression,
            patient_id=f"DEMO-P{planned.patient:02d}",
            patient_name=f"DEMO^PATIENT{planned.patient:02d}",
            study_uid=study_uid, instance_number=int(planned.name.split("_c")[1][:-4]),
        )
        if progress is not None:
            progress(done, n_clips, planned.name)

    (root / "README.txt").write_text(_readme(plan), encoding="utf-8")
    csv_path = ProjectFolder(root).labels_csv
    partial = csv_path.with_name(f"{csv_path.name}.partial")
    with partial.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(["video_path", "quality_score"])
        for p in plan:
            if p.labelled:
                writer.writerow([f"clips/{p.name}", 1 if p.quality == "good" else 0])
    os.replace(partial, csv_path)
    return csv_path


def _remove_stale_clips(root: Path, keep: Iterable[str]) -> None:
    """Delete demo clips of an earlier demo project here (only in a folder we wrote)."""
    readme = root / "README.txt"
    if not readme.is_file() or not readme.read_text(encoding="utf-8").startswith(_README_MARK):
        return
    keep = set(keep)
    for old in (root / "clips").glob("p*_c*.dcm"):
        if _CLIP_NAME.fullmatch(old.name) and old.name not in keep:
            old.unlink()


def _readme(plan: list[_PlannedClip]) -> str:
    rows = "\n".join(
        f"  clips/{p.name:<14} {p.quality:<13} {p.fps:>4g} fps  "
        f"{'JPEG' if p.compression == 'jpeg' else 'RGB '}  "
        f"{('good (1)' if p.quality == 'good' else 'poor (0)') if p.labelled else 'unlabelled'}"
        for p in plan
    )
    return f"""{_README_MARK} - SYNTHETIC DATA, NOT FROM ANY PATIENT

Every clip here was generated by echoquality_core.demo.project: a drawn sector scan with speckle, a
beating four-chamber heart, burned-in text and an ECG trace. Patient names and IDs
(DEMO^PATIENTnn, DEMO-Pnn) and dates are fake. Use it to try EchoQuality Studio and to run its
tests; it says nothing about real echocardiograms.

labels.csv: video_path (relative to this folder), quality_score (1 good, 0 poor). Some clips are
left unlabelled on purpose, to be labelled in the app. Poor-quality kinds: noise, blur,
low_contrast, dropout (rib shadows, lost frames), off_axis (heart cut by the sector edge).

Clips:
{rows}
"""
