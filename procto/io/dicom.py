"""Writing a :class:`~procto.io.Volume` as a classic DICOM series, and reading a series' headers with pydicom.

:func:`write_dicom_series` writes one single-frame CT Image or MR Image Storage file per slice along array axis 0
(explicit VR little endian, fresh UIDs), with the geometry of any direction matrix: ``read_image`` of the folder gives
back the same array, spacing, origin and direction.  DICOM stores the slice normal as row × column cosine, so a
left-handed direction matrix cannot be stored as such: its slices are written at their true physical positions and
read back as the equivalent right-handed volume (slice order reversed).

:func:`read_dicom_datasets` returns the pydicom datasets of the series ``read_image`` would read, in the order of
its slices (array axis 0), for the DICOM objects that reference them (segmentations, structured reports).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from procto.errors import InputError, OutputError
from procto.io.atomic import check_output
from procto.io.image import series_files
from procto.io.volume import Volume

__all__ = ["write_dicom_series", "read_dicom_datasets", "datasets_geometry"]

#: Patient/study attributes written when ``patient`` does not give them (Patient ID is required by highdicom).
DEFAULT_PATIENT = {"PatientName": "Phantom^Procto", "PatientID": "PHANTOM"}


def _ds(value: float) -> str:
    """``value`` as the closest Decimal String (at most 16 characters)."""
    from pydicom.valuerep import format_number_as_ds

    return format_number_as_ds(float(value))


def _lps(vector_zyx: np.ndarray) -> list[float]:
    """A physical (z, y, x) = (S, P, L) vector in DICOM's patient (L, P, S) order."""
    return [float(v) for v in np.asarray(vector_zyx, dtype=float)[::-1]]


def _ct_pixels(array: np.ndarray, path: Path) -> tuple[np.ndarray, float, float]:
    """Stored int16 values, slope and intercept for a CT volume in HU (non-integer values are rounded)."""
    values = np.rint(array.astype(np.float64))
    lo, hi = float(values.min()), float(values.max())
    if hi - lo > 65535:
        raise InputError(f"CT values span {lo:g}…{hi:g} HU, more than 16 bits can store", path)
    intercept = 0.0 if lo >= -32768 and hi <= 32767 else lo + 32768
    return (values - intercept).astype(np.int16), 1.0, intercept


def _mr_pixels(array: np.ndarray) -> tuple[np.ndarray, float, float]:
    """Stored uint16 values, slope and intercept for an MR volume: integers in 0…65535 are stored as they are,
    anything else is scaled linearly onto the full uint16 range."""
    values = array.astype(np.float64)
    lo, hi = float(values.min()), float(values.max())
    if lo >= 0 and hi <= 65535 and np.all(values == np.rint(values)):
        return values.astype(np.uint16), 1.0, 0.0
    slope = float(_ds((hi - lo) / 65535)) if hi > lo else 1.0
    intercept = float(_ds(lo))
    stored = np.clip(np.rint((values - intercept) / slope), 0, 65535)
    return stored.astype(np.uint16), slope, intercept


def _base_dataset(modality: str, uids: Mapping[str, str], patient: Mapping[str, Any], description: str,
                  series_number: int):
    from pydicom.dataset import Dataset
    from pydicom.uid import CTImageStorage, MRImageStorage

    import procto

    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.SOPClassUID = CTImageStorage if modality == "CT" else MRImageStorage
    ds.Modality = modality
    ds.ImageType = ["DERIVED", "PRIMARY", "AXIAL" if modality == "CT" else "OTHER"]
    for keyword in ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyDate", "StudyTime",
                    "ReferringPhysicianName", "StudyID", "AccessionNumber", "PositionReferenceIndicator"):
        setattr(ds, keyword, "")  # type 2 attributes: present, empty unless given
    ds.PatientName, ds.PatientID = DEFAULT_PATIENT["PatientName"], DEFAULT_PATIENT["PatientID"]
    ds.StudyInstanceUID = uids["study"]
    ds.SeriesInstanceUID = uids["series"]
    ds.FrameOfReferenceUID = uids["frame"]
    ds.SeriesNumber = int(series_number)
    ds.PatientPosition = "HFS"
    ds.BodyPartExamined = "PELVIS"  # an unpaired body part: Laterality is then absent
    ds.SeriesDescription = description
    ds.Manufacturer = "procto"
    ds.SoftwareVersions = procto.__version__
    if modality == "CT":
        ds.KVP, ds.AcquisitionNumber = "", ""
    else:
        ds.ScanningSequence, ds.SequenceVariant, ds.ScanOptions = "RM", "NONE", ""
        ds.MRAcquisitionType, ds.EchoTime, ds.EchoTrainLength = "2D", "", ""
        ds.RepetitionTime = ""
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 1 if modality == "CT" else 0
    for keyword, value in patient.items():
        _set_keyword(ds, keyword, value)
    return ds


