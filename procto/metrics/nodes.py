"""Lymph-node metrics for CoSAM (paper 004): the paper protocol's AP50 per window centre slice and pooled Dice/IoU,
and procto's whole-volume extensions (not in the paper): 3D per-node AP at IoU 0.1, FROC, N-category accuracy.

* :func:`pooled_dice_iou` — Dice ``2ΣTP / Σ(|P| + |G|)`` and IoU ``ΣTP / Σ|P ∪ G|`` with the sums over every mask
  pair (the paper's aggregation, facts §6), so IoU = D / (2 − D) exactly; :func:`case_dice` / :func:`per_case_dice`
  pool per case and give mean ± sd over cases.
* :func:`ap50_windows` — COCO AP at IoU 0.5 (= pycocotools, 100 detections per image, area range all), one image per
  window centre slice, reference boxes optionally enlarged by a margin (the paper's 16 px at 224:
  :data:`PAPER_BOX_MARGIN`).
* :func:`instances_to_boxes3d`, :func:`node_ap3d` — one 3D box per node of an instance map and AP at IoU 0.1
  (nnDetection's convention for 3D lesions).
* :func:`froc` — sensitivity at average false positives per scan (0.125 … 8), CAMELYON/MONAI curve convention.
* :func:`n_category`, :func:`n_category_accuracy` — N0 / N1 (1–3) / N2 (≥ 4) from metastatic node counts.

Boxes are in continuous coordinates like :mod:`procto.metrics.detection`: 2D ``[x1, y1, x2, y2]``, 3D
``[x1, y1, z1, x2, y2, z2]``; voxel ``(z, y, x)`` covers ``[x, x + 1) × [y, y + 1) × [z, z + 1)``.  Box IoU does not
change under per-axis scaling, so boxes in voxels and in mm give the same matches and APs.  Bad input raises
:class:`procto.errors.InputError`.  numpy only (no torch).

>>> import numpy as np
>>> nodes = np.zeros((4, 8, 8), np.uint8); nodes[1:3, 2:4, 5:8] = 1
>>> boxes, ids = instances_to_boxes3d(nodes)
>>> boxes.tolist(), ids.tolist()
([[5.0, 2.0, 1.0, 8.0, 4.0, 3.0]], [1])
>>> n_category(0), n_category(3), n_category(4)
('N0', 'N1', 'N2')
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Hashable, Sequence

import numpy as np
from scipy import ndimage

from procto.errors import InputError
from procto.metrics.aggregate import MeanSD, mean_sd
from procto.metrics.classification import accuracy
from procto.metrics.detection import _as_boxes, _match_image, average_precision
from procto.metrics.overlap import overlap_counts, scores_from_counts

__all__ = [
    "PAPER_BOX_MARGIN",
    "FROC_FP_RATES",
    "pooled_dice_iou",
    "case_dice",
    "per_case_dice",
    "expand_boxes",
    "ap50_windows",
    "instances_to_boxes3d",
    "node_ap3d",
    "FROCResult",
    "froc",
    "n_category",
    "n_category_accuracy",
]

#: The paper protocol's margin (px, at the 224-px window size) added on each side of a reference node box (facts §5).
PAPER_BOX_MARGIN = 16.0
#: Average false positives per scan at which :func:`froc` reports sensitivity (LUNA16's 1/8 … 8).
FROC_FP_RATES = (0.125, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0)


# --------------------------------------------------------------------------------------------------- segmentation
def _pair_counts(preds, refs) -> list[tuple[int, int, int]]:
    """Voxel counts ``(tp, fp, fn)`` of every mask pair, with the pair's index in error messages."""
    if isinstance(preds, np.ndarray) and preds.ndim < 2 or isinstance(refs, np.ndarray) and refs.ndim < 2:
        raise InputError("preds and refs must be lists of masks (or arrays with one mask per leading index)")
    preds, refs = list(preds), list(refs)
    if len(preds) != len(refs):
        raise InputError(f"got {len(preds)} predicted masks but {len(refs)} reference masks")
    if not preds:
        raise InputError("no masks to evaluate")
    counts = []
    for i, (p, r) in enumerate(zip(preds, refs)):
        try:
            counts.append(overlap_counts(p, r))
        except InputError as exc:
            raise InputError(f"mask pair {i}: {exc.problem}") from None
    return counts


