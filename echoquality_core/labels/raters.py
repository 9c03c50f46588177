"""Several raters per clip: every rater's label, adjudications and the training-table policy.

The project's labels CSV stays the training table (``video_path,quality_score``, one row per
clip, what ``Trainer`` reads). Every rater's own label lives beside it in ONE long-format file,
``<stem>_by_rater.csv`` (paths: ``labels.folder.ProjectFolder``)::

    video_path,rater,role,quality_score,issues,notes,labeled_at

one row per (clip, rater, role); ``role`` is ``rater`` for a label and ``adjudicator`` for the
final decision on a clip the raters disagree about (who = ``rater``, when = ``labeled_at``).
One long file rather than one file per rater: a clip's labels are read together (agreement,
adjudication, the training table) from one consistent snapshot, a save is one atomic replace,
and a rater name needs no file-name escaping. It is written like the labels CSV (temporary file,
fsync, ``os.replace``) so a kill mid-save leaves the old or the new file; a save first merges
what another app wrote meanwhile (theirs for other raters' rows, ours for the rows we changed),
under the project's one label lock, which also covers the labels CSV and the policy file: a
label change is one read-merge-replace of both files under it (``Project``), so the training
table always follows the per-rater file.

The training table's score of each clip follows the project's policy (``<stem>_raters.json``):
an adjudicated label wins; else ``majority`` (the score more raters gave than any other; a tie
leaves the clip out of the training table until it is adjudicated), ``mean`` (the mean score),
or ``latest`` (the last label given, the old "last writer wins"); a clip one rater labelled
gets that label under every policy. A project whose labels CSV names no other rater never gets
the per-rater file: it is read and written exactly as before.
"""
from __future__ import annotations

import csv
import hashlib
import io
import json
import os
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from echoquality_core.files.atomic import atomic_write
from echoquality_core.labels.folder import ProjectFolder
from echoquality_core.labels.values import (
    Label,
    LabelError,
    _check_labeled_at,
    _check_score,
    _now_iso,
    check_issues,
)
from echoquality_core.labels.store import LabelStore

COLUMNS = ("video_path", "rater", "role", "quality_score", "issues", "notes", "labeled_at")
RATER, ADJUDICATOR = "rater", "adjudicator"
POLICIES = {
    "majority": "the score most raters gave (a tie waits for adjudication)",
    "mean": "the mean of the raters' scores",
    "latest": "the last label given",
}
DEFAULT_POLICY = "majority"
UNNAMED = "unnamed"  # rater of a training-table row that names none, when the file is started

Key = tuple[str, str, str]  # (video_path, rater, role)


def read_policy(csv_path: str | os.PathLike) -> str:
    """The training-table policy of the project of ``csv_path`` (default ``majority``)."""
    try:
        policy = json.loads(ProjectFolder.of_labels(csv_path).policy_file.read_text(
            encoding="utf-8"))["policy"]
    except (OSError, ValueError, KeyError, TypeError):
        return DEFAULT_POLICY
    return policy if policy in POLICIES else DEFAULT_POLICY


def write_policy(csv_path: str | os.PathLike, policy: str) -> None:
    """Store the training-table policy (atomic, under the label lock); ValueError for an
    unknown one."""
    check_policy(policy)
    folder = ProjectFolder.of_labels(csv_path)
    with folder.locked(), atomic_write(folder.policy_file, "w", encoding="utf-8") as fh:
        json.dump({"policy": policy}, fh, indent=1)
        fh.write("\n")


def rater_name(name: str | None) -> str | None:
    """A rater's name as stored and looked up: without surrounding spaces; None if empty."""
    return (name or "").strip() or None


def check_policy(policy: str) -> str:
    if policy not in POLICIES:
        raise ValueError(f"unknown label policy {policy!r}; use one of {', '.join(POLICIES)}")
    return policy


