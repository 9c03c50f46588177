"""Score many clips with a quality model and write one CSV row per clip (``scores_csv``).

Each row holds the clip's ``decision.Verdict`` under the model's threshold and calibration
(``score`` calibrated, ``pass``, ``assessment``), its frame count and rate, and its ``error``. A
clip that cannot be read or preprocessed gets a row with its ``error`` and an empty score
instead of stopping the run. A GradCAM strip that cannot be written leaves the score as it is
and says ``gradcam failed: <reason>`` in ``error``.

The run is resumable: clips with a score in an existing output CSV (matched by ``video_path``)
are skipped; clips whose row has no score (unreadable last time, e.g. still being copied) are
tried again, their old rows first removed (``ScoresFile.drop``), so the file ends with one row
per clip. Each batch's rows are appended at once, so a crash loses at most the batch being
scored. Nothing from DICOM headers except the frame count and frame rate reaches the output.

The network scores with its BatchNorms folded into its convolutions (``model.fold``): in place
for a model read from a file, a copy for a module the caller keeps or when GradCAM strips are
asked for (GradCAM explains the network as it is). A module the caller keeps is put in the memory
format scoring uses (``precision.prepare_model``), in place.
"""
from __future__ import annotations

import csv
import dataclasses
import logging
import os
import re
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from echoquality_core.model import precision
from echoquality_core.model.fold import fold_batchnorm
from echoquality_core.model.checkpoint import (
    forward_scores,
    params_from_info,
    read_scoring_model,
    require_checkpoint,
)
from echoquality_core.data.clips import ClipCache, ClipLoadError, clip_model_frames
from echoquality_core.decision import Decision, Verdict
from echoquality_core.dicom import DicomReadError, find_clips, read_clip
from echoquality_core.model.network import resolve_device
from echoquality_core.data.preprocess import PreprocessParams, normalize
from echoquality_core.scoring.scores_csv import ScoresFile, read_scores, rows_table

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)

ProgressFn = Callable[[int, int, str], None]


# --- which clips -------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class ClipInput:
    """One clip to score: where it is and how the output names it."""

    path: Path
    name: str


def collect_clips(
    inputs: str | os.PathLike | ClipInput | Sequence[str | os.PathLike | ClipInput],
) -> list[ClipInput]:
    """The clips named by folders (searched recursively by content), files, CSV files with a
    ``video_path`` column (relative paths are taken from the CSV's folder) or ClipInputs.

    Output names are relative to the folder when exactly one folder is given, otherwise the
    paths as given (as written in the CSV for CSV input). Duplicates are dropped.
    """
    if isinstance(inputs, (str, os.PathLike, ClipInput)):
        inputs = [inputs]
    inputs = [p if isinstance(p, ClipInput) else Path(p) for p in inputs]
    if not inputs:
        raise ValueError("nothing to score: give at least one folder, DICOM file or CSV")
    for p in inputs:
        if isinstance(p, Path) and not p.exists():
            raise FileNotFoundError(f"not found: {p}")
    one_folder = len(inputs) == 1 and isinstance(inputs[0], Path) and inputs[0].is_dir()
    clips: list[ClipInput] = []
    for p in inputs:
        if isinstance(p, ClipInput):
            clips.append(p)
        elif p.is_dir():
            found = find_clips(p)
            if not found and one_folder:
                raise ValueError(f"no DICOM clips found under {p}")
            clips += [
                ClipInput(f, f.relative_to(p).as_posix() if one_folder else str(f)) for f in found
            ]
        elif p.suffix.lower() == ".csv":
            clips += _clips_from_csv(p)
        else:
            clips.append(ClipInput(p, str(p)))
    seen: set[str] = set()
    unique = []
    for clip in clips:
        if clip.name not in seen:
            seen.add(clip.name)
            unique.append(clip)
    return unique


