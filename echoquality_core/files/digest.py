"""File digests: one chunked hash of a file's bytes (cache keys, run provenance)."""
from __future__ import annotations

import hashlib
import os

_CHUNK = 1 << 20


def file_digest(path: str | os.PathLike, algorithm: str = "sha256") -> str:
    """Hex digest (``hashlib`` algorithm name, default SHA-256) of a file, read in 1 MiB chunks."""
    digest = hashlib.new(algorithm)
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()
