"""The report's DICOM outputs and identity rules.

* :func:`write_dicom_seg` — a DICOM Segmentation (highdicom, BINARY) of a label map on its source series: one segment
  per entry of ``segments`` (rectum, tumour, each node), SNOMED CT codes, procto as the AI algorithm.  A SEG carries the
  source's patient and study identity (PACS filing needs it): it is written only on request, from a DICOM series.
* :func:`write_dicom_sr` — the segments' measurements (volume, long/short axis, probability) as a TID 1500
  Measurement Report (Comprehensive 3D SR) referencing the SEG's segments.
* :func:`pseudonym` — the study's name in every other output (JSON, HTML, logs): a keyed HMAC of the
  StudyInstanceUID, so no name, ID, date, UID or institution leaves the source headers.
* :func:`source_identifiers` — the identifying values of the source headers, to check outputs against.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from procto.errors import InputError
from procto.io import Volume, atomic_output, check_output, check_same_geometry
from procto.io.dicom import datasets_geometry, read_dicom_datasets

__all__ = ["SEGMENT_KINDS", "write_dicom_seg", "write_dicom_sr", "pseudonym", "source_identifiers"]

#: The kinds of segment :func:`write_dicom_seg` codes (SNOMED CT category, type, anatomic region).
SEGMENT_KINDS = ("rectum", "tumour", "node")

#: Environment variable with the pseudonym key, and the folder of procto's per-install files.
PSEUDONYM_KEY_ENV = "PROCTO_PSEUDONYM_KEY"
PROCTO_HOME_ENV = "PROCTO_HOME"

#: Header attributes whose values identify a patient, a study, an institution or a person (DICOM PS3.15 Basic
#: Profile: names, IDs, dates and times, accession/study numbers, institution, station, device, UIDs).
IDENTIFYING_KEYWORDS = (
    "PatientName", "PatientID", "PatientBirthDate", "PatientBirthTime", "PatientAddress", "PatientTelephoneNumbers",
    "OtherPatientIDs", "OtherPatientNames", "PatientMotherBirthName", "MedicalRecordLocator", "PatientAge",
    "AccessionNumber", "StudyID", "StudyDate", "StudyTime", "SeriesDate", "SeriesTime", "AcquisitionDate",
    "AcquisitionTime", "ContentDate", "ContentTime", "AcquisitionDateTime", "InstanceCreationDate",
    "ReferringPhysicianName", "PerformingPhysicianName", "NameOfPhysiciansReadingStudy", "OperatorsName",
    "PhysiciansOfRecord", "RequestingPhysician", "InstitutionName", "InstitutionAddress",
    "InstitutionalDepartmentName", "StationName", "DeviceSerialNumber", "StudyDescription", "RequestedProcedureID",
    "AdmissionID", "IssuerOfPatientID", "StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID",
    "FrameOfReferenceUID",
)
#: Values shorter than this are not reported by :func:`source_identifiers` (``"M"`` or ``"1"`` would match anywhere).
MIN_IDENTIFIER_CHARS = 3


# ---------------------------------------------------------------------------------------------------- segmentation
def _segment_codes(kind: str):
    """(category, type, anatomic regions) of a segment kind, SNOMED CT codes from pydicom's code dictionary."""
    from pydicom.sr.codedict import codes

    if kind == "rectum":
        return codes.SCT.AnatomicalStructure, codes.SCT.Rectum, None
    if kind == "tumour":
        return codes.SCT.MorphologicallyAbnormalStructure, codes.SCT.Neoplasm, [codes.SCT.Rectum]
    return codes.SCT.AnatomicalStructure, codes.SCT.LymphNode, None