def _dice_iou(counts: Sequence[tuple[int, int, int]]) -> tuple[float, float]:
    tp, fp, fn = (int(sum(c[k] for c in counts)) for k in range(3))
    scores = scores_from_counts(tp, fp, fn)
    return scores["dice"], scores["iou"]


def pooled_dice_iou(preds, refs) -> tuple[float, float]:
    """Dice and IoU pooled over mask pairs: ``2ΣTP / Σ(|P| + |G|)`` and ``ΣTP / Σ|P ∪ G|`` (1, 1 when every mask is
    empty).  Masks are binary (non-zero = node) of any shape; each prediction has its reference's shape.

    Example:
        >>> import numpy as np
        >>> p = [np.array([1, 1, 0, 0]), np.array([1, 0])]
        >>> g = [np.array([0, 1, 1, 0]), np.array([1, 0])]
        >>> pooled_dice_iou(p, g)  # TP 2, |P| + |G| = 3 + 3, union 4
        (0.6666666666666666, 0.5)

    Raises:
        InputError: if the numbers of masks differ, there is none, or a pair's shapes differ.
    """
    return _dice_iou(_pair_counts(preds, refs))


def _case_keys(cases, n: int) -> list[Hashable]:
    if cases is None:
        return list(range(n))
    keys = list(cases)
    if len(keys) != n:
        raise InputError(f"got {len(keys)} case ids for {n} mask pairs")
    return keys


def case_dice(preds, refs, cases: Sequence[Hashable] | None = None) -> dict[Hashable, float]:
    """Dice per case, pooled over the case's mask pairs (``cases[i]`` = case of pair ``i``; None: every pair is its
    own case), cases in first-seen order.  A case whose masks are all empty scores 1, an empty prediction against
    a non-empty reference (or the reverse, e.g. a false node in an N0 patient) 0."""
    counts = _pair_counts(preds, refs)
    grouped: dict[Hashable, list[tuple[int, int, int]]] = {}
    for key, c in zip(_case_keys(cases, len(counts)), counts):
        grouped.setdefault(key, []).append(c)
    return {key: _dice_iou(cs)[0] for key, cs in grouped.items()}


def per_case_dice(preds, refs, cases: Sequence[Hashable] | None = None) -> MeanSD:
    """Mean ± sample SD over cases of :func:`case_dice` (:func:`procto.metrics.mean_sd`)."""
    return mean_sd(case_dice(preds, refs, cases).values())


# ------------------------------------------------------------------------------------------------- 2D detection
def _columns(boxes, name: str, ndim: int) -> np.ndarray:
    """``boxes`` as an ``(N, ndim)`` float array (2D: 4 columns, 3D: 6); InputError naming ``name`` otherwise."""
    try:
        arr = np.asarray(boxes, dtype=np.float64)
    except (TypeError, ValueError):
        raise InputError(f"{name} must be a numeric array of boxes") from None
    if arr.size and (arr.ndim != 2 or arr.shape[1] != ndim):
        kind = "2D (N, 4) [x1, y1, x2, y2]" if ndim == 4 else "3D (N, 6) [x1, y1, z1, x2, y2, z2]"
        raise InputError(f"{name} must be {kind} boxes, got shape {arr.shape}")
    arr = _as_boxes(arr, name, ndim)
    return arr if len(arr) else np.zeros((0, ndim))


def expand_boxes(boxes, margin: float, image_size: tuple[int, int] | None = None) -> np.ndarray:
    """2D boxes ``[x1, y1, x2, y2]`` enlarged by ``margin`` on every side, clamped to ``[0, W] × [0, H]`` when
    ``image_size`` ``(H, W)`` is given (the paper's reference boxes: tight box + 16 px, clamped)."""
    arr = _columns(boxes, "boxes", 4).copy()
    m = float(margin)
    if not np.isfinite(m) or m < 0:
        raise InputError(f"margin must be finite and >= 0, got {margin!r}")
    arr[:, :2] -= m
    arr[:, 2:] += m
    if image_size is not None:
        try:
            h, w = (float(s) for s in image_size)
        except (TypeError, ValueError):
            raise InputError(f"image_size must be (H, W), got {image_size!r}") from None
        arr[:, [0, 2]] = np.clip(arr[:, [0, 2]], 0.0, w)
        arr[:, [1, 3]] = np.clip(arr[:, [1, 3]], 0.0, h)
    return arr