def _set_keyword(ds, keyword: str, value: Any) -> None:
    from pydicom.datadict import tag_for_keyword

    if tag_for_keyword(keyword) is None:
        raise InputError(f"patient: {keyword!r} is not a DICOM attribute keyword")
    setattr(ds, keyword, value)


def _slice_datasets(volume: Volume, modality: str, base, pixels: np.ndarray, slope: float, intercept: float):
    """One dataset per slice along array axis 0, with its position and pixel data."""
    import copy

    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, PYDICOM_IMPLEMENTATION_UID, generate_uid

    direction = np.asarray(volume.direction, dtype=float)
    sz, sy, sx = volume.spacing
    orientation = [_ds(v) for v in _lps(direction[:, 2]) + _lps(direction[:, 1])]
    for k in range(volume.shape[0]):
        ds = copy.deepcopy(base)
        ds.SOPInstanceUID = generate_uid()
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = ds.SOPClassUID
        meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
        ds.file_meta = meta
        ds.InstanceNumber = k + 1
        ds.ImageOrientationPatient = orientation
        position = np.asarray(volume.origin, dtype=float) + direction[:, 0] * (k * sz)
        ds.ImagePositionPatient = [_ds(v) for v in _lps(position)]
        ds.PixelSpacing = [_ds(sy), _ds(sx)]
        ds.SliceThickness = _ds(sz)
        if modality == "MR":
            ds.SpacingBetweenSlices = _ds(sz)
        if modality == "CT" or (slope, intercept) != (1.0, 0.0):  # MR's IOD has no rescale: only when needed
            ds.RescaleSlope, ds.RescaleIntercept = _ds(slope), _ds(intercept)
        if modality == "CT":
            ds.RescaleType = "HU"
        ds.Rows, ds.Columns = int(volume.shape[1]), int(volume.shape[2])
        ds.PixelData = np.ascontiguousarray(pixels[k]).astype("<" + pixels.dtype.str[1:]).tobytes()
        yield k, ds


def write_dicom_series(volume: Volume, folder: str | Path, *, modality: str = "CT",
                       patient: Mapping[str, Any] | None = None, series_description: str = "procto",
                       study_uid: str | None = None, series_uid: str | None = None,
                       frame_of_reference_uid: str | None = None, series_number: int = 1) -> Path:
    """Write ``volume`` to ``folder`` as a DICOM series, one classic CT/MR image file per slice (array axis 0).

    Args:
        volume: the image.  CT values are Hounsfield units, stored as int16 (rounded to integers) with
            RescaleSlope/Intercept; MR values are stored as uint16 as they are when they are integers in 0…65535,
            else scaled linearly onto 0…65535 with RescaleSlope/Intercept (round trip within half a slope).
        folder: the series folder; it must not exist or be empty.  The files are written into a temp folder next to
            it, renamed to ``folder`` when all are complete.
        modality: ``"CT"`` (CT Image Storage) or ``"MR"`` (MR Image Storage).
        patient: DICOM keyword → value for every file (``PatientName``, ``PatientID``, ``PatientBirthDate``,
            ``AccessionNumber``, ``InstitutionName``, ``StudyDate`` …); Patient Name and ID default to
            ``Phantom^Procto`` and ``PHANTOM``.
        series_description, series_number: of the new series.
        study_uid, series_uid, frame_of_reference_uid: given UIDs, else fresh ones (``pydicom.uid.generate_uid``).

    Returns the folder.  Raises InputError (bad modality, keyword or values) or OutputError (folder not writable,
    not empty).
    """
    from pydicom.uid import generate_uid

    folder = Path(folder)
    if modality not in ("CT", "MR"):
        raise InputError(f"modality must be 'CT' or 'MR', got {modality!r}", folder)
    if not isinstance(volume, Volume):
        raise InputError(f"expected a procto Volume, got {type(volume).__name__}", folder)
    if not np.issubdtype(volume.array.dtype, np.number) or not np.all(np.isfinite(volume.array)):
        raise InputError("image must hold finite numbers to be written as DICOM", folder)
    check_output(folder, kind="folder")
    if folder.is_dir() and any(folder.iterdir()):
        raise OutputError("folder exists and is not empty; a DICOM series needs an empty or new folder", folder)
    if modality == "CT":
        pixels, slope, intercept = _ct_pixels(volume.array, folder)
    else:
        pixels, slope, intercept = _mr_pixels(volume.array)
    uids = {"study": study_uid or generate_uid(), "series": series_uid or generate_uid(),
            "frame": frame_of_reference_uid or generate_uid()}
    base = _base_dataset(modality, uids, dict(patient or {}), series_description, series_number)
    _write_folder_atomic(folder, _slice_datasets(volume, modality, base, pixels, slope, intercept))
    return folder


