"""CoSAM evaluation on windows (the paper's protocol, §6 of the facts file): AP50 per window centre slice (pycocotools'
definition, 100 detections, reference boxes with the protocol's margin), Dice and IoU pooled over every evaluated
centre slice (node class), per window and per case; beside CoSAM's own rows the ablations the paper reports — the
detector's scores instead of the CCM's (Table 4, no CCM) — and two controls: U-SAM prompted with the reference boxes
(an upper bound of the box-prompted segmentation), and the detector alone (its kept boxes filled as masks).

>>> from procto.train.cosam_eval import evaluate_cosam                               # doctest: +SKIP
>>> res = evaluate_cosam(model, MeplyDataset("data/meply", "test", protocol="paper"))
>>> res["ap50"], res["dice"], res["iou"]
"""

from __future__ import annotations

from typing import Any, Callable, Iterable

import numpy as np
import torch

from procto.errors import InputError
from procto.metrics import ap50_windows, per_case_dice, pooled_dice_iou
from procto.metrics.nodes import expand_boxes, froc, instances_to_boxes3d, n_category_accuracy, node_ap3d
from procto.nets.cosam import CoSAM, union_mask
from procto.preprocess.meply import slice_boxes

#: Reference-box margin of the whole-volume 2D AP50 in CT pixels: the paper's 16 px at 224 of a 112-px crop.
VOLUME_BOX_MARGIN = 8.0
#: FROC rates of the whole-volume protocol (false positives per scan).
VOLUME_FP_RATES = (0.125, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0)


def _box_masks(boxes: torch.Tensor, scores: torch.Tensor, shape) -> np.ndarray:
    """The detector-only control: the kept boxes (same rule as the mask union) filled."""
    if not len(boxes):
        return np.zeros(shape, bool)
    filled = torch.zeros((len(boxes), *shape), dtype=torch.bool)
    for k, (x1, y1, x2, y2) in enumerate(boxes.round().long().tolist()):
        filled[k, max(y1, 0):max(y2, 0), max(x1, 0):max(x2, 0)] = True
    return union_mask(filled, boxes.cpu(), scores.cpu()).numpy()


@torch.no_grad()
def _gt_prompted_mask(model: CoSAM, window: torch.Tensor, boxes: torch.Tensor) -> np.ndarray:
    shape = window.shape[-2:]
    if not len(boxes):
        return np.zeros(tuple(shape), bool)
    centres, sx, sy = model._centre_images(window[None])
    out = model.segment_boxes(centres[0], boxes, sx, sy)
    masks = model._back_to_window(out["logits"].argmax(dim=1) == 1, shape)
    return masks.any(dim=0).cpu().numpy()


@torch.no_grad()
def evaluate_cosam(model: CoSAM, dataset: Iterable[dict], *, device: str | torch.device = "cpu") -> dict:
    """Evaluate ``model`` on the windows of ``dataset`` (items with ``image`` (L, H, W) in [0, 1], ``label`` (H, W),
    ``boxes`` (N, 4) the reference boxes with the protocol's margin, optional ``case``) with procto.metrics' node
    metrics (:func:`~procto.metrics.ap50_windows`, :func:`~procto.metrics.pooled_dice_iou`).  Returns ``ap50`` (CCM
    scores), ``ap50_det`` (detector scores), ``dice``/``iou`` (pooled), ``dice_per_case`` (mean, sd over cases),
    ``dice_gt_prompt``, ``dice_detector_only``, ``n_windows``."""
    model = model.to(device).eval()
    dets, dets_det, refs, cases = [], [], [], []
    masks, gt_masks, box_masks, labels = [], [], [], []
    for item in dataset:
        window = torch.as_tensor(np.asarray(item["image"], np.float32), device=device)
        ref = np.asarray(item["label"]) > 0
        ref_boxes = np.asarray(item["boxes"], np.float64).reshape(-1, 4)
        out = model(window[None])[0]
        boxes, scores = out["boxes"].cpu(), out["scores"].cpu()
        dets.append((boxes.numpy(), scores.numpy()))
        dets_det.append((boxes.numpy(), out["det_scores"].cpu().numpy()))
        refs.append(ref_boxes)
        cases.append(str(item.get("case", len(cases))))
        labels.append(ref)
        masks.append(out["mask"].cpu().numpy())
        gt_masks.append(_gt_prompted_mask(model, window, torch.as_tensor(ref_boxes, dtype=torch.float32,
                                                                         device=device)))
        box_masks.append(_box_masks(boxes, out["det_scores"].cpu(), ref.shape))
    if not refs:
        nan = float("nan")
        return {"ap50": nan, "ap50_det": nan, "dice": nan, "iou": nan, "dice_per_case": (nan, nan),
                "dice_gt_prompt": nan, "dice_detector_only": nan, "n_windows": 0}
    dice, iou = pooled_dice_iou(masks, labels)
    per_case = per_case_dice(masks, labels, cases)
    return {"ap50": ap50_windows(dets, refs), "ap50_det": ap50_windows(dets_det, refs), "dice": dice, "iou": iou,
            "dice_per_case": (float(per_case.mean), float(per_case.sd) if per_case.n > 1 else 0.0),
            "dice_gt_prompt": pooled_dice_iou(gt_masks, labels)[0],
            "dice_detector_only": pooled_dice_iou(box_masks, labels)[0], "n_windows": len(refs)}


