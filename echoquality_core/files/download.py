"""Download a file over HTTP(S) so that it can be trusted: resumed, verified, moved into place.

The bytes go to ``<dest>.part`` beside the destination. An interrupted download is resumed with
an HTTP ``Range`` request (a server that ignores it makes us start again); the SHA-256 and the
size are checked *before* the file is renamed to ``dest``, and a file that fails the check is
deleted, so the cache only ever holds verified files. Nothing here imports torch.
"""
from __future__ import annotations

import hashlib
import http.client
import os
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

CHUNK = 1 << 20
TIMEOUT_S = 30.0
ATTEMPTS = 3  # tries per download; each resumes where the last stopped
USER_AGENT = "echoquality-studio"


class DownloadError(OSError):
    """A download that failed or gave the wrong file; ``str(e)`` is one sentence for a user."""


class OfflineError(DownloadError):
    """The server could not be reached (no network, refused, DNS failure, timeout)."""


class DownloadCancelled(DownloadError):
    """``should_cancel()`` became true; the partial file is kept for a later resume."""


@dataclass(frozen=True)
class DownloadProgress:
    """Where a download is: bytes so far (including a resumed part), total (None if unknown),
    bytes per second over this attempt."""

    done: int
    total: int | None
    speed: float

    def text(self) -> str:
        """E.g. ``"12.3 MB of 125.4 MB (9.8 %), 4.1 MB/s"``."""
        total = f" of {self.total / 1e6:.1f} MB ({100 * self.done / self.total:.1f} %)" \
            if self.total else ""
        return f"{self.done / 1e6:.1f} MB{total}, {self.speed / 1e6:.1f} MB/s"


def file_sha256(path: str | os.PathLike) -> str:
    """SHA-256 (hex) of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def hash_matches(actual: str, expected: str) -> bool:
    """Whether ``actual`` (full hex) matches ``expected``: the full hash, or a prefix of it such
    as the 8 hex digits torchvision puts in its file names."""
    expected = expected.strip().lower()
    return len(expected) >= 8 and actual.lower().startswith(expected)


def download(
    url: str,
    dest: str | os.PathLike,
    *,
    sha256: str | None,
    size: int | None = None,
    progress: Callable[[DownloadProgress], None] | None = None,
    should_cancel: Callable[[], bool] | None = None,
    manual_hint: str = "",
) -> Path:
    """Fetch ``url`` into ``dest`` (resuming ``dest.part``) and verify it; returns ``dest``.

    ``sha256``: the expected hash (full or a prefix of at least 8 hex digits); None skips the
    check. ``size``: expected bytes, checked too. Raises :class:`OfflineError` when the server
    cannot be reached (its message is ``manual_hint`` when given), :class:`DownloadError` for a
    bad answer or a file that is not the expected one, :class:`DownloadCancelled`.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = _Part(dest.with_name(dest.name + ".part"))
    for attempt in range(1, ATTEMPTS + 1):
        try:
            _fetch(url, part, size, progress, should_cancel)
            break
        except DownloadError:
            raise
        except urllib.error.HTTPError as exc:
            raise DownloadError(f"{url} answered HTTP {exc.code} {exc.reason}.") from exc
        except _Interrupted as exc:
            if attempt == ATTEMPTS:
                raise DownloadError(f"The download from {url} was interrupted {ATTEMPTS} times "
                                    f"({exc}); run it again to resume.") from exc
        except (urllib.error.URLError, http.client.HTTPException, OSError) as exc:
            reason = getattr(exc, "reason", None) or exc
            raise OfflineError(manual_hint or f"Could not reach {url} ({reason}).") from exc
    _verify(part, url, sha256, size)
    os.replace(part.path, dest)
    return dest


class _Interrupted(Exception):
    """The connection closed before the whole file came; the part is kept and resumed."""


class _Part:
    """The ``.part`` file, its size and the SHA-256 of its bytes, hashed as they arrive (no
    second pass over the file); a part left by an earlier attempt is hashed once."""

    def __init__(self, path: Path):
        self.path = path
        self.restart()
        if path.is_file():
            with open(path, "rb") as fh:
                while chunk := fh.read(CHUNK):
                    self.add(chunk)

    def restart(self) -> None:
        self.digest, self.size = hashlib.sha256(), 0

    def add(self, chunk: bytes) -> None:
        self.digest.update(chunk)
        self.size += len(chunk)


def _fetch(url, part: _Part, size, progress, should_cancel) -> None:
    """Write the (rest of the) file into ``part``; from zero if the server ignores Range."""
    if size is not None and part.size > size:
        part.path.unlink()
        part.restart()
    have = part.size
    if size is not None and have == size:
        return  # complete from an earlier attempt; verified by the caller
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
    if have:
        request.add_header("Range", f"bytes={have}-")
    try:
        response = urllib.request.urlopen(request, timeout=TIMEOUT_S)  # noqa: S310 (https/http)
    except urllib.error.HTTPError as exc:
        if exc.code != 416 or not have:  # 416: the part is already complete (or bigger)
            raise
        return
    with response:
        resumed = have and response.status == 206
        if not resumed:
            have = 0  # the server sent the whole file
            part.restart()
        length = response.headers.get("Content-Length")
        total = have + int(length) if length and length.isdigit() else size
        _copy(response, part, "ab" if resumed else "wb", have, total, progress, should_cancel)


def _copy(response, part: _Part, mode: str, have: int, total, progress, should_cancel) -> None:
    start, last = time.perf_counter(), 0.0
    done = have
    with open(part.path, mode) as out:
        while chunk := _read(response):
            out.write(chunk)
            part.add(chunk)
            done += len(chunk)
            if should_cancel is not None and should_cancel():
                raise DownloadCancelled(f"download cancelled after {done / 1e6:.1f} MB "
                                        "(it resumes from there next time)")
            now = time.perf_counter()
            if progress is not None and (now - last >= 0.1 or done == total):
                last = now
                progress(DownloadProgress(done, total, (done - have) / max(now - start, 1e-6)))
    if progress is not None:
        elapsed = max(time.perf_counter() - start, 1e-6)
        progress(DownloadProgress(done, total, (done - have) / elapsed))
    if total is not None and done < total:
        raise _Interrupted(f"connection closed after {done:,} of {total:,} bytes")


def _read(response) -> bytes:
    try:
        return response.read(CHUNK)
    except (http.client.IncompleteRead, ConnectionError, TimeoutError) as exc:
        raise _Interrupted(str(exc) or type(exc).__name__) from exc


def _verify(part: _Part, url: str, sha256: str | None, size: int | None) -> None:
    """Check the size and hash of the finished ``part``; delete it and raise if wrong."""
    actual_size = part.path.stat().st_size
    problem = None
    if actual_size != part.size:  # changed behind our back: hash what is on disk
        part = _Part(part.path)
    if size is not None and actual_size != size:
        problem = f"its size is {actual_size:,} bytes, expected {size:,}"
    elif sha256:
        actual = part.digest.hexdigest()
        if not hash_matches(actual, sha256):
            problem = f"its SHA-256 is {actual}, expected {sha256.lower()}"
    if problem:
        part.path.unlink(missing_ok=True)
        raise DownloadError(
            f"The file downloaded from {url} is not the expected one: {problem}; it was deleted. "
            "If a newer release is intended, pass its hash with --sha256."
        )
