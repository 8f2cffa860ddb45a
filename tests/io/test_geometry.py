"""Geometry checks and resampling keep the physical box and update spacing/origin consistently."""

from __future__ import annotations

import numpy as np
import pytest

from procto.errors import InputError
from procto.io import Volume, check_same_geometry, resample


def _vol(arr=None, spacing=(4.0, 0.875, 0.875), origin=(10.0, -50.0, 20.0), direction=None) -> Volume:
    if arr is None:
        arr = np.zeros((8, 32, 32), np.float32)
    return Volume(arr, spacing, origin, np.eye(3) if direction is None else direction)


@pytest.mark.parametrize(
    "other, word",
    [
        (_vol(np.zeros((8, 32, 31), np.float32)), "shape"),
        (_vol(spacing=(4.0, 0.875, 0.9)), "spacing"),
        (_vol(origin=(10.0, -50.0, 20.5)), "origin"),
        (_vol(direction=np.diag([1.0, -1.0, -1.0])), "direction"),
    ],
)
def test_mismatch_is_one_line_naming_what_differs(other: Volume, word: str) -> None:
    with pytest.raises(InputError) as exc:
        check_same_geometry(_vol(), other)
    assert word in str(exc.value) and "\n" not in str(exc.value)


def test_small_differences_within_tolerance_pass() -> None:
    check_same_geometry(_vol(), _vol(spacing=(4.0005, 0.875, 0.875), origin=(10.0, -50.0009, 20.0)))


def _ball(shape, spacing, centre_mm, radius_mm):
    zz, yy, xx = np.meshgrid(*[np.arange(n) * s for n, s in zip(shape, spacing)], indexing="ij")
    return ((zz - centre_mm[0]) ** 2 + (yy - centre_mm[1]) ** 2 + (xx - centre_mm[2]) ** 2) <= radius_mm**2


def test_resample_image_keeps_physical_box_and_content() -> None:
    spacing = (4.0, 0.875, 0.875)
    arr = _ball((12, 64, 64), spacing, (24.0, 28.0, 28.0), 15.0).astype(np.float32) * 100
    vol = _vol(arr, spacing)
    out = resample(vol, (2.0, 1.75, 1.75))
    assert out.shape == (24, 32, 32)
    assert out.spacing == (2.0, 1.75, 1.75)
    # the corner of the box is fixed: first voxel centre moved by half the spacing difference
    np.testing.assert_allclose(out.origin, np.array(vol.origin) + (np.array(out.spacing) - spacing) / 2)
    # the object's centre of mass stays put in physical space
    def com(v: Volume) -> np.ndarray:
        idx = np.argwhere(v.array > 50).mean(axis=0)
        return v.index_to_physical(idx)

    np.testing.assert_allclose(com(out), com(vol), atol=0.9)
    # volume of the object is preserved within a few percent
    vol_in = (vol.array > 50).sum() * vol.voxel_volume_mm3
    vol_out = (out.array > 50).sum() * out.voxel_volume_mm3
    assert abs(vol_out - vol_in) / vol_in < 0.06


def test_resample_to_shape_and_back_with_direction() -> None:
    d = np.diag([1.0, -1.0, -1.0])
    vol = _vol(np.arange(8 * 32 * 32, dtype=np.float32).reshape(8, 32, 32), direction=d)
    half = resample(vol, shape=(8, 16, 16))
    assert half.spacing == (4.0, 1.75, 1.75)
    np.testing.assert_array_equal(half.direction, d)
    back = resample(half, shape=(8, 32, 32))
    assert back.spacing == vol.spacing
    np.testing.assert_allclose(back.origin, vol.origin)


@pytest.mark.parametrize("mode", ["nearest", "onehot"])
def test_resample_labels_keeps_label_set(mode: str) -> None:
    spacing = (4.0, 0.875, 0.875)
    lab = _ball((12, 64, 64), spacing, (24.0, 28.0, 28.0), 15.0).astype(np.uint8)
    lab[_ball((12, 64, 64), spacing, (24.0, 30.0, 30.0), 6.0)] = 2
    out = resample(_vol(lab, spacing), (1.0, 1.0, 1.0), interpolation=mode)
    assert out.array.dtype == np.uint8
    assert set(np.unique(out.array)) == {0, 1, 2}
    for k in (1, 2):
        v_in = (lab == k).sum() * np.prod(spacing)
        v_out = (out.array == k).sum() * 1.0
        assert abs(v_out - v_in) / v_in < 0.15


def test_resample_rejects_bad_arguments() -> None:
    with pytest.raises(InputError):
        resample(_vol(), (1.0, 1.0))
    with pytest.raises(InputError):
        resample(_vol())
    with pytest.raises(InputError):
        resample(_vol(), (1.0, 1.0, 1.0), interpolation="cubic")  # type: ignore[arg-type]