def _check_segments(segments: Sequence[Mapping[str, Any]]) -> list[dict]:
    """``segments`` as a list of ``{"value", "name", "kind"}`` dicts, each checked; InputError names the bad one."""
    if isinstance(segments, Mapping) or not isinstance(segments, Sequence) or not segments:
        raise InputError("segments must be a non-empty list of {'value', 'name', 'kind'} entries")
    checked, seen = [], set()
    for i, entry in enumerate(segments):
        if not isinstance(entry, Mapping) or not {"value", "name", "kind"} <= set(entry):
            raise InputError(f"segment {i}: needs 'value', 'name' and 'kind', got {entry!r}")
        value, name, kind = entry["value"], entry["name"], entry["kind"]
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
            raise InputError(f"segment {i}: value must be a positive integer label value, got {value!r}")
        if not isinstance(name, str) or not name.strip():
            raise InputError(f"segment {i}: name must be a non-empty string, got {name!r}")
        if kind not in SEGMENT_KINDS:
            raise InputError(f"segment {i}: kind must be one of {', '.join(SEGMENT_KINDS)}, got {kind!r}")
        if int(value) in seen:
            raise InputError(f"segment {i}: label value {int(value)} is given twice")
        seen.add(int(value))
        checked.append({"value": int(value), "name": name.strip(), "kind": kind})
    return checked


def _label_array(labels: Any) -> np.ndarray:
    if not isinstance(labels, Volume):
        raise InputError(f"expected a procto Volume label map, got {type(labels).__name__}")
    array = np.asarray(labels.array)
    if array.dtype == bool:
        return array.astype(np.uint8)
    if not np.issubdtype(array.dtype, np.integer):
        if not np.all(np.isfinite(array)) or not np.all(array == np.round(array)):
            raise InputError("label map holds non-integer values")
        array = array.astype(np.int64)
    return array


def _source_datasets(source: Any) -> tuple[list, str]:
    """The source series' datasets in slice order, and a name for messages."""
    from pydicom.dataset import Dataset

    if isinstance(source, (str, Path)):
        return read_dicom_datasets(source), str(source)
    if isinstance(source, Sequence) and source and all(isinstance(d, Dataset) for d in source):
        return list(source), "source datasets"
    raise InputError("source must be a DICOM series folder or a non-empty list of pydicom datasets")


def _segment_descriptions(entries: list[dict]) -> list:
    import highdicom as hd
    from pydicom.sr.codedict import codes

    import procto

    algorithm = hd.AlgorithmIdentificationSequence(name="procto", version=procto.__version__,
                                                    family=codes.cid7162.ArtificialIntelligence)
    descriptions = []
    for number, entry in enumerate(entries, start=1):
        category, kind, regions = _segment_codes(entry["kind"])
        descriptions.append(hd.seg.SegmentDescription(
            segment_number=number, segment_label=entry["name"], segmented_property_category=category,
            segmented_property_type=kind, algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
            algorithm_identification=algorithm, tracking_uid=hd.UID(), tracking_id=entry["name"],
            anatomic_regions=regions))
    return descriptions


