"""The sampling grid: where the voxels of a phantom lie in the patient.

The anatomy is defined in a patient frame in millimetres, with procto's physical ``(z, y, x)`` axis order and ITK's
LPS signs: ``x`` grows towards the patient's left, ``y`` towards posterior, ``z`` towards superior; ``z = 0`` is
the anorectal junction and ``x = 0`` the mid-sagittal plane.  A :class:`Grid` places a voxel lattice (shape,
spacing, origin, direction) in that frame; the same patient can therefore be sampled as an axial CT or as a sagittal
MRI.

Directions are signed permutations (axis-aligned grids), so each physical coordinate depends on one array axis only
and coordinates broadcast cheaply.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from procto.errors import InputError
from procto.io.volume import Volume

#: Axial CT: array (z, y, x) = (inferior→superior, anterior→posterior, right→left).
AXIAL_DIRECTION = np.eye(3)
#: Sagittal MRI: array axis 0 runs right→left (the thick slice axis), axis 1 superior→inferior (image rows), axis 2
#: anterior→posterior (image columns).  Columns are the physical (z, y, x) unit vectors of the array axes.
SAGITTAL_DIRECTION = np.array([[0.0, -1.0, 0.0],
                               [0.0, 0.0, 1.0],
                               [1.0, 0.0, 0.0]])

#: Default shapes, slice spacings and in-plane fields of view per modality.
DEFAULT_SHAPE = {"ct": (64, 256, 256), "mri": (24, 256, 256)}
DEFAULT_SLICE_SPACING = {"ct": 5.0, "mri": 4.0}
DEFAULT_FOV_MM = {"ct": 400.0, "mri": 224.0}


@dataclass(frozen=True)
class Grid:
    """An axis-aligned voxel lattice in the patient frame.

    Args:
        shape: array shape.
        spacing: voxel size along the array axes, mm.
        origin: physical (z, y, x) position of voxel (0, 0, 0), mm.
        direction: 3×3 signed permutation; column ``j`` is the physical (z, y, x) unit vector of array axis ``j``.
    """

    shape: tuple[int, int, int]
    spacing: tuple[float, float, float]
    origin: tuple[float, float, float]
    direction: np.ndarray

    def __post_init__(self) -> None:
        d = np.asarray(self.direction, dtype=float)
        if not (np.all(np.isin(d, (-1.0, 0.0, 1.0))) and np.all(np.abs(d).sum(0) == 1) and np.all(np.abs(d).sum(1) == 1)):
            raise InputError("phantom grids must be axis-aligned (direction a signed permutation matrix)")
        if len(self.shape) != 3 or min(self.shape) < 1:
            raise InputError(f"shape must be 3 positive integers, got {self.shape}")
        if min(self.spacing) <= 0:
            raise InputError(f"spacing must be positive, got {self.spacing}")

    # ------------------------------------------------------------------ construction
    @classmethod
    def centred(cls, shape, spacing, center, direction) -> "Grid":
        """The grid of ``shape``/``spacing``/``direction`` whose centre lies at physical ``center`` (z, y, x)."""
        shape = tuple(int(s) for s in shape)
        spacing = tuple(float(s) for s in spacing)
        direction = np.asarray(direction, dtype=float)
        half = (np.asarray(shape) - 1) / 2.0 * np.asarray(spacing)
        origin = np.asarray(center, dtype=float) - direction @ half
        return cls(shape, spacing, tuple(float(o) for o in origin), direction)

    # ------------------------------------------------------------------ geometry
    @property
    def size(self) -> int:
        return int(np.prod(self.shape))

    def axis_of(self, physical: int) -> tuple[int, float]:
        """(array axis, sign) of physical axis ``physical`` (0 = z, 1 = y, 2 = x)."""
        j = int(np.flatnonzero(self.direction[physical])[0])
        return j, float(self.direction[physical, j])

    def physical_spacing(self) -> np.ndarray:
        """Voxel size along physical (z, y, x), mm."""
        return np.array([self.spacing[self.axis_of(c)[0]] for c in range(3)])

    def box(self, lo, hi, margin: float = 0.0) -> tuple[slice, slice, slice] | None:
        """Index slices of the voxels inside the physical box ``[lo, hi]`` (z, y, x) grown by ``margin`` mm; ``None``
        when the box misses the grid."""
        lo = np.asarray(lo, dtype=float) - margin
        hi = np.asarray(hi, dtype=float) + margin
        slices: list[slice] = [slice(0, 0)] * 3
        for c in range(3):
            j, sign = self.axis_of(c)
            a = (lo[c] - self.origin[c]) / (sign * self.spacing[j])
            b = (hi[c] - self.origin[c]) / (sign * self.spacing[j])
            i0 = max(int(np.ceil(min(a, b) - 1e-9)), 0)
            i1 = min(int(np.floor(max(a, b) + 1e-9)) + 1, self.shape[j])
            if i1 <= i0:
                return None
            slices[j] = slice(i0, i1)
        return tuple(slices)  # type: ignore[return-value]

    def coords(self, box: tuple[slice, slice, slice] | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Physical (z, y, x) coordinates of the voxels of ``box`` (whole grid if None), as three arrays that
        broadcast to the box's shape (each varies along one array axis only)."""
        if box is None:
            box = tuple(slice(0, n) for n in self.shape)  # type: ignore[assignment]
        out = []
        for c in range(3):
            j, sign = self.axis_of(c)
            sl = box[j]
            idx = np.arange(sl.start, sl.stop, dtype=np.float32)
            vals = (self.origin[c] + sign * self.spacing[j] * idx).astype(np.float32)
            shape = [1, 1, 1]
            shape[j] = len(vals)
            out.append(vals.reshape(shape))
        return out[0], out[1], out[2]

    def points(self, index: tuple[np.ndarray, np.ndarray, np.ndarray]) -> np.ndarray:
        """Physical (z, y, x) positions (N×3, float32) of voxels given as index arrays (as from ``np.nonzero``)."""
        n = len(index[0])
        out = np.empty((n, 3), np.float32)
        for c in range(3):
            j, sign = self.axis_of(c)
            lut = (self.origin[c] + sign * self.spacing[j] * np.arange(self.shape[j])).astype(np.float32)
            out[:, c] = lut[index[j]]
        return out

    def index_of(self, point) -> np.ndarray:
        """Continuous array index of physical point(s) (…×3)."""
        p = np.asarray(point, dtype=float) - np.asarray(self.origin)
        return (p @ self.direction) / np.asarray(self.spacing)

    def volume(self, array: np.ndarray, **meta) -> Volume:
        """``array`` as a :class:`~procto.io.Volume` with this grid's geometry."""
        return Volume(array=array, spacing=self.spacing, origin=self.origin, direction=self.direction.copy(),
                      meta=dict(meta))


