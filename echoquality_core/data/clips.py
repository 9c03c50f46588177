"""Clips as training data: an on-disk cache of what the model sees, the Dataset, the patient split.

Decoding a DICOM cine and preprocessing it costs far more than a training step's data loading
should, so the uint8 model frames (masked, cropped, resized, sampled) are cached as ``.npy``
files keyed by the SHA-1 of the file's bytes plus the preprocessing settings: only the first
epoch of the first run decodes DICOM. Normalisation happens on the fly.

A clip that cannot be loaded raises an error naming the file; it is never replaced by a blank
(zero) tensor, which would silently teach the model that black clips have some quality.
"""
from __future__ import annotations

import csv
import hashlib
import logging
import os
from collections import defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from echoquality_core.files.atomic import atomic_write
from echoquality_core.files.digest import file_digest
from echoquality_core.dicom import Clip, DicomReadError, read_clip
from echoquality_core.labels.store import LabelError, LabelStore
from echoquality_core.data.patients import patient_group
from echoquality_core.data.preprocess import PreprocessParams, model_frames, normalize
from echoquality_core.decision import labelled_good

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")
MIN_CLIPS = 4  # fewest usable labelled clips a training run accepts
_DEFAULT_PARAMS = PreprocessParams()


class ClipLoadError(RuntimeError):
    """A clip could be read as DICOM but not turned into model frames (message names the file)."""


def clip_model_frames(clip: str | os.PathLike | Clip, params: PreprocessParams) -> np.ndarray:
    """A clip (a path, or a Clip already opened) as its uint8 (T,S,S,3) model frames: the one
    recipe from DICOM to what the model sees (normalise with ``preprocess.normalize``).

    Raises DicomReadError for unreadable files and ClipLoadError when preprocessing fails.
    """
    if not isinstance(clip, Clip):
        clip = read_clip(clip)
    regions = clip.regions if params.mask == "region" else None
    try:
        return model_frames(clip, params, regions)  # streamed: one frame at a time
    except (ValueError, TypeError) as exc:
        raise ClipLoadError(f"{clip.path.name}: {exc}") from exc


class ClipCache:
    """On-disk cache of model frames: ``<cache_dir>/<sha1(file sha1 + params.key())>.npy``.

    File hashes are remembered per path together with the file's mtime and size, so later
    epochs neither decode nor re-hash a clip. ``hits``/``misses`` count lookups served from
    the cache and clips decoded.
    """

    def __init__(
        self, cache_dir: str | os.PathLike, params: PreprocessParams = _DEFAULT_PARAMS
    ):
        self.cache_dir = Path(cache_dir)
        self.params = params
        self.hits = 0
        self.misses = 0
        self._hashes: dict[str, tuple[int, int, str]] = {}

    def file_hash(self, path: str | os.PathLike) -> str:
        """SHA-1 of the file, recomputed only when its mtime or size changed."""
        key = os.fspath(path)
        st = os.stat(key)
        known = self._hashes.get(key)
        if known is not None and known[:2] == (st.st_mtime_ns, st.st_size):
            return known[2]
        sha = file_digest(key, "sha1")
        self._hashes[key] = (st.st_mtime_ns, st.st_size, sha)
        return sha

    def entry(self, path: str | os.PathLike) -> Path:
        """Where the cached frames of this clip (with these settings) live."""
        name = hashlib.sha1(f"{self.file_hash(path)}|{self.params.key()}".encode()).hexdigest()
        return self.cache_dir / f"{name}.npy"

    def get(self, path: str | os.PathLike, clip: Clip | None = None) -> np.ndarray:
        """uint8 (T,S,S,3) model frames of a clip, decoding and caching it on a miss (from
        ``clip``, the same file already opened, when given)."""
        try:
            entry = self.entry(path)
        except OSError as exc:
            raise DicomReadError(Path(path), f"cannot read file ({exc.strerror or exc})") from exc
        if entry.is_file():
            try:
                frames = np.load(entry, allow_pickle=False)
                self.hits += 1
                return frames
            except (OSError, ValueError) as exc:  # truncated or foreign file: rebuild it
                log.warning("cache entry %s unreadable (%s); decoding again", entry.name, exc)
        frames = clip_model_frames(clip if clip is not None else path, self.params)
        self.misses += 1
        self._write(entry, frames)
        return frames

    def _write(self, entry: Path, frames: np.ndarray) -> None:
        entry.parent.mkdir(parents=True, exist_ok=True)
        with atomic_write(entry) as fh:
            np.save(fh, frames, allow_pickle=False)


