"""Issue 21.7: every command's and sub-command's --help renders cleanly (argparse %-formats
``help=`` strings but not ``description=``, so a stray or doubled ``%`` leaks)."""
from __future__ import annotations

import argparse
import subprocess
import sys

import pytest

from echoquality_core.cli.main import build_parser, main

LEAKS = ("%%", "%(", "{'", "%s", "%d", "%r")


def _commands(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()):
    yield path
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _commands(sub, (*path, name))


COMMANDS = list(_commands(build_parser()))


def test_every_command_is_walked():
    assert ("report",) in COMMANDS and ("pacs",) in COMMANDS
    assert any(len(path) == 2 for path in COMMANDS)  # sub-commands too (weights, pacs, ...)


@pytest.mark.parametrize("path", COMMANDS, ids=lambda p: " ".join(p) or "echoquality")
def test_help_has_no_leaked_format_fields(path, capsys):
    with pytest.raises(SystemExit) as done:
        main([*path, "--help"])
    assert done.value.code == 0
    text = capsys.readouterr().out
    assert text.startswith("usage: echoquality")
    leaked = [line for line in text.splitlines() if any(leak in line for leak in LEAKS)]
    assert not leaked, leaked


def test_top_level_help_from_the_console_names_agreement_in_words():
    done = subprocess.run([sys.executable, "-m", "echoquality_core", "--help"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0
    assert "% agreement" in done.stdout and "95% CIs" in done.stdout
    assert not any(leak in done.stdout for leak in LEAKS)
