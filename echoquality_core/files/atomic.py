"""All-or-nothing file writes: a reader (or a crash, or a full disk) sees the old file or the new
one, never half of one.

* ``atomic_write`` / ``write_atomic``: a temporary file in the target's folder
  (``.NAME.tmp-PID-RANDOM``), fsync, ``os.replace``, fsync of the folder. A new file gets the
  user's umask (as ``open`` would); a replaced file keeps its mode. Temporary files of writes
  that died (their process is gone, or older than an hour) are removed on the next write.
* ``write_csv_rows``: a table of dicts as a CSV, through ``atomic_write``.
* ``append_atomic``: bytes appended to a file in one write + fsync; on any failure the file is
  cut back to its old length, so it never ends in a torn row.

A full disk (or a file size limit) raises ``DiskFullError``, an ``OSError`` whose message starts
with "disk full" and says that the old file is unchanged.
"""
from __future__ import annotations

import contextlib
import errno
import glob
import os
import secrets
import stat
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

_STALE_TEMP_SECONDS = 3600  # a temporary file this old is left over from a crash whatever its pid
_FULL = {errno.ENOSPC, errno.EFBIG, getattr(errno, "EDQUOT", errno.ENOSPC)}


class DiskFullError(OSError):
    """No space left (or over a file size/quota limit) while writing; nothing was changed."""


def _disk_full(path: Path, exc: OSError) -> DiskFullError:
    return DiskFullError(exc.errno, f"disk full: could not write {path.name} "
                                    f"({exc.strerror or exc}); the previous file is unchanged",
                         str(path))


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "wb", **open_args: Any) -> Iterator[IO]:
    """Open a temporary file beside ``path`` for writing; on leaving the block it is flushed,
    fsynced and renamed over ``path``, and the folder is fsynced. On an error ``path`` is left
    as it was and the temporary file is removed. The parent folder must exist."""
    path = Path(path)
    target = Path(os.path.realpath(path))
    folder = target.parent
    remove_stale_temps(folder, target.name)
    tmp = folder / f".{target.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    try:
        with contextlib.suppress(FileNotFoundError):
            os.chmod(tmp, stat.S_IMODE(os.stat(target).st_mode))
        with os.fdopen(fd, mode, **open_args) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        if isinstance(exc, OSError) and exc.errno in _FULL:
            raise _disk_full(path, exc) from exc
        raise
    fsync_folder(folder)


def write_atomic(path: str | os.PathLike, data: bytes) -> os.stat_result:
    """Replace ``path`` by ``data`` atomically (see ``atomic_write``); the new file's status."""
    with atomic_write(path) as fh:
        fh.write(data)
    return os.stat(os.path.realpath(path))


def write_csv_rows(path: str | os.PathLike, fieldnames: Sequence[str],
                   rows: Iterable[Mapping[str, Any]]) -> Path:
    """Write ``rows`` (dicts with the ``fieldnames`` as keys, values as written) as a CSV with a
    header, atomically; the folder is created if needed."""
    import csv

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(fieldnames))
        writer.writeheader()
        writer.writerows(rows)
    return path


def append_atomic(path: str | os.PathLike, data: bytes) -> None:
    """Append ``data`` to ``path`` with one write and an fsync. On any failure (a full disk, a
    size limit, an interrupt) the file is cut back to its old length before the error is
    raised, with unbuffered calls that need no disk space."""
    path = Path(path)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | getattr(os, "O_BINARY", 0))
    try:
        start = os.fstat(fd).st_size
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        except BaseException as exc:
            os.ftruncate(fd, start)
            os.fsync(fd)
            if isinstance(exc, OSError) and exc.errno in _FULL:
                raise _disk_full(path, exc) from exc
            raise
    finally:
        os.close(fd)


def fsync_folder(folder: str | os.PathLike) -> None:
    """Make a rename in ``folder`` durable (POSIX; a no-op elsewhere)."""
    if os.name != "posix":
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def remove_stale_temps(folder: str | os.PathLike, name: str) -> None:
    """Delete temporary files of writes of ``name`` that died (process gone, or old)."""
    now = time.time()
    for tmp in Path(folder).glob(f".{glob.escape(name)}.tmp-*"):
        pid_text = tmp.name.rsplit(".tmp-", 1)[1].split("-", 1)[0]
        try:
            stale = (now - tmp.stat().st_mtime > _STALE_TEMP_SECONDS
                     or (pid_text.isdigit() and not _process_alive(int(pid_text))))
            if stale:
                tmp.unlink()
        except OSError:
            pass  # gone already, or not ours to delete


def _process_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    if os.name != "posix":
        return True  # no safe probe on Windows; the age rule cleans up instead
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