def _checked_detections(detections, ndim: int, what: str) -> list[tuple[np.ndarray, np.ndarray]]:
    """``(boxes (N, ndim), scores (N,))`` per image; InputError on anything else."""
    out = []
    for i, item in enumerate(detections):
        try:
            boxes, scores = item
        except (TypeError, ValueError):
            raise InputError(f"{what}[{i}] must be a (boxes, scores) pair") from None
        b = _columns(boxes, f"{what}[{i}] boxes", ndim)
        s = np.asarray(scores, dtype=np.float64).reshape(-1)
        if len(s) != len(b):
            raise InputError(f"{what}[{i}]: {len(b)} boxes but {len(s)} scores")
        if not np.isfinite(s).all():
            raise InputError(f"{what}[{i}]: scores must be finite")
        out.append((b, s))
    return out


def ap50_windows(detections, references, *, margin: float = 0.0, image_size: tuple[int, int] | None = None,
                 max_detections: int = 100) -> float:
    """The paper protocol's AP50: COCO AP at IoU 0.5 (pycocotools, ``maxDets`` 100, area range all) with one image per
    window centre slice.

    Args:
        detections: per window, ``(boxes (K, 4), scores (K,))`` — all boxes, ranked by CCM scores (detector scores
            for the no-CCM rows).
        references: per window, the ``(M, 4)`` reference node boxes of the centre slice (empty for a window
            without a node).
        margin: pixels added on every side of each reference box: :data:`PAPER_BOX_MARGIN` for tight boxes at 224
            (the paper's setting), 0 when the boxes already carry it or for tight-box AP.
        image_size: ``(H, W)`` to clamp enlarged boxes to (as the paper's loader does); None = no clamping.
        max_detections: detections kept per window, highest scores first.

    Returns:
        AP in [0, 1]; NaN when no window has a reference box.

    Raises:
        InputError: on malformed or non-2D boxes, score/box count mismatch, or differing window counts.
    """
    dets = _checked_detections(detections, 4, "detections")
    refs = [expand_boxes(_columns(r, f"references[{i}]", 4), margin, image_size) for i, r in enumerate(references)]
    return average_precision(dets, refs, 0.5, max_detections=max_detections)


# ------------------------------------------------------------------------------------------------- 3D detection
def _instance_array(instance_map) -> np.ndarray:
    arr = np.asarray(instance_map)
    if arr.ndim != 3:
        raise InputError(f"instance map must be 3D (z, y, x), got shape {arr.shape}")
    if arr.dtype == bool:
        return arr.astype(np.int64)
    if arr.dtype.kind not in "iuf":
        raise InputError(f"instance map must hold integer ids, got dtype {arr.dtype}")
    if arr.dtype.kind == "f":
        if not np.isfinite(arr).all() or (arr != np.round(arr)).any():
            raise InputError("instance map must hold integer ids (found non-integer values)")
    if arr.size and arr.min() < 0:
        raise InputError("instance map holds negative ids")
    return arr.astype(np.int64, copy=False)


def instances_to_boxes3d(instance_map) -> tuple[np.ndarray, np.ndarray]:
    """One box per instance id > 0 of a ``(z, y, x)`` instance map.

    Returns:
        ``(boxes, ids)``: ``boxes`` ``(N, 6)`` float ``[x1, y1, z1, x2, y2, z2]`` in voxel units, continuous (the
        voxel extent: max index + 1), ``ids`` ``(N,)`` the instance ids in increasing order.

    Raises:
        InputError: if the map is not 3D or holds negative / non-integer values.
    """
    arr = _instance_array(instance_map)
    ids = np.unique(arr[arr > 0])
    if not len(ids):
        return np.zeros((0, 6)), ids
    slices = ndimage.find_objects(arr)
    boxes = np.empty((len(ids), 6))
    for k, i in enumerate(ids):
        sz, sy, sx = slices[int(i) - 1]
        boxes[k] = (sx.start, sy.start, sz.start, sx.stop, sy.stop, sz.stop)
    return boxes, ids


