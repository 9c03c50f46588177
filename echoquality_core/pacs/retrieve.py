"""WADO-RS import of clips into a project folder (files byte for byte as the PACS stores them): one folder per study, file names from hashed
UIDs (``<project>/pacs/<study key>/<instance key>.dcm``), bounded parallel downloads, progress,
cancel, resume (a clip already on disk with the same SOPInstanceUID is not downloaded again) and
one clear error per instance that fails. Files are written atomically: an interrupted download
leaves no clip, only a hidden temporary file that the next import removes."""
from __future__ import annotations

import dataclasses
import hashlib
import io
import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from pathlib import Path

import pydicom
import requests

from echoquality_core.files.atomic import atomic_write
from echoquality_core.labels.folder import ProjectFolder
from echoquality_core.pacs.connection import PacsAuthError, PacsConnection, PacsError
from echoquality_core.pacs.search import InstanceRef, StudySummary, list_clips

log = logging.getLogger(__name__)

SALT_ENV = "ECHOQUALITY_SALT"
_DEFAULT_SALT = "echoquality-pacs"
# the stored file as it is, not transcoded
ACCEPT = 'multipart/related; type="application/dicom"; transfer-syntax=*'

ProgressFn = Callable[[int, int, str], None]  # done, total, clip file name


def uid_key(uid: str) -> str:
    """16 hex digits of a salted SHA-256 of a UID (salt: env ECHOQUALITY_SALT): file names."""
    salt = os.environ.get(SALT_ENV) or _DEFAULT_SALT
    return hashlib.sha256(f"{salt}|{uid}".encode()).hexdigest()[:16]


def clip_path(root: str | os.PathLike, ref: InstanceRef) -> Path:
    """Where a clip is stored in a project: ``<root>/pacs/<study key>/<instance key>.dcm``."""
    return ProjectFolder(root).pacs / uid_key(ref.study_uid) / f"{uid_key(ref.sop_uid)}.dcm"


def on_disk(path: Path, sop_uid: str) -> bool:
    """True if ``path`` is a DICOM file of the instance ``sop_uid``."""
    if not path.is_file():
        return False
    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=["SOPInstanceUID"])
    except Exception:  # noqa: BLE001 - unreadable: download it again
        return False
    return str(ds.get("SOPInstanceUID", "")) == sop_uid


@dataclasses.dataclass
class ImportResult:
    """What an import did: paths downloaded / already there, (file name, reason) per failure."""

    downloaded: list[Path] = dataclasses.field(default_factory=list)
    skipped: list[Path] = dataclasses.field(default_factory=list)
    failed: list[tuple[str, str]] = dataclasses.field(default_factory=list)
    cancelled: bool = False
    n_bytes: int = 0
    seconds: float = 0.0

    @property
    def clips(self) -> list[Path]:
        """Every clip of the import that is on disk (downloaded or already there)."""
        return self.skipped + self.downloaded


def instance_url(conn: PacsConnection, ref: InstanceRef) -> str:
    """The WADO-RS URL of one instance."""
    return (f"{conn.url}/studies/{ref.study_uid}/series/{ref.series_uid}"
            f"/instances/{ref.sop_uid}")


def _part(response: requests.Response) -> memoryview:
    """The single DICOM part of a WADO-RS answer (multipart/related, or a bare file)."""
    body = memoryview(response.content)
    media_type, *params = [p.strip() for p in response.headers.get("Content-Type", "").split(";")]
    if media_type.lower() != "multipart/related":
        return body
    boundary = next((p.partition("=")[2].strip('"') for p in params
                     if p.lower().startswith("boundary=")), "")
    data = response.content
    marker = b"--" + boundary.encode()
    start = data.find(b"\r\n\r\n", data.find(marker)) + 4
    end = data.find(b"\r\n" + marker, start)
    if not boundary or start < 4 or end < 0:
        raise ValueError("the PACS sent a malformed multipart answer")
    return body[start:end]