def _check_pair(name: str, ct, nodes) -> np.ndarray:
    ref = np.asarray(nodes.array)
    if ref.shape != tuple(ct.shape) or not np.allclose(nodes.spacing, ct.spacing, rtol=1e-3):
        raise InputError(f"the node map ({ref.shape} at {tuple(np.round(nodes.spacing, 3))} mm) does not match the "
                         f"CT ({tuple(ct.shape)} at {tuple(np.round(ct.spacing, 3))} mm)", name)
    return ref


def evaluate_cosam_volumes(predictor: Any, cases: Iterable[tuple[str, Any, Any]], *,
                           margin: float = VOLUME_BOX_MARGIN, fp_rates=VOLUME_FP_RATES,
                           progress: Callable[[int, str], None] | None = None) -> dict:
    """The fully automatic whole-volume protocol (not the paper's; procto's default): a
    :class:`~procto.infer.cosam.CoSAMPredictor` on each whole CT of ``cases`` (``(name, ct Volume, metastatic node
    instance Volume)``, equal geometry).  Returns ``ap50_2d`` (AP50 over every slice, pycocotools, reference boxes
    + ``margin`` px), ``ap3d`` (3D node AP at IoU 0.1), ``froc`` (:class:`~procto.metrics.FROCResult` at
    ``fp_rates``), ``dice`` / ``iou`` pooled over the cases, ``dice_per_case`` (``MeanSD``), ``n_accuracy`` (N0/N1/N2
    from the predicted metastatic-node count vs the reference count), ``n_cases``.  :class:`InputError` naming the
    case when a node map's geometry differs from its CT's."""
    dets2d, refs2d, dets3d, refs3d, preds, refs, names, n_pred, n_true = ([] for _ in range(9))
    for k, (name, ct, nodes) in enumerate(cases):
        ref = _check_pair(name, ct, nodes)
        res = predictor.predict_volume(ct)
        for det in res.detections:
            dets2d.append((det["boxes"], det["scores"]))
            refs2d.append(expand_boxes(slice_boxes(ref[det["slice"]])[0], margin, ref.shape[1:]))
        boxes, ids = instances_to_boxes3d(res.instances.array)
        score = {nd["id"]: nd["score"] for nd in res.nodes}
        dets3d.append((boxes, np.array([score[int(i)] for i in ids], dtype=np.float64)))
        ref_boxes, ref_ids = instances_to_boxes3d(ref)
        refs3d.append(ref_boxes)
        preds.append(np.asarray(res.instances.array) > 0)
        refs.append(ref > 0)
        names.append(name)
        n_pred.append(sum(bool(nd["metastatic"]) for nd in res.nodes))
        n_true.append(len(ref_ids))
        if progress is not None:
            progress(k + 1, name)
    if not names:
        raise InputError("no CT volumes to evaluate")
    dice, iou = pooled_dice_iou(preds, refs)
    return {"ap50_2d": ap50_windows(dets2d, refs2d), "ap3d": node_ap3d(dets3d, refs3d),
            "froc": froc(dets3d, refs3d, fp_rates), "dice": dice, "iou": iou,
            "dice_per_case": per_case_dice(preds, refs, names), "n_accuracy": n_category_accuracy(n_pred, n_true),
            "n_cases": len(names)}


__all__ = ["evaluate_cosam", "evaluate_cosam_volumes", "VOLUME_BOX_MARGIN", "VOLUME_FP_RATES"]
