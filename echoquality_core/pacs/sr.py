"""The model's verdict on one clip as a DICOM Comprehensive SR (TID 1500 Measurement Report).

One SR per clip, in one "EchoQuality QC" series per study and model version. Its single
measurement group (TID 1501) references the clip's SOP Instance and holds the quality score and
the threshold (numeric, unit "1"), pass/fail (coded) and the model (algorithm name and version).
It files with the study by the Study/Series/SOP UIDs and copies the Patient and General Study
module values (:data:`IDENTITY`) exactly as in the clip: Orthanc's DICOMweb plugin answers
study-level QIDO-RS from an instance of the study, so an SR with empty names and dates blanks
the study's patient name and date in every DICOMweb viewer (and DICOM wants them consistent
within a study anyway). These values go only into the DICOM file for the same PACS, never into a
log, CSV or file name. Its UIDs derive from the clip's UID and the model version, so sending it
twice stores it once.

Why Comprehensive SR and not Key Object Selection: a KOS can only flag instances (with a title
and free text), it has no place for a number; a TID 1500 measurement report is what OHIF's SR
viewer, Weasis and most PACS viewers render as a structured report with its numeric values.
"""
from __future__ import annotations

import dataclasses
import logging

import highdicom as hd
from pydicom import Dataset
from pydicom.sr.codedict import codes
from pydicom.sr.coding import Code
from pydicom.uid import generate_uid

from echoquality_core.decision import called_good

logging.getLogger("highdicom").setLevel(logging.WARNING)  # logs UIDs at INFO

SCHEME = "99ECHOQ"  # private coding scheme of EchoQuality Studio
QUALITY_SCORE = Code("EQ0001", SCHEME, "Image quality score")
PASS_THRESHOLD = Code("EQ0002", SCHEME, "Image quality pass threshold")
QUALITY_RESULT = Code("EQ0003", SCHEME, "Image quality assessment")
PASSED = Code("EQ0010", SCHEME, "Image quality sufficient")
FAILED = Code("EQ0011", SCHEME, "Image quality insufficient")
NO_UNITS = Code("1", "UCUM", "no units")
ECHOCARDIOGRAPHY = Code("40701008", "SCT", "Echocardiography")
ALGORITHM = "EchoQuality R(2+1)D quality model"
MANUFACTURER = "EchoQuality Studio"
SERIES_NUMBER = 9901
SERIES_DESCRIPTION = "EchoQuality QC"


#: Patient / General Study module values the SR copies from its clip, as they are there.
IDENTITY = ("PatientName", "PatientID", "IssuerOfPatientID", "PatientBirthDate", "PatientSex",
            "StudyDate", "StudyTime", "AccessionNumber", "StudyID", "ReferringPhysicianName")
#: What to read from a clip's header to write its SR.
HEADER_TAGS = ["StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "SOPClassUID",
               "SpecificCharacterSet", *IDENTITY]


@dataclasses.dataclass(frozen=True)
class ClipResult:
    """One scored clip: the UIDs that file the SR, its identity values (never shown), the
    verdict (``score``: the model's calibrated score, as in the scores CSV)."""

    study_uid: str
    series_uid: str
    sop_uid: str
    sop_class_uid: str
    identity: dict = dataclasses.field(repr=False, compare=False)
    score: float
    threshold: float
    model_version: str

    @property
    def passed(self) -> bool:
        return bool(called_good(self.score, self.threshold))

    @classmethod
    def from_header(cls, ds: Dataset, score: float, threshold: float,
                    model_version: str) -> ClipResult:
        """From a clip's DICOM header (its UIDs and :data:`IDENTITY` values are read)."""
        identity = {k: ds[k].value for k in (*IDENTITY, "SpecificCharacterSet") if k in ds}
        return cls(str(ds.StudyInstanceUID), str(ds.SeriesInstanceUID), str(ds.SOPInstanceUID),
                   str(ds.SOPClassUID), identity, float(score), float(threshold),
                   str(model_version))


def sr_uids(result: ClipResult) -> tuple[str, str]:
    """(series UID, SOP instance UID) of the clip's SR: the same for the same clip and model."""
    series = generate_uid(entropy_srcs=["echoquality-sr-series", result.study_uid,
                                        result.model_version])
    sop = generate_uid(entropy_srcs=["echoquality-sr", result.sop_uid, result.model_version])
    return series, sop


def _evidence(result: ClipResult) -> Dataset:
    """The clip as highdicom's evidence: its UIDs and :data:`IDENTITY` values, nothing else."""
    ds = Dataset()
    ds.SOPClassUID, ds.SOPInstanceUID = result.sop_class_uid, result.sop_uid
    ds.StudyInstanceUID, ds.SeriesInstanceUID = result.study_uid, result.series_uid
    for keyword in IDENTITY:
        setattr(ds, keyword, result.identity.get(keyword, ""))
    if "SpecificCharacterSet" in result.identity:
        ds.SpecificCharacterSet = result.identity["SpecificCharacterSet"]
    return ds


def _content(result: ClipResult, sr_sop_uid: str) -> hd.sr.MeasurementReport:
    algorithm = hd.sr.AlgorithmIdentification(name=ALGORITHM, version=result.model_version)
    group = hd.sr.MeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(
            uid=generate_uid(entropy_srcs=["echoquality-track", sr_sop_uid]),
            identifier="EchoQuality clip quality"),
        algorithm_id=algorithm,
        measurements=[
            hd.sr.Measurement(name=QUALITY_SCORE, value=round(result.score, 6), unit=NO_UNITS,
                              algorithm_id=algorithm),
            hd.sr.Measurement(name=PASS_THRESHOLD, value=round(result.threshold, 6),
                              unit=NO_UNITS),
        ],
        qualitative_evaluations=[hd.sr.QualitativeEvaluation(
            QUALITY_RESULT, PASSED if result.passed else FAILED)],
        source_images=[hd.sr.SourceImageForMeasurementGroup(result.sop_class_uid,
                                                            result.sop_uid)],
    )
    observer = hd.sr.ObserverContext(
        observer_type=codes.DCM.Device,
        observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
            uid=generate_uid(entropy_srcs=["echoquality-device", result.model_version]),
            name=MANUFACTURER, model_name=result.model_version[:64]))
    return hd.sr.MeasurementReport(
        observation_context=hd.sr.ObservationContext(observer_device_context=observer),
        procedure_reported=ECHOCARDIOGRAPHY, imaging_measurements=[group])


def build_sr(result: ClipResult) -> hd.sr.ComprehensiveSR:
    """The clip's quality report as a Comprehensive SR dataset (see the module docstring)."""
    series_uid, sop_uid = sr_uids(result)
    sr = hd.sr.ComprehensiveSR(
        evidence=[_evidence(result)], content=_content(result, sop_uid),
        series_instance_uid=series_uid, series_number=SERIES_NUMBER, sop_instance_uid=sop_uid,
        instance_number=1, manufacturer=MANUFACTURER, is_complete=True,
        series_description=SERIES_DESCRIPTION)
    return sr