class EchoDataset(Dataset):
    """Labelled clips as (video float32 (3,T,S,S), label float32 scalar[, path str]).

    ``transform`` is applied to the normalised video tensor (e.g. EchoVideoAugmentation).
    With ``cache_dir`` (or a shared ``cache``) the model frames are cached on disk (see
    ClipCache); without it every access decodes the DICOM.
    """

    def __init__(
        self,
        paths: Sequence[str | os.PathLike],
        labels: Sequence[float],
        transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
        *,
        params: PreprocessParams = _DEFAULT_PARAMS,
        cache_dir: str | os.PathLike | None = None,
        cache: ClipCache | None = None,
        return_path: bool = False,
    ):
        if len(paths) != len(labels):
            raise ValueError(f"{len(paths)} paths but {len(labels)} labels")
        self.paths = [os.fspath(p) for p in paths]
        self.labels = [float(v) for v in labels]
        self.transform = transform
        self.params = params
        self.return_path = return_path
        if cache is None and cache_dir is not None:
            cache = ClipCache(cache_dir, params)
        self.cache = cache

    def __len__(self) -> int:
        return len(self.paths)

    def frames(self, index: int) -> np.ndarray:
        """uint8 (T,S,S,3) model frames of one clip (from the cache when there is one)."""
        path = self.paths[index]
        if self.cache is not None:
            return self.cache.get(path)
        return clip_model_frames(path, self.params)

    def __getitem__(self, index: int):
        video = torch.from_numpy(normalize(self.frames(index)))
        if self.transform is not None:
            video = self.transform(video)
        label = torch.tensor(self.labels[index], dtype=torch.float32)
        if self.return_path:
            return video, label, self.paths[index]
        return video, label


class SyntheticLowQuality(Dataset):
    """Degraded copies of chosen clips of a dataset, labelled 0 ("poor").

    ``degrade`` takes and returns a (3,T,S,S) tensor (e.g. create_synthetic_low_quality).
    Items have the same form as the base dataset's; paths get a ``#synthetic`` suffix.
    """

    def __init__(
        self,
        base: EchoDataset,
        indices: Sequence[int],
        degrade: Callable[[torch.Tensor], torch.Tensor],
    ):
        self.base = base
        self.indices = list(indices)
        self.degrade = degrade

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index: int):
        item = self.base[self.indices[index]]
        video = self.degrade(item[0])
        label = torch.tensor(0.0, dtype=torch.float32)
        if len(item) == 3:
            return video, label, f"{item[2]}#synthetic"
        return video, label


def prepare_clips(
    paths: Sequence[str | os.PathLike],
    params: PreprocessParams,
    cache_dir: str | os.PathLike,
    progress: Callable[[int, int, str], None] | None = None,
    *,
    cache: ClipCache | None = None,
    should_stop: Callable[[], bool] | None = None,
    headers: dict[str, dict] | None = None,
) -> tuple[list[str], list[tuple[str, str]]]:
    """Decode and cache every clip up front.

    Returns (paths that loaded, [(path, reason) for clips that did not]); the failures are
    meant to be reported and left out of the run. ``progress(done, total, path)`` is called
    after each clip; ``should_stop()`` returning True ends the loop early (the clips not
    reached are in neither list). ``headers``, when given, receives each loaded clip's
    ``Clip.metadata`` (salted patient/study keys), from the one header read per clip.
    """
    cache = cache or ClipCache(cache_dir, params)
    ok: list[str] = []
    failures: list[tuple[str, str]] = []
    total = len(paths)
    for done, path in enumerate(paths, start=1):
        if should_stop is not None and should_stop():
            break
        path = os.fspath(path)
        try:
            clip = read_clip(path)
            cache.get(path, clip)
            if headers is not None:
                headers[path] = clip.metadata
            ok.append(path)
        except (DicomReadError, ClipLoadError) as exc:
            failures.append((path, str(exc)))
        except Exception as exc:  # a decoder bug must not abort the whole preparation
            log.exception("unexpected error preparing %s", Path(path).name)
            failures.append((path, f"{Path(path).name}: {type(exc).__name__}: {exc}"))
        if progress is not None:
            progress(done, total, path)
    return ok, failures


