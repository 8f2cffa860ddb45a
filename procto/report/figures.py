"""The report's images: label overlays in the patient's three planes and node thumbnails, as PNG bytes.

Planes are the patient's, not the array's: a plane through a physical point is sampled (nearest neighbour) on a
regular millimetre grid whose axes are patient directions, so a sagittal MRI gets a true axial reformat and an
oblique volume its three patient planes.  Display conventions (physical ``(z, y, x)`` = inferior→superior,
anterior→posterior, right→left, see :class:`procto.io.Volume`):

* **axial** — seen from the feet: anterior up, the patient's right on the image's left (rows +y, columns +x);
* **sagittal** — superior up, anterior on the left (rows −z, columns +y);
* **coronal** — superior up, the patient's right on the left (rows −z, columns +x).

The grid step along each plane axis is the spacing of the array axis most aligned with it, and the grid is laid
through the voxel centre nearest the requested point, so for an axis-aligned volume the plane is exactly an array
slice (flipped where the display convention asks).  The PNG is then resized to square display pixels (correct
physical aspect): the image bilinearly, the labels nearest-neighbour.

>>> import numpy as np
>>> from procto.io import Volume
>>> vol = Volume(np.arange(24, dtype=float).reshape(2, 3, 4), spacing=(5.0, 1.0, 1.0))
>>> plane, step = reformat(vol, vol.index_to_physical((1, 1, 1)), "axial")
>>> bool(np.array_equal(plane, vol.array[1])), step
(True, (1.0, 1.0))
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from procto.errors import InputError
from procto.io import Volume

#: Row and column directions (physical (z, y, x) unit vectors) of each displayed plane, and its edge letters
#: (top, bottom, left, right).
PLANES: dict[str, tuple[tuple[float, float, float], tuple[float, float, float], str]] = {
    "axial": ((0.0, 1.0, 0.0), (0.0, 0.0, 1.0), "APRL"),
    "sagittal": ((-1.0, 0.0, 0.0), (0.0, 1.0, 0.0), "SIAP"),
    "coronal": ((-1.0, 0.0, 0.0), (0.0, 0.0, 1.0), "SIRL"),
}
#: Overlay colours (RGB) and opacities of the label classes: 1 rectum, 2 tumour.
LABEL_COLOURS: dict[int, tuple[str, tuple[int, int, int], float]] = {
    1: ("rectum", (0, 160, 255), 0.35),
    2: ("tumour", (255, 0, 0), 0.5),
}
#: Node outline colours: metastatic (suspicious), not metastatic, unknown.
NODE_COLOURS = {True: (255, 40, 220), False: (40, 220, 80), None: (255, 210, 0)}
#: CT soft-tissue window (width, level) in HU.
CT_WINDOW = (400.0, 40.0)
#: Percentiles of the MRI window.
MRI_PERCENTILES = (1.0, 99.0)
#: Longest side (display pixels) of a plane image and of a node thumbnail; side (mm) of a node thumbnail.
PLANE_PIXELS, THUMB_PIXELS, THUMB_MM = 384, 160, 40.0


@dataclass
class Figure:
    """A rendered image: PNG bytes, display size and a plain-text description (the alt text)."""

    png: bytes
    width: int
    height: int
    alt: str


def _orthonormal(volume: Volume) -> np.ndarray:
    d = np.asarray(volume.direction, dtype=float)
    if not np.allclose(d.T @ d, np.eye(3), atol=1e-4):
        raise InputError("the volume's direction matrix is not orthonormal")
    return d


def physical_to_index(volume: Volume, points: np.ndarray) -> np.ndarray:
    """Continuous ``(z, y, x)`` array indices of physical points (last axis of ``points``)."""
    d = _orthonormal(volume)
    return ((np.asarray(points, dtype=float) - np.asarray(volume.origin)) @ d) / np.asarray(volume.spacing)


def snap_to_voxel(volume: Volume, point_mm: Sequence[float]) -> np.ndarray:
    """Physical position of the voxel centre nearest ``point_mm`` (inside the volume)."""
    idx = np.rint(physical_to_index(volume, np.asarray(point_mm, dtype=float)))
    idx = np.clip(idx, 0, np.asarray(volume.shape) - 1)
    return volume.index_to_physical(idx)


def _step(volume: Volume, u: np.ndarray) -> float:
    """Spacing of the array axis most aligned with physical direction ``u``."""
    return float(np.asarray(volume.spacing)[int(np.argmax(np.abs(u @ _orthonormal(volume))))])


def _range(volume: Volume, centre: np.ndarray, u: np.ndarray, step: float, half: float | None) -> np.ndarray:
    """Offsets (mm, multiples of ``step``) along ``u`` covering the volume's voxel centres, or ``±half``."""
    if half is not None:
        k = int(np.ceil(half / step - 1e-6))
        return np.arange(-k, k + 1) * step
    corners = np.array(np.meshgrid(*[[0, n - 1] for n in volume.shape], indexing="ij")).reshape(3, -1).T
    proj = (np.array([volume.index_to_physical(c) for c in corners]) - centre) @ u
    lo, hi = int(np.ceil(proj.min() / step - 1e-6)), int(np.floor(proj.max() / step + 1e-6))
    return np.arange(lo, hi + 1) * step