def node_ap3d(detections, references, iou: float = 0.1, *, max_detections: int | None = 100) -> float:
    """Per-node 3D AP (not in the paper; nnDetection's convention): COCO-style AP at IoU ``iou`` (0.1) of 3D boxes,
    one image per scan, at most ``max_detections`` per scan (COCO's 100).

    Args:
        detections: per scan, ``(boxes (K, 6), scores (K,))`` of the predicted nodes.
        references: per scan, the ``(M, 6)`` reference node boxes (:func:`instances_to_boxes3d`); N0 scans: empty.

    Returns:
        AP in [0, 1]; NaN when no scan has a reference node.
    """
    dets = _checked_detections(detections, 6, "detections")
    refs = [_columns(r, f"references[{i}]", 6) for i, r in enumerate(references)]
    return average_precision(dets, refs, iou, max_detections=max_detections)


# --------------------------------------------------------------------------------------------------------- FROC
def _interpolate(x: float, fps: np.ndarray, sens: np.ndarray) -> float:
    """Sensitivity of the FROC polyline at ``x`` FP per scan: the last operating point with ``fps <= x`` (the highest
    sensitivity where the curve is vertical), linear towards the next point, the last sensitivity beyond the curve
    (numpy's ``interp`` rule on non-decreasing ``fps``, as MONAI's ``compute_froc_score`` uses it)."""
    j = int(np.searchsorted(fps, x, side="right")) - 1
    if j >= len(fps) - 1 or fps[j] == x:
        return float(sens[j])
    return float(sens[j] + (sens[j + 1] - sens[j]) * (x - fps[j]) / (fps[j + 1] - fps[j]))


def _check_rate(rate, name: str = "fp_per_scan") -> float:
    try:
        r = float(rate)
    except (TypeError, ValueError):
        raise InputError(f"{name} must be a number, got {rate!r}") from None
    if not np.isfinite(r) or r < 0:
        raise InputError(f"{name} must be finite and >= 0, got {rate!r}")
    return r


@dataclass(frozen=True)
class FROCResult:
    """A FROC evaluation (:func:`froc`).

    Attributes:
        fp_rates: the average false positives per scan asked for.
        sensitivities: sensitivity at each of ``fp_rates`` (NaN without reference nodes).
        score: mean of ``sensitivities`` (the FROC / CPM score).
        fps_per_scan: the curve's FP per scan, one operating point per distinct score (threshold lowered one
            score at a time), starting at ``(0, 0)`` (threshold above every score); non-decreasing.
        sensitivity: the curve's sensitivity at those operating points; non-decreasing.
        thresholds: the score threshold of each operating point (``inf`` first).
        tp_scores: scores of the detections that matched a reference node (one per matched node).
        fp_scores: scores of the unmatched detections (false positives).
        n_references: number of reference nodes over all scans.
        n_scans: number of scans.
    """

    fp_rates: tuple[float, ...]
    sensitivities: tuple[float, ...]
    score: float
    fps_per_scan: np.ndarray
    sensitivity: np.ndarray
    thresholds: np.ndarray
    tp_scores: np.ndarray
    fp_scores: np.ndarray
    n_references: int
    n_scans: int

    def sensitivity_at(self, fp_per_scan: float) -> float:
        """Sensitivity at ``fp_per_scan`` average false positives per scan (interpolated along the curve, as the
        values in ``sensitivities``); NaN without reference nodes."""
        rate = _check_rate(fp_per_scan)
        if self.n_references == 0:
            return float("nan")
        return _interpolate(rate, self.fps_per_scan, self.sensitivity)


def _matched_scores(detections, references, iou: float) -> tuple[np.ndarray, np.ndarray, int, int]:
    """Scores of true- and false-positive detections over all scans, the numbers of reference nodes and of scans.  Per scan,
    detections in decreasing score order each take the unmatched reference with the highest IoU ≥ ``iou``."""
    dets = _checked_detections(detections, 6, "dets_per_scan")
    refs = [_columns(r, f"refs_per_scan[{i}]", 6) for i, r in enumerate(references)]
    if len(dets) != len(refs):
        raise InputError(f"got detections for {len(dets)} scans but references for {len(refs)}")
    if not dets:
        raise InputError("no scans to evaluate")
    tps, fps, n_ref = [], [], 0
    for (boxes, scores), ref in zip(dets, refs):
        order = np.argsort(-scores, kind="mergesort")
        is_tp = _match_image(boxes[order], ref, iou)
        tps.append(scores[order][is_tp])
        fps.append(scores[order][~is_tp])
        n_ref += len(ref)
    return np.concatenate(tps), np.concatenate(fps), n_ref, len(refs)


