"""Evaluation metrics for segmentation, detection and classification, plus aggregation into the papers' tables.

One concept per module:

* :mod:`procto.metrics.overlap` — Dice, IoU, precision, recall of binary masks;
* :mod:`procto.metrics.surface` — NSD, HD95, ASD with DeepMind ``surface-distance`` definitions (fast, exact);
* :mod:`procto.metrics.labels` — all of the above per class of a label map (:func:`evaluate_labels`);
* :mod:`procto.metrics.detection` — box IoU and COCO-style AP for 2D/3D boxes (equal to pycocotools);
* :mod:`procto.metrics.classification` — ROC AUC, accuracy, sensitivity, specificity (equal to scikit-learn);
* :mod:`procto.metrics.aggregate` — mean ± sd per fold / across folds, paired t-test, formatting.

Arrays are numpy in (z, y, x) order with spacing (z, y, x) in mm (2D masks: (y, x)).  Bad input raises
:class:`procto.errors.InputError`.  Importing this package imports neither torch nor MONAI.

>>> import numpy as np
>>> from procto.metrics import dice, surface_metrics
>>> ref = np.zeros((8, 32, 32), bool); ref[2:6, 8:20, 8:20] = True
>>> dice(ref, ref)
1.0
"""

from procto.metrics.aggregate import (
    MeanSD,
    flatten,
    fold_table,
    format_mean_sd,
    format_table,
    mean_sd,
    paired_t_test,
    summarize,
)
from procto.metrics.classification import (
    accuracy,
    confusion_matrix,
    per_class_recall,
    per_class_sensitivity,
    roc_auc,
    sensitivity,
    specificity,
)
from procto.metrics.detection import average_precision, box_iou
from procto.metrics.labels import METRIC_NAMES, evaluate_labels
from procto.metrics.overlap import dice, iou, overlap_counts, precision, recall
from procto.metrics.surface import SurfaceDistances, asd, hd95, nsd, surface_distances, surface_metrics

__all__ = [
    # overlap
    "dice",
    "iou",
    "precision",
    "recall",
    "overlap_counts",
    # surface
    "nsd",
    "hd95",
    "asd",
    "surface_metrics",
    "surface_distances",
    "SurfaceDistances",
    # per class
    "evaluate_labels",
    "METRIC_NAMES",
    # detection
    "average_precision",
    "box_iou",
    # classification
    "roc_auc",
    "accuracy",
    "sensitivity",
    "specificity",
    "per_class_sensitivity",
    "per_class_recall",
    "confusion_matrix",
    # aggregation
    "MeanSD",
    "mean_sd",
    "format_mean_sd",
    "flatten",
    "summarize",
    "fold_table",
    "format_table",
    "paired_t_test",
]
