"""The one error a clip that cannot be read raises."""
from __future__ import annotations

import os
from pathlib import Path


class DicomReadError(Exception):
    """A clip that cannot be read; ``reason`` says why in plain words (never patient data)."""

    def __init__(self, path: str | os.PathLike, reason: str):
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"{self.path.name}: {reason}")

    def __reduce__(self):  # picklable across worker processes
        return type(self), (self.path, self.reason)



def _short(exc: Exception, limit: int = 160) -> str:
    text = " ".join(str(exc).split())
    return text if len(text) <= limit else text[:limit - 3] + "..."