class RaterStore:
    """Every rater's label of every clip (and adjudications), in the long-format CSV."""

    def __init__(self, path: str | os.PathLike,
                 relative: Callable[[str], str] = lambda p: str(p)) -> None:
        self.path = Path(os.path.abspath(path))
        self.folder = ProjectFolder.of_labels(self.path)
        self.relative = relative
        self._rows: dict[Key, Label] = {}
        self._pending: dict[Key, Label | None] = {}
        self._stat: tuple[int, int, int] | None = None
        self._sha1: str | None = None
        self._by_clip: dict[str, dict[tuple[str, str], Label]] | None = None  # rel -> labels
        self._lines: dict[Key, str] = {}  # each row's CSV text, kept until the row changes
        self.load()

    @property
    def exists(self) -> bool:
        """True once the file exists (the project has per-rater labels)."""
        return self._stat is not None or self.path.exists()

    # --- reading -------------------------------------------------------------------------
    def load(self) -> None:
        """Read the file (missing = empty); LabelError names the bad row."""
        try:
            with open(self.path, "rb") as fh:
                data = fh.read()
                st = os.fstat(fh.fileno())
        except FileNotFoundError:
            self._rows, self._stat, self._pending, self._by_clip = {}, None, {}, None
            self._lines, self._sha1 = {}, None
            return
        self._rows, self._by_clip = self._parse(data.decode("utf-8-sig")), None
        self._lines = {}
        self._stat, self._sha1 = (st.st_ino, st.st_mtime_ns, st.st_size), _sha1(data)
        self._pending = {}

    def _parse(self, text: str) -> dict[Key, Label]:
        rows: dict[Key, Label] = {}
        reader = csv.DictReader(io.StringIO(text, newline=""))
        missing = [c for c in ("video_path", "rater", "quality_score")
                   if c not in (reader.fieldnames or [])]
        if missing:
            raise LabelError(f"{self.path.name}: missing column(s) {', '.join(missing)}", row=1)
        for n, record in enumerate(reader, start=2):
            if not any((v or "").strip() for v in record.values() if isinstance(v, str)):
                continue
            try:
                rel = self.relative(record["video_path"].strip())
                rater = (record.get("rater") or "").strip()
                role = (record.get("role") or RATER).strip() or RATER
                if not rater or role not in (RATER, ADJUDICATOR):
                    raise LabelError(f"rater {rater!r} / role {role!r} is not valid")
                label = Label(rel, _check_score(record["quality_score"].strip()), rater,
                              _check_labeled_at(record.get("labeled_at")),
                              check_issues(record.get("issues")),
                              (record.get("notes") or "").strip() or None)
            except LabelError as exc:
                raise LabelError(f"{self.path.name}: {exc.problem}", row=n) from None
            rows[(rel, rater, role)] = label
        return rows

    def changed_on_disk(self, strict: bool = False) -> bool:
        """True if another program wrote the file since we read or wrote it; by its status,
        or with ``strict`` (under the lock) by its bytes too, as ``LabelStore``'s."""
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return self._stat is not None
        if (st.st_ino, st.st_mtime_ns, st.st_size) != self._stat:
            return True
        if not strict:
            return False
        try:
            return _sha1(self.path.read_bytes()) != self._sha1
        except FileNotFoundError:
            return True

    def reload_if_changed(self, strict: bool = False) -> bool:
        """Read the file again if another program wrote it, keeping our unsaved changes."""
        if not self.changed_on_disk(strict):
            return False
        pending = dict(self._pending)
        self.load()
        self._apply(pending)
        return True

    # --- queries -------------------------------------------------------------------------
    def get(self, rel: str, rater: str, role: str = RATER) -> Label | None:
        return self._rows.get((self.relative(rel), rater, role))

    def labels(self, rel: str | None = None, role: str = RATER) -> list[Label]:
        """The raters' labels of clip ``rel`` (all clips if None), in file order."""
        if rel is None:
            return [label for (_, _, ro), label in self._rows.items() if ro == role]
        if self._by_clip is None:
            self._by_clip = {}
            for (r, ra, ro), label in self._rows.items():
                self._by_clip.setdefault(r, {})[(ra, ro)] = label
        clip = self._by_clip.get(self.relative(rel), {})
        return [label for (_, ro), label in clip.items() if ro == role]

    def adjudication(self, rel: str) -> Label | None:
        """The final label an adjudicator set on clip ``rel`` (the latest one), or None."""
        found = self.labels(rel, ADJUDICATOR)
        return max(found, key=_when) if found else None

    def raters(self) -> list[str]:
        """Rater names in the order they first appear."""
        return list(dict.fromkeys(label.rater for label in self.labels()))

    def clips(self) -> list[str]:
        """Clips with a rater's label or an adjudication, in file order."""
        return list(dict.fromkeys(rel for rel, _, _ in self._rows))

    def __len__(self) -> int:
        return len(self._rows)

    # --- changes -------------------------------------------------------------------------
    def set(self, rel: str, rater: str, score: float, *, issues: Iterable[str] | str = (),
            notes: str | None = None, labeled_at: str | None = None, role: str = RATER,
            save: bool = True) -> Label | None:
        """Record ``rater``'s label of ``rel`` (``labeled_at`` defaults to now); returns the
        previous one."""
        rater = (rater or "").strip()
        if not rater:
            raise LabelError("a rater's label needs the rater's name")
        if role not in (RATER, ADJUDICATOR):
            raise LabelError(f"role must be {RATER!r} or {ADJUDICATOR!r}, not {role!r}")
        rel = self.relative(rel)
        label = Label(rel, _check_score(score), rater,
                      _check_labeled_at(labeled_at) or _now_iso(), check_issues(issues),
                      notes.strip() if notes and notes.strip() else None)
        return self._change({(rel, rater, role): label}, save)

    def remove(self, rel: str, rater: str, role: str = RATER, *, save: bool = True) -> Label | None:
        return self._change({(self.relative(rel), rater, role): None}, save)

    def _change(self, changes: dict[Key, Label | None], save: bool) -> Label | None:
        previous = self._rows.get(next(iter(changes)))
        self._apply(changes)
        self._pending.update(changes)
        if save:
            self.save()
        return previous

    def _apply(self, changes: dict[Key, Label | None]) -> None:
        for key, label in changes.items():
            self._lines.pop(key, None)
            clip = None if self._by_clip is None else self._by_clip.setdefault(key[0], {})
            if label is None:
                self._rows.pop(key, None)
                if clip is not None:
                    clip.pop(key[1:], None)
            else:
                self._rows[key] = label
                if clip is not None:
                    clip[key[1:]] = label

    def save(self) -> None:
        """Write the file atomically, merging first what another program wrote meanwhile,
        under the project's label lock."""
        with self.folder.locked():
            self.reload_if_changed(strict=True)
            self._write(self._render())
        self._pending = {}

    def _write(self, data: bytes) -> None:
        """The one place the file is written (under the label lock)."""
        with atomic_write(self.path, "wb") as fh:
            fh.write(data)
        st = os.stat(self.path)
        self._stat, self._sha1 = (st.st_ino, st.st_mtime_ns, st.st_size), _sha1(data)

    def _render(self) -> bytes:
        lines = [_csv_line(COLUMNS)]
        for key, label in self._rows.items():
            if key not in self._lines:
                self._lines[key] = _csv_line(
                    [*key, _format(label.quality_score), ";".join(label.issues),
                     label.notes or "", label.labeled_at or ""])
            lines.append(self._lines[key])
        return "".join(lines).encode("utf-8")


