"""The README's ``train.toml`` block is what ``echoquality train --print-config`` prints for
the default settings: every key, with its default and its help (issue 22.9)."""
from __future__ import annotations

import dataclasses
import re
from pathlib import Path

from echoquality_core.cli.main import main
from echoquality_core.train.config import TrainConfig
from echoquality_core.train.config_file import HELP

README = Path(__file__).resolve().parents[3] / "README.md"


def readme_block() -> str:
    """The ```toml block under the README's ``train.toml`` heading."""
    found = re.search(r"### `train\.toml`.*?```toml\n(.*?)```", README.read_text(), re.S)
    assert found, "README.md has no ```toml block under '### `train.toml`'"
    return found.group(1)


def test_readme_train_toml_is_the_generated_text(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # no train.toml or paths of the working folder leak in
    assert main(["train", "--print-config"]) == 0
    printed = capsys.readouterr().out
    assert readme_block() == printed, (
        "README.md's train.toml block differs from `echoquality train --print-config`: "
        "paste that command's output into the block")


def test_every_setting_has_help():
    assert {f.name for f in dataclasses.fields(TrainConfig)} == set(HELP)