def _clips_from_csv(csv_path: Path) -> list[ClipInput]:
    try:
        with open(csv_path, newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh, strict=True)  # an unclosed quote is an error
            columns = [c.strip() for c in reader.fieldnames or []]
            names = [row.get("video_path") or "" for row in reader]
    except (csv.Error, UnicodeDecodeError) as exc:
        raise ValueError(f"{csv_path.name}: not a readable CSV ({exc})") from exc
    if not any(columns):
        raise ValueError(f"{csv_path.name}: not a readable CSV (it is empty)")
    if "video_path" not in columns:
        raise ValueError(
            f"{csv_path.name}: no 'video_path' column (columns: {', '.join(columns)})"
        )
    clips = []
    for name in names:
        name = name.strip()
        if name:
            path = Path(name)
            clips.append(ClipInput(path if path.is_absolute() else csv_path.parent / path, name))
    return clips


# --- data --------------------------------------------------------------------------------------

class ScoringSet(Dataset):
    """Clips as model input; an unreadable clip gives its error message instead of raising.

    Item: {"index", "video" (float32 tensor (3,T,S,S) or None), "frames", "fps", "error"}.
    """

    def __init__(
        self,
        paths: Sequence[str | os.PathLike],
        params: PreprocessParams,
        cache_dir: str | os.PathLike | None = None,
    ):
        self.paths = [Path(p) for p in paths]
        self.params = params
        self.cache = ClipCache(cache_dir, params) if cache_dir is not None else None

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> dict[str, Any]:
        path = self.paths[index]
        item: dict[str, Any] = {"index": index, "video": None, "frames": None, "fps": None,
                                "error": None}
        try:
            clip = read_clip(path)
            item["frames"], item["fps"] = int(clip.n_frames), float(clip.fps)
            if self.cache is not None:
                frames = self.cache.get(path)
            else:
                frames = clip_model_frames(clip, self.params)
            item["video"] = torch.from_numpy(normalize(frames))
        except (DicomReadError, ClipLoadError, OSError, ValueError) as exc:
            item["error"] = _error_text(path, exc)
            log.warning("%s", item["error"])  # one line per clip; the reason is in its row
        except Exception as exc:  # a decoder bug must not stop the whole run either
            item["error"] = _error_text(path, exc)
            log.warning("%s (unexpected error)", item["error"],
                        exc_info=log.isEnabledFor(logging.DEBUG))
        return item


def _error_text(path: Path, exc: Exception) -> str:
    text = str(exc).strip() or type(exc).__name__
    if not text.startswith(f"{path.name}:"):
        text = f"{path.name}: {text}"
    return " ".join(text.split())  # one line in the CSV


def collate_scoring(items: list[dict[str, Any]]) -> tuple[list[dict], torch.Tensor | None, list]:
    """(readable items, their videos stacked (N,3,T,S,S) or None, unreadable items)."""
    ok = [it for it in items if it["error"] is None]
    failed = [it for it in items if it["error"] is not None]
    videos = torch.stack([it["video"] for it in ok]) if ok else None
    return ok, videos, failed


# --- scoring -----------------------------------------------------------------------------------

def gradcam_file_name(name: str) -> str:
    """PNG file name for a clip's GradCAM strip, from its output name (folders joined by '__')."""
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", name.replace("\\", "/").replace("/", "__"))
    return (stem.strip("._") or "clip") + ".png"


@dataclasses.dataclass(frozen=True)
class ScoringSummary:
    """What one scoring call did: the threshold and calibration it applied and its counts:
    scored, passed, failed (unreadable), skipped (already scored in the output CSV), retried
    (unreadable there before, tried again)."""

    threshold: float
    calibration: Mapping[str, Any] | None
    scored: int
    passed: int
    failed: int
    skipped: int
    retried: int


