"""Progress for long CLI commands: a tqdm bar on a terminal, plain periodic lines otherwise.

When the output is a terminal, :func:`progress_bar` is tqdm. When it is a file or a pipe (a log,
CI, ``nohup``) tqdm's carriage-return redraws would pile up into one enormous line, so a
:class:`LineProgress` with the same small interface prints one complete line at most every
``every`` seconds instead. :func:`working` does the same for one long step that cannot count
its progress (an export, a GradCAM).
"""
from __future__ import annotations

import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO, Any

EVERY_S = 10.0  # seconds between lines when the output is not a terminal


def _is_terminal(stream: IO[str]) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


class LineProgress:
    """The subset of tqdm the CLI uses (``n``, ``total``, ``update``, ``refresh``,
    ``set_postfix``, ``set_description``, ``write``, ``close``), printing whole lines."""

    def __init__(self, total: int | None = None, desc: str = "", unit: str = "it",
                 file: IO[str] | None = None, every: float = EVERY_S):
        self.total, self.desc, self.unit, self.n = total, desc, unit, 0
        self.file = file or sys.stderr
        self.every = every
        self.postfix = ""
        self._start = self._last = time.monotonic()
        self._closed = self._printed = False

    def update(self, n: int = 1) -> None:
        self.n += n
        self.refresh()

    def refresh(self) -> None:
        """Print a line if ``every`` seconds have passed since the last one."""
        now = time.monotonic()
        if now - self._last >= self.every:
            self._last = now
            self._line()

    def set_postfix(self, **values: Any) -> None:
        self.postfix = ", ".join(f"{k}={v}" for k, v in values.items())

    def set_description(self, desc: str) -> None:
        self.desc = desc

    def write(self, text: str, file: IO[str] | None = None) -> None:
        print(text, file=file or self.file, flush=True)

    def close(self, failed: bool = False) -> None:
        """A last line, if the work counted something or lines were printed; none when
        ``failed``: the command's one-line error says why it stopped."""
        if not self._closed:
            self._closed = True
            if (self.n or self._printed) and not failed:
                self._line(final=True)

    def _line(self, final: bool = False) -> None:
        self._printed = True
        elapsed = time.monotonic() - self._start
        if self.total:
            parts = [f"{self.n}/{self.total} {self.unit} ({100 * self.n / self.total:.0f} %)"]
        else:
            parts = [f"{self.n} {self.unit}"] if self.n else ([] if final else ["working"])
        if self.postfix:
            parts.append(self.postfix)
        parts.append(f"done in {elapsed:.0f} s" if final else f"{elapsed:.0f} s")
        print(f"{self.desc}: {', '.join(parts)}", file=self.file, flush=True)

    def __enter__(self) -> LineProgress:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def progress_bar(total: int | None = None, desc: str = "", unit: str = "it",
                 file: IO[str] | None = None, every: float = EVERY_S) -> Any:
    """tqdm on a terminal, :class:`LineProgress` otherwise (both on stderr by default)."""
    file = file or sys.stderr
    if _is_terminal(file):
        from tqdm import tqdm

        return tqdm(total=total, desc=desc, unit=unit, file=file, dynamic_ncols=True)
    return LineProgress(total, desc, unit, file, every)


@contextmanager
def working(desc: str, file: IO[str] | None = None, every: float = EVERY_S) -> Iterator[None]:
    """Show that one long step is under way: a ticking elapsed-time bar on a terminal, a line
    every ``every`` seconds otherwise, and a last line with its duration."""
    bar = progress_bar(None, desc, "s", file, every)
    done = threading.Event()

    def tick() -> None:
        while not done.wait(0.5):
            bar.refresh()  # tqdm redraws its elapsed time; LineProgress prints every `every` s

    thread = threading.Thread(target=tick, daemon=True)
    thread.start()
    failed = True
    try:
        yield
        failed = False
    finally:
        done.set()
        thread.join()
        finish(bar, failed)


def finish(bar: Any, failed: bool = False) -> None:
    """Close a :func:`progress_bar` (again is harmless); a failed one prints no last line."""
    bar.close(failed) if isinstance(bar, LineProgress) else bar.close()
