"""Reading/writing volumes: exact geometry round trips, DICOM series, de-identification, one-line errors, atomic writes."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from procto.errors import InputError
from procto.io import Volume, read_image, read_label, write_image


def _rotation(angle_deg: float) -> np.ndarray:
    a = np.deg2rad(angle_deg)
    rz = np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])
    ry = np.array([[np.cos(a / 2), 0, np.sin(a / 2)], [0, 1, 0], [-np.sin(a / 2), 0, np.cos(a / 2)]])
    return rz @ ry


def _volume(dtype=np.int16, direction=None, spacing=(4.0, 0.875, 0.5), origin=(-12.5, 100.25, -3.0)) -> Volume:
    rng = np.random.default_rng(0)
    arr = rng.integers(-1000, 1000, size=(7, 11, 13)).astype(dtype)
    return Volume(arr, spacing, origin, np.eye(3) if direction is None else direction, {"modality": "CT"})


def _one_line(exc: pytest.ExceptionInfo) -> str:
    msg = str(exc.value)
    assert "\n" not in msg, msg
    return msg


@pytest.mark.parametrize("suffix", [".nii.gz", ".nii", ".nrrd", ".mha"])
@pytest.mark.parametrize("dtype", [np.int16, np.uint8, np.float32])
def test_round_trip_is_exact(tmp_path: Path, suffix: str, dtype) -> None:
    vol = _volume(dtype)
    path = tmp_path / f"case{suffix}"
    write_image(vol, path)
    back = read_image(path)
    assert back.array.dtype == vol.array.dtype
    np.testing.assert_array_equal(back.array, vol.array)
    assert back.spacing == vol.spacing
    assert back.origin == vol.origin
    np.testing.assert_array_equal(back.direction, vol.direction)


@pytest.mark.parametrize("suffix", [".nii.gz", ".nrrd", ".mha"])
def test_round_trip_oblique_direction(tmp_path: Path, suffix: str) -> None:
    vol = _volume(direction=_rotation(20.0), spacing=(2.5, 0.78125, 0.78125), origin=(3.75, -239.5, -211.3))
    path = tmp_path / f"oblique{suffix}"
    write_image(vol, path)
    back = read_image(path)
    np.testing.assert_array_equal(back.array, vol.array)
    if suffix == ".nii.gz":  # NIfTI stores geometry in float32 (qform quaternion): exact to float32 precision
        np.testing.assert_allclose(back.spacing, vol.spacing, rtol=1e-7)
        np.testing.assert_allclose(back.origin, vol.origin, atol=1e-4)
        np.testing.assert_allclose(back.direction, vol.direction, atol=1e-6)
    elif suffix == ".nrrd":  # NRRD stores direction×spacing per axis; splitting them again costs an ulp
        np.testing.assert_allclose(back.spacing, vol.spacing, rtol=1e-14)
        assert back.origin == vol.origin
        np.testing.assert_allclose(back.direction, vol.direction, rtol=0, atol=1e-14)
    else:
        assert back.spacing == vol.spacing
        assert back.origin == vol.origin
        np.testing.assert_array_equal(back.direction, vol.direction)
    # a physical point maps to the same place through both volumes
    np.testing.assert_allclose(back.index_to_physical((3, 4, 5)), vol.index_to_physical((3, 4, 5)), atol=1e-4)


def test_zyx_convention_matches_sitk(tmp_path: Path) -> None:
    vol = _volume(direction=_rotation(30.0))
    img = vol.to_sitk()
    # ITK's TransformIndexToPhysicalPoint takes (x, y, z); procto takes (z, y, x) and returns (z, y, x).
    itk_point = img.TransformContinuousIndexToPhysicalPoint((5.0, 4.0, 3.0))
    np.testing.assert_allclose(vol.index_to_physical((3, 4, 5)), itk_point[::-1], atol=1e-9)
    assert img.GetSize() == vol.shape[::-1]


def test_dicom_series_matches_nifti_export(real_data: Path, tmp_path: Path) -> None:
    folder = real_data / "ccth-a01-pelvic-ct"
    dcm = read_image(folder / "dicom_ct_pelvis")
    nii = read_image(folder / "ct_pelvis.nii.gz")
    assert dcm.shape == nii.shape == (64, 512, 512)
    np.testing.assert_array_equal(dcm.array, nii.array)
    np.testing.assert_allclose(dcm.spacing, nii.spacing, atol=1e-6)
    np.testing.assert_allclose(dcm.origin, nii.origin, atol=1e-6)
    assert dcm.meta["modality"] == "CT"
    # DICOM → NIfTI → read back keeps the geometry
    out = tmp_path / "ct.nrrd"
    write_image(dcm, out)
    back = read_image(out)
    assert back.spacing == dcm.spacing and back.origin == dcm.origin
    np.testing.assert_array_equal(back.direction, dcm.direction)
    np.testing.assert_array_equal(back.array, dcm.array)


def test_sagittal_mri_dicom_direction(real_data: Path) -> None:
    series = real_data / "prostatex-t2-mri" / "ProstateX-0000" / "3.000000-t2tsesag-87368"
    vol = read_image(series)
    assert vol.meta["modality"] == "MR"
    # sagittal: the slice axis (array axis 0) runs left-right, i.e. along physical x (last of z, y, x)
    assert abs(vol.direction[2, 0]) == pytest.approx(1.0)
    assert vol.spacing[0] > 3 * vol.spacing[1]


def test_folder_with_several_series_asks_which(real_data: Path) -> None:
    with pytest.raises(InputError) as exc:
        read_image(real_data / "prostatex-t2-mri" / "ProstateX-0000")
    assert "t2tsesag" in _one_line(exc)


def test_patient_identifiers_never_reach_outputs(real_data: Path, tmp_path: Path) -> None:
    series = real_data / "prostatex-t2-mri" / "ProstateX-0000" / "3.000000-t2tsesag-87368"
    import pydicom

    first = pydicom.dcmread(sorted(series.iterdir())[0], stop_before_pixels=True)
    identifiers = [str(first.PatientName), str(first.PatientID), str(first.AccessionNumber), str(first.StudyInstanceUID)]
    identifiers = [i for i in identifiers if len(i) > 3]
    assert identifiers
    vol = read_image(series)
    assert not any(ident in repr(vol.meta) for ident in identifiers)
    for suffix in (".nii.gz", ".nrrd", ".mha"):
        path = tmp_path / f"out{suffix}"
        write_image(vol, path)
        raw = path.read_bytes()
        if suffix == ".nii.gz":
            raw = gzip.decompress(raw)
        for ident in identifiers:
            assert ident.encode() not in raw, (suffix, ident)


# ----------------------------------------------------------------------------------------------- bad input
def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(InputError) as exc:
        read_image(tmp_path / "nope.nii.gz")
    assert "nope.nii.gz" in _one_line(exc) and "no such file" in str(exc.value)


def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.nii.gz"
    path.write_bytes(b"")
    with pytest.raises(InputError) as exc:
        read_image(path)
    assert "empty" in _one_line(exc)


def test_non_image_file(tmp_path: Path) -> None:
    path = tmp_path / "notes.nii"
    path.write_text("this is not an image\n" * 20)
    with pytest.raises(InputError) as exc:
        read_image(path)
    msg = _one_line(exc)
    assert "notes.nii" in msg and "not a readable image" in msg


@pytest.mark.parametrize("suffix", [".nii.gz", ".nii", ".nrrd", ".mha"])
@pytest.mark.parametrize("dtype", [np.int16, np.float32])
def test_truncated_file(tmp_path: Path, suffix: str, dtype) -> None:
    good = tmp_path / f"good{suffix}"
    rng = np.random.default_rng(1)
    write_image(Volume((rng.normal(size=(20, 40, 40)) * 100).astype(dtype)), good)
    data = good.read_bytes()
    bad = tmp_path / f"truncated{suffix}"
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError) as exc:
        read_image(bad)
    assert "truncated" in _one_line(exc)


def test_corrupt_gzip(tmp_path: Path) -> None:
    good = tmp_path / "good.nii.gz"
    write_image(_volume(np.float32), good)
    data = bytearray(good.read_bytes())
    data[len(data) // 2 : len(data) // 2 + 64] = b"\x00" * 64
    bad = tmp_path / "corrupt.nii.gz"
    bad.write_bytes(bytes(data))
    with pytest.raises(InputError) as exc:
        read_image(bad)
    assert "corrupt.nii.gz" in _one_line(exc)


@pytest.mark.parametrize("shape", [(30, 40), (2, 5, 6, 7)], ids=["2D", "4D"])
def test_wrong_dimensionality(tmp_path: Path, shape) -> None:
    path = tmp_path / f"img{len(shape)}d.nii.gz"
    img = sitk.GetImageFromArray(np.zeros(shape, np.float32), isVector=False)
    sitk.WriteImage(img, str(path))
    with pytest.raises(InputError) as exc:
        read_image(path)
    assert f"got a {len(shape)}D image" in _one_line(exc)


@pytest.mark.parametrize("shape", [(30, 40), (2, 5, 6, 7)], ids=["2D", "4D"])
def test_wrong_dimensionality_prints_the_shape_in_array_order(tmp_path: Path, shape) -> None:
    """2D/4D errors give sizes in array order (z, y, x last), as geometry-mismatch errors do, not ITK's x, y, z."""
    path = tmp_path / f"img{len(shape)}d.nii.gz"
    sitk.WriteImage(sitk.GetImageFromArray(np.zeros(shape, np.float32), isVector=False), str(path))
    with pytest.raises(InputError) as exc:
        read_image(path)
    msg = _one_line(exc)
    assert f"shape {shape}" in msg and "y, x)" in msg
    assert str(tuple(reversed(shape))) not in msg