def score_clips(
    paths: str | os.PathLike | ClipInput | Sequence[str | os.PathLike | ClipInput],
    model: str | os.PathLike | nn.Module,
    *,
    out_csv: str | os.PathLike | None = None,
    threshold: float | None = None,
    device: str | torch.device = "auto",
    batch_size: int = 8,
    num_workers: int = 0,
    params: PreprocessParams | None = None,
    cache_dir: str | os.PathLike | None = None,
    gradcam_dir: str | os.PathLike | None = None,
    progress: ProgressFn | None = None,
    trust_exported: bool = False,
    calibration: Mapping[str, Any] | None = None,
) -> pd.DataFrame:
    """Score clips and return one row per clip (columns ``scores_csv.COLUMNS``).

    ``paths``: folders, DICOM files, CSVs with a ``video_path`` column and/or ClipInputs (see
    :func:`collect_clips`). ``model``: a weights file / checkpoint, a module, or (only with
    ``trust_exported``: it runs code) an export. ``threshold``: default the checkpoint's saved
    threshold, else 0.3 (the original inference script's). ``params``: default the
    checkpoint's preprocessing, else EchoPrime's. With ``out_csv`` rows are appended after
    every batch and clips already scored in the file are skipped, while clips with only an
    error row there are tried again and their row replaced; the result then holds every row of
    the file. ``gradcam_dir`` gets a GradCAM strip (explaining "poor") for each clip that fails
    the threshold; a strip that cannot be written is logged and noted in the clip's ``error``
    ("gradcam failed: ...") without stopping the run. ``progress(done, total, name)`` is called
    per clip. ``calibration``: default the checkpoint's (see ``decision.Decision``), applied
    to the scores before the threshold. ``result.attrs`` holds the :class:`ScoringSummary`'s
    fields.
    """
    rows, summary = _score(**locals())
    result = read_scores(out_csv) if out_csv is not None else rows_table(rows)
    result.attrs.update({f.name: getattr(summary, f.name) for f in dataclasses.fields(summary)})
    return result


def score_into_csv(
    paths: str | os.PathLike | ClipInput | Sequence[str | os.PathLike | ClipInput],
    model: str | os.PathLike | nn.Module,
    out_csv: str | os.PathLike,
    **options: Any,
) -> ScoringSummary:
    """:func:`score_clips` into ``out_csv`` (its options and defaults) without reading the file
    back into a table: what ``echoquality score`` runs (pandas, 0.2-0.3 s to import, stays out)."""
    options = {**score_clips.__kwdefaults__, **options, "out_csv": out_csv}
    return _score(paths, model, **options)[1]


def _score(paths, model, *, out_csv, threshold, device, batch_size, num_workers, params,
           cache_dir, gradcam_dir, progress, trust_exported, calibration,
           ) -> tuple[list[dict[str, Any]], ScoringSummary]:
    """(rows of the clips scored now, summary): :func:`score_clips` without its table."""
    if batch_size < 1 or num_workers < 0:
        raise ValueError(f"need batch_size >= 1 and num_workers >= 0, got {batch_size}, "
                         f"{num_workers}")
    clips = collect_clips(paths)
    if gradcam_dir is not None:
        require_checkpoint(model)
    build_net, info = read_scoring_model(model, trust_exported=trust_exported)
    decision = Decision.from_info(info, threshold, calibration)
    params = params or params_from_info(info)
    dev = resolve_device(device)

    out = ScoresFile(out_csv) if out_csv is not None else None
    todo, skipped, retry = _resume(out, clips)
    batches = iter(_loader(todo, params, cache_dir, batch_size, num_workers, dev))
    net = build_net()  # the loader's workers decode the first batches meanwhile
    was_training = net.training
    folded = net
    if todo:
        precision.prepare_model(net, dev).eval()
        # a module given by the caller, or one GradCAM explains, stays as it is: fold a copy
        folded = fold_batchnorm(net, in_place=net is not model and gradcam_dir is None)
    scorer = _BatchScorer(net, folded, dev, decision, gradcam_dir)
    rows: list[dict[str, Any]] = []
    if todo:
        try:
            for ok, videos, failed in batches:
                new = scorer.rows(todo, ok, videos, failed)
                if out is not None:
                    out.append(new)
                for row in new:
                    rows.append(row)
                    if progress is not None:
                        progress(len(rows), len(todo), row["video_path"])
        finally:
            net.train(was_training)
    return rows, ScoringSummary(threshold=decision.threshold, calibration=decision.calibration,
                                skipped=skipped, retried=len(retry), **scorer.counts)


