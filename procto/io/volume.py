"""The :class:`Volume` type: a 3D array with its physical geometry.

Conventions (shared by all of procto):

* ``array`` is indexed ``(z, y, x)`` — the numpy order SimpleITK's ``GetArrayFromImage`` returns.
* ``spacing`` and ``origin`` are given in the same ``(z, y, x)`` axis order, in millimetres.
* ``direction`` is the 3×3 direction-cosine matrix in that order too: column ``j`` is the unit vector (in physical
  ``(z, y, x)`` coordinates) along array axis ``j``.  The physical position of index ``i = (iz, iy, ix)`` is
  ``origin + direction @ (i * spacing)``.  ITK stores the same matrix in ``(x, y, z)`` order; the conversion is a
  reversal of both axes (see :meth:`Volume.from_sitk` / :meth:`Volume.to_sitk`).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from procto.errors import InputError


def _triple(values, name: str) -> tuple[float, float, float]:
    arr = np.asarray(values, dtype=float).reshape(-1)
    if arr.shape != (3,):
        raise InputError(f"{name} must have 3 values (z, y, x), got {arr.shape[0]}")
    if not np.all(np.isfinite(arr)):
        raise InputError(f"{name} contains NaN or Inf")
    return (float(arr[0]), float(arr[1]), float(arr[2]))


def _snap(values: np.ndarray, decimals: int) -> np.ndarray:
    """Undo the last-ulp noise that formats storing direction×spacing (NRRD) or cosines (DICOM) add: a value within
    4 ulps of its rounding to ``decimals`` is replaced by that rounding (2.4999999999999996 → 2.5); others are kept."""
    rounded = np.round(values, decimals)
    return np.where(np.abs(values - rounded) <= 4 * np.spacing(np.abs(values)), rounded, values)


@dataclass
class Volume:
    """A 3D image or label map with spacing, origin and direction in physical (mm) terms.

    Args:
        array: 3D numpy array indexed (z, y, x).
        spacing: voxel size (z, y, x) in mm; defaults to 1 mm isotropic.
        origin: physical position (z, y, x) of voxel (0, 0, 0) in mm.
        direction: 3×3 direction cosines in (z, y, x) order (identity = axis-aligned).
        meta: small dict of non-identifying metadata (modality, description, ...).
    """

    array: np.ndarray
    spacing: tuple[float, float, float] = (1.0, 1.0, 1.0)
    origin: tuple[float, float, float] = (0.0, 0.0, 0.0)
    direction: np.ndarray = field(default_factory=lambda: np.eye(3))
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.array = np.asarray(self.array)
        if self.array.ndim != 3:
            raise InputError(f"a Volume needs a 3D array, got {self.array.ndim}D with shape {self.array.shape}")
        self.spacing = _triple(self.spacing, "spacing")
        if min(self.spacing) <= 0:
            raise InputError(f"spacing must be positive, got {self.spacing}")
        self.origin = _triple(self.origin, "origin")
        direction = np.asarray(self.direction, dtype=float)
        if direction.size != 9:
            raise InputError(f"direction must be a 3×3 matrix, got {direction.size} values")
        self.direction = direction.reshape(3, 3)

    # ------------------------------------------------------------------ geometry helpers
    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(int(s) for s in self.array.shape)  # type: ignore[return-value]

    @property
    def voxel_volume_mm3(self) -> float:
        return float(np.prod(self.spacing))

    def index_to_physical(self, index) -> np.ndarray:
        """Physical (z, y, x) position in mm of a (z, y, x) voxel index (float indices allowed)."""
        return np.asarray(self.origin) + self.direction @ (np.asarray(index, dtype=float) * np.asarray(self.spacing))

    def with_array(self, array: np.ndarray, **meta_updates: Any) -> "Volume":
        """A new Volume with the same geometry and ``array`` (which must have the same shape)."""
        array = np.asarray(array)
        if array.shape != self.array.shape:
            raise InputError(f"array shape {array.shape} differs from the volume's {self.array.shape}")
        return replace(self, array=array, direction=self.direction.copy(), meta={**self.meta, **meta_updates})

    def same_geometry(self, other: "Volume", tol_mm: float = 1e-3) -> bool:
        """True when shape, spacing (within ``tol_mm``), origin (within ``tol_mm``) and direction match."""
        return (
            self.shape == other.shape
            and np.allclose(self.spacing, other.spacing, atol=tol_mm, rtol=0)
            and np.allclose(self.origin, other.origin, atol=tol_mm, rtol=0)
            and np.allclose(self.direction, other.direction, atol=1e-6, rtol=0)
        )

    # ------------------------------------------------------------------ SimpleITK conversion
    @classmethod
    def from_sitk(cls, image, meta: dict[str, Any] | None = None) -> "Volume":
        """Build a Volume from a 3D ``SimpleITK.Image`` (its (x, y, z) geometry is reordered to (z, y, x))."""
        import SimpleITK as sitk

        if image.GetDimension() != 3:
            raise InputError(f"expected a 3D image, got {image.GetDimension()}D")
        if image.GetNumberOfComponentsPerPixel() != 1:
            raise InputError(f"expected a scalar image, got {image.GetNumberOfComponentsPerPixel()} components per voxel")
        direction_xyz = np.asarray(image.GetDirection(), dtype=float).reshape(3, 3)
        return cls(
            array=sitk.GetArrayFromImage(image),
            spacing=tuple(_snap(np.array(image.GetSpacing()[::-1]), 12)),
            origin=tuple(_snap(np.array(image.GetOrigin()[::-1]), 9)),
            direction=_snap(direction_xyz[::-1, ::-1], 12),
            meta=dict(meta or {}),
        )

    def to_sitk(self):
        """The volume as a ``SimpleITK.Image`` with geometry in ITK's (x, y, z) order."""
        import SimpleITK as sitk

        array = self.array
        if array.dtype == bool:
            array = array.astype(np.uint8)
        image = sitk.GetImageFromArray(np.ascontiguousarray(array))
        image.SetSpacing(tuple(reversed(self.spacing)))
        image.SetOrigin(tuple(reversed(self.origin)))
        image.SetDirection(tuple(self.direction[::-1, ::-1].reshape(-1).tolist()))
        return image

    def __repr__(self) -> str:  # keep reprs short: arrays can be large
        return (
            f"Volume(shape={self.shape}, dtype={self.array.dtype}, spacing={self.spacing}, "
            f"origin={self.origin}, meta={self.meta})"
        )