def test_shape_mismatch_prints_z_y_x(tmp_path: Path) -> None:
    img = Volume(np.zeros((4, 6, 8), np.int16))
    write_image(img, tmp_path / "img.nii.gz")
    write_image(Volume(np.zeros((4, 6, 9), np.uint8)), tmp_path / "lab.nii.gz")
    with pytest.raises(InputError) as exc:
        read_label(tmp_path / "lab.nii.gz", reference=read_image(tmp_path / "img.nii.gz"))
    msg = _one_line(exc)
    assert "(4, 6, 8)" in msg and "(4, 6, 9)" in msg and "(z, y, x)" in msg


@pytest.mark.parametrize("bad_value", [np.nan, np.inf])
def test_non_finite_values(tmp_path: Path, bad_value: float) -> None:
    arr = np.zeros((4, 5, 6), np.float32)
    arr[1, 2, 3] = bad_value
    path = tmp_path / "nan.nii.gz"
    sitk.WriteImage(sitk.GetImageFromArray(arr), str(path))
    with pytest.raises(InputError) as exc:
        read_image(path)
    assert "non-finite" in _one_line(exc)
    assert read_image(path, allow_nonfinite=True).shape == (4, 5, 6)


def test_volume_rejects_non_3d() -> None:
    with pytest.raises(InputError):
        Volume(np.zeros((3, 4)))
    with pytest.raises(InputError):
        Volume(np.zeros((3, 4, 5)), spacing=(1.0, 0.0, 1.0))