def write_dicom_seg(labels: Volume, source: str | Path | Sequence, out: str | Path,
                    segments: Sequence[Mapping[str, Any]], *, series_number: int = 300,
                    series_description: str = "procto segmentation") -> Path:
    """Write the label map ``labels`` as a DICOM Segmentation (BINARY) of the series ``source`` to ``out``.

    Args:
        labels: integer label map in the source series' geometry (``read_image(source)``: same shape, spacing,
            origin and direction); array slice ``k`` is the series' slice ``k``.
        source: the DICOM series folder, or its pydicom datasets in ``read_image`` slice order
            (:func:`procto.io.dicom.read_dicom_datasets`).  The SEG copies their patient and study identity.
        out: the SEG file (written atomically).
        segments: one entry per segment, ``{"value": label value in labels, "name": segment label,
            "kind": "rectum" | "tumour" | "node"}`` — rectum: Anatomical Structure / Rectum; tumour: Morphologically
            Abnormal Structure / Neoplasm in the Rectum; node: Anatomical Structure / Lymph Node (one entry per node
            instance).  Segment numbers follow the order of the entries; an entry whose value is absent from
            ``labels`` is left out (an empty segment), the numbers of later ones close up.

    Returns ``Path(out)``.  Raises OutputError (``out`` not writable, before anything is read) or InputError (bad
    entries, no DICOM series, labels of another geometry, every segment empty); nothing is written then.
    """
    import highdicom as hd

    import procto

    out = check_output(out)
    entries = _check_segments(segments)
    array = _label_array(labels)
    datasets, name = _source_datasets(source)
    reference = datasets_geometry(datasets, name)
    check_same_geometry(reference, labels.with_array(array), names=(f"DICOM series {name}", "label map"))
    present = [e for e in entries if np.any(array == e["value"])]
    if not present:
        values = ", ".join(str(e["value"]) for e in entries)
        raise InputError(f"label map holds none of the segments' values ({values}): nothing to segment")
    segment_map = np.zeros(array.shape, dtype=np.uint8 if len(present) < 256 else np.uint16)
    for number, entry in enumerate(present, start=1):
        segment_map[array == entry["value"]] = number
    try:
        seg = hd.seg.Segmentation(
            source_images=datasets, pixel_array=segment_map, segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
            segment_descriptions=_segment_descriptions(present), series_instance_uid=hd.UID(),
            series_number=int(series_number), sop_instance_uid=hd.UID(), instance_number=1, manufacturer="procto",
            manufacturer_model_name="procto", software_versions=procto.__version__,
            device_serial_number=procto.__version__, series_description=series_description)
    except (AttributeError, ValueError, TypeError) as exc:
        raise InputError(f"cannot build a segmentation of this series ({_first_line(exc)})", name) from None
    with atomic_output(out, suffix=".dcm") as tmp:
        seg.save_as(tmp)
    return out


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


# ---------------------------------------------------------------------------------------------------- structured report
#: Finding keys of :func:`write_dicom_sr`: (concept, unit, factor from the key's unit to the SR unit).
SR_MEASUREMENTS = {
    "volume_ml": ("Volume", "CubicMillimeter", 1000.0),
    "long_axis_mm": ("LongAxis", "Millimeter", 1.0),
    "short_axis_mm": ("ShortAxis", "Millimeter", 1.0),
    "probability": ("Probability", "NoUnits", 1.0),
}


def _read_seg(seg: Any):
    import highdicom as hd

    if isinstance(seg, (str, Path)):
        try:
            return hd.seg.segread(seg)
        except Exception as exc:  # noqa: BLE001 - any failure means it is no readable SEG
            raise InputError(f"not a readable DICOM Segmentation ({type(exc).__name__})", seg) from None
    if isinstance(seg, hd.seg.Segmentation):
        return seg
    raise InputError("seg must be a DICOM Segmentation file or a highdicom Segmentation")


def _sr_measurements(finding: Mapping[str, Any], index: int) -> list:
    import highdicom as hd
    from pydicom.sr.codedict import codes

    measurements = []
    for key, (concept, unit, factor) in SR_MEASUREMENTS.items():
        value = finding.get(key)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float, np.number)) or not np.isfinite(value) \
                or value < 0 or (key == "probability" and value > 1):
            raise InputError(f"finding {index}: {key} must be a finite number ≥ 0 (≤ 1 for a probability), "
                             f"got {value!r}")
        scheme = codes.DCM if concept == "Probability" else codes.SCT
        measurements.append(hd.sr.Measurement(name=getattr(scheme, concept), value=float(value) * factor,
                                              unit=getattr(codes.UCUM, unit)))
    return measurements


def _referenced_segment(seg, number: int):
    """The SR's reference to segment ``number`` of ``seg``.  highdicom 0.28's ``from_segmentation`` fails on a SEG
    with a single segment (its Segment Identification then lives in the shared functional groups): reference the
    segment with its source series instead."""
    import highdicom as hd

    try:
        return hd.sr.ReferencedSegment.from_segmentation(seg, segment_number=number)
    except AttributeError:
        series = hd.sr.SourceSeriesForSegmentation(seg.ReferencedSeriesSequence[0].SeriesInstanceUID)
        return hd.sr.ReferencedSegment(sop_class_uid=seg.SOPClassUID, sop_instance_uid=seg.SOPInstanceUID,
                                       segment_number=number, source_series=series)


