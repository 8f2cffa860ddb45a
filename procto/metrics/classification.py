"""Case-level classification metrics (e.g. T2 vs T3 staging): ROC AUC, accuracy, sensitivity, specificity,
per-class sensitivity (recall) and the confusion matrix.

Values equal scikit-learn's (``roc_auc_score``, ``accuracy_score``, ``recall_score``, ``confusion_matrix``) without
importing it.  One deliberate difference: a sensitivity/specificity whose denominator is empty (no case of that
class in ``y_true``) is NaN here, where scikit-learn warns and returns 0.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from procto.errors import InputError

__all__ = [
    "roc_auc",
    "accuracy",
    "confusion_matrix",
    "sensitivity",
    "specificity",
    "per_class_sensitivity",
    "per_class_recall",
]


def _vector(values, name: str) -> np.ndarray:
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise InputError(f"{name} must be 1-D (one value per case), got shape {arr.shape}")
    if arr.size == 0:
        raise InputError(f"{name} is empty")
    if arr.dtype.kind == "f" and np.isnan(arr).any():
        raise InputError(f"{name} contains NaN")
    if arr.dtype.kind not in "biufUSO":
        raise InputError(f"{name} has unsupported dtype {arr.dtype}")
    return arr


def _pair(a, b, name_a: str, name_b: str) -> tuple[np.ndarray, np.ndarray]:
    x, y = _vector(a, name_a), _vector(b, name_b)
    if x.shape != y.shape:
        raise InputError(f"length mismatch: {name_a} has {x.size} cases, {name_b} has {y.size}")
    return x, y


def _average_ranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks, ties sharing their average rank (like ``scipy.stats.rankdata``)."""
    order = np.argsort(values, kind="mergesort")
    ordered = values[order]
    starts = np.concatenate(([0], np.flatnonzero(ordered[1:] != ordered[:-1]) + 1))
    ends = np.concatenate((starts[1:], [values.size]))
    ranks = np.empty(values.size)
    ranks[order] = np.repeat((starts + ends + 1) / 2.0, ends - starts)
    return ranks


def roc_auc(y_true, y_score, *, positive=None) -> float:
    """Area under the ROC curve of a binary problem (Mann–Whitney statistic; ties count one half).

    Args:
        y_true: true classes, exactly two distinct values (e.g. 0/1, False/True, "T2"/"T3").
        y_score: score per case, higher = more likely ``positive``.
        positive: the positive class; default the larger of the two values (as scikit-learn).

    Raises:
        InputError: if ``y_true`` does not hold exactly two classes, lengths differ, or scores are not finite.
    """
    t, s = _pair(y_true, y_score, "y_true", "y_score")
    s = np.asarray(s, dtype=np.float64)
    if not np.isfinite(s).all():
        raise InputError("y_score must be finite")
    classes = np.unique(t)
    if classes.size != 2:
        raise InputError(f"roc_auc needs exactly two classes in y_true, got {classes.size}: {classes.tolist()[:5]}")
    pos_label = classes[1] if positive is None else positive
    if pos_label not in classes:
        raise InputError(f"positive class {positive!r} is not in y_true classes {classes.tolist()}")
    is_pos = t == pos_label
    n_pos = int(is_pos.sum())
    n_neg = t.size - n_pos
    rank_sum = _average_ranks(s)[is_pos].sum()
    return float((rank_sum - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def accuracy(y_true, y_pred) -> float:
    """Fraction of cases whose predicted class equals the true class."""
    t, p = _pair(y_true, y_pred, "y_true", "y_pred")
    return float(np.mean(t == p))


def confusion_matrix(y_true, y_pred, labels: Sequence | None = None) -> np.ndarray:
    """Counts ``C[i, j]`` of cases of true class ``labels[i]`` predicted as ``labels[j]``.

    ``labels`` defaults to the sorted union of the classes in ``y_true`` and ``y_pred``; cases whose classes are not
    in ``labels`` are ignored (as scikit-learn).
    """
    t, p = _pair(y_true, y_pred, "y_true", "y_pred")
    labs = np.union1d(t, p) if labels is None else np.asarray(labels)
    if labs.ndim != 1 or labs.size == 0:
        raise InputError("labels must be a non-empty sequence")
    index = {v: i for i, v in enumerate(labs.tolist())}
    if len(index) != labs.size:
        raise InputError("labels contains duplicates")
    ti = np.array([index.get(v, -1) for v in t.tolist()])
    pi = np.array([index.get(v, -1) for v in p.tolist()])
    keep = (ti >= 0) & (pi >= 0)
    cm = np.zeros((labs.size, labs.size), dtype=np.int64)
    np.add.at(cm, (ti[keep], pi[keep]), 1)
    return cm


def sensitivity(y_true, y_pred, *, positive=1) -> float:
    """True-positive rate (recall) of class ``positive``: ``TP / (TP + FN)``; NaN if ``y_true`` has no positive."""
    t, p = _pair(y_true, y_pred, "y_true", "y_pred")
    actual = t == positive
    n = int(actual.sum())
    return float("nan") if n == 0 else float(np.sum(actual & (p == positive)) / n)


def specificity(y_true, y_pred, *, positive=1) -> float:
    """True-negative rate of the ``positive``-vs-rest problem: ``TN / (TN + FP)``; NaN if ``y_true`` has no
    negative."""
    t, p = _pair(y_true, y_pred, "y_true", "y_pred")
    actual_neg = t != positive
    n = int(actual_neg.sum())
    return float("nan") if n == 0 else float(np.sum(actual_neg & (p != positive)) / n)


def per_class_sensitivity(y_true, y_pred, labels: Sequence | None = None) -> dict:
    """Sensitivity (recall) of every class, ``{class: TP / (TP + FN)}`` (NaN for a class absent from ``y_true``).

    Equals ``sklearn.metrics.recall_score(y_true, y_pred, average=None, labels=labels)`` where defined.
    """
    t, p = _pair(y_true, y_pred, "y_true", "y_pred")
    labs = np.union1d(t, p) if labels is None else np.asarray(labels)
    if labs.ndim != 1 or labs.size == 0:
        raise InputError("labels must be a non-empty sequence")
    out = {}
    for lab in labs.tolist():
        actual = t == lab
        n = int(actual.sum())
        out[lab] = float("nan") if n == 0 else float(np.sum(actual & (p == lab)) / n)
    return out


#: Alias of :func:`per_class_sensitivity` (recall per class).
per_class_recall = per_class_sensitivity