def plane_points(volume: Volume, centre_mm: Sequence[float], plane: str, half_extent_mm: float | None = None
                 ) -> tuple[np.ndarray, tuple[float, float]]:
    """Physical sample points ``(rows, cols, 3)`` of ``plane`` through the voxel centre nearest ``centre_mm``, and
    the grid step ``(row_mm, col_mm)``; the grid covers the volume, or ``±half_extent_mm`` about the centre."""
    if plane not in PLANES:
        raise InputError(f"plane must be one of {', '.join(PLANES)}, got {plane!r}")
    u_row, u_col = (np.asarray(v) for v in PLANES[plane][:2])
    centre = snap_to_voxel(volume, centre_mm)
    s_row, s_col = _step(volume, u_row), _step(volume, u_col)
    a = _range(volume, centre, u_row, s_row, half_extent_mm)
    b = _range(volume, centre, u_col, s_col, half_extent_mm)
    pts = centre + a[:, None, None] * u_row + b[None, :, None] * u_col
    return pts, (s_row, s_col)


def sample_nearest(volume: Volume, points: np.ndarray, fill: float = 0) -> np.ndarray:
    """Nearest-neighbour values of ``volume`` at physical ``points`` (``fill`` outside the volume)."""
    idx = np.rint(physical_to_index(volume, points)).astype(np.int64)
    inside = np.all((idx >= 0) & (idx < np.asarray(volume.shape)), axis=-1)
    arr = np.asarray(volume.array)
    out = np.full(idx.shape[:-1], fill, dtype=np.result_type(arr.dtype, np.min_scalar_type(fill)))
    good = idx[inside]
    out[inside] = arr[good[:, 0], good[:, 1], good[:, 2]]
    return out


def reformat(volume: Volume, centre_mm: Sequence[float], plane: str, reference: Volume | None = None,
             half_extent_mm: float | None = None, fill: float = 0) -> tuple[np.ndarray, tuple[float, float]]:
    """``plane`` of ``volume`` through ``centre_mm`` on ``reference``'s grid (default: its own), before any
    display resize; returns the 2D array and the step ``(row_mm, col_mm)``."""
    pts, step = plane_points(reference if reference is not None else volume, centre_mm, plane, half_extent_mm)
    return sample_nearest(volume, pts, fill), step


