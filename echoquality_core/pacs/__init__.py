"""Clips from the PACS over DICOMweb, results back as DICOM SR (no Qt here).

``connection`` (URL, credentials, errors), ``search`` (QIDO-RS), ``retrieve`` (WADO-RS import
with resume), ``sr`` (the Comprehensive SR of one clip's verdict), ``send`` (STOW-RS or files),
``watch`` (unattended polling with a resumable state file).
"""
from __future__ import annotations

from echoquality_core.pacs.connection import (
    Credentials,
    PacsAuthError,
    PacsConnection,
    PacsError,
    find_credentials,
)
from echoquality_core.pacs.retrieve import ImportResult, clip_path, import_clips, import_studies
from echoquality_core.pacs.search import InstanceRef, StudySummary, list_clips, search_studies

__all__ = [
    "Credentials", "ImportResult", "InstanceRef", "PacsAuthError", "PacsConnection",
    "PacsError", "StudySummary", "clip_path", "find_credentials", "import_clips",
    "import_studies", "list_clips", "search_studies",
]
