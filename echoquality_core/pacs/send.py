"""Results back to the PACS: the rows of a scores CSV as Comprehensive SRs (see ``sr.py``), sent
with STOW-RS (one request per study) or written to a folder. Nothing about the clips is printed
or logged beyond counts and hashed file names."""
from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
from collections import defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pydicom

from echoquality_core.pacs.connection import PacsConnection, PacsError
from echoquality_core.pacs.retrieve import uid_key
from echoquality_core.pacs.sr import HEADER_TAGS, ClipResult, build_sr

log = logging.getLogger(__name__)


def model_version(model: str | os.PathLike, info: Mapping[str, Any] | None = None) -> str:
    """How the SR names the model: its file name, MLflow run (if any) and a content hash."""
    path = Path(model)
    digest = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for file in files:
        with open(file, "rb") as fh:
            for block in iter(lambda fh=fh: fh.read(1 << 20), b""):
                digest.update(block)
    run = (info or {}).get("run_id")
    return f"{path.name}{f' run {run}' if run else ''} sha256:{digest.hexdigest()[:12]}"


@dataclasses.dataclass
class Collected:
    """Clip results from a scores CSV, and (name, reason) for rows that give none."""

    results: list[ClipResult] = dataclasses.field(default_factory=list)
    names: list[str] = dataclasses.field(default_factory=list)
    skipped: list[tuple[str, str]] = dataclasses.field(default_factory=list)


def results_from_scores(scores_csv: str | os.PathLike, *, threshold: float, version: str,
                        root: str | os.PathLike | None = None) -> Collected:
    """A :class:`ClipResult` per scored row of ``scores_csv`` (``video_path`` relative to
    ``root``, default the CSV's folder); rows without a score or whose clip cannot be read are
    listed in ``skipped``."""
    from echoquality_core.scoring.scores_csv import read_scores

    scores_csv = Path(scores_csv)
    if not scores_csv.is_file():
        raise FileNotFoundError(f"scores CSV not found: {scores_csv}")
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"threshold must lie in 0..1, got {threshold:g}")
    try:
        table = read_scores(scores_csv)
    except (KeyError, ValueError) as exc:
        raise ValueError(f"{scores_csv.name}: not a scores CSV ({exc})") from None
    root = Path(root) if root is not None else scores_csv.parent
    out = Collected()
    for name, score in zip(table["video_path"], table["score"], strict=True):
        if score != score:  # NaN: the clip could not be scored
            out.skipped.append((name, "no score"))
            continue
        path = Path(name) if Path(name).is_absolute() else root / name
        try:
            ds = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=HEADER_TAGS)
            out.results.append(ClipResult.from_header(ds, score, threshold, version))
            out.names.append(name)
        except (OSError, AttributeError, pydicom.errors.InvalidDicomError) as exc:
            out.skipped.append((name, f"cannot read its DICOM header ({type(exc).__name__})"))
    return out


def sr_file_name(result: ClipResult) -> str:
    """File name of a clip's SR: ``sr_<instance key>.dcm`` (the clip's hashed UID)."""
    return f"sr_{uid_key(result.sop_uid)}.dcm"


def write_results(results: Sequence[ClipResult], out_dir: str | os.PathLike) -> list[Path]:
    """Write each result's SR into ``out_dir`` (atomically); the paths written."""
    from echoquality_core.files.atomic import atomic_write

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for result in results:
        path = out_dir / sr_file_name(result)
        with atomic_write(path) as fh:
            build_sr(result).save_as(fh, enforce_file_format=True)
        paths.append(path)
    return paths


@dataclasses.dataclass
class SendResult:
    """SRs stored by the PACS, and (SR file name, reason) for each it did not store."""

    sent: list[str] = dataclasses.field(default_factory=list)
    failed: list[tuple[str, str]] = dataclasses.field(default_factory=list)


def send_results(conn: PacsConnection, results: Sequence[ClipResult]) -> SendResult:
    """STOW-RS each result's SR into its study (one request per study)."""
    by_study: dict[str, list[ClipResult]] = defaultdict(list)
    for result in results:
        by_study[result.study_uid].append(result)
    out = SendResult()
    for study_uid, items in by_study.items():
        datasets = [build_sr(r) for r in items]
        names = [sr_file_name(r) for r in items]
        with conn.errors("sending results"):
            answer = conn.client().store_instances(datasets, study_instance_uid=study_uid)
        failed = {str(item.get("ReferencedSOPInstanceUID", ""))
                  for item in answer.get("FailedSOPSequence", [])}
        for ds, name in zip(datasets, names, strict=True):
            if str(ds.SOPInstanceUID) in failed:
                out.failed.append((name, f"{name}: the PACS did not store it"))
            else:
                out.sent.append(name)
    if out.failed:
        log.warning("%d result(s) not stored by the PACS", len(out.failed))
    return out


def require_sent(result: SendResult) -> None:
    """Raise :class:`PacsError` if any SR was not stored."""
    if result.failed:
        raise PacsError(result.failed[0][1] + (f" (and {len(result.failed) - 1} more)"
                                               if len(result.failed) > 1 else ""))