def test_read_label_checks_geometry_and_integers(tmp_path: Path) -> None:
    img = _volume(np.float32)
    lab = img.with_array((img.array > 0).astype(np.uint8))
    write_image(lab, tmp_path / "lab.nii.gz")
    assert read_label(tmp_path / "lab.nii.gz", reference=img).array.max() == 1
    shifted = Volume(lab.array, lab.spacing, (0.0, 0.0, 0.0), lab.direction)
    write_image(shifted, tmp_path / "shifted.nii.gz")
    with pytest.raises(InputError) as exc:
        read_label(tmp_path / "shifted.nii.gz", reference=img)
    assert "origin" in _one_line(exc)
    write_image(img.with_array(img.array / 3.0), tmp_path / "frac.nii.gz")
    with pytest.raises(InputError):
        read_label(tmp_path / "frac.nii.gz")


# ----------------------------------------------------------------------------------------------- atomic writes
def test_failed_write_leaves_nothing(tmp_path: Path, monkeypatch) -> None:
    def half_write(image, name, useCompression=True):
        Path(name).write_bytes(b"partial")
        raise RuntimeError("disk full")

    monkeypatch.setattr(sitk, "WriteImage", half_write)
    with pytest.raises(RuntimeError):
        write_image(_volume(), tmp_path / "out.nii.gz")
    assert list(tmp_path.iterdir()) == []


def test_failed_overwrite_keeps_old_file(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "out.mha"
    write_image(_volume(), path)
    before = path.read_bytes()

    def broken(image, name, useCompression=True):
        Path(name).write_bytes(b"partial")
        raise RuntimeError("killed")

    monkeypatch.setattr(sitk, "WriteImage", broken)
    with pytest.raises(RuntimeError):
        write_image(_volume(np.float32), path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["out.mha"]


def test_unsupported_write_format(tmp_path: Path) -> None:
    with pytest.raises(InputError) as exc:
        write_image(_volume(), tmp_path / "out.png")
    assert ".nii.gz" in _one_line(exc)
    assert list(tmp_path.iterdir()) == []
