"""Per-class evaluation of label maps (used by ``procto evaluate`` and the papers' tables)."""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from procto.errors import InputError
from procto.metrics._checks import check_nonnegative, check_penalty, check_spacing
from procto.metrics.overlap import overlap_counts, scores_from_counts
from procto.metrics.surface import DEFAULT_EMPTY_PENALTY, surface_distances

__all__ = ["METRIC_NAMES", "evaluate_labels"]

#: Metrics computed per class by :func:`evaluate_labels`, in output order.
METRIC_NAMES = ("dice", "iou", "precision", "recall", "nsd", "hd95", "asd")


def _label_map(array, name: str) -> np.ndarray:
    arr = np.asarray(array)
    if arr.dtype == bool:
        return arr.astype(np.uint8)
    if arr.dtype.kind in "iu":
        return arr
    if arr.dtype.kind == "f":
        if not np.isfinite(arr).all() or not np.array_equal(arr, np.round(arr)):
            raise InputError(f"{name} label map must hold integer labels, got non-integer or non-finite values")
        return arr
    raise InputError(f"{name} label map must be an integer array, got dtype {arr.dtype}")


def _normalise_labels(labels, pred: np.ndarray, ref: np.ndarray) -> dict[int, str]:
    if labels is None:
        present = np.union1d(np.unique(pred), np.unique(ref))
        return {int(v): str(int(v)) for v in present if v != 0}
    if isinstance(labels, np.ndarray):
        labels = labels.tolist()
    if isinstance(labels, Mapping):
        items = [(k, str(v)) for k, v in labels.items()]
    elif isinstance(labels, Sequence) and not isinstance(labels, (str, bytes)):
        items = [(k, str(k)) for k in labels]
    else:
        raise InputError(f"labels must be a mapping {{label: name}} or a sequence of labels, got {labels!r}")
    out: dict[int, str] = {}
    for k, name in items:
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
            raise InputError(f"labels must be integers, got {k!r}")
        if name in out.values():
            raise InputError(f"duplicate class name {name!r} in labels")
        out[int(k)] = name
    if not out:
        raise InputError("labels is empty")
    return out


def evaluate_labels(
    pred,
    ref,
    spacing: Sequence[float],
    labels: Mapping[int, str] | Sequence[int] | None = None,
    *,
    tolerance_mm: float = 4.0,
    empty_penalty: float = DEFAULT_EMPTY_PENALTY,
) -> dict[str, dict[str, float]]:
    """Dice, IoU, precision, recall, NSD, HD95 and ASD for every class of two label maps.

    Each class is compared as a binary mask ``(map == label)``; the empty-mask rules of :mod:`procto.metrics.overlap`
    and :mod:`procto.metrics.surface` apply (e.g. a tumour absent from both maps scores Dice 1, HD95 0).

    Args:
        pred: 2D or 3D predicted label map (integer labels; 0 = background).
        ref: reference label map of the same shape.
        spacing: voxel spacing in mm per axis ((z, y, x) for 3D).
        labels: ``{label: class name}`` (e.g. ``{1: "rectum", 2: "tumour"}``), a sequence of labels (named by their
            number), or None for every non-zero label present in either map.
        tolerance_mm: NSD tolerance in mm.
        empty_penalty: HD95/ASD in mm when exactly one of the two masks of a class is empty.

    Returns:
        ``{class name: {"dice", "iou", "precision", "recall", "nsd", "hd95", "asd"}}`` with float values, classes in
        the order of ``labels``.

    Raises:
        InputError: on shape mismatch, non-integer labels, wrong dimensionality or a spacing of the wrong length.

    Example:
        >>> import numpy as np
        >>> ref = np.zeros((4, 16, 16), np.uint8); ref[1:3, 2:8, 2:8] = 1; ref[1:3, 9:12, 9:12] = 2
        >>> res = evaluate_labels(ref, ref, (3.0, 0.8, 0.8), {1: "rectum", 2: "tumour"})
        >>> res["tumour"]["dice"], res["tumour"]["hd95"]
        (1.0, 0.0)
    """
    p = _label_map(pred, "pred")
    r = _label_map(ref, "ref")
    if p.shape != r.shape:
        raise InputError(f"shape mismatch: pred {p.shape} vs ref {r.shape}")
    if p.ndim not in (2, 3):
        raise InputError(f"label maps must be 2D or 3D, got {p.ndim}D array of shape {p.shape}")
    sp = check_spacing(spacing, p.ndim)
    tol = check_nonnegative(tolerance_mm, "tolerance_mm")
    penalty = check_penalty(empty_penalty)
    out: dict[str, dict[str, float]] = {}
    for label, name in _normalise_labels(labels, p, r).items():
        pm = p == label
        rm = r == label
        sd = surface_distances(pm, rm, sp)
        res = scores_from_counts(*overlap_counts(pm, rm))
        res["nsd"] = sd.surface_dice(tol)
        res["hd95"] = sd.hausdorff(95.0, penalty)
        res["asd"] = sd.average_surface_distance(penalty)
        out[name] = res
    return out