def _sr_groups(seg, findings: Sequence[Mapping[str, Any]]) -> list:
    """One TID 1411 volumetric ROI group per finding, referencing its SEG segment (by segment label)."""
    import highdicom as hd
    from pydicom.sr.codedict import codes

    by_label = {item.SegmentLabel: item for item in seg.SegmentSequence}
    groups = []
    for i, finding in enumerate(findings):
        item = by_label.get(finding.get("segment")) if isinstance(finding, Mapping) else None
        if item is None:
            raise InputError(f"finding {i}: 'segment' must name a segment of the SEG ({', '.join(by_label)}), "
                             f"got {finding.get('segment') if isinstance(finding, Mapping) else finding!r}")
        regions = [hd.sr.FindingSite(anatomic_location=hd.sr.CodedConcept.from_dataset(c))
                   for c in item.get("AnatomicRegionSequence", [])]
        finding_type = hd.sr.CodedConcept.from_dataset(item.SegmentedPropertyTypeCodeSequence[0])
        if finding_type == codes.SCT.Rectum:
            regions = [hd.sr.FindingSite(anatomic_location=codes.SCT.Rectum)]
        groups.append(hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations(
            tracking_identifier=hd.sr.TrackingIdentifier(uid=item.TrackingUID, identifier=item.SegmentLabel),
            referenced_segment=_referenced_segment(seg, item.SegmentNumber),
            finding_type=finding_type, finding_sites=regions or None, measurements=_sr_measurements(finding, i)))
    return groups


def write_dicom_sr(seg: str | Path | Any, source: str | Path | Sequence, out: str | Path,
                   findings: Sequence[Mapping[str, Any]], *, series_number: int = 301) -> Path:
    """Write the measurements of the segments of ``seg`` as a TID 1500 Measurement Report (Comprehensive 3D SR).

    Args:
        seg: the DICOM SEG file written by :func:`write_dicom_seg` (or its highdicom Segmentation).
        source: its source series (folder or datasets); SR evidence together with the SEG.
        out: the SR file (written atomically).
        findings: one entry per measured segment, ``{"segment": the segment's label, "volume_ml": …,
            "long_axis_mm": …, "short_axis_mm": …, "probability": …}`` (each measurement optional; volume as SCT
            Volume in mm³, axes as SCT Long/Short axis in mm, probability as DCM Probability, UCUM 1).

    Raises OutputError / InputError (unreadable SEG, unknown segment, bad values); nothing is written then.
    """
    import highdicom as hd
    from pydicom.sr.codedict import codes

    import procto

    out = check_output(out)
    seg = _read_seg(seg)
    datasets, name = _source_datasets(source)
    if not findings or isinstance(findings, Mapping):
        raise InputError("findings must be a non-empty list of {'segment', measurements…} entries")
    groups = _sr_groups(seg, findings)
    device = hd.sr.ObserverContext(observer_type=codes.DCM.Device,
                                   observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
                                       uid=hd.UID(), name="procto", manufacturer_name="procto",
                                       model_name=f"procto {procto.__version__}"))
    procedure = codes.LN.CTUnspecifiedBodyRegion if datasets[0].get("Modality") == "CT" \
        else codes.LN.MRIUnspecifiedBodyRegion
    report = hd.sr.MeasurementReport(observation_context=hd.sr.ObservationContext(observer_device_context=device),
                                     procedure_reported=procedure, imaging_measurements=groups)
    try:
        sr = hd.sr.Comprehensive3DSR(evidence=[*datasets, seg], content=report, series_instance_uid=hd.UID(),
                                     series_number=int(series_number), sop_instance_uid=hd.UID(), instance_number=1,
                                     manufacturer="procto")
    except (AttributeError, ValueError, TypeError) as exc:
        raise InputError(f"cannot build a structured report of this series ({_first_line(exc)})", name) from None
    with atomic_output(out, suffix=".dcm") as tmp:
        sr.save_as(tmp)
    return out


