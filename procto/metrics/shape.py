"""Measurements of labelled structures in patient millimetres, whatever the volume's orientation.

Every measurement goes through the volume's direction matrix (:class:`procto.io.Volume`: physical ``(z, y, x)`` is
ITK's LPS reversed, so component 0 runs inferior → superior, 1 anterior → posterior, 2 right → left).  "Axial" is
the patient's axial plane, not the array's: a sagittal MRI's craniocaudal axis is one of its in-plane axes, and an
oblique acquisition has no array plane that is axial at all.  Voxel centres are therefore grouped into **axial
slabs** one voxel step thick along the superior–inferior axis (for an axial or sagittal volume exactly one array
slice / row per slab), and in-plane lengths are measured on those slabs:

* a **diameter** along an in-plane direction ``u`` is the extent of the slab's voxels along ``u``, edge to edge:
  the range of the voxel centres' projections plus the footprint of one voxel along ``u``
  (``Σ_j |u · a_j| s_j`` for array axes ``a_j`` with spacing ``s_j``) — what calipers on the image would read;
* the **long axis** (RECIST 1.1) is the largest diameter over 360 directions (0.5° steps) on the slab where the
  structure is largest, the **short axis** the diameter perpendicular to it on the same slab;
* the **craniocaudal length** is the range of the voxel centres along the superior–inferior axis (issue 12's
  definition: centre to centre);
* the **circumferential extent** of a tumour is the angle, about the rectal centre of the slab, covered by the
  tumour's voxels (each voxel covering its own angular footprint), the largest over slabs; angles are clock-face
  angles as a radiologist reads an axial image from the feet: 12 o'clock anterior, 3 o'clock the patient's left,
  6 posterior, 9 the patient's right.

>>> import numpy as np
>>> from procto.io import Volume
>>> line = np.zeros((9, 21, 21), np.uint8); line[4, 10, 3:18] = 1       # 15 voxels along x, 0.5 mm each
>>> axes = slab_axes(Volume(line, spacing=(3.0, 0.5, 0.5)), line > 0)
>>> round(axes["long_axis_mm"], 1), round(axes["short_axis_mm"], 1)  # the 7.5 × 0.5 mm strip's diagonal, width
(7.5, 1.0)
"""

from __future__ import annotations

from typing import Any

import numpy as np

from procto.errors import InputError
from procto.io import Volume

#: In-plane directions searched for the long axis (0.5° steps over a half turn).
N_DIRECTIONS = 360
#: Largest angular footprint one voxel may cover in the circumferential extent (voxels near the rectal centre).
MAX_VOXEL_ARC_DEG = 20.0


def _mask(volume: Volume, mask: Any) -> np.ndarray:
    arr = np.asarray(mask)
    if arr.shape != volume.shape:
        raise InputError(f"a mask of shape {arr.shape} does not fit the volume's {volume.shape}")
    return arr.astype(bool, copy=False)


def physical_points(volume: Volume, mask: Any) -> np.ndarray:
    """Physical ``(z, y, x)`` positions (mm, rows) of the centres of the voxels where ``mask`` is true."""
    idx = np.argwhere(_mask(volume, mask)).astype(np.float64)
    return np.asarray(volume.origin) + (idx * np.asarray(volume.spacing)) @ volume.direction.T


def voxel_footprint(volume: Volume, u: np.ndarray) -> np.ndarray:
    """Extent (mm) of one voxel along each physical direction (rows of ``u``, unit vectors in ``(z, y, x)``)."""
    axes = volume.direction * np.asarray(volume.spacing)  # column j: physical step of array axis j
    return np.abs(np.atleast_2d(u) @ axes).sum(axis=1)


def superior_step(volume: Volume) -> float:
    """Thickness (mm) of an axial slab: the largest superior–inferior step of one array index."""
    return float(np.max(np.abs(volume.direction[0]) * np.asarray(volume.spacing)))


def axial_slabs(volume: Volume, points: np.ndarray, origin_si: float | None = None) -> np.ndarray:
    """Slab index of each physical point (row of ``points``); slabs are :func:`superior_step` thick and centred on
    ``origin_si`` (default: the lowest point), so each slice of an axial volume is one slab."""
    if len(points) == 0:
        return np.zeros(0, dtype=np.int64)
    lo = float(points[:, 0].min()) if origin_si is None else float(origin_si)
    return np.floor((points[:, 0] - lo) / superior_step(volume) + 0.5).astype(np.int64)


def _directions(n: int = N_DIRECTIONS) -> np.ndarray:
    theta = np.arange(n) * (np.pi / n)
    return np.stack([np.zeros(n), np.cos(theta), np.sin(theta)], axis=1)  # in the axial (y, x) plane


def _hull(points2d: np.ndarray) -> np.ndarray:
    """Vertices of the 2D convex hull (all points when degenerate) — the extents only depend on them."""
    if len(points2d) <= 8:
        return points2d
    from scipy.spatial import ConvexHull, QhullError

    try:
        return points2d[ConvexHull(points2d).vertices]
    except QhullError:  # collinear points
        return points2d


