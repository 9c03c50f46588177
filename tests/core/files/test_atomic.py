"""atomic_write: the old file or the new one, never half of one, and no temporary files left."""
from __future__ import annotations

import pytest

from echoquality_core.files.atomic import atomic_write


def test_new_content_replaces_the_file_and_no_temporary_file_is_left(tmp_path):
    path = tmp_path / "scores.csv"
    path.write_text("old\n")
    with atomic_write(path, "w", encoding="utf-8") as fh:
        fh.write("new\n")
        assert path.read_text() == "old\n"  # readers see the old file until the end
    assert path.read_text() == "new\n"
    assert [p.name for p in tmp_path.iterdir()] == ["scores.csv"]


def test_an_error_while_writing_keeps_the_old_file(tmp_path):
    path = tmp_path / "best.pt"
    path.write_bytes(b"old")
    with pytest.raises(RuntimeError, match="disk full"), atomic_write(path) as fh:
        fh.write(b"half of the new")
        raise RuntimeError("disk full")
    assert path.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["best.pt"]