def _loader(todo: Sequence[ClipInput], params: PreprocessParams,
            cache_dir: str | os.PathLike | None, batch_size: int, num_workers: int,
            dev: torch.device) -> DataLoader | list:
    """Batches of the clips still to score (``collate_scoring``); [] when there are none."""
    if not todo:
        return []
    return DataLoader(
        ScoringSet([c.path for c in todo], params, cache_dir), batch_size=batch_size,
        shuffle=False, num_workers=num_workers, collate_fn=collate_scoring,
        pin_memory=dev.type == "cuda",
    )


class _BatchScorer:
    """Scores one batch at a time into output rows (in the clips' order) and keeps the counts
    (scored, passed, failed); GradCAM strips for the clips that fail."""

    def __init__(self, net: nn.Module, folded: nn.Module, dev: torch.device,
                 decision: Decision, gradcam_dir: str | os.PathLike | None):
        self.net, self.dev, self.decision = net, dev, decision
        self.folded = folded  # what scores: ``net`` with its BatchNorms folded (``model.fold``)
        self.gradcam_dir = gradcam_dir
        self.counts = {"scored": 0, "passed": 0, "failed": 0}

    def rows(self, todo: Sequence[ClipInput], ok: list[dict], videos: torch.Tensor | None,
             failed: list[dict]) -> list[dict[str, Any]]:
        """The rows of one batch from ``collate_scoring`` (``todo``: the loader's clips)."""
        raw = forward_scores(self.folded, videos, self.dev) if videos is not None else []
        verdicts = self.decision.verdicts(raw)
        by_index = {it["index"]: _row(todo[it["index"]].name, it, None) for it in failed}
        for it, verdict in zip(ok, verdicts):
            name = todo[it["index"]].name
            row = by_index[it["index"]] = _row(name, it, verdict)
            if self.gradcam_dir is not None and not verdict.passed:
                row["error"] = _try_gradcam(self.net, it["video"], self.gradcam_dir, name,
                                            verdict)
        self.counts["scored"] += len(ok)
        self.counts["passed"] += sum(v.passed for v in verdicts)
        self.counts["failed"] += len(failed)
        return [by_index[i] for i in sorted(by_index)]


def _resume(out: ScoresFile | None,
            clips: list[ClipInput]) -> tuple[list[ClipInput], int, set[str]]:
    """(clips still to score, how many the file already scores, names whose unreadable rows
    were dropped to be tried again)."""
    todo = [c for c in clips if out is None or c.name not in out.done]
    skipped = len(clips) - len(todo)
    if skipped:
        log.info("skipping %d clip(s) already in %s", skipped, out.path.name)
    retry = out.unreadable & {c.name for c in todo} if out is not None else set()
    if retry:
        log.info("trying %d clip(s) again that could not be read before", len(retry))
        out.drop(retry)
    return todo, skipped, retry


def _row(name: str, item: Mapping[str, Any], verdict: Verdict | None) -> dict:
    return {
        "video_path": name,
        "score": None if verdict is None else verdict.score,
        "pass": None if verdict is None else verdict.passed,
        "assessment": "" if verdict is None else verdict.assessment,
        "frames": item["frames"],
        "fps": None if item["fps"] is None else round(float(item["fps"]), 3),
        "error": item["error"] or "",
    }


def _try_gradcam(net: nn.Module, video: torch.Tensor, out_dir: str | os.PathLike,
                 name: str, verdict: Verdict) -> str:
    """Write the clip's GradCAM strip; "" when written, else "gradcam failed: <reason>"."""
    try:
        _save_gradcam(net, video, out_dir, name, verdict)
    except Exception as exc:  # one strip must not stop the run or lose the batch's scores
        reason = " ".join(str(exc).split()) or type(exc).__name__
        log.warning("GradCAM strip for %s not written: %s", name, reason, exc_info=True)
        return f"gradcam failed: {reason}"
    return ""


def _save_gradcam(net: nn.Module, video: torch.Tensor, out_dir: str | os.PathLike,
                  name: str, verdict: Verdict) -> None:
    from echoquality_core.scoring.gradcam import visualize_gradcam

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # e.g. autocast notes on CPU
        visualize_gradcam(net, video, "layer4", out_dir / gradcam_file_name(name), explain="poor",
                          verdict=verdict)
