"""The report's measurements, as plain functions of :class:`procto.io.Volume` label maps (patient millimetres,
through the direction matrix; geometry rules in :mod:`procto.metrics.shape`).

>>> from procto.phantom import make_case
>>> case = make_case(0, "mri", shape=(24, 96, 96), spacing=(4.0, 1.75, 1.75), center="rectum")  # doctest: +SKIP
>>> measure_tumour(case.label)["volume_ml"]                                                    # doctest: +SKIP
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

from procto.errors import InputError
from procto.io import Volume
from procto.metrics.nodes import n_category
from procto.metrics.shape import circumferential_extent, craniocaudal_length_mm, physical_points, slab_axes

#: Height classes of the tumour's lower edge above the lowest point of the rectum label (mm; CCO's low / mid /
#: high bands from the anal verge, applied to procto's proxy — an estimate, the label holds no verge landmark).
HEIGHT_CLASSES = ((50.0, "low"), (100.0, "mid"), (150.0, "high"))


def _labels(label: Any) -> Volume:
    if not isinstance(label, Volume):
        raise InputError(f"expected a procto Volume label map, got {type(label).__name__}")
    if not np.issubdtype(np.asarray(label.array).dtype, np.integer) and label.array.dtype != bool:
        arr = np.asarray(label.array)
        if not np.all(arr == np.round(arr)):
            raise InputError("the label map holds non-integer values")
    return label


def _height_class(distance_mm: float | None) -> str | None:
    if distance_mm is None:
        return None
    for limit, name in HEIGHT_CLASSES:
        if distance_mm <= limit:
            return name
    return "above the rectum's usual length"


def measure_tumour(label: Volume, rectum_label: int = 1, tumour_label: int = 2) -> dict[str, Any]:
    """Tumour measurements from a rectum + tumour label map (any orientation).

    Returns a dict: ``volume_ml`` (tumour voxel count × voxel volume), ``craniocaudal_length_mm`` (range of the
    tumour voxel centres along the patient's superior–inferior axis), ``max_axial_diameter_mm`` (largest
    edge-to-edge diameter on a patient-axial slab), ``circumferential_extent_deg`` and ``clock_face`` (the arc of
    the rectal circumference the tumour covers, 12 o'clock anterior), ``distance_to_anorectal_junction_mm`` (the
    tumour's lowest voxel centre above the rectum label's lowest one — the junction's proxy), ``height_class``
    (low ≤ 50 mm / mid ≤ 100 / high, an estimate from that proxy), ``tumour_voxels``.  Lengths are ``None`` when
    there is no tumour; the distance is ``None`` without a rectum label.
    """
    label = _labels(label)
    arr = np.asarray(label.array)
    tumour, rectum = arr == tumour_label, arr == rectum_label
    n = int(tumour.sum())
    out: dict[str, Any] = {"volume_ml": n * label.voxel_volume_mm3 / 1000.0, "tumour_voxels": n}
    out["craniocaudal_length_mm"] = craniocaudal_length_mm(label, tumour)
    out["max_axial_diameter_mm"] = slab_axes(label, tumour)["max_axial_diameter_mm"]
    out.update(circumferential_extent(label, tumour, rectum))
    distance = None
    if n and rectum.any():
        lowest = physical_points(label, rectum | tumour)[:, 0].min()
        distance = float(physical_points(label, tumour)[:, 0].min() - lowest)
    out["distance_to_anorectal_junction_mm"] = distance
    out["height_class"] = _height_class(distance)
    return out


def _score_of(scores: Mapping[int, float] | Sequence[float] | None, node_id: int) -> float | None:
    if scores is None:
        return None
    if isinstance(scores, Mapping):
        value = scores.get(node_id)
    else:
        value = scores[node_id - 1] if 0 < node_id <= len(scores) else None
    return None if value is None else float(value)


def measure_nodes(nodes: Volume, scores: Mapping[int, float] | Sequence[float] | None = None) -> list[dict]:
    """One dict per node of an instance map (ids 1…n, any orientation): ``id``, ``centre_mm`` (physical
    ``(z, y, x)`` of the voxel centroid), ``long_axis_mm`` / ``short_axis_mm`` (RECIST 1.1 in the patient's axial
    plane: the largest diameter on the slab where the node is largest and the diameter perpendicular to it),
    ``volume_ml``, ``score`` (``scores[id]`` for a mapping, ``scores[id - 1]`` for a sequence, else ``None``)."""
    from scipy import ndimage

    nodes = _labels(nodes)
    arr = np.asarray(nodes.array)
    if arr.size and arr.min() < 0:
        raise InputError("a node instance map cannot hold negative ids")
    arr = arr.astype(np.int64, copy=False)
    out = []
    for i, sl in enumerate(ndimage.find_objects(arr), start=1):
        if sl is None:
            continue
        mask = np.zeros(arr.shape, dtype=bool)
        mask[sl] = arr[sl] == i
        pts = physical_points(nodes, mask)
        axes = slab_axes(nodes, mask)
        out.append({"id": i, "centre_mm": [float(c) for c in pts.mean(axis=0)],
                    "long_axis_mm": axes["long_axis_mm"], "short_axis_mm": axes["short_axis_mm"],
                    "volume_ml": len(pts) * nodes.voxel_volume_mm3 / 1000.0, "score": _score_of(scores, i)})
    return out


__all__ = ["measure_tumour", "measure_nodes", "n_category", "HEIGHT_CLASSES"]