def _write_folder_atomic(folder: Path, datasets) -> None:
    """Write ``(index, dataset)`` pairs as ``IM00001.dcm`` … into a temp folder next to ``folder``, then rename it."""
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", suffix=".tmp", dir=folder.parent))
    except OSError as exc:
        raise OutputError(f"cannot write here ({exc.strerror or exc})", folder) from None
    try:
        for k, ds in datasets:
            ds.save_as(tmp / f"IM{k + 1:05d}.dcm", enforce_file_format=True)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o777 & ~umask)  # mkdtemp creates 0700; give the folder the permissions mkdir would
        if folder.is_dir():
            folder.rmdir()  # empty (checked above); a folder cannot be renamed over a non-empty one
        os.replace(tmp, folder)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def read_dicom_datasets(folder: str | Path, *, pixels: bool = False) -> list:
    """The pydicom datasets of the DICOM series in ``folder`` that :func:`~procto.io.read_image` reads, in the order
    of its slices (dataset ``k`` is ``read_image(folder).array[k]``).  ``pixels=False`` skips the pixel data.

    Raises InputError when ``folder`` is missing, holds no (or no usable) series, or a file cannot be parsed."""
    import pydicom

    folder = Path(folder)
    if not folder.is_dir():
        raise InputError("no such folder" if not folder.exists() else "expected a DICOM series folder", folder)
    datasets = []
    for name in series_files(folder):
        try:
            datasets.append(pydicom.dcmread(name, stop_before_pixels=not pixels))
        except Exception as exc:  # noqa: BLE001 - any parse failure means the file is damaged
            raise InputError(f"cannot read DICOM file ({type(exc).__name__})", name) from None
    return datasets


def datasets_geometry(datasets: list, path: str | Path | None = None) -> Volume:
    """The geometry of a series of single-frame datasets (in their order) as a :class:`Volume` whose array is a
    read-only broadcast of zeros (no memory), computed as ITK computes it: in-plane from Image Orientation and
    Pixel Spacing, slice axis along row × column cosine, origin = the first position, slice spacing = the first to
    last position's projection on the slice axis / (n - 1)."""
    try:
        first, last = datasets[0], datasets[-1]
        row_cos = np.asarray(first.ImageOrientationPatient[:3], dtype=float)
        col_cos = np.asarray(first.ImageOrientationPatient[3:], dtype=float)
        p0 = np.asarray(first.ImagePositionPatient, dtype=float)
        p1 = np.asarray(last.ImagePositionPatient, dtype=float)
        dy, dx = (float(v) for v in first.PixelSpacing)
        shape = (len(datasets), int(first.Rows), int(first.Columns))
    except (AttributeError, IndexError, TypeError, ValueError):
        raise InputError("DICOM series lacks image position, orientation, spacing or size", path) from None
    normal = np.cross(row_cos, col_cos)  # as ITK: slices along row × column, spaced by the positions' projection
    dz = float(np.dot(p1 - p0, normal)) / (len(datasets) - 1) if len(datasets) > 1 else 0.0
    if dz < 0:  # datasets given from the last slice to the first
        normal, dz = -normal, -dz
    if dz == 0:
        dz = float(getattr(first, "SpacingBetweenSlices", None) or getattr(first, "SliceThickness", None) or 1.0)
    direction = np.stack([normal[::-1], col_cos[::-1], row_cos[::-1]], axis=1)
    zeros = np.broadcast_to(np.zeros((), dtype=np.uint8), shape)
    return Volume(zeros, (dz, dy, dx), tuple(p0[::-1]), direction)
