"""Geometry checks and resampling of :class:`~procto.io.Volume` objects (SimpleITK's resampler underneath)."""

from __future__ import annotations

from typing import Literal, Sequence

import numpy as np

from procto.errors import InputError
from procto.io.volume import Volume


def check_same_geometry(a: Volume, b: Volume, *, tol_mm: float = 1e-3, names: Sequence[str] = ("image", "label")) -> None:
    """Raise :class:`InputError` (one line, saying what differs, in (z, y, x) order like every shape procto prints)
    unless ``a`` and ``b`` share shape, spacing and origin (within ``tol_mm``) and direction (within 1e-6)."""
    na, nb = names
    if a.shape != b.shape:
        raise InputError(f"geometry mismatch: {na} shape {a.shape} vs {nb} shape {b.shape} (z, y, x)")
    if not np.allclose(a.spacing, b.spacing, atol=tol_mm, rtol=0):
        raise InputError(
            f"geometry mismatch: {na} spacing {_fmt(a.spacing)} vs {nb} spacing {_fmt(b.spacing)} (z, y, x) mm")
    if not np.allclose(a.origin, b.origin, atol=tol_mm, rtol=0):
        raise InputError(
            f"geometry mismatch: {na} origin {_fmt(a.origin)} vs {nb} origin {_fmt(b.origin)} (z, y, x) mm")
    if not np.allclose(a.direction, b.direction, atol=1e-6, rtol=0):
        raise InputError(f"geometry mismatch: {na} and {nb} have different direction matrices")


def _fmt(values) -> str:
    return "(" + ", ".join(f"{v:.4g}" for v in values) + ")"


def resampled_shape(volume: Volume, spacing: Sequence[float]) -> tuple[int, int, int]:
    """Shape that covers the same physical extent as ``volume`` at ``spacing`` (z, y, x)."""
    extent = np.asarray(volume.shape) * np.asarray(volume.spacing)
    return tuple(max(1, int(round(e / s))) for e, s in zip(extent, spacing))  # type: ignore[return-value]


def resample(
    volume: Volume,
    spacing: Sequence[float] | None = None,
    *,
    shape: Sequence[int] | None = None,
    interpolation: Literal["linear", "bspline", "nearest", "onehot"] = "linear",
    default_value: float = 0.0,
) -> Volume:
    """Resample ``volume`` onto a grid with new ``spacing`` (z, y, x mm) or a new ``shape`` covering the same extent.

    Images take ``linear`` or ``bspline`` interpolation; label maps take ``nearest`` or ``onehot`` (each label resampled
    linearly as a one-hot channel, then the arg-max — smoother boundaries than nearest neighbour).
    The origin is moved so that the new grid covers the same physical box (voxel corners aligned); direction is kept.
    """
    import SimpleITK as sitk

    if (spacing is None) == (shape is None):
        raise InputError("give exactly one of spacing or shape")
    old_shape = np.asarray(volume.shape, dtype=float)
    old_spacing = np.asarray(volume.spacing, dtype=float)
    if shape is not None:
        new_shape = np.asarray(shape, dtype=int)
        if new_shape.shape != (3,) or np.any(new_shape < 1):
            raise InputError(f"shape must be 3 positive integers, got {tuple(shape)}")
        new_spacing = old_shape * old_spacing / new_shape
    else:
        new_spacing = np.asarray(spacing, dtype=float)
        if new_spacing.shape != (3,) or np.any(new_spacing <= 0):
            raise InputError(f"spacing must be 3 positive numbers, got {tuple(spacing)}")
        new_shape = np.asarray(resampled_shape(volume, new_spacing))
    # Keep the corner of the box fixed: centre of new voxel 0 sits half a new voxel inside the old box corner.
    shift = (new_spacing - old_spacing) / 2.0
    new_origin = np.asarray(volume.origin) + volume.direction @ shift
    target = Volume(np.zeros(tuple(int(s) for s in new_shape), dtype=np.uint8), tuple(new_spacing), tuple(new_origin),
                    volume.direction)

    def _run(src: Volume, interp, pixel_type=None, value=default_value) -> np.ndarray:
        f = sitk.ResampleImageFilter()
        f.SetReferenceImage(target.to_sitk())
        f.SetInterpolator(interp)
        f.SetDefaultPixelValue(float(value))
        if pixel_type is not None:
            f.SetOutputPixelType(pixel_type)
        return sitk.GetArrayFromImage(f.Execute(src.to_sitk()))

    if interpolation in ("linear", "bspline"):
        interp = sitk.sitkLinear if interpolation == "linear" else sitk.sitkBSpline
        src = volume.with_array(volume.array.astype(np.float32, copy=False))
        out = _run(src, interp, sitk.sitkFloat32)
    elif interpolation == "nearest":
        out = _run(volume, sitk.sitkNearestNeighbor).astype(volume.array.dtype, copy=False)
    elif interpolation == "onehot":
        labels = np.unique(volume.array)
        best = np.full(tuple(new_shape), -1.0, dtype=np.float32)
        out = np.zeros(tuple(new_shape), dtype=volume.array.dtype)
        for lab in labels:
            channel = volume.with_array((volume.array == lab).astype(np.float32))
            prob = _run(channel, sitk.sitkLinear, sitk.sitkFloat32, value=1.0 if lab == 0 else 0.0)
            take = prob > best
            out[take] = lab
            best[take] = prob[take]
    else:
        raise InputError(f"unknown interpolation {interpolation!r}")
    return Volume(out, tuple(new_spacing), tuple(new_origin), volume.direction.copy(), dict(volume.meta))
