"""Detection metrics: box IoU and COCO-style average precision (AP) for 2D and 3D boxes.

Boxes are ``(N, 4)`` arrays ``[x1, y1, x2, y2]`` or, for 3D detection (e.g. lymph nodes), ``(N, 6)`` arrays
``[x1, y1, z1, x2, y2, z2]``, in **continuous coordinates**: a box's extent is ``x2 - x1`` (no "+1" pixel convention),
as in pycocotools for ``[x, y, w, h]`` boxes.  IoU is computed the way pycocotools' ``bbIou`` does (extents
``w = x2 - x1``, right edge ``x1 + w``, intersection ``min(right) - max(left)``, union ``area_a + area_b - inter``),
so values agree with pycocotools bit for bit on boxes converted to ``[x1, y1, x2 - x1, y2 - y1]``.

:func:`average_precision` follows ``pycocotools.cocoeval.COCOeval`` for one category, one IoU threshold, area range
"all" and no crowd regions:

1. per image, detections are sorted by decreasing score (stable) and matched greedily: each detection takes the
   not-yet-matched reference with the highest IoU ≥ threshold (ties: the later reference), otherwise it is a false
   positive;
2. detections of all images are ranked by score (stable; image order, then in-image order, breaks ties);
3. precision/recall along the ranking, precision made monotonically non-increasing, sampled at the 101 recall
   points 0, 0.01, …, 1 (precision 0 beyond the highest recall reached); AP is the mean of the 101 samples.

Tests check equality with pycocotools (``iouThrs=[0.5]``, large ``maxDets``, ``areaRng`` all).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from procto.errors import InputError

__all__ = ["box_iou", "average_precision"]

_RECALL_POINTS = np.linspace(0.0, 1.0, 101)


def _as_boxes(boxes, name: str, ndim: int | None = None) -> np.ndarray:
    arr = np.asarray(boxes, dtype=np.float64)
    if arr.size == 0:
        return np.zeros((0, ndim or 4))
    if arr.ndim != 2 or arr.shape[1] not in (4, 6):
        raise InputError(f"{name} must be an (N, 4) or (N, 6) array of boxes, got shape {arr.shape}")
    if ndim is not None and arr.shape[1] != ndim:
        raise InputError(f"{name} has {arr.shape[1]}-column boxes but other boxes have {ndim} columns")
    if not np.isfinite(arr).all():
        raise InputError(f"{name} contains non-finite coordinates")
    half = arr.shape[1] // 2
    if (arr[:, half:] < arr[:, :half]).any():
        raise InputError(f"{name} has boxes with max < min corner (boxes must be [x1, y1, (z1,) x2, y2, (z2)])")
    return arr


def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    half = a.shape[1] // 2
    lo_a, lo_b = a[:, :half], b[:, :half]
    ext_a = a[:, half:] - lo_a  # extents, as pycocotools' w, h (, d)
    ext_b = b[:, half:] - lo_b
    vol_a = ext_a[:, 0] * ext_a[:, 1]
    vol_b = ext_b[:, 0] * ext_b[:, 1]
    for axis in range(2, half):
        vol_a = vol_a * ext_a[:, axis]
        vol_b = vol_b * ext_b[:, axis]
    inter = None
    positive = np.ones((len(a), len(b)), bool)
    for axis in range(half):
        hi = np.minimum((ext_a[:, axis] + lo_a[:, axis])[:, None], (ext_b[:, axis] + lo_b[:, axis])[None, :])
        side = hi - np.maximum(lo_a[:, axis][:, None], lo_b[:, axis][None, :])
        positive &= side > 0
        inter = side if inter is None else inter * side
    union = vol_a[:, None] + vol_b[None, :] - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        out = inter / union
    return np.where(positive, out, 0.0)


def box_iou(boxes_a, boxes_b) -> np.ndarray:
    """IoU matrix ``(len(boxes_a), len(boxes_b))`` of 2D ``(N, 4)`` or 3D ``(N, 6)`` boxes (continuous coordinates).

    Raises:
        InputError: on malformed boxes or mixed 2D/3D boxes.
    """
    a = _as_boxes(boxes_a, "boxes_a")
    b = _as_boxes(boxes_b, "boxes_b", a.shape[1] if len(a) else None)
    if len(a) == 0 and len(b):
        a = np.zeros((0, b.shape[1]))
    return _iou(a, b)


def _match_image(det: np.ndarray, ref: np.ndarray, threshold: float) -> np.ndarray:
    """Greedy matching of score-sorted detections to references; True where a detection is a true positive."""
    matched_det = np.zeros(len(det), bool)
    if len(det) == 0 or len(ref) == 0:
        return matched_det
    ious = _iou(det, ref)
    taken = np.zeros(len(ref), bool)
    best_min = min(threshold, 1 - 1e-10)
    for d in range(len(det)):
        row = np.where(taken, -1.0, ious[d])
        # last reference holding the maximum IoU (pycocotools keeps replacing on ties)
        g = len(row) - 1 - int(np.argmax(row[::-1]))
        if row[g] >= best_min:
            taken[g] = True
            matched_det[d] = True
    return matched_det


def average_precision(
    detections: Sequence[tuple[np.ndarray, np.ndarray]],
    references: Sequence[np.ndarray],
    iou_threshold: float = 0.5,
    *,
    max_detections: int | None = None,
) -> float:
    """COCO-style 101-point interpolated average precision at one IoU threshold (AP50 by default).

    Args:
        detections: one ``(boxes, scores)`` pair per image; ``boxes`` ``(N, 4)`` ``[x1, y1, x2, y2]`` or ``(N, 6)``
            ``[x1, y1, z1, x2, y2, z2]``, ``scores`` ``(N,)``.  An image without detections takes empty arrays.
        references: one ``(M, 4)`` / ``(M, 6)`` array of reference boxes per image (same image order).
        iou_threshold: minimum IoU for a detection to match a reference.
        max_detections: keep only the highest-scoring detections per image (COCO's ``maxDets``); None = all.

    Returns:
        AP in [0, 1]; NaN if there is no reference box in any image (AP undefined; pycocotools reports -1).

    Raises:
        InputError: if the numbers of images differ, boxes are malformed, 2D and 3D boxes are mixed, or scores do
            not match the boxes.

    Example:
        >>> import numpy as np
        >>> refs = [np.array([[0, 0, 10, 10]])]
        >>> dets = [(np.array([[1, 1, 10, 10], [20, 20, 30, 30]]), np.array([0.9, 0.8]))]
        >>> round(average_precision(dets, refs), 6)  # pycocotools' precision carries a 2.2e-16 epsilon
        1.0
    """
    thr = _check_ap_options(detections, references, iou_threshold, max_detections)
    ndim: int | None = None
    all_scores, all_tp = [], []
    n_ref = 0
    for i, (item, ref_boxes) in enumerate(zip(detections, references)):
        det, sc, ref, ndim = _image_boxes(i, item, ref_boxes, ndim, max_detections)
        all_scores.append(sc)
        all_tp.append(_match_image(det, ref, thr))
        n_ref += len(ref)
    if n_ref == 0:
        return float("nan")
    scores = np.concatenate(all_scores) if all_scores else np.zeros(0)
    is_tp = np.concatenate(all_tp) if all_tp else np.zeros(0, bool)
    return _interpolated_ap(scores, is_tp, n_ref)


def _check_ap_options(detections, references, iou_threshold, max_detections) -> float:
    """Check :func:`average_precision`'s arguments; the IoU threshold as a float."""
    if len(detections) != len(references):
        raise InputError(f"got detections for {len(detections)} images but references for {len(references)}")
    thr = float(iou_threshold)
    if not 0.0 < thr <= 1.0:
        raise InputError(f"iou_threshold must be in (0, 1], got {iou_threshold!r}")
    if max_detections is not None and (int(max_detections) != max_detections or max_detections < 1):
        raise InputError(f"max_detections must be a positive integer or None, got {max_detections!r}")
    return thr


def _image_boxes(i: int, item, ref_boxes, ndim: int | None, max_detections: int | None):
    """Image ``i``'s checked detections sorted by decreasing score (stable; the best ``max_detections``), their
    scores, its references and the box dimensionality seen so far: ``(det, scores, ref, ndim)``."""
    try:
        boxes, scores = item
    except (TypeError, ValueError):
        raise InputError(f"detections[{i}] must be a (boxes, scores) pair") from None
    det = _as_boxes(boxes, f"detections[{i}] boxes", ndim)
    ndim = ndim if len(det) == 0 else det.shape[1]
    ref = _as_boxes(ref_boxes, f"references[{i}]", ndim)
    ndim = ndim if len(ref) == 0 else ref.shape[1]
    sc = np.asarray(scores, dtype=np.float64).reshape(-1)
    if sc.shape[0] != det.shape[0]:
        raise InputError(f"detections[{i}]: {det.shape[0]} boxes but {sc.shape[0]} scores")
    if not np.isfinite(sc).all():
        raise InputError(f"detections[{i}]: scores must be finite")
    order = np.argsort(-sc, kind="mergesort")
    if max_detections is not None:
        order = order[: int(max_detections)]
    det, sc = det[order], sc[order]
    if len(det) and len(ref) and det.shape[1] != ref.shape[1]:
        raise InputError(f"image {i}: detections and references mix 2D and 3D boxes")
    return det, sc, ref, ndim


def _interpolated_ap(scores: np.ndarray, is_tp: np.ndarray, n_ref: int) -> float:
    """101-point interpolated AP of detections ranked by score (steps 2–3 of the module docstring)."""
    ranking = np.argsort(-scores, kind="mergesort")
    is_tp = is_tp[ranking]
    tp = np.cumsum(is_tp).astype(float)
    fp = np.cumsum(~is_tp).astype(float)
    recall_curve = tp / n_ref
    precision_curve = tp / (fp + tp + np.spacing(1))
    precision_curve = np.maximum.accumulate(precision_curve[::-1])[::-1]  # non-increasing envelope
    idx = np.searchsorted(recall_curve, _RECALL_POINTS, side="left")
    sampled = np.zeros(len(_RECALL_POINTS))
    reached = idx < len(precision_curve)
    sampled[reached] = precision_curve[idx[reached]]
    return float(np.mean(sampled))
