"""Unattended quality control: poll the PACS for new US clips, import them, score them, send
each verdict back as an SR, and remember what was done in a state file.

The state file (``<folder>/pacs-watch.json``, written atomically) holds, per study (hashed UID),
the instance count seen and the clips (hashed UIDs) whose work is finished. A clip's work is
download → score (appended to ``scores.csv``, fsynced) → SR stored → state saved, and each step
skips what an earlier run already did: after a crash (even ``kill -9``) a restart neither scores a
clip twice nor forgets one; at most the SR being sent is sent again, with the same UIDs, so the
PACS keeps one copy.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
import os
import math
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from echoquality_core.decision import Decision
from echoquality_core.files.atomic import atomic_write
from echoquality_core.pacs.connection import PacsConnection
from echoquality_core.pacs.retrieve import clip_path, import_clips, uid_key
from echoquality_core.pacs.search import InstanceRef, StudySummary, list_clips, search_studies
from echoquality_core.pacs.send import model_version, require_sent, send_results
from echoquality_core.pacs.sr import HEADER_TAGS, ClipResult

log = logging.getLogger(__name__)

STATE_FILE = "pacs-watch.json"
SCORES_FILE = "scores.csv"
EventFn = Callable[[str], None]


class WatchState:
    """What the watcher has finished, per study: ``{study key: {"seen": n, "done": [keys]}}``."""

    def __init__(self, path: str | os.PathLike, pacs_key: str):
        self.path = Path(path)
        self.studies: dict[str, dict[str, Any]] = {}
        if self.path.exists():
            data = json.loads(self.path.read_text(encoding="utf-8"))
            if data.get("pacs") != pacs_key:
                raise ValueError(f"{self.path.name} belongs to another PACS; use another folder")
            self.studies = data.get("studies", {})
        self.pacs_key = pacs_key

    def done(self, study_key: str) -> set[str]:
        return set(self.studies.get(study_key, {}).get("done", []))

    def seen(self, study_key: str) -> int | None:
        return self.studies.get(study_key, {}).get("seen")

    def update(self, study_key: str, *, done: set[str] | None = None,
               seen: int | None = None) -> None:
        """Record finished clips and/or the instance count, then save atomically."""
        entry = self.studies.setdefault(study_key, {"seen": None, "done": []})
        if done:
            entry["done"] = sorted(set(entry["done"]) | done)
        if seen is not None:
            entry["seen"] = seen
        self.save()

    def save(self) -> None:
        data = {"version": 1, "pacs": self.pacs_key, "studies": self.studies}
        with atomic_write(self.path, "w", encoding="utf-8") as fh:
            json.dump(data, fh, indent=1, sort_keys=True)


@dataclasses.dataclass
class Scorer:
    """The model, loaded once: its module, decision (threshold and calibration),
    preprocessing and version string."""

    net: Any
    decision: Decision
    params: Any
    version: str

    @classmethod
    def load(cls, model: str | os.PathLike, threshold: float | None = None) -> Scorer:
        from echoquality_core.model.checkpoint import load_scoring_model, params_from_info

        net, info = load_scoring_model(model)
        return cls(net, Decision.from_info(info, threshold), params_from_info(info),
                   model_version(model, info))


@dataclasses.dataclass
class PollResult:
    """Counts of one poll."""

    studies: int = 0
    scored: int = 0
    sent: int = 0
    failed: int = 0


class Watcher:
    """Polls ``conn`` for clips of ``modality`` (studies since ``since``) and handles new ones."""

    def __init__(self, conn: PacsConnection, scorer: Scorer, folder: str | os.PathLike, *,
                 since: dt.date | None = None, modality: str = "US",
                 on_event: EventFn | None = None):
        self.conn, self.scorer = conn, scorer
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.since, self.modality = since, modality
        self.state = WatchState(self.folder / STATE_FILE, uid_key(conn.url))
        self.on_event = on_event or (lambda text: log.info("%s", text))

    def poll(self) -> PollResult:
        """One look at the PACS: handle every clip not done yet."""
        out = PollResult()
        for study in search_studies(self.conn, since=self.since, modality=self.modality):
            key = uid_key(study.study_uid)
            if self.state.seen(key) == study.n_instances:
                continue  # nothing arrived in this study since the last look
            self._study(study, key, out)
        return out

    def _study(self, study: StudySummary, key: str, out: PollResult) -> None:
        done = self.state.done(key)
        new = [r for r in list_clips(self.conn, study.study_uid, modality=self.modality)
               if uid_key(r.sop_uid) not in done]
        failed = 0
        if new:
            out.studies += 1
            failed = self._clips(new, key, out)
        # instances that fail to download are tried again at the next poll
        self.state.update(key, seen=None if failed else study.n_instances)

    def _clips(self, refs: list[InstanceRef], key: str, out: PollResult) -> int:
        from echoquality_core.scoring.score import ClipInput, score_clips

        imported = import_clips(self.conn, refs, self.folder)
        for name, reason in imported.failed:
            self.on_event(f"study {key}: {reason}")
        on_disk = set(imported.clips)
        ready = [r for r in refs if clip_path(self.folder, r) in on_disk]
        inputs = [ClipInput(clip_path(self.folder, r), self._name(r)) for r in ready]
        table = score_clips(inputs, self.scorer.net, out_csv=self.folder / SCORES_FILE,
                            threshold=self.scorer.decision.threshold,
                            calibration=self.scorer.decision.calibration,
                            params=self.scorer.params, batch_size=4) if inputs else None
        rows = {} if table is None else dict(zip(table["video_path"], table["score"],
                                                 strict=True))
        results = [self._result(r, rows[self._name(r)]) for r in ready
                   if not math.isnan(rows.get(self._name(r), math.nan))]  # NaN: unreadable
        sent = send_results(self.conn, results)
        require_sent(sent)
        self.state.update(key, done={uid_key(r.sop_uid) for r in ready})
        out.scored += len(ready)
        out.sent += len(sent.sent)
        out.failed += len(imported.failed)
        self.on_event(f"study {key}: {len(ready)} clip(s) scored, {len(sent.sent)} result(s) "
                      f"sent" + (f", {len(imported.failed)} not downloaded" if imported.failed
                                 else ""))
        return len(imported.failed)

    def _name(self, ref: InstanceRef) -> str:
        return clip_path(self.folder, ref).relative_to(self.folder).as_posix()

    def _result(self, ref: InstanceRef, score: float) -> ClipResult:
        import pydicom

        ds = pydicom.dcmread(clip_path(self.folder, ref), stop_before_pixels=True,
                             specific_tags=HEADER_TAGS)
        return ClipResult.from_header(ds, score, self.scorer.decision.threshold,
                                      self.scorer.version)

    def run(self, *, interval: float = 30.0, iterations: int | None = None,
            stop: threading.Event | None = None) -> PollResult:
        """Poll every ``interval`` seconds, ``iterations`` times (None: until ``stop`` is set)."""
        stop = stop or threading.Event()
        total = PollResult()
        n = 0
        while not stop.is_set() and (iterations is None or n < iterations):
            result = self.poll()
            for field in dataclasses.fields(PollResult):
                setattr(total, field.name,
                        getattr(total, field.name) + getattr(result, field.name))
            n += 1
            if iterations is None or n < iterations:
                stop.wait(interval)
        return total

