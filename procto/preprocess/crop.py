"""Localise around the rectum and resize: the staging paper's "x-y localized setting".

"we start our experiment from the x-y localized setting (around the rectum and tumor) and resize along the first and
second axes to create 256 × 256 × N pixel volumes (where N represents the number of slices in the third axis)."

Axes: procto arrays are ``(z, y, x)`` and the *slice* axis is array axis 0 whatever the acquisition plane (sagittal
rectal MRI: axis 0 runs left–right through the sagittal slices).  "x-y" of the paper is therefore array axes 1 and 2
(in-plane) and "the third axis" (N slices) is axis 0.

* :func:`mask_bounding_box` — the index box of a mask (rectum + tumour label map, or a segmentation's output);
* :func:`crop_box` — cut a box out of a volume, padding where it leaves the grid, geometry kept consistent (the
  origin moves to the physical position of the box's first voxel);
* :func:`crop_around_mask` — in-plane box around the mask plus a margin in mm (square in mm by default, so that
  the resize keeps the aspect ratio), all slices or ``depth`` slices centred on the mask;
* :func:`resize_volume` — in-plane resize to ``(H, W)`` (256 × 256 in the paper), slice count kept or centre
  cropped/padded to ``depth``; slices are never interpolated, so each output slice is an acquired slice.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from procto.errors import InputError
from procto.io import Volume, check_same_geometry, resample

__all__ = ["crop_around_mask", "crop_box", "depth_window", "mask_bounding_box", "resize_volume"]


def _mask_array(mask: Volume | np.ndarray, labels: Sequence[int] | None) -> np.ndarray:
    arr = np.asarray(mask.array if isinstance(mask, Volume) else mask)
    if labels is None:
        return arr != 0
    return np.isin(arr, np.asarray(list(labels)))


def mask_bounding_box(mask: Volume | np.ndarray, labels: Sequence[int] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``(start, stop)`` index arrays (z, y, x; stop exclusive) of the voxels of ``mask`` that are non-zero (or in
    ``labels``).  Raises :class:`InputError` for an empty mask."""
    m = _mask_array(mask, labels)
    if m.ndim != 3:
        raise InputError(f"mask must be 3D, got shape {m.shape}")
    if not m.any():
        raise InputError("the mask is empty: nothing to crop around")
    start, stop = [], []
    for axis in range(3):
        other = tuple(a for a in range(3) if a != axis)
        idx = np.flatnonzero(m.any(axis=other))
        start.append(idx[0])
        stop.append(idx[-1] + 1)
    return np.asarray(start, dtype=int), np.asarray(stop, dtype=int)


def crop_box(volume: Volume, start: Sequence[int], stop: Sequence[int], pad_value: float | None = None) -> Volume:
    """The voxels ``start:stop`` (z, y, x) of ``volume``; parts of the box outside the grid are filled with
    ``pad_value`` (default: the volume's minimum).  The result's origin is the physical position of voxel ``start``,
    so every kept voxel keeps its physical position."""
    start = np.asarray(start, dtype=int)
    stop = np.asarray(stop, dtype=int)
    if start.shape != (3,) or stop.shape != (3,) or np.any(stop <= start):
        raise InputError(f"bad crop box {start.tolist()} – {stop.tolist()}")
    shape = np.asarray(volume.shape)
    arr = volume.array
    if pad_value is None:
        pad_value = arr.min() if arr.size else 0
    out = np.full(tuple(stop - start), pad_value, dtype=arr.dtype)
    lo = np.maximum(start, 0)
    hi = np.minimum(stop, shape)
    if np.all(hi > lo):
        src = tuple(slice(a, b) for a, b in zip(lo, hi))
        dst = tuple(slice(a - s, b - s) for a, b, s in zip(lo, hi, start))
        out[dst] = arr[src]
    origin = volume.index_to_physical(start)
    return Volume(out, volume.spacing, tuple(origin), volume.direction.copy(), dict(volume.meta))


def depth_window(n_slices: int, depth: int, center: float) -> tuple[int, int]:
    """``(start, stop)`` of ``depth`` consecutive slice indices centred on ``center`` (may extend past the volume,
    which :func:`crop_box` pads).  When the volume has at least ``depth`` slices the window is shifted to lie inside
    it."""
    if depth < 1:
        raise InputError(f"depth must be >= 1, got {depth}")
    start = int(np.floor(center - (depth - 1) / 2.0 + 0.5))
    if n_slices >= depth:
        start = min(max(start, 0), n_slices - depth)
    return start, start + depth


