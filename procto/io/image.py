"""Reading and writing volumes: NIfTI, NRRD, MHA/MHD files and DICOM series folders (through SimpleITK).

Every problem with an input becomes one :class:`~procto.errors.InputError` naming the file; writes are atomic (a temp
file in the destination folder, renamed into place), so a failed write never leaves a half-written output.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from procto.errors import InputError
from procto.io.atomic import atomic_output
from procto.io.volume import Volume

#: File name endings procto reads as single image files.
READ_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd")
#: File name endings procto writes (single-file formats only, so a write can be atomic).
WRITE_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".mha")

#: DICOM attributes that may be copied into ``Volume.meta``.  Nothing that can identify a patient, an
#: institution or a study (names, IDs, dates, accession numbers, UIDs) is on this list.
DICOM_SAFE_TAGS = {
    "0008|0060": "modality",
    "0018|0015": "body_part",
    "0018|0050": "slice_thickness",
    "0018|0087": "field_strength",
    "0018|0080": "repetition_time",
    "0018|0081": "echo_time",
    "0008|0070": "manufacturer",
}


def image_suffix(path: str | Path) -> str:
    """The format suffix of ``path`` (``.nii.gz`` counts as one suffix); '' for folders or unknown endings."""
    name = Path(path).name.lower()
    for suffix in READ_SUFFIXES:
        if name.endswith(suffix):
            return suffix
    return ""


def strip_image_suffix(path: str | Path) -> str:
    """The file name of ``path`` without its image suffix (``case_001.nii.gz`` → ``case_001``)."""
    name = Path(path).name
    suffix = image_suffix(name)
    return name[: len(name) - len(suffix)] if suffix else name


def _zyx_shape(image) -> str:
    """The size of a SimpleITK image as procto prints every shape: array order, slowest axis first, with the axis
    names (``(8, 32, 32) (z, y, x)``; ITK's own ``GetSize()`` is x, y, z)."""
    size = tuple(int(n) for n in reversed(image.GetSize()))
    names = ("t", "z", "y", "x")[-len(size):] if len(size) <= 4 else ("?",) * (len(size) - 3) + ("z", "y", "x")
    return f"{size} ({', '.join(names)})"


def _check_values(array: np.ndarray, path) -> None:
    if np.issubdtype(array.dtype, np.floating) and not np.all(np.isfinite(array)):
        n_nan = int(np.isnan(array).sum())
        n_inf = int(np.isinf(array).sum())
        raise InputError(f"image contains non-finite values ({n_nan} NaN, {n_inf} Inf voxels)", path)


def _check_nifti_raw_values(path: Path, allow_nonfinite: bool) -> None:
    """ITK's NIfTI reader accepts truncated files (missing voxels come back as 0) and turns NaN/Inf into 0 silently;
    decode the stored voxels with nibabel to catch both."""
    import nibabel as nib

    try:
        raw = np.asanyarray(nib.load(str(path)).dataobj.get_unscaled())
    except Exception as exc:  # noqa: BLE001 - any decoding failure means the file is damaged
        raise InputError(f"not a readable image: corrupt or truncated ({type(exc).__name__})", path) from None
    if raw.dtype.kind == "f" and not allow_nonfinite:
        _check_values(raw, path)


def _find_series(folder: Path) -> list[tuple[Path, list[str]]]:
    """(folder, files) of every DICOM series in ``folder``; sub-folders are searched when ``folder`` holds none."""
    import SimpleITK as sitk

    reader = sitk.ImageSeriesReader
    found = []
    for sub in [folder] + sorted(p for p in folder.rglob("*") if p.is_dir()):
        for sid in reader.GetGDCMSeriesIDs(str(sub)):
            found.append((sub, list(reader.GetGDCMSeriesFileNames(str(sub), sid))))
        if found and sub == folder:
            break
    return found


def series_files(folder: Path) -> list[str]:
    """The files of the series ``read_image(folder)`` reads, in its slice order (its selection rules: one
    sub-folder with series, the series with the most slices, at least 2 slices)."""
    series = _find_series(folder)
    if not series:
        raise InputError("folder holds no readable DICOM series", folder)
    if len({sub for sub, _ in series}) > 1:
        names = ", ".join(sorted({str(sub.relative_to(folder)) for sub, _ in series}))
        raise InputError(f"folder holds {len(series)} DICOM series in sub-folders; give one of: {names}", folder)
    _, files = max(series, key=lambda s: len(s[1]))
    if len(files) < 2:
        raise InputError("DICOM series has a single slice; a 3D series needs at least 2", folder)
    return files


def _read_dicom_series(folder: Path):
    import SimpleITK as sitk

    files = series_files(folder)
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(files)
    reader.MetaDataDictionaryArrayUpdateOn()
    reader.LoadPrivateTagsOff()
    try:
        image = reader.Execute()
    except RuntimeError as exc:
        raise InputError(f"cannot read DICOM series ({_first_line(exc)})", folder) from None
    # Only an allow-list of acquisition attributes is kept: no patient, study or institution identifiers.
    meta: dict[str, object] = {"source_format": "dicom", "n_slices": len(files)}
    for tag, key in DICOM_SAFE_TAGS.items():
        if reader.HasMetaDataKey(0, tag):
            value = reader.GetMetaData(0, tag).strip()
            if value:
                meta[key] = value
    return image, meta


def _first_line(exc: BaseException) -> str:
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    # SimpleITK messages start with a source location; the last line usually says what went wrong.
    return lines[-1] if lines else type(exc).__name__


def read_image(path: str | Path, *, allow_nonfinite: bool = False) -> Volume:
    """Read a 3D volume from a NIfTI/NRRD/MHA/MHD file or a DICOM series folder.

    Raises:
        InputError: the path is missing, not an image, corrupt or truncated, not 3D, or (unless ``allow_nonfinite``)
            holds NaN/Inf values.  The message names the file and the problem on one line.
    """
    import SimpleITK as sitk

    sitk.ProcessObject.SetGlobalWarningDisplay(False)  # ITK warnings go to stderr; procto reports problems itself
    path = Path(path)
    if not path.exists():
        raise InputError("no such file or folder", path)
    if path.is_dir():
        image, meta = _read_dicom_series(path)
    else:
        if path.stat().st_size == 0:
            raise InputError("file is empty", path)
        meta = {"source_format": image_suffix(path).lstrip(".") or "dicom"}
        try:
            image = sitk.ReadImage(str(path))
        except RuntimeError as exc:
            raise InputError(f"not a readable image: corrupt, truncated or unsupported format ({_first_line(exc)})",
                             path) from None
    if image.GetDimension() != 3:
        raise InputError(f"expected a 3D volume, got a {image.GetDimension()}D image of shape {_zyx_shape(image)}",
                         path)
    if image.GetNumberOfComponentsPerPixel() != 1:
        raise InputError(f"expected a scalar volume, got {image.GetNumberOfComponentsPerPixel()} components per voxel",
                         path)
    try:
        volume = Volume.from_sitk(image, meta=meta)
    except InputError as exc:
        raise InputError(exc.problem, path) from None
    if path.is_file() and image_suffix(path) in (".nii", ".nii.gz"):
        _check_nifti_raw_values(path, allow_nonfinite)
    if not allow_nonfinite:
        _check_values(volume.array, path)
    return volume


def read_label(path: str | Path, reference: Volume | None = None) -> Volume:
    """Read an integer label map; with ``reference``, also check it shares the reference's geometry."""
    from procto.io.geometry import check_same_geometry

    label = read_image(path)
    array = label.array
    if not np.issubdtype(array.dtype, np.integer):
        if not np.all(array == np.round(array)):
            raise InputError("label map holds non-integer values", path)
        array = array.astype(np.int16)
    label = label.with_array(array.astype(np.int16) if array.dtype.itemsize > 2 and array.max() < 32768 else array)
    if reference is not None:
        check_same_geometry(reference, label, names=("image", str(path)))
    return label


def write_image(volume: Volume, path: str | Path, *, compress: bool = True) -> None:
    """Write ``volume`` to ``path`` (.nii.gz, .nii, .nrrd or .mha), atomically.

    The data go to a temp file in the destination folder which is renamed over ``path`` only once complete.
    No metadata besides the geometry is written.
    """
    import SimpleITK as sitk

    path = Path(path)
    suffix = image_suffix(path)
    if suffix not in WRITE_SUFFIXES:
        raise InputError(f"cannot write this format; use one of {', '.join(WRITE_SUFFIXES)}", path)
    if not isinstance(volume, Volume):
        raise InputError(f"expected a procto Volume, got {type(volume).__name__}", path)
    image = volume.to_sitk()
    with atomic_output(path, suffix=suffix) as tmp:
        sitk.WriteImage(image, str(tmp), useCompression=compress and suffix != ".nii")
