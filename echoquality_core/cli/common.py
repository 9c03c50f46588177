"""What every ``echoquality`` sub-command shares: the one-line user error (exit code 2), the
clip progress bar and the ``--trust-exported`` option. No heavy imports."""
from __future__ import annotations

import argparse
import sys

from echoquality_core.cli.progress import progress_bar


def fail(command: str, error: BaseException | str) -> int:
    """Print one clear line for a user error and return exit code 2."""
    text = " ".join(str(error).split()) or type(error).__name__
    print(f"echoquality {command}: error: {text}", file=sys.stderr)
    return 2


def clip_progress(desc: str):
    """A progress bar (or plain lines) and the ``progress(done, total, name)`` that moves it."""
    bar = progress_bar(None, desc, "clip")

    def progress(done: int, total: int, name: str) -> None:
        bar.total = total
        bar.n = done
        bar.refresh()

    return bar, progress


def add_trust(p: argparse.ArgumentParser) -> None:
    """The ``--trust-exported`` option of the commands that load a model."""
    p.add_argument("--trust-exported", action="store_true",
                   help="accept a TorchScript export as --model: loading it runs code from the "
                        "file, so only for files from a source you trust")