class DataError(ValueError):
    """The labelled clips cannot make a training run (the message says why)."""


def find_clip(name: str, csv_dir: Path, videos_dir: Path | None) -> Path | None:
    """Where a clip named in a labels CSV is: the absolute path; relative to the CSV's folder;
    relative to ``videos_dir``; ``videos_dir``/file name. None when none of these is a file."""
    p = Path(name).expanduser()
    if p.is_absolute():
        return p if p.is_file() else None
    candidates = [csv_dir / p]
    if videos_dir is not None:
        candidates += [videos_dir / p, videos_dir / p.name]
    return next((c.resolve() for c in candidates if c.is_file()), None)


def prepare_training_data(
    csv_path: Path,
    videos_dir: Path | None,
    cache: ClipCache,
    progress: Callable[[int, int, str], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> tuple[list[dict], list[tuple[str, str]]]:
    """The labelled clips of a CSV, decoded and cached: (records, failures).

    A record is ``{"path": name in the CSV, "file", "label", "patient_key", "study_key"}``;
    a failure ``(name, reason)`` for a clip not found or not readable (left out). Raises
    DataError for an unreadable CSV or a score outside 0..1.
    """
    try:
        store = LabelStore(csv_path)
    except LabelError as exc:
        raise DataError(f"{csv_path.name}: {exc}") from exc
    rows, failures = [], []
    for rel in store.paths():
        score = float(store.get(rel).quality_score)
        if not 0.0 <= score <= 1.0:
            raise DataError(f"{rel}: quality_score {score:g} is outside 0..1; training needs 0/1 "
                            "labels or scores between 0 and 1")
        path = find_clip(rel, csv_path.parent, videos_dir)
        if path is None:
            failures.append((rel, f"{Path(rel).name}: file not found"))
        else:
            rows.append((rel, str(path), score))
    if progress is not None:
        progress(0, len(rows), "")
    headers: dict[str, dict] = {}
    ok, bad = prepare_clips([p for _, p, _ in rows], cache.params, cache.cache_dir, progress,
                            cache=cache, should_stop=should_stop, headers=headers)
    by_path = {path: (rel, score) for rel, path, score in rows}
    failures += [(by_path[p][0], msg) for p, msg in bad]
    records = [{"path": by_path[p][0], "file": p, "label": by_path[p][1],
                "patient_key": headers[p].get("patient_key"),
                "study_key": headers[p].get("study_key")} for p in ok]
    return records, failures


def split_training_data(records: Sequence[dict], fractions: Sequence[float],
                        seed: int) -> dict[str, list[int]]:
    """The patient split of usable records; DataError when they cannot make a run (fewer than
    :data:`MIN_CLIPS`, one label only, or no patients left for training or validation)."""
    n_good = sum(labelled_good(r["label"]) for r in records)
    if len(records) < MIN_CLIPS:
        raise DataError(
            f"Only {len(records)} usable labelled clip(s); at least {MIN_CLIPS} are needed.")
    if n_good in (0, len(records)):
        raise DataError("All usable clips have the same label; training needs good and poor clips.")
    split = split_by_patient(records, fractions, seed=seed)
    if not split["train"] or not split["val"]:
        raise DataError("Too few patients to make both a training and a validation split.")
    return split


def split_by_patient(
    records: Sequence[dict],
    fractions: Sequence[float] = (0.7, 0.15, 0.15),
    seed: int = 42,
) -> dict[str, list[int]]:
    """Split clips into train/val/test so that no patient is in two splits.

    ``records``: dicts with ``path``, ``label`` and (optional) ``patient_key``/``study_key``;
    clips are grouped by patient key, else study key, else each clip is its own group. Groups
    are assigned greedily (largest first, ties in seeded random order) to the split whose
    per-class quota (label >= 0.5 is "good") they fill best, so the classes are spread in
    proportion. Then, where the groups allow it, every split with a non-zero fraction gets at
    least one group and val/test get both classes. Returns {"train", "val", "test"} -> record
    indices, sorted.
    """
    if len(fractions) != 3 or any(f < 0 for f in fractions) or sum(fractions) <= 0:
        raise ValueError(f"fractions must be three non-negative numbers, got {fractions!r}")
    frac = np.asarray(fractions, dtype=float) / float(sum(fractions))

    groups: dict[str, list[int]] = defaultdict(list)
    for i, rec in enumerate(records):
        groups[patient_group(rec)].append(i)
    keys = sorted(groups)
    rng = np.random.default_rng(seed)
    keys = [keys[i] for i in rng.permutation(len(keys))]
    keys.sort(key=lambda k: -len(groups[k]))  # stable: random order among equal sizes

    def counts(idx: list[int]) -> np.ndarray:
        pos = sum(1 for i in idx if labelled_good(float(records[i]["label"])))
        return np.array([len(idx) - pos, pos], dtype=float)

    group_counts = {k: counts(groups[k]) for k in keys}
    target = frac[:, None] * sum(group_counts.values(), np.zeros(2))[None, :]
    current = np.zeros((3, 2))
    assigned: dict[str, int] = {}
    for k in keys:
        g = group_counts[k]
        room = target - current
        fill = np.minimum(np.clip(room, 0, None), g[None, :]).sum(axis=1)
        total_room = (target.sum(axis=1) - current.sum(axis=1)) / np.maximum(
            target.sum(axis=1), 1e-9
        )
        total_room[frac == 0] = -np.inf
        s = int(np.lexsort((-np.arange(3), total_room, fill))[-1])  # best fill, then room
        assigned[k] = s
        current[s] += g

    _rebalance(assigned, group_counts, frac)
    split: dict[str, list[int]] = {name: [] for name in SPLITS}
    for k, s in assigned.items():
        split[SPLITS[s]].extend(groups[k])
    return {name: sorted(idx) for name, idx in split.items()}


def _rebalance(assigned: dict[str, int], group_counts: dict[str, np.ndarray], frac) -> None:
    """Move single groups so that non-zero-fraction splits are non-empty and val/test hold both
    classes, taking from the split with the most groups without emptying a class there."""

    def members(s: int) -> list[str]:
        return [k for k, v in assigned.items() if v == s]

    def has_class(s: int, c: int) -> bool:
        return any(group_counts[k][c] > 0 for k in members(s))

    def donate(to: int, wanted: Callable[[str], bool], keep_classes: bool = True) -> bool:
        donors = sorted(range(3), key=lambda s: -len(members(s)))
        for d in donors:
            if d == to or len(members(d)) < 2:
                continue
            candidates = sorted(
                (k for k in members(d) if wanted(k)), key=lambda k: group_counts[k].sum()
            )
            for k in candidates:
                lost = [c for c in (0, 1) if group_counts[k][c] > 0]
                assigned[k] = to
                if not keep_classes or all(has_class(d, c) for c in lost):
                    return True
                assigned[k] = d
        return False

    for s in (1, 2, 0):
        if frac[s] > 0 and not members(s):
            donate(s, lambda k: True) or donate(s, lambda k: True, keep_classes=False)
    for s in (1, 2):
        if frac[s] == 0:
            continue
        for c in (0, 1):
            if not has_class(s, c):
                donate(s, lambda k, c=c: group_counts[k][c] > 0)


def save_split(split: dict[str, list[int]], records: Sequence[dict], path: str | os.PathLike) -> Path:
    """Write the split as CSV (video_path, split, label), atomically; no patient keys."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["video_path", "split", "label"])
        for name in SPLITS:
            for i in split.get(name, []):
                writer.writerow([records[i]["path"], name, f"{float(records[i]['label']):g}"])
    return path


def load_split(path: str | os.PathLike, records: Sequence[dict]) -> dict[str, list[int]]:
    """A split written by :func:`save_split` (or by hand: columns video_path, split) as record
    indices; records whose path is not in the file belong to no split (they are not used).
    Raises ValueError for a missing file, a missing column or an unknown split name."""
    path = Path(path)
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            rows = list(csv.DictReader(fh))
    except OSError as exc:
        raise ValueError(f"split file {path.name}: {exc.strerror or exc}") from exc
    if rows and not {"video_path", "split"} <= set(rows[0]):
        raise ValueError(f"split file {path.name}: needs the columns video_path and split")
    where = {}
    for n, row in enumerate(rows, start=1):
        if row["split"] not in SPLITS:
            raise ValueError(f"split file {path.name}, row {n}: split must be one of {SPLITS}")
        where[row["video_path"]] = row["split"]
    split: dict[str, list[int]] = {name: [] for name in SPLITS}
    for i, rec in enumerate(records):
        if rec["path"] in where:
            split[where[rec["path"]]].append(i)
    return split