def default_grid(modality: str, shape=None, spacing=None, fov_mm: float | None = None, center=None) -> Grid:
    """The grid of a phantom of ``modality`` ("ct" axial, "mri" sagittal).

    Args:
        shape: array shape; default CT (64, 256, 256), MRI (24, 256, 256).
        spacing: voxel size along the array axes; default: the modality's slice spacing (CT 5.0 mm axial slices,
            MRI 4.0 mm sagittal slices) and an in-plane pixel size that makes the in-plane field of view ``fov_mm``.
        fov_mm: in-plane field of view when ``spacing`` is None; default CT 400 mm (the whole body), MRI 224 mm.
        center: physical (z, y, x) centre of the grid, mm; must be given (the caller derives it from the anatomy).
    """
    modality = modality.lower()
    if modality not in DEFAULT_SHAPE:
        raise InputError(f"modality must be 'ct' or 'mri', got {modality!r}")
    shape = tuple(int(s) for s in (shape or DEFAULT_SHAPE[modality]))
    if len(shape) != 3 or min(shape) < 2:
        raise InputError(f"shape must be 3 integers >= 2, got {shape}")
    if spacing is None:
        fov = float(fov_mm or DEFAULT_FOV_MM[modality])
        spacing = (DEFAULT_SLICE_SPACING[modality], fov / shape[1], fov / shape[2])
    spacing = tuple(float(s) for s in spacing)
    if len(spacing) != 3 or min(spacing) <= 0:
        raise InputError(f"spacing must be 3 positive numbers, got {spacing}")
    direction = AXIAL_DIRECTION if modality == "ct" else SAGITTAL_DIRECTION
    if center is None:
        raise InputError("default_grid needs a centre")
    return Grid.centred(shape, spacing, center, direction)
