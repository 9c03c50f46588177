"""Scoring across the ranks of a torchrun job: one scores CSV, as if one process had written it.

Every rank lists the same clips, takes the ones whose name hashes to it
(:func:`distributed.shard_of`, stable across runs and machines) and scores them with
:func:`scoring.score_clips` (its own DataLoader workers, batches, resumable appends) into its own
part file next to the output, ``.<out name>.part-<rank>.csv``. Rank 0 then merges the output and
every part into the output CSV (atomically), in the order the clips were listed, and removes the
parts. Resuming: before scoring, rank 0 merges whatever an earlier run left (the output and any
part files, e.g. of a killed rank; a torn last line is cut off), so a rerun skips every clip any
rank already wrote and redoes only the rest; clips with only an error row are tried again.
"""
from __future__ import annotations

import csv
import logging
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from echoquality_core.jobs import distributed as dist
from echoquality_core.files.atomic import atomic_write
from echoquality_core.scoring.score import ClipInput, collect_clips
from echoquality_core.scoring.scores_csv import COLUMNS, ScoresFile, read_scores

log = logging.getLogger(__name__)

_COUNTER = "echoquality/scored"
_COUNTS = ("scored", "passed", "failed")


def part_path(out_csv: str | os.PathLike, rank: int) -> Path:
    """The part file rank ``rank`` appends its rows to."""
    out = Path(out_csv)
    return out.with_name(f".{out.name}.part-{rank}.csv")


def part_files(out_csv: str | os.PathLike) -> list[Path]:
    """Every part file of ``out_csv`` on disk (any world size), sorted."""
    out = Path(out_csv)
    return sorted(out.parent.glob(f".{out.name}.part-*.csv"))


def merge_parts(out_csv: str | os.PathLike, order: Sequence[str],
                retry: bool = False) -> pd.DataFrame:
    """Merge the output and its part files into the output CSV, one row per clip (a scored row
    wins over an error row), clips of ``order`` first in that order, others after; then delete
    the parts. ``retry``: leave out error rows of clips in ``order`` (they are to be tried
    again). Returns the merged table."""
    out = Path(out_csv)
    rows: dict[str, list[str]] = {}
    for path in [out, *part_files(out)]:
        if not path.exists():
            continue
        ScoresFile(path)  # checks the header, cuts a torn last line
        with open(path, newline="", encoding="utf-8-sig") as fh:
            for row in list(csv.reader(fh))[1:]:
                if row and (row[0] not in rows or (row[1] and not rows[row[0]][1])):
                    rows[row[0]] = row
    wanted = set(order)
    if retry:
        rows = {k: r for k, r in rows.items() if r[1] or k not in wanted}
    names = [n for n in order if n in rows] + [n for n in rows if n not in wanted]
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(out, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(COLUMNS)
        writer.writerows(rows[n] for n in names)
    for path in part_files(out):
        path.unlink()
    return read_scores(out)


def score_distributed(
    paths: str | os.PathLike | ClipInput | Sequence[str | os.PathLike | ClipInput],
    model: str | os.PathLike,
    *,
    out_csv: str | os.PathLike,
    progress: Callable[[int, int, str], None] | None = None,
    **options: Any,
) -> pd.DataFrame:
    """Score ``paths`` on this rank's share and merge on rank 0 (see the module docstring).

    Call on every rank of an initialised process group (``distributed.init_from_env``);
    ``options`` go to :func:`scoring.score_clips` (threshold, device, batch_size, num_workers,
    params, cache_dir, gradcam_dir). ``progress(done, total, name)`` is called on rank 0 with the
    clips done by all ranks. Returns the merged table on rank 0 (with ``attrs`` summed over
    ranks) and this rank's rows elsewhere.
    """
    from echoquality_core.scoring.score import score_clips

    clips = collect_clips(paths)
    order = [c.name for c in clips]
    out = Path(out_csv)
    if dist.is_main():
        merge_parts(out, order, retry=True)
    dist.barrier()
    table = read_scores(out)
    done = set(table.loc[table["score"].notna(), "video_path"])
    todo = [c for c in clips if c.name not in done]
    mine = dist.my_shard(todo, key=lambda c: c.name)
    store = dist.default_store()
    report = _progress_relay(store, len(todo), progress)
    attrs: dict[str, Any] = dict.fromkeys(_COUNTS, 0)
    if mine:
        part = score_clips(mine, model, out_csv=part_path(out, dist.rank()), progress=report,
                           **options)
        attrs = {k: part.attrs[k] for k in _COUNTS} | {"threshold": part.attrs["threshold"]}
    if dist.is_main() and progress is not None and store is not None:
        _wait_for_others(store, len(todo), progress)
    everyone = dist.gather_objects(attrs)
    dist.barrier()
    if not dist.is_main():
        return read_scores(part_path(out, dist.rank())) if mine else table.iloc[:0]
    result = merge_parts(out, order)
    result.attrs.update({k: sum(a[k] for a in everyone) for k in _COUNTS})
    result.attrs["skipped"] = len(clips) - len(todo)
    result.attrs["threshold"] = next((a["threshold"] for a in everyone if "threshold" in a),
                                     options.get("threshold"))
    return result


def _progress_relay(store, total: int, progress):
    """A score_clips progress callback that counts this rank's clips in the job's store and
    reports the job's total on rank 0."""
    def report(done: int, _total: int, name: str) -> None:
        count = store.add(_COUNTER, 1) if store is not None else done
        if progress is not None and dist.is_main():
            progress(int(count), total, name)

    return report


def _wait_for_others(store, total: int, progress, poll: float = 0.2) -> None:
    """Rank 0 finished its share: keep the progress bar moving until every clip is done."""
    while True:
        count = int(store.add(_COUNTER, 0))
        progress(count, total, "")
        if count >= total:
            return
        time.sleep(poll)
