"""Cropping around the rectum mask and in-plane resizing: mask kept, geometry consistent, slice axis = axis 0."""

from __future__ import annotations

import numpy as np
import pytest

from procto.errors import InputError
from procto.io import Volume
from procto.preprocess.crop import crop_around_mask, crop_box, depth_window, mask_bounding_box, resize_volume

SPACING = (4.0, 0.875, 0.875)  # sagittal MRI: thick slices along array axis 0
DIRECTION = np.array([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])  # a rotated (non-identity) frame


def _case(shape=(20, 96, 80), box=((6, 14), (30, 60), (20, 36))):
    rng = np.random.default_rng(0)
    image = rng.normal(100, 10, shape).astype(np.float32)
    label = np.zeros(shape, np.uint8)
    (z0, z1), (y0, y1), (x0, x1) = box
    label[z0:z1, y0:y1, x0:x1] = 1
    label[z0 + 2:z1 - 2, y0 + 5:y0 + 15, x0 + 3:x0 + 9] = 2
    vol = Volume(image, SPACING, (-30.0, 12.0, 7.5), DIRECTION)
    return vol, vol.with_array(label)


def _physical_positions(vol: Volume, mask: np.ndarray) -> np.ndarray:
    idx = np.argwhere(mask)
    return np.array([vol.index_to_physical(i) for i in idx])


def test_mask_bounding_box() -> None:
    _, label = _case()
    start, stop = mask_bounding_box(label)
    assert start.tolist() == [6, 30, 20] and stop.tolist() == [14, 60, 36]
    start, stop = mask_bounding_box(label.array, labels=[2])
    assert start.tolist() == [8, 35, 23] and stop.tolist() == [12, 45, 29]
    with pytest.raises(InputError):
        mask_bounding_box(np.zeros((4, 4, 4)))


def test_crop_keeps_mask_and_geometry() -> None:
    image, label = _case()
    margin = 10.0
    img_c = crop_around_mask(image, label, margin)
    lab_c = crop_around_mask(label, label, margin, pad_value=0)
    assert img_c.same_geometry(lab_c)
    # every mask voxel is kept, at the same physical position, with the same values
    assert lab_c.array.astype(bool).sum() == label.array.astype(bool).sum()
    np.testing.assert_allclose(_physical_positions(lab_c, lab_c.array == 2), _physical_positions(label, label.array == 2))
    assert np.isclose(img_c.array[lab_c.array == 2].sum(), image.array[label.array == 2].sum())
    assert img_c.spacing == image.spacing
    np.testing.assert_allclose(img_c.direction, image.direction)
    # slices untouched (axis 0 is the slice axis), in-plane margin at least margin_mm on every side
    assert img_c.shape[0] == image.shape[0]
    start, stop = mask_bounding_box(lab_c)
    for axis in (1, 2):
        assert start[axis] * SPACING[axis] >= margin - 1e-6
        assert (lab_c.shape[axis] - stop[axis]) * SPACING[axis] >= margin - 1e-6
    # square in millimetres
    assert lab_c.shape[1] * SPACING[1] == pytest.approx(lab_c.shape[2] * SPACING[2], abs=SPACING[1])


def test_crop_pads_outside_the_grid() -> None:
    image, label = _case(box=((0, 5), (0, 20), (60, 80)))  # mask touching the corner
    out = crop_around_mask(image, label, 15.0, pad_value=-1.0)
    assert out.shape[1] > 20 and (out.array == -1.0).any()
    lab = crop_around_mask(label, label, 15.0, pad_value=0)
    assert lab.array.astype(bool).sum() == label.array.astype(bool).sum()
    np.testing.assert_allclose(_physical_positions(lab, lab.array == 1), _physical_positions(label, label.array == 1))


def test_crop_depth_window_centred_on_mask() -> None:
    image, label = _case()
    out = crop_around_mask(label, label, 5.0, depth=4, pad_value=0)
    assert out.shape[0] == 4
    zs = np.flatnonzero(out.array.reshape(4, -1).any(axis=1))
    assert zs.tolist() == [0, 1, 2, 3]  # 4 central slices of the mask's 8 (6..13) → 8..11
    kept = label.array.copy()
    kept[:8] = 0
    kept[12:] = 0
    np.testing.assert_allclose(_physical_positions(out, out.array == 1), _physical_positions(label, kept == 1))
    wide = crop_around_mask(label, label, 5.0, depth=30, pad_value=0)
    assert wide.shape[0] == 30
    assert wide.array.astype(bool).sum() == label.array.astype(bool).sum()
    assert depth_window(20, 4, 9.5) == (8, 12)
    assert depth_window(20, 8, 0.0) == (0, 8)  # shifted inside the volume
    assert depth_window(3, 8, 1.0) == (-2, 6)  # fewer slices than asked: padded


def test_crop_box_origin() -> None:
    image, _ = _case()
    out = crop_box(image, (2, 10, -5), (6, 40, 20))
    assert out.shape == (4, 30, 25)
    np.testing.assert_allclose(out.origin, image.index_to_physical((2, 10, -5)))
    np.testing.assert_array_equal(out.array[:, :, 5:], image.array[2:6, 10:40, 0:20])
    with pytest.raises(InputError):
        crop_box(image, (0, 0, 0), (0, 5, 5))


def test_resize_volume_in_plane_only() -> None:
    image, label = _case()
    crop = crop_around_mask(image, label, 10.0)
    lab = crop_around_mask(label, label, 10.0, pad_value=0)
    out = resize_volume(crop, (64, 64))
    assert out.shape == (crop.shape[0], 64, 64)
    assert out.spacing[0] == crop.spacing[0]
    extent_in = np.asarray(crop.shape) * np.asarray(crop.spacing)
    extent_out = np.asarray(out.shape) * np.asarray(out.spacing)
    np.testing.assert_allclose(extent_out, extent_in, rtol=1e-6)
    lab_out = resize_volume(lab, (64, 64), interpolation="nearest")
    assert lab_out.same_geometry(out)
    assert set(np.unique(lab_out.array)) == {0, 1, 2}
    assert lab_out.array.dtype == lab.array.dtype
    # depth: centre crop / pad, slices never interpolated
    d4 = resize_volume(crop, (32, 32), depth=4)
    assert d4.shape == (4, 32, 32) and d4.spacing[0] == crop.spacing[0]
    d30 = resize_volume(crop, (32, 32), depth=30, pad_value=0.0)
    assert d30.shape[0] == 30 and np.all(d30.array[:5] == 0)
    with pytest.raises(InputError):
        resize_volume(crop, (0, 10))


def test_crop_rejects_mismatched_mask() -> None:
    image, label = _case()
    with pytest.raises(InputError):
        crop_around_mask(image, label.array[:, :10], 5.0)
    shifted = Volume(label.array, label.spacing, (0.0, 0.0, 0.0), label.direction)
    with pytest.raises(InputError):
        crop_around_mask(image, shifted, 5.0)