def _csv_line(cells) -> str:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerow(cells)
    return buf.getvalue()


def _sha1(data: bytes) -> str:
    return hashlib.sha1(data).hexdigest()


def _format(score: float) -> str:
    return str(int(score)) if float(score).is_integer() else repr(float(score))


def _when(label: Label) -> datetime:
    try:
        return datetime.fromisoformat(label.labeled_at).astimezone()
    except (TypeError, ValueError):
        return datetime.min.astimezone()


# --- the training table -----------------------------------------------------------------------

def consensus(labels: list[Label], policy: str = DEFAULT_POLICY,
              adjudication: Label | None = None) -> Label | None:
    """The training-table label of one clip from its raters' labels under ``policy``; None
    when there is none (no label, or a majority tie not yet adjudicated)."""
    check_policy(policy)
    if adjudication is not None:
        return adjudication
    if len(labels) <= 1:
        return labels[0] if labels else None
    if policy == "latest":  # labeled_at is to the second: a tie goes to the later row
        return max(reversed(labels), key=_when)
    if policy == "majority":
        (top, n_top), *rest = Counter(label.quality_score for label in labels).most_common()
        if rest and rest[0][1] == n_top:
            return None
        score = top
    else:
        score = sum(label.quality_score for label in labels) / len(labels)
    tags = Counter(tag for label in labels for tag in label.issues)
    issues = tuple(tag for tag, n in tags.items() if 2 * n >= len(labels))
    return Label(labels[0].video_path, score, "+".join(label.rater or UNNAMED for label in labels),
                 max(labels, key=_when).labeled_at, issues, None)


def sync_training_table(table: LabelStore, raters: RaterStore, policy: str,
                        rels: Iterable[str] | None = None, force: Iterable[str] = ()) -> list[str]:
    """Set the training table's rows of ``rels`` (default: every clip with rater labels) to
    their consensus; only rows whose score changes are rewritten, plus the ``force`` ones
    (a clip whose labels just changed). Not saved; returns the clips changed."""
    force = set(force)
    changed = []
    for rel in raters.clips() if rels is None else rels:
        want = consensus(raters.labels(rel), policy, raters.adjudication(rel))
        have = table.get(rel)
        if want is None:
            if have is not None:
                table.remove(rel, save=False)
                changed.append(rel)
        elif have is None or have.quality_score != want.quality_score or rel in force:
            table.set(rel, want.quality_score, rater=want.rater, issues=want.issues,
                      notes=want.notes, labeled_at=want.labeled_at, save=False)
            changed.append(rel)
    return changed


