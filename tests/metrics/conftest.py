"""Helpers for the metric tests: the numpy-2 alias surface-distance needs, and random irregular masks."""

from __future__ import annotations

import contextlib
import io

import numpy as np
import pytest
from scipy import ndimage


def patch_surface_distance_numpy2() -> None:
    """surface-distance 0.1 uses ``np.Inf``/``np.NaN``, removed in numpy 2 (its empty-mask paths fail): alias them."""
    if not hasattr(np, "Inf"):
        np.Inf = np.inf
    if not hasattr(np, "NaN"):
        np.NaN = np.nan


@pytest.fixture(scope="session")
def sd():
    """The DeepMind ``surface_distance`` module, usable under numpy 2."""
    patch_surface_distance_numpy2()
    import surface_distance

    return surface_distance


def _blob(shape, seed: int, sigma: float = 2.0, fill: float = 0.3) -> np.ndarray:
    """Irregular blobby mask: smoothed noise thresholded to keep about ``fill`` of the voxels."""
    rng = np.random.default_rng(seed)
    field = ndimage.gaussian_filter(rng.standard_normal(shape), sigma)
    return field > np.quantile(field, 1 - fill)


def _perturbed(mask: np.ndarray, seed: int, flip: float = 0.15) -> np.ndarray:
    """``mask`` shifted by one voxel on a random axis with random flips of boundary voxels."""
    rng = np.random.default_rng(seed)
    out = np.roll(mask, int(rng.choice([-1, 1])), axis=int(rng.integers(mask.ndim)))
    boundary = ndimage.binary_dilation(out) & ~ndimage.binary_erosion(out)
    return out ^ (boundary & (rng.random(mask.shape) < flip))


@pytest.fixture(scope="session")
def blob():
    """``blob(shape, seed, sigma=2.0, fill=0.3)`` → irregular boolean mask."""
    return _blob


@pytest.fixture(scope="session")
def perturbed():
    """``perturbed(mask, seed, flip=0.15)`` → shifted mask with a noisy boundary."""
    return _perturbed


def _coco_ap(detections, references, iou_threshold=0.5, max_dets=100) -> float:
    """AP from pycocotools' COCOeval (one category, iouThrs=[thr], maxDets=[max_dets], areaRng all)."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    def xywh(b):
        return [float(b[0]), float(b[1]), float(b[2] - b[0]), float(b[3] - b[1])]

    gt_anns, results = [], []
    for i, boxes in enumerate(references):
        for b in boxes:
            w = xywh(b)
            gt_anns.append({"id": len(gt_anns) + 1, "image_id": i + 1, "category_id": 1, "bbox": w,
                            "area": w[2] * w[3], "iscrowd": 0})
    for i, (boxes, scores) in enumerate(detections):
        for b, s in zip(boxes, scores):
            results.append({"image_id": i + 1, "category_id": 1, "bbox": xywh(b), "score": float(s)})
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO()
        gt.dataset = {"images": [{"id": i + 1} for i in range(len(references))], "annotations": gt_anns,
                      "categories": [{"id": 1, "name": "node"}]}
        gt.createIndex()
        dt = gt.loadRes(results) if results else COCO()
        ev = COCOeval(gt, dt, "bbox")
        ev.params.imgIds = [i + 1 for i in range(len(references))]
        ev.params.iouThrs = np.array([iou_threshold])
        ev.params.maxDets = [max_dets]
        ev.params.areaRng = [[0, 1e10]]
        ev.params.areaRngLbl = ["all"]
        ev.evaluate()
        ev.accumulate()
    precision = ev.eval["precision"][0, :, 0, 0, 0]
    return float(np.mean(precision[precision > -1])) if (precision > -1).any() else -1.0


@pytest.fixture(scope="session")
def coco_ap():
    """pycocotools' AP (the reference of procto's AP functions): ``coco_ap(detections, references, iou, max_dets)``."""
    return _coco_ap
