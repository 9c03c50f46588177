"""The patient key: which clips belong to one patient, the unit that splits, folds and bootstraps
resample. One owner, torch-free (the GUI uses it). The key is the header's salted, hashed patient
key (``dicom.header``), else its study key, else the clip itself; no patient data leaves."""
from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any


def patient_group(record: Mapping[str, Any]) -> str:
    """The patient of a clip record (``patient_key``/``study_key`` from its header, ``path``)."""
    return str(record.get("patient_key") or record.get("study_key") or f"path:{record['path']}")


def patient_groups(paths: Sequence[str | os.PathLike]) -> list[str]:
    """The patient of each clip file, from its header (the file itself when it has no key or
    cannot be read)."""
    from echoquality_core.dicom import DicomReadError, read_clip

    groups = []
    for path in paths:
        try:
            meta = read_clip(path).metadata
        except (DicomReadError, OSError, ValueError):
            meta = {}
        groups.append(patient_group({**meta, "path": os.fspath(path)}))
    return groups