def seed_from_table(table: LabelStore, raters: RaterStore, unnamed: str = UNNAMED) -> None:
    """Start the per-rater file from the training table: each labelled row becomes the label
    of the rater it names (``unnamed`` when it names none). Not saved."""
    for rel in table.paths():
        label = table.get(rel)
        raters.set(rel, label.rater or unnamed, label.quality_score, issues=label.issues,
                   notes=label.notes, labeled_at=label.labeled_at, save=False)


def needs_raters(table: LabelStore, raters: RaterStore, rater: str | None) -> bool:
    """True if a label by ``rater`` must go through the per-rater file: it exists already, or
    the training table holds a label of another named rater."""
    if raters.exists:
        return True
    return bool(rater) and any(name != rater for name in table.rater_names())


def known_raters(table: LabelStore, raters: RaterStore, current: str | None = None) -> list[str]:
    """Everyone who labelled the project (per-rater file, else the training table's ``rater``
    column) plus ``current``: more than one means labelling should be blind."""
    names = raters.raters() if raters.exists else list(table.rater_names())
    return list(dict.fromkeys(names + ([current] if current else [])))


def clip_raters(table: LabelStore, raters: RaterStore, rel: str) -> list[str]:
    """Who labelled clip ``rel`` (from the training table while there is no per-rater file)."""
    if raters.exists:
        return [label.rater for label in raters.labels(rel)]
    label = table.get(rel)
    return [] if label is None else [label.rater or UNNAMED]


def write_rater_label(table: LabelStore, raters: RaterStore, policy: str, rel: str,
                      rater: str, label: Label | None, role: str = RATER) -> None:
    """Record (or, with None, remove) ``rater``'s label of ``rel`` in the per-rater file
    (started from the training table if new) and set the clip's training-table row to the
    consensus. Call it holding the label lock (``table.locked()``) and save the training table
    before letting go of it (as ``Project`` does), so no other save comes in between."""
    rel = table.relative(rel)
    raters.reload_if_changed(strict=True)
    if not raters.exists:
        seed_from_table(table, raters)
    if label is None:
        raters.remove(rel, rater, role, save=False)
    else:
        raters.set(rel, rater, label.quality_score, issues=label.issues, notes=label.notes,
                   labeled_at=label.labeled_at, role=role, save=False)
    raters.save()
    sync_training_table(table, raters, policy, [rel], force=[rel])


def training_table_params(csv_path: str | os.PathLike) -> dict[str, object]:
    """What an MLflow run records about how its labels were made: the policy and raters."""
    path = ProjectFolder.of_labels(csv_path).rater_csv
    try:
        store = RaterStore(path)
    except (OSError, LabelError):
        return {"label_policy": read_policy(csv_path), "n_raters": -1}
    decided = {label.video_path for label in store.labels(role=ADJUDICATOR)}
    return {"label_policy": read_policy(csv_path), "n_raters": max(len(store.raters()), 1),
            "n_adjudicated": len(decided)}


@dataclass(frozen=True)
class Disagreement:
    """A clip the raters disagree about (or one they agreed on that was decided anyway):
    everyone's label, how far apart, any decision."""

    rel: str
    labels: tuple[Label, ...]
    spread: float  # highest minus lowest score
    adjudication: Label | None

    @property
    def agreed(self) -> bool:
        """True if every rater gave the same score (the clip is here for its decision)."""
        return self.spread == 0


def adjudication_queue(raters: RaterStore, include_decided: bool = True) -> list[Disagreement]:
    """Clips at least two raters labelled differently, the widest disagreement first (then
    the most raters, then by path); decided ones last, with the clips decided although the
    raters agreed (``agreed``), so that no decision is applied unseen."""
    queue = []
    for rel in raters.clips():
        labels = raters.labels(rel)
        scores = {label.quality_score for label in labels}
        decided = raters.adjudication(rel)
        if decided is None and (len(labels) < 2 or len(scores) < 2):
            continue
        if decided is not None and not include_decided:
            continue
        spread = max(scores) - min(scores) if scores else 0.0
        queue.append(Disagreement(rel, tuple(labels), spread, decided))
    return sorted(queue, key=lambda d: (d.adjudication is not None, -d.spread,
                                        -len(d.labels), d.rel))
