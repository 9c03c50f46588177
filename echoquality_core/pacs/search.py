"""QIDO-RS searches: studies by date range, modality, accession and description; the clips
(multi-frame instances of the modality) of a study. Results carry no patient data: a study is
its UID, date, description, accession, modalities and counts; nothing here is logged."""
from __future__ import annotations

import dataclasses
import datetime as dt
import json
from collections.abc import Callable, Sequence
from typing import Any

from echoquality_core.pacs.connection import PacsConnection

STUDY_FIELDS = ("StudyInstanceUID", "StudyDate", "StudyDescription", "AccessionNumber",
                "ModalitiesInStudy", "NumberOfStudyRelatedSeries",
                "NumberOfStudyRelatedInstances")
INSTANCE_FIELDS = ("SeriesInstanceUID", "SOPInstanceUID", "SOPClassUID", "Modality",
                   "NumberOfFrames")
PAGE = 200  # results per QIDO-RS request
_TAGS = {"StudyInstanceUID": "0020000D", "StudyDate": "00080020", "StudyDescription": "00081030",
         "AccessionNumber": "00080050", "ModalitiesInStudy": "00080061",
         "NumberOfStudyRelatedSeries": "00201206", "NumberOfStudyRelatedInstances": "00201208",
         "SeriesInstanceUID": "0020000E", "SOPInstanceUID": "00080018",
         "SOPClassUID": "00080016", "Modality": "00080060", "NumberOfFrames": "00280008"}


@dataclasses.dataclass(frozen=True)
class StudySummary:
    """One study as a search lists it (no patient data; accession/description not in repr)."""

    study_uid: str
    date: dt.date | None
    modalities: tuple[str, ...]
    n_series: int
    n_instances: int
    description: str = dataclasses.field(default="", repr=False)
    accession: str = dataclasses.field(default="", repr=False)


@dataclasses.dataclass(frozen=True)
class InstanceRef:
    """One instance to retrieve: its UIDs and frame count."""

    study_uid: str
    series_uid: str
    sop_uid: str
    sop_class_uid: str
    n_frames: int


def _values(item: dict[str, Any], keyword: str) -> list:
    return list(item.get(_TAGS[keyword], {}).get("Value", []) or [])


def _first(item: dict[str, Any], keyword: str, default: Any = None) -> Any:
    values = _values(item, keyword)
    return values[0] if values else default


def _int(item: dict[str, Any], keyword: str) -> int:
    try:
        return int(_first(item, keyword, 0))
    except (TypeError, ValueError):
        return 0


def _date(text: str | None) -> dt.date | None:
    try:
        return dt.datetime.strptime(str(text)[:8], "%Y%m%d").date() if text else None
    except ValueError:
        return None


def parse_date(value: str | dt.date | None) -> dt.date | None:
    """A date from 'YYYY-MM-DD' or 'YYYYMMDD' (or a date); ValueError with the format otherwise."""
    if value is None or isinstance(value, dt.date):
        return value
    text = value.strip()
    for fmt in ("%Y-%m-%d", "%Y%m%d"):
        try:
            return dt.datetime.strptime(text, fmt).date()
        except ValueError:
            pass
    raise ValueError(f"not a date: {value!r} (use YYYY-MM-DD)")


def date_range(since: dt.date | None, until: dt.date | None) -> str | None:
    """The QIDO-RS StudyDate range ('YYYYMMDD-', '-YYYYMMDD', 'A-B') or None for any date."""
    if since is None and until is None:
        return None
    if since and until and since > until:
        raise ValueError(f"the date range is empty: {since} is after {until}")
    fmt = "%Y%m%d"
    return f"{since.strftime(fmt) if since else ''}-{until.strftime(fmt) if until else ''}"


def _all_pages(search: Callable[..., list[dict]], **query: Any) -> list[dict]:
    """Every result of a QIDO-RS search, page by page with limit and offset (Orthanc 1.10
    ignores an offset without a limit, so dicomweb-client's ``get_remaining`` never ends)."""
    items: list[dict] = []
    seen: set[str] = set()
    while True:
        page = search(limit=PAGE, offset=len(items), **query)
        keys = {json.dumps(item, sort_keys=True) for item in page}
        if not page or keys <= seen:  # the end, or a server that ignores the offset
            return items
        seen |= keys
        items += page
        if len(page) < PAGE:
            return items


def search_studies(
    conn: PacsConnection,
    *,
    since: str | dt.date | None = None,
    until: str | dt.date | None = None,
    modality: str | None = "US",
    accession: str | None = None,
    description: str | None = None,
    study_uids: Sequence[str] = (),
) -> list[StudySummary]:
    """Studies matching every filter given, oldest first. ``description`` matches anywhere in
    the study description (wildcards), ``study_uids`` restricts to those studies."""
    filters: dict[str, str] = {}
    dates = date_range(parse_date(since), parse_date(until))
    if dates:
        filters["StudyDate"] = dates
    if modality:
        filters["ModalitiesInStudy"] = modality
    if accession:
        filters["AccessionNumber"] = accession
    if description:
        filters["StudyDescription"] = f"*{description.strip('*')}*"
    queries = [dict(filters, StudyInstanceUID=uid) for uid in study_uids] or [filters]
    found: dict[str, StudySummary] = {}
    with conn.errors("searching studies"):
        for query in queries:
            for item in _all_pages(conn.client().search_for_studies, search_filters=query,
                                   fields=list(STUDY_FIELDS)):
                study = _study(item)
                found.setdefault(study.study_uid, study)
    return sorted(found.values(), key=lambda s: (s.date or dt.date.min, s.study_uid))


def _study(item: dict[str, Any]) -> StudySummary:
    return StudySummary(
        study_uid=str(_first(item, "StudyInstanceUID", "")),
        date=_date(_first(item, "StudyDate")),
        modalities=tuple(str(m) for m in _values(item, "ModalitiesInStudy")),
        n_series=_int(item, "NumberOfStudyRelatedSeries"),
        n_instances=_int(item, "NumberOfStudyRelatedInstances"),
        description=str(_first(item, "StudyDescription", "") or ""),
        accession=str(_first(item, "AccessionNumber", "") or ""),
    )


def list_clips(conn: PacsConnection, study_uid: str, *, modality: str | None = "US",
               multiframe_only: bool = True) -> list[InstanceRef]:
    """The instances of a study to import: of ``modality`` (any if None) and, with
    ``multiframe_only``, with more than one frame (cine clips; still images are left out)."""
    filters = {"Modality": modality} if modality else {}
    with conn.errors("listing the clips of a study"):
        items = _all_pages(conn.client().search_for_instances, study_instance_uid=study_uid,
                           fields=list(INSTANCE_FIELDS), search_filters=filters)
    refs = []
    for item in items:
        if modality and _first(item, "Modality", modality) != modality:
            continue
        n_frames = _int(item, "NumberOfFrames")
        if multiframe_only and n_frames < 2:
            continue
        refs.append(InstanceRef(study_uid, str(_first(item, "SeriesInstanceUID", "")),
                                str(_first(item, "SOPInstanceUID", "")),
                                str(_first(item, "SOPClassUID", "")), n_frames))
    return sorted(refs, key=lambda r: (r.series_uid, r.sop_uid))
