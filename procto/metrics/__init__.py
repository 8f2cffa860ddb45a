"""Evaluation metrics for segmentation, detection and classification, plus aggregation into the papers' tables.

One concept per module:

* :mod:`procto.metrics.overlap` — Dice, IoU, precision, recall of binary masks;
* :mod:`procto.metrics.surface` — NSD, HD95, ASD with DeepMind ``surface-distance`` definitions (fast, exact);
* :mod:`procto.metrics.labels` — all of the above per class of a label map (:func:`evaluate_labels`);
* :mod:`procto.metrics.detection` — box IoU and COCO-style AP for 2D/3D boxes (equal to pycocotools);
* :mod:`procto.metrics.nodes` — lymph nodes (CoSAM): pooled Dice/IoU, AP50 per window, 3D node AP, FROC, N category;
* :mod:`procto.metrics.shape` — measurements in patient mm through the direction matrix (RECIST axes on axial
  slabs, craniocaudal length, circumferential extent) for :mod:`procto.report`;
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
from procto.metrics.nodes import (
    FROC_FP_RATES,
    PAPER_BOX_MARGIN,
    FROCResult,
    ap50_windows,
    case_dice,
    expand_boxes,
    froc,
    instances_to_boxes3d,
    n_category,
    n_category_accuracy,
    node_ap3d,
    per_case_dice,
    pooled_dice_iou,
)
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
    # lymph nodes (CoSAM)
    "pooled_dice_iou",
    "case_dice",
    "per_case_dice",
    "expand_boxes",
    "ap50_windows",
    "PAPER_BOX_MARGIN",
    "instances_to_boxes3d",
    "node_ap3d",
    "froc",
    "FROCResult",
    "FROC_FP_RATES",
    "n_category",
    "n_category_accuracy",
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
