"""Geometric primitives of the phantom, in the patient frame (physical (z, y, x), mm).

* Solids (:class:`Ellipsoid`, :class:`Capsule`, :class:`Cup`) give a signed *depth* (mm, > 0 inside, about the
  distance to the surface) on broadcastable coordinate arrays, and their physical bounding box, so a renderer only
  evaluates them on the voxels of that box.
* :class:`Tube` is a centre line sampled every ``ds`` mm with a moving frame; :meth:`Tube.query` finds, for the voxels
  near the line, the nearest sample, the distance ``rho`` to the line and the angle ``theta`` around it.  Tubular
  organs (rectum + colon, small bowel) are described by radius profiles over (arc length, angle).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.interpolate import CubicSpline
from scipy.spatial import cKDTree

from procto.phantom.grid import Grid

ANTERIOR = np.array([0.0, -1.0, 0.0])  # physical (z, y, x): -y is anterior
SUPERIOR = np.array([1.0, 0.0, 0.0])


def _unit(v: np.ndarray) -> np.ndarray:
    n = np.linalg.norm(v, axis=-1, keepdims=True)
    return v / np.where(n > 1e-12, n, 1.0)


# ---------------------------------------------------------------------------------------------------------- solids
@dataclass
class Ellipsoid:
    """An ellipsoid.

    Args:
        center: physical (z, y, x) centre, mm.
        semi: semi-axes, mm, along the rows of ``axes``.
        axes: 3×3 matrix whose rows are the unit local axes in physical (z, y, x); identity = axis-aligned with
            ``semi`` given in (z, y, x).
    """

    center: np.ndarray
    semi: np.ndarray
    axes: np.ndarray = field(default_factory=lambda: np.eye(3))

    def __post_init__(self):
        self.center = np.asarray(self.center, dtype=float)
        self.semi = np.asarray(self.semi, dtype=float)
        self.axes = _unit(np.asarray(self.axes, dtype=float))

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        half = np.sqrt(((self.axes * self.semi[:, None]) ** 2).sum(0))
        return self.center - half, self.center + half

    def local(self, z, y, x):
        c = self.center.astype(np.float32)
        dz, dy, dx = z - c[0], y - c[1], x - c[2]
        return [np.float32(a[0]) * dz + np.float32(a[1]) * dy + np.float32(a[2]) * dx for a in self.axes]

    def depth(self, z, y, x) -> np.ndarray:
        u = self.local(z, y, x)
        q = np.sqrt(sum((ui / np.float32(si)) ** 2 for ui, si in zip(u, self.semi)))
        return (1.0 - q) * np.float32(self.semi.min())


@dataclass
class Capsule:
    """A segment ``p0``–``p1`` swept by a sphere whose radius goes linearly from ``r0`` to ``r1``."""

    p0: np.ndarray
    p1: np.ndarray
    r0: float
    r1: float | None = None

    def __post_init__(self):
        self.p0 = np.asarray(self.p0, dtype=float)
        self.p1 = np.asarray(self.p1, dtype=float)
        if self.r1 is None:
            self.r1 = self.r0

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        r = max(self.r0, self.r1)
        return np.minimum(self.p0, self.p1) - r, np.maximum(self.p0, self.p1) + r

    def depth(self, z, y, x) -> np.ndarray:
        d = self.p1 - self.p0
        length2 = float(d @ d) or 1e-9
        p0 = self.p0.astype(np.float32)
        rz, ry, rx = z - p0[0], y - p0[1], x - p0[2]
        t = np.clip((np.float32(d[0]) * rz + np.float32(d[1]) * ry + np.float32(d[2]) * rx) / np.float32(length2), 0, 1)
        dist = np.sqrt((rz - t * np.float32(d[0])) ** 2 + (ry - t * np.float32(d[1])) ** 2
                       + (rx - t * np.float32(d[2])) ** 2)
        return np.float32(self.r0) + t * np.float32(self.r1 - self.r0) - dist


@dataclass
class Cup:
    """A spherical shell ``r_in <= |p - center| <= r_out`` without the cap around ``opening`` (unit vector) whose
    half-angle has cosine ``cos_open`` — an acetabulum."""

    center: np.ndarray
    r_in: float
    r_out: float
    opening: np.ndarray
    cos_open: float = 0.3

    def __post_init__(self):
        self.center = np.asarray(self.center, dtype=float)
        self.opening = _unit(np.asarray(self.opening, dtype=float))

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        return self.center - self.r_out, self.center + self.r_out

    def depth(self, z, y, x) -> np.ndarray:
        c = self.center.astype(np.float32)
        dz, dy, dx = z - c[0], y - c[1], x - c[2]
        r = np.sqrt(dz * dz + dy * dy + dx * dx)
        o = self.opening
        cosang = (np.float32(o[0]) * dz + np.float32(o[1]) * dy + np.float32(o[2]) * dx) / np.maximum(r, 1e-3)
        d = np.minimum(r - np.float32(self.r_in), np.float32(self.r_out) - r)
        return np.where(cosang > self.cos_open, np.float32(-1.0), d)


class Slab:
    """A curved plate: a centre curve in a sagittal plane ``x = x0`` (K×3 samples, ~1 mm apart) with a thickness
    along ``normals`` (in that plane) and a half-width along x per sample; the cross-section is a rounded rectangle
    (superellipse) — a sacrum.

    Args:
        points: K×3 centre-curve samples (physical z, y, x) sharing one x.
        normals: K×3 unit thickness directions (x component 0).
        thickness, half_width: K values, mm.
    """

    def __init__(self, points, normals, thickness, half_width, power: float = 2.5):
        self.points = np.asarray(points, dtype=float)
        self.x0 = float(self.points[0, 2])
        self.normals = _unit(np.asarray(normals, dtype=float))
        self.thickness = np.asarray(thickness, dtype=float)
        self.half_width = np.asarray(half_width, dtype=float)
        self.tangents = _unit(np.gradient(self.points, axis=0))
        self.power = power
        self._tree = cKDTree(self.points[:, :2])

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        r = float(max(self.thickness.max(), self.half_width.max()))
        return self.points.min(0) - r, self.points.max(0) + r

    def depth(self, z, y, x) -> np.ndarray:
        # the nearest centre sample depends on (z, y) only: query the (z, y) plane once, broadcast along x
        zz, yy = np.broadcast_arrays(z, y)
        pts = np.stack([zz.reshape(-1), yy.reshape(-1)], axis=1).astype(float)
        _, k = self._tree.query(pts)
        d = pts - self.points[k, :2]
        off_n = (np.abs((d * self.normals[k, :2]).sum(1)) / (self.thickness[k] / 2)).reshape(zz.shape)
        along = np.abs((d * self.tangents[k, :2]).sum(1)).reshape(zz.shape)
        ends = ((k == 0) | (k == len(self.points) - 1)).reshape(zz.shape)
        hw = self.half_width[k].reshape(zz.shape)
        scale = np.minimum(self.thickness[k] / 2, self.half_width[k]).reshape(zz.shape)
        off_x = np.abs(x - np.float32(self.x0)) / hw
        q = (off_n ** self.power + off_x ** self.power) ** (1.0 / self.power)
        depth = (1.0 - q) * scale
        depth = np.where(ends, np.minimum(depth, 1.0 - along), depth)
        return depth.astype(np.float32)


# ---------------------------------------------------------------------------------------------------------- tubes
def spline_curve(points, ds: float = 1.0, s0: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """A smooth curve through control ``points`` (N×3) resampled every ``ds`` mm of arc length.

    Returns:
        (samples K×3, arc length K) with arc length starting at ``s0``.
    """
    pts = np.asarray(points, dtype=float)
    chord = np.r_[0.0, np.cumsum(np.linalg.norm(np.diff(pts, axis=0), axis=1))]
    spline = CubicSpline(chord, pts, axis=0, bc_type="natural")
    fine_u = np.linspace(0.0, chord[-1], max(int(chord[-1] / (ds / 4)) + 2, 8))
    fine = spline(fine_u)
    arc = np.r_[0.0, np.cumsum(np.linalg.norm(np.diff(fine, axis=0), axis=1))]
    n = max(int(arc[-1] / ds) + 1, 2)
    s = np.linspace(0.0, arc[-1], n)
    u = np.interp(s, arc, fine_u)
    return spline(u), s + s0


class Tube:
    """A centre line with a moving frame.

    Args:
        points: K×3 samples (physical z, y, x), about ``ds`` mm apart.
        s: K arc-length values, mm.

    Attributes:
        tangent, normal, binormal: K×3 unit vectors; ``normal`` is the anterior direction projected onto the plane
            normal to the line (``theta = 0`` anterior, ``theta = pi`` posterior), ``binormal = tangent × normal``.
    """

    def __init__(self, points: np.ndarray, s: np.ndarray):
        self.points = np.asarray(points, dtype=float)
        self.s = np.asarray(s, dtype=float)
        tangent = np.gradient(self.points, axis=0)
        self.tangent = _unit(tangent)
        ref = ANTERIOR + 0.15 * SUPERIOR
        normal = ref[None, :] - (self.tangent @ ref)[:, None] * self.tangent
        self.normal = _unit(normal)
        self.binormal = np.cross(self.tangent, self.normal)
        self._tree = cKDTree(self.points)

    def __len__(self) -> int:
        return len(self.s)

    def index_at(self, s: float) -> int:
        """Index of the sample nearest to arc length ``s``."""
        return int(np.clip(np.searchsorted(self.s, s), 0, len(self.s) - 1))

    def point(self, k: int, rho: float, theta: float) -> np.ndarray:
        """Physical position at sample ``k``, distance ``rho`` and angle ``theta``."""
        return self.points[k] + rho * (np.cos(theta) * self.normal[k] + np.sin(theta) * self.binormal[k])

    def distance(self, points: np.ndarray) -> np.ndarray:
        """Distance (mm) of physical points (N×3) to the nearest sample."""
        d, _ = self._tree.query(np.asarray(points, dtype=float).reshape(-1, 3))
        return d

    def query(self, grid: Grid, reach: np.ndarray, chunk: int = 24, coarse_mm: float = 6.0):
        """Voxels of ``grid`` within ``reach[k]`` mm of their nearest sample ``k``.

        Voxels are pre-selected by the bounding boxes of chunks of samples, then (on fine grids) by a query on a
        coarse sub-lattice of about ``coarse_mm``, so the exact nearest-sample search only runs near the line.

        Args:
            grid: the sampling grid.
            reach: K per-sample search radii, mm.
            chunk: samples per bounding box used to pre-select voxels.
            coarse_mm: cell size of the coarse pre-selection, mm.

        Returns:
            (flat voxel indices, k, rho, theta), 1D arrays over the voxels found.
        """
        reach = np.asarray(reach, dtype=float)
        r_max = float(reach.max())
        mask = np.zeros(grid.shape, dtype=bool)
        for a in range(0, len(self.s), chunk):
            pts = self.points[a:a + chunk + 1]
            r = float(reach[a:a + chunk + 1].max())
            box = grid.box(pts.min(0), pts.max(0), margin=r)
            if box is not None:
                mask[box] = True
        stride = [max(1, int(coarse_mm // sp)) for sp in grid.spacing]
        if max(stride) > 1 and mask.sum() > 4096:
            cmask = mask[::stride[0], ::stride[1], ::stride[2]]
            cflat = np.flatnonzero(cmask)
            cidx = np.unravel_index(cflat, cmask.shape)
            pos = grid.points(tuple(i * st for i, st in zip(cidx, stride)))
            diag = float(np.sqrt(sum(((st - 1) * sp) ** 2 for st, sp in zip(stride, grid.spacing))))
            # conservative: a fine voxel within reach[k] of sample k has its coarse point within reach[k] + diag
            # of k; samples are grouped by reach (10 mm bins) and each group is searched with its largest reach
            ok = np.zeros(len(pos), dtype=bool)
            group = np.ceil(reach / 10.0).astype(int)
            for g in np.unique(group):
                members = np.flatnonzero(group == g)
                r_g = float(reach[members].max()) + diag
                dist, _ = cKDTree(self.points[members]).query(pos, distance_upper_bound=r_g)
                ok |= np.isfinite(dist)
            near = np.zeros(cmask.shape, dtype=bool)
            near.reshape(-1)[cflat[ok]] = True
            for ax, st in enumerate(stride):
                if st > 1:
                    near = np.repeat(near, st, axis=ax)
            mask &= near[: grid.shape[0], : grid.shape[1], : grid.shape[2]]
        flat = np.flatnonzero(mask)
        empty = (flat[:0], flat[:0], np.zeros(0, np.float32), np.zeros(0, np.float32))
        if flat.size == 0:
            return empty
        pos = grid.points(np.unravel_index(flat, grid.shape))
        dist, k = self._tree.query(pos, distance_upper_bound=r_max)
        keep = np.isfinite(dist)
        keep[keep] &= dist[keep] <= reach[k[keep]]
        flat, k, pos = flat[keep], k[keep], pos[keep].astype(np.float64)
        if flat.size == 0:
            return empty
        d = pos - self.points[k]
        rho = np.sqrt((d * d).sum(1)).astype(np.float32)
        theta = np.arctan2((d * self.binormal[k]).sum(1), (d * self.normal[k]).sum(1)).astype(np.float32)
        return flat, k, rho, theta