def window(volume: Volume, modality: str) -> tuple[float, float]:
    """Display range: CT soft tissue (W 400 / L 40 HU), otherwise the 1st–99th percentile of the volume."""
    if modality.lower() == "ct":
        width, level = CT_WINDOW
        return level - width / 2, level + width / 2
    arr = np.asarray(volume.array, dtype=np.float32).ravel()
    arr = arr[:: max(1, arr.size // 2_000_000)]
    arr = arr[np.isfinite(arr)]
    if arr.size == 0:
        return 0.0, 1.0
    lo, hi = (float(v) for v in np.percentile(arr, MRI_PERCENTILES))
    return (lo, hi) if hi > lo else (lo, lo + 1.0)


def centre_of(volume: Volume, mask: np.ndarray | None = None) -> np.ndarray:
    """Physical centroid of ``mask``'s voxels, or the volume's centre when the mask is empty / missing."""
    if mask is not None and np.any(mask):
        idx = np.argwhere(mask).mean(axis=0)
    else:
        idx = (np.asarray(volume.shape) - 1) / 2.0
    return volume.index_to_physical(idx)


def display_size(shape: tuple[int, int], step: tuple[float, float], longest: int) -> tuple[int, int]:
    """``(width, height)`` in square display pixels of a ``shape`` grid with ``step`` mm pixels."""
    height_mm, width_mm = shape[0] * step[0], shape[1] * step[1]
    scale = longest / max(height_mm, width_mm)
    return max(1, round(width_mm * scale)), max(1, round(height_mm * scale))


def _grey(plane: np.ndarray, lo: float, hi: float, size: tuple[int, int]) -> np.ndarray:
    from PIL import Image

    g = np.clip((np.asarray(plane, dtype=np.float32) - lo) / (hi - lo), 0.0, 1.0) * 255.0
    img = Image.fromarray(np.nan_to_num(g).astype(np.uint8)).resize(size, Image.Resampling.BILINEAR)
    return np.repeat(np.asarray(img, dtype=np.float32)[..., None], 3, axis=2)


def _nearest(plane: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    from PIL import Image

    img = Image.fromarray(np.asarray(plane).astype(np.int32)).resize(size, Image.Resampling.NEAREST)
    return np.asarray(img)


def _letters(rgb: np.ndarray, letters: str) -> Any:
    from PIL import Image, ImageDraw, ImageFont

    img = Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(img)
    w, h = img.size
    try:
        draw.font = ImageFont.load_default(size=max(10, max(w, h) // 24))
    except (TypeError, OSError, ImportError):  # Pillow without FreeType: the bitmap default font
        pass
    spots = [(w / 2, 2, "mt"), (w / 2, h - 2, "mb"), (3, h / 2, "lm"), (w - 3, h / 2, "rm")]
    for (x, y, anchor), letter in zip(spots, letters):
        try:
            draw.text((x, y), letter, fill=(255, 255, 255), anchor=anchor, stroke_width=1, stroke_fill=(0, 0, 0))
        except (ValueError, TypeError):  # a bitmap default font without anchor support
            draw.text((min(x, w - 8), min(y, h - 12)), letter, fill=(255, 255, 255))
    return img


def _png(img: Any) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG", optimize=False)
    return buf.getvalue()


def blend(rgb: np.ndarray, mask: np.ndarray, colour: tuple[int, int, int], alpha: float) -> np.ndarray:
    """``rgb`` with ``colour`` blended at opacity ``alpha`` where ``mask`` is true."""
    out = rgb.copy()
    out[mask] = (1.0 - alpha) * out[mask] + alpha * np.asarray(colour, dtype=np.float32)
    return out


def plane_figure(image: Volume, label: Volume | None, centre_mm: Sequence[float], plane: str, modality: str,
                 win: tuple[float, float] | None = None, longest: int = PLANE_PIXELS,
                 through: str = "the tumour centre") -> Figure:
    """The ``plane`` of ``image`` through ``centre_mm`` with ``label`` overlaid (rectum 1, tumour 2; any grid),
    resized to square pixels with the longest side ``longest``."""
    lo, hi = win if win is not None else window(image, modality)
    pts, step = plane_points(image, centre_mm, plane)
    size = display_size(pts.shape[:2], step, longest)
    rgb = _grey(sample_nearest(image, pts, fill=lo), lo, hi, size)
    shown = []
    if label is not None:
        lab = _nearest(sample_nearest(label, pts, fill=0), size)
        for value, (name, colour, alpha) in LABEL_COLOURS.items():
            if np.any(lab == value):
                rgb = blend(rgb, lab == value, colour, alpha)
                shown.append(name)
    img = _letters(rgb, PLANES[plane][2])
    overlay = f" with the {' and '.join(shown)} overlaid in colour" if shown else ""
    alt = f"{plane.capitalize()} {modality.upper()} plane through {through}{overlay}"
    return Figure(_png(img), img.size[0], img.size[1], alt)


def _outline(mask: np.ndarray) -> np.ndarray:
    from scipy import ndimage

    edge = mask & ~ndimage.binary_erosion(mask, border_value=0)
    return ndimage.binary_dilation(edge) if edge.any() else edge


def node_figure(ct: Volume, nodes: Volume, node_id: int, centre_mm: Sequence[float] | None = None,
                metastatic: bool | None = None, win: tuple[float, float] | None = None) -> Figure:
    """An axial patch (:data:`THUMB_MM` mm square) of ``ct`` about node ``node_id`` of the instance map ``nodes``
    (its centroid; ``centre_mm`` when the map lacks it), the node outlined in :data:`NODE_COLOURS`."""
    mask = np.asarray(nodes.array) == node_id
    centre = centre_of(nodes, mask) if mask.any() or centre_mm is None else np.asarray(centre_mm, dtype=float)
    lo, hi = win if win is not None else window(ct, "ct")
    pts, step = plane_points(ct, centre, "axial", THUMB_MM / 2)
    size = display_size(pts.shape[:2], step, THUMB_PIXELS)
    rgb = _grey(sample_nearest(ct, pts, fill=lo), lo, hi, size)
    node = _nearest(sample_nearest(nodes, pts, fill=0), size) == node_id
    rgb = blend(rgb, _outline(node), NODE_COLOURS.get(metastatic, NODE_COLOURS[None]), 1.0)
    img = _letters(rgb, PLANES["axial"][2])
    status = {True: "metastatic", False: "not metastatic"}.get(metastatic, "status unknown")
    alt = f"Axial CT patch of {THUMB_MM:.0f} mm around node {node_id} ({status}), the node outlined"
    return Figure(_png(img), img.size[0], img.size[1], alt)


__all__ = ["Figure", "PLANES", "LABEL_COLOURS", "NODE_COLOURS", "CT_WINDOW", "MRI_PERCENTILES", "reformat",
           "plane_points", "sample_nearest", "physical_to_index", "snap_to_voxel", "window", "centre_of",
           "display_size", "blend", "plane_figure", "node_figure"]