def _diameters(volume: Volume, points: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Edge-to-edge extent of the voxels at ``points`` along each direction row of ``u``."""
    hull = _hull(points[:, 1:])
    proj = hull @ u[:, 1:].T
    return np.ptp(proj, axis=0) + voxel_footprint(volume, u)


def slab_axes(volume: Volume, mask: Any) -> dict[str, float | None]:
    """RECIST-style axes of one structure: ``long_axis_mm`` (largest in-plane diameter on the axial slab where the
    structure has the most voxels), ``short_axis_mm`` (the diameter perpendicular to it on that slab),
    ``max_axial_diameter_mm`` (the largest diameter on any slab), ``long_axis_direction`` (unit vector, physical
    ``(z, y, x)``) and ``slab_si_mm`` (superior–inferior position of the measured slab).  ``None`` values for an
    empty mask."""
    pts = physical_points(volume, mask)
    if len(pts) == 0:
        return {"long_axis_mm": None, "short_axis_mm": None, "max_axial_diameter_mm": None,
                "long_axis_direction": None, "slab_si_mm": None}
    slabs = axial_slabs(volume, pts)
    ids, counts = np.unique(slabs, return_counts=True)
    u = _directions()
    best_diam, best = -1.0, None
    for k in ids:
        d = _diameters(volume, pts[slabs == k], u)
        best_diam = max(best_diam, float(d.max()))
    largest = pts[slabs == ids[int(np.argmax(counts))]]
    d = _diameters(volume, largest, u)
    i = int(np.argmax(d))
    perp = u[(i + N_DIRECTIONS // 2) % N_DIRECTIONS][None]
    short = float(_diameters(volume, largest, perp)[0])
    return {"long_axis_mm": float(d[i]), "short_axis_mm": short, "max_axial_diameter_mm": best_diam,
            "long_axis_direction": [float(c) for c in u[i]], "slab_si_mm": float(largest[:, 0].mean())}


def craniocaudal_length_mm(volume: Volume, mask: Any) -> float | None:
    """Range (mm) of the voxel centres along the patient's superior–inferior axis; ``None`` when empty."""
    pts = physical_points(volume, mask)
    return float(np.ptp(pts[:, 0])) if len(pts) else None


def clock_angles(points: np.ndarray, centre: np.ndarray) -> np.ndarray:
    """Clock-face angle (degrees, 0 = 12 o'clock = anterior, 90 = 3 o'clock = the patient's left) of each point
    about ``centre`` in the axial plane."""
    d = points - centre
    return np.degrees(np.arctan2(d[:, 2], -d[:, 1])) % 360.0


def _covered_arcs(angles: np.ndarray, widths: np.ndarray, bins: int = 3600) -> np.ndarray:
    """Boolean coverage of ``bins`` equal arcs of the circle by intervals ``angle ± width / 2``."""
    covered = np.zeros(bins + 1, dtype=np.int64)
    scale = bins / 360.0
    lo = np.floor((angles - widths / 2) * scale).astype(np.int64)
    hi = np.ceil((angles + widths / 2) * scale).astype(np.int64)
    for a, b in zip(lo, hi):
        if b - a >= bins:
            return np.ones(bins, dtype=bool)
        a, b = a % bins, b % bins
        if a <= b:
            covered[a] += 1
            covered[b] -= 1
        else:
            covered[a] += 1
            covered[bins] -= 1
            covered[0] += 1
            covered[b] -= 1
    return np.cumsum(covered[:bins]) > 0


def _clock(deg: float) -> float:
    hour = (deg / 30.0) % 12.0
    return float(round(12.0 if hour < 0.05 else hour, 1))


def circumferential_extent(volume: Volume, tumour: Any, rectum: Any) -> dict[str, Any]:
    """``circumferential_extent_deg`` (the largest angle of the rectal circumference the tumour covers on one axial
    slab, about the centre of the rectum label on that slab — the tumour's own voxels when the rectum label is
    absent there) and ``clock_face`` (``(from, to)`` clock hours of that arc, clockwise, 12 = anterior)."""
    t_pts, r_pts = physical_points(volume, tumour), physical_points(volume, rectum)
    if len(t_pts) == 0:
        return {"circumferential_extent_deg": None, "clock_face": None}
    lo = float(min(t_pts[:, 0].min(), r_pts[:, 0].min() if len(r_pts) else np.inf))
    t_slab, r_slab = axial_slabs(volume, t_pts, lo), axial_slabs(volume, r_pts, lo)
    best = (-1.0, None)
    for k in np.unique(t_slab):
        t = t_pts[t_slab == k]
        ring = r_pts[r_slab == k]
        centre = np.concatenate([ring, t]).mean(axis=0) if len(ring) else t.mean(axis=0)
        d = t - centre
        radius = np.maximum(np.hypot(d[:, 1], d[:, 2]), 1e-6)
        ang = clock_angles(t, centre)
        tangent = np.stack([np.zeros(len(d)), -d[:, 2], d[:, 1]], axis=1) / radius[:, None]
        width = np.degrees(2 * np.arctan(voxel_footprint(volume, tangent) / (2 * radius)))
        covered = _covered_arcs(ang, np.minimum(width, MAX_VOXEL_ARC_DEG))
        deg = covered.mean() * 360.0
        if deg > best[0]:
            best = (deg, covered)
    deg, covered = best
    if covered.all():
        return {"circumferential_extent_deg": 360.0, "clock_face": (12.0, 12.0)}
    # the arc runs clockwise from the end of the largest uncovered gap to its start
    shift = int(np.flatnonzero(~covered & np.roll(covered, 1))[0])  # a gap's first bin: no gap wraps past the end
    rolled = np.roll(covered, -shift)
    runs = np.flatnonzero(np.diff(np.concatenate([[0], (~rolled).astype(np.int8), [0]])))
    starts, ends = runs[0::2], runs[1::2]
    g = int(np.argmax(ends - starts))
    step = 360.0 / len(covered)
    arc_from = ((ends[g] + shift) * step) % 360.0  # first covered bin after the largest gap
    arc_to = ((starts[g] + shift) * step) % 360.0  # first uncovered bin after the arc
    return {"circumferential_extent_deg": float(deg), "clock_face": (_clock(arc_from), _clock(arc_to))}


__all__ = ["physical_points", "voxel_footprint", "superior_step", "axial_slabs", "slab_axes",
           "craniocaudal_length_mm", "clock_angles", "circumferential_extent", "N_DIRECTIONS"]
