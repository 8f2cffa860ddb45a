"""Voxel-overlap metrics of binary masks: Dice, IoU (Jaccard), precision and recall.

All four take a predicted and a reference mask of the same shape (any dimensionality; boolean, or numeric with
non-zero = foreground) and return a Python ``float``.

Empty-mask rules (no NaN is ever returned):

===================================  =====  =====  ==========  ==========
case                                 Dice   IoU    precision   recall
===================================  =====  =====  ==========  ==========
both empty                           1      1      1           1
prediction empty, reference not      0      0      0           0
reference empty, prediction not      0      0      0           0
===================================  =====  =====  ==========  ==========

i.e. an empty denominator gives 1 when the other mask is empty too (nothing to find, nothing found) and 0 otherwise
(precision with an empty prediction but a non-empty reference is 0: the structure was missed).
"""

from __future__ import annotations

import numpy as np

from procto.metrics._checks import mask_pair

__all__ = ["overlap_counts", "scores_from_counts", "dice", "iou", "precision", "recall"]


def overlap_counts(pred, ref) -> tuple[int, int, int]:
    """Voxel counts ``(tp, fp, fn)`` of ``pred`` against ``ref``.

    Raises:
        InputError: if the shapes differ.
    """
    p, r = mask_pair(pred, ref)
    n_pred = int(np.count_nonzero(p))
    n_ref = int(np.count_nonzero(r))
    tp = int(np.count_nonzero(np.logical_and(p, r))) if n_pred and n_ref else 0
    return tp, n_pred - tp, n_ref - tp


def scores_from_counts(tp: int, fp: int, fn: int) -> dict[str, float]:
    """Dice, IoU, precision and recall from voxel counts, with the empty-mask rules of this module."""
    empty_union = tp + fp + fn == 0
    return {
        "dice": 1.0 if empty_union else 2 * tp / (2 * tp + fp + fn),
        "iou": 1.0 if empty_union else tp / (tp + fp + fn),
        "precision": (1.0 if fn == 0 else 0.0) if tp + fp == 0 else tp / (tp + fp),
        "recall": (1.0 if fp == 0 else 0.0) if tp + fn == 0 else tp / (tp + fn),
    }


def dice(pred, ref) -> float:
    """Sørensen–Dice coefficient ``2|P∩R| / (|P| + |R|)``; 1 if both masks are empty.

    Example:
        >>> import numpy as np
        >>> dice(np.array([1, 1, 0, 0]), np.array([0, 1, 1, 0]))
        0.5
    """
    return scores_from_counts(*overlap_counts(pred, ref))["dice"]


def iou(pred, ref) -> float:
    """Intersection over union (Jaccard index) ``|P∩R| / |P∪R|``; 1 if both masks are empty."""
    return scores_from_counts(*overlap_counts(pred, ref))["iou"]


def precision(pred, ref) -> float:
    """Positive predictive value ``|P∩R| / |P|``; 1 if both masks are empty, 0 if only the prediction is empty."""
    return scores_from_counts(*overlap_counts(pred, ref))["precision"]


def recall(pred, ref) -> float:
    """Sensitivity ``|P∩R| / |R|``; 1 if both masks are empty, 0 if only the reference is empty."""
    return scores_from_counts(*overlap_counts(pred, ref))["recall"]