def crop_around_mask(
    volume: Volume,
    mask: Volume | np.ndarray,
    margin_mm: float | Sequence[float] = 10.0,
    *,
    labels: Sequence[int] | None = None,
    square: bool = True,
    depth: int | None = None,
    pad_value: float | None = None,
) -> Volume:
    """Crop ``volume`` in-plane (axes 1, 2) around ``mask`` with ``margin_mm`` on every side.

    Args:
        volume: image or label map.
        mask: rectum/tumour label map or segmentation output on the same grid (Volume or array); voxels counted are
            the non-zero ones, or those in ``labels``.
        margin_mm: margin around the mask's in-plane bounding box, mm (one value, or (y, x)).
        square: enlarge the smaller in-plane side so that the box is square in millimetres (centred on the mask),
            so resizing to a square keeps the aspect ratio.
        depth: None keeps every slice (the paper's N); an integer keeps ``depth`` slices centred on the mask's slice
            range (padded where the volume has fewer).
        pad_value: value where the box leaves the volume (default the volume's minimum; use 0 for label maps).

    Returns:
        The cropped Volume, geometry consistent with the input (same spacing and direction, origin at the box's
        first voxel).  Cropping the image and its label map with the same ``mask`` gives matching grids.
    """
    if isinstance(mask, Volume):
        check_same_geometry(volume, mask, names=("image", "mask"))
    elif np.shape(mask) != volume.shape:
        raise InputError(f"mask shape {np.shape(mask)} differs from the image {volume.shape}")
    start, stop = mask_bounding_box(mask, labels)
    margins = np.broadcast_to(np.asarray(margin_mm, dtype=float), (2,))
    if np.any(margins < 0):
        raise InputError(f"margin_mm must be >= 0, got {margin_mm}")
    spacing = np.asarray(volume.spacing)
    lo = start.astype(float)
    hi = stop.astype(float)
    for i, axis in enumerate((1, 2)):
        pad = np.ceil(margins[i] / spacing[axis])
        lo[axis] -= pad
        hi[axis] += pad
    if square:
        extent_mm = (hi[1:] - lo[1:]) * spacing[1:]
        side_mm = extent_mm.max()
        for axis in (1, 2):
            n = int(np.ceil(side_mm / spacing[axis] - 1e-6))
            centre = (lo[axis] + hi[axis]) / 2.0
            lo[axis] = np.floor(centre - n / 2.0 + 1e-6)
            hi[axis] = lo[axis] + n
    if depth is None:
        lo[0], hi[0] = 0, volume.shape[0]
    else:
        lo[0], hi[0] = depth_window(volume.shape[0], int(depth), (start[0] + stop[0] - 1) / 2.0)
    return crop_box(volume, lo.astype(int), hi.astype(int), pad_value)


def resize_volume(
    volume: Volume,
    size: Sequence[int] = (256, 256),
    depth: int | None = None,
    *,
    interpolation: str = "linear",
    pad_value: float | None = None,
) -> Volume:
    """Resize in-plane (axes 1, 2) to ``size`` = (H, W), covering the same physical extent (spacing grows or shrinks).

    ``depth``: None keeps the slice count; an integer centre-crops or pads (``pad_value``, default the minimum) the
    slice axis to ``depth`` slices — slices are not interpolated.  ``interpolation``: ``"linear"`` / ``"bspline"``
    for images, ``"nearest"`` / ``"onehot"`` for label maps.
    """
    h, w = (int(s) for s in size)
    if h < 1 or w < 1:
        raise InputError(f"size must be two positive integers, got {tuple(size)}")
    if depth is not None:
        start, stop = depth_window(volume.shape[0], int(depth), (volume.shape[0] - 1) / 2.0)
        if (start, stop) != (0, volume.shape[0]):
            volume = crop_box(volume, (start, 0, 0), (stop, volume.shape[1], volume.shape[2]), pad_value)
    if volume.shape[1:] == (h, w):
        return volume
    out = resample(volume, shape=(volume.shape[0], h, w), interpolation=interpolation)  # type: ignore[arg-type]
    return out