def froc(dets_per_scan, refs_per_scan, fp_rates: Sequence[float] = FROC_FP_RATES, iou: float = 0.1) -> FROCResult:
    """Free-response ROC of node detection over scans (not in the paper): sensitivity at average false positives
    per scan.

    A detection is a true positive when it matches a reference node by 3D box IoU ≥ ``iou`` (greedy in decreasing
    score order, one detection per reference); every other detection — a duplicate of a matched node included — is a
    false positive.  Lowering the score threshold one distinct score at a time gives the operating points
    (FP per scan, sensitivity); sensitivity at a rate is read from the polyline through them as MONAI's
    ``compute_froc_curve_data`` / ``compute_froc_score`` (CAMELYON16) do, including the operating point at the
    lowest score.

    Args:
        dets_per_scan: per scan, ``(boxes (K, 6), scores (K,))``; boxes ``[x1, y1, z1, x2, y2, z2]``.
        refs_per_scan: per scan, ``(M, 6)`` reference node boxes (:func:`instances_to_boxes3d`); N0 scans: empty.
        fp_rates: average false positives per scan to report (default 1/8 … 8).
        iou: minimum box IoU of a match (0.1, nnDetection's 3D convention).

    Raises:
        InputError: on malformed boxes, mismatched scan counts, no scan, or bad rates / IoU.
    """
    rates = tuple(_check_rate(r, "fp_rates") for r in fp_rates)
    if not rates:
        raise InputError("fp_rates is empty")
    thr = float(iou)
    if not 0.0 < thr <= 1.0:
        raise InputError(f"iou must be in (0, 1], got {iou!r}")
    tp_scores, fp_scores, n_ref, n_scans = _matched_scores(dets_per_scan, refs_per_scan, thr)
    thresholds = np.unique(np.concatenate([tp_scores, fp_scores]))[::-1]
    fps = np.array([0.0, *((fp_scores >= t).sum() / n_scans for t in thresholds)])
    sens = np.array([0.0, *((tp_scores >= t).sum() / n_ref if n_ref else np.nan for t in thresholds)])
    thresholds = np.concatenate([[np.inf], thresholds])
    values = tuple(_interpolate(r, fps, sens) if n_ref else float("nan") for r in rates)
    return FROCResult(rates, values, float(np.mean(values)), fps, sens, thresholds, tp_scores, fp_scores, n_ref,
                      n_scans)


# --------------------------------------------------------------------------------------------------- N category
def n_category(n_metastatic: Any) -> str:
    """The N category of a count of metastatic nodes: 0 → ``"N0"``, 1–3 → ``"N1"``, ≥ 4 → ``"N2"`` (AJCC 8's
    regional-node categories simplified to counts, as issue 11 says).

    Raises:
        InputError: if the count is negative or not an integer.
    """
    if isinstance(n_metastatic, (bool, np.bool_)):
        raise InputError(f"a node count must be an integer, got {n_metastatic!r}")
    try:
        n = int(n_metastatic)
        exact = n == n_metastatic
    except (TypeError, ValueError, OverflowError):
        exact = False
    if not exact:
        raise InputError(f"a node count must be an integer, got {n_metastatic!r}")
    if n < 0:
        raise InputError(f"a node count cannot be negative, got {n}")
    return "N0" if n == 0 else ("N1" if n <= 3 else "N2")


def n_category_accuracy(pred_counts: Sequence[Any], true_counts: Sequence[Any]) -> float:
    """Patient-level accuracy of the N category: fraction of patients whose predicted metastatic-node count falls in
    the category of the true count.

    Raises:
        InputError: on an empty list, differing lengths, or a count that :func:`n_category` refuses.
    """
    pred, true = list(pred_counts), list(true_counts)
    if len(pred) != len(true):
        raise InputError(f"got {len(pred)} predicted counts but {len(true)} true counts")
    if not pred:
        raise InputError("no patients to evaluate")
    return accuracy([n_category(n) for n in true], [n_category(n) for n in pred])
