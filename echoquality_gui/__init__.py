"""EchoQuality Studio's desktop app (PySide6 + pyqtgraph); the logic lives in echoquality_core.

Importing this package works round a PySide6 6.12 bug on Python < 3.12: its bindings drop one
reference to None (and True/False) on every call of a method returning nothing, which CPython
>= 3.12 ignores (those objects are immortal there) but which crashes 3.11 with "Fatal Python
error: none_dealloc" after a few thousand calls, i.e. within seconds of cine playback. Giving
these three singletons a huge reference count makes them effectively immortal, as on 3.12.
"""
from __future__ import annotations

import sys


def _make_singletons_immortal() -> None:
    if sys.version_info >= (3, 12) or sys.implementation.name != "cpython":
        return
    import ctypes

    for obj in (None, True, False):
        ctypes.c_ssize_t.from_address(id(obj)).value += 1 << 48


_make_singletons_immortal()
