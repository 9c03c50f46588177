"""The labels CSV at its limits (issue 24.3): a NUL byte in a path is refused with its row, a
long notes cell is read, a ';' file whose header quotes a comma is read as ';'."""
from __future__ import annotations

import pytest

from echoquality_core.labels.csv_table import FIELD_LIMIT, sniff_delimiter
from echoquality_core.labels.store import LabelError, LabelStore


def test_a_nul_byte_in_a_path_is_refused_with_its_row(tmp_path):
    csv_path = tmp_path / "labels.csv"
    csv_path.write_bytes(b"video_path,quality_score\na.dcm,1\nb\x00c.dcm,0\n")
    with pytest.raises(LabelError, match="NUL byte") as caught:
        LabelStore(csv_path)
    assert caught.value.row == 3
    store = LabelStore(tmp_path / "new.csv")
    with pytest.raises(LabelError, match="NUL byte"):
        store.set("x\x00.dcm", 1, save=False)


def test_a_labels_csv_with_a_10_mb_notes_cell_is_read_and_written_back(tmp_path):
    notes = "n" * 10_000_000
    text = f'video_path,quality_score,notes\na.dcm,1,"{notes}"\nb.dcm,0,short\n'
    csv_path = tmp_path / "labels.csv"
    csv_path.write_text(text, encoding="utf-8")
    store = LabelStore(csv_path)
    assert store.get("a.dcm").notes == notes and store.get("b.dcm").quality_score == 0
    store.set("b.dcm", 1)
    assert LabelStore(csv_path).get("a.dcm").notes == notes
    over = tmp_path / "over.csv"
    over.write_text(f'video_path,quality_score,notes\na.dcm,1,"{"n" * (FIELD_LIMIT + 1)}"\n',
                    encoding="utf-8")
    with pytest.raises(LabelError, match="field larger than field limit") as caught:
        LabelStore(over)  # still bounded: a runaway cell is refused, with its row
    assert caught.value.row == 2


def test_a_semicolon_file_whose_header_quotes_a_comma_is_read(tmp_path):
    text = 'video_path;quality_score;"notes, free text"\r\na.dcm;0,75;fine, mostly\r\nb.dcm;1;\r\n'
    csv_path = tmp_path / "labels.csv"
    csv_path.write_bytes(text.encode())
    store = LabelStore(csv_path)
    assert store.get("a.dcm").quality_score == 0.75 and store.get("b.dcm").quality_score == 1
    store.set("b.dcm", 0)
    again = LabelStore(csv_path)
    assert again.to_frame().columns[:3].tolist() == ["video_path", "quality_score",
                                                     "notes, free text"]
    assert again.get("b.dcm").quality_score == 0 and again.get("a.dcm").quality_score == 0.75
    assert sniff_delimiter('video_path,quality_score,"a;b"\n') == ","
    assert sniff_delimiter("video_path\tquality_score\n") == "\t"