# ---------------------------------------------------------------------------------------------------- identity
def _pseudonym_key() -> bytes:
    """``$PROCTO_PSEUDONYM_KEY`` (UTF-8), else this install's random key in ``$PROCTO_HOME/pseudonym.key``
    (default ``~/.procto``), created once (32 random bytes, hex, readable by the owner only)."""
    from procto.errors import OutputError

    env = os.environ.get(PSEUDONYM_KEY_ENV)
    if env:
        return env.encode("utf-8")
    home = Path(os.environ.get(PROCTO_HOME_ENV) or Path.home() / ".procto").expanduser()
    path = home / "pseudonym.key"
    if not path.exists():
        try:
            home.mkdir(parents=True, exist_ok=True)
            tmp = home / f".pseudonym.key.{secrets.token_hex(8)}.tmp"
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as fh:
                fh.write(secrets.token_hex(32) + "\n")
            try:
                os.link(tmp, path)  # never replaces a key another process created meanwhile
            except FileExistsError:
                pass
            finally:
                tmp.unlink()
        except OSError as exc:
            raise OutputError(f"cannot create the pseudonym key ({exc.strerror or exc}); set {PSEUDONYM_KEY_ENV}",
                              path) from None
    key = path.read_text().strip()
    if not key:
        raise InputError(f"pseudonym key file is empty; delete it or set {PSEUDONYM_KEY_ENV}", path)
    return key.encode("utf-8")


def pseudonym(study_uid: str, key: bytes | None = None) -> str:
    """The study's pseudonym, ``"P-"`` + 10 hex characters of HMAC-SHA256(key, StudyInstanceUID).

    ``key``: the secret; default ``$PROCTO_PSEUDONYM_KEY``, else a random key created once per install under
    ``$PROCTO_HOME`` (default ``~/.procto``).  The same study and key always give the same pseudonym; without the
    key it cannot be traced back to the study.
    """
    if not isinstance(study_uid, str) or not study_uid.strip():
        raise InputError("a pseudonym needs a non-empty StudyInstanceUID")
    secret = _pseudonym_key() if key is None else key
    digest = hmac.new(secret, study_uid.strip().encode("ascii", "replace"), hashlib.sha256).hexdigest()
    return "P-" + digest[:10]


def _identifier_values(value: Any) -> set[str]:
    from pydicom.multival import MultiValue
    from pydicom.valuerep import PersonName

    if value is None:
        return set()
    if isinstance(value, (list, tuple, MultiValue)):
        return set().union(*(_identifier_values(v) for v in value)) if len(value) else set()
    text = str(value).strip()
    found = {text}
    if isinstance(value, PersonName):
        found |= {str(part).strip() for part in value.components}  # alphabetic / ideographic / phonetic groups
        found |= {p.strip() for p in text.replace("=", "^").split("^")}
        found.add(" ".join(p for p in (value.given_name, value.family_name) if p))
    elif len(text) == 8 and text.isdigit():  # a DA value: also as ISO 8601
        found.add(f"{text[:4]}-{text[4:6]}-{text[6:]}")
    return {v for v in found if len(v) >= MIN_IDENTIFIER_CHARS}


def source_identifiers(datasets: Sequence) -> set[str]:
    """The identifying values in the source headers (:data:`IDENTIFYING_KEYWORDS`, and the IDs in Other Patient
    IDs Sequence): names and their components, IDs, dates (also as ``YYYY-MM-DD``), institution, UIDs.  Values
    shorter than :data:`MIN_IDENTIFIER_CHARS` characters are left out.  Outputs other than a DICOM SEG/SR must
    contain none of them."""
    found: set[str] = set()
    for ds in datasets:
        for keyword in IDENTIFYING_KEYWORDS:
            if keyword in ds:
                found |= _identifier_values(ds.get(keyword))
        for item in ds.get("OtherPatientIDsSequence", None) or []:
            found |= _identifier_values(item.get("PatientID"))
    return found