def download(conn: PacsConnection, ref: InstanceRef, path: Path) -> int:
    """Retrieve one instance as stored (any transfer syntax, no transcoding) and write the
    file byte for byte, atomically; its size."""
    with conn.errors(f"{path.name}: retrieving"):
        response = conn.session().get(instance_url(conn, ref), headers={"Accept": ACCEPT},
                                      timeout=conn.timeout)
        response.raise_for_status()
    part = _part(response)
    header = pydicom.dcmread(io.BytesIO(part), stop_before_pixels=True,
                             specific_tags=["SOPInstanceUID"])
    if str(header.get("SOPInstanceUID", "")) != ref.sop_uid:
        raise PacsError(f"{path.name}: the PACS sent another instance than the one asked for")
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path) as fh:
        fh.write(part)
    return len(part)


def _remove_stale_temporaries(folders: set[Path]) -> None:
    for folder in folders:
        for tmp in folder.glob(".*.tmp") if folder.is_dir() else ():
            tmp.unlink(missing_ok=True)


def import_clips(
    conn: PacsConnection,
    refs: Sequence[InstanceRef],
    into: str | os.PathLike,
    *,
    workers: int = 4,
    progress: ProgressFn | None = None,
    cancel: Callable[[], bool] | threading.Event | None = None,
) -> ImportResult:
    """Download ``refs`` into the project folder ``into`` with at most ``workers`` requests at
    once. Clips already on disk are skipped; a failed instance is recorded in ``failed`` and the
    others go on, except a refused login (:class:`PacsAuthError`), which stops the import.
    ``cancel()`` (or a set Event) stops it after the downloads under way."""
    if workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    is_cancelled = cancel.is_set if isinstance(cancel, threading.Event) else cancel
    start = time.perf_counter()
    result = ImportResult()
    todo: list[tuple[InstanceRef, Path]] = []
    for ref in refs:
        path = clip_path(into, ref)
        (result.skipped.append(path) if on_disk(path, ref.sop_uid) else todo.append((ref, path)))
    _remove_stale_temporaries({path.parent for _, path in todo})
    total, done = len(refs), len(result.skipped)
    if progress is not None and total:
        progress(done, total, "")
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="pacs-import") as pool:
        pending: dict[Future, Path] = {}
        queue = list(reversed(todo))
        while queue or pending:
            while queue and len(pending) < workers and not result.cancelled:
                if is_cancelled is not None and is_cancelled():
                    result.cancelled = True
                    break
                ref, path = queue.pop()
                pending[pool.submit(download, conn, ref, path)] = path
            if not pending:
                break
            finished, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in finished:
                path = pending.pop(future)
                done += 1
                _collect(future, path, result)
                if progress is not None:
                    progress(done, total, path.name)
    result.seconds = time.perf_counter() - start
    return result


def _collect(future: Future, path: Path, result: ImportResult) -> None:
    try:
        result.n_bytes += future.result()
        result.downloaded.append(path)
    except PacsAuthError:
        raise
    except PacsError as exc:
        result.failed.append((path.name, str(exc)))
        log.warning("%s", exc)
    except (OSError, ValueError) as exc:  # disk full, unparsable answer, ...
        reason = " ".join(str(exc).split()) or type(exc).__name__
        result.failed.append((path.name, f"{path.name}: {reason}"))
        log.warning("%s: %s", path.name, reason)


def import_studies(
    conn: PacsConnection,
    studies: Sequence[StudySummary | str],
    into: str | os.PathLike,
    *,
    modality: str | None = "US",
    workers: int = 4,
    progress: ProgressFn | None = None,
    cancel: Callable[[], bool] | threading.Event | None = None,
) -> ImportResult:
    """List the clips (multi-frame instances of ``modality``) of each study and import them."""
    refs: list[InstanceRef] = []
    for study in studies:
        uid = study.study_uid if isinstance(study, StudySummary) else study
        refs += list_clips(conn, uid, modality=modality)
    return import_clips(conn, refs, into, workers=workers, progress=progress, cancel=cancel)
