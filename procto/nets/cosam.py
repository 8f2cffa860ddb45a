"""CoSAM (paper 004): a 2.5D sequence detector finds metastatic perirectal lymph nodes on a window of CT slices, U-SAM
segments each detected box on the centre slice, and a collaborative classifier (CCM) re-scores every box from the
detector's sequence feature and U-SAM's mask tokens.

>>> from procto.nets import create_model
>>> model = create_model("cosam")                       # window 9, 224 × 224, 2 classes    # doctest: +SKIP
>>> out = model.eval()(windows)                         # windows (B, 9, 224, 224) in [0, 1]  # doctest: +SKIP
>>> out[0]["boxes"], out[0]["scores"], out[0]["mask"]                                      # doctest: +SKIP

* Training (``model.train()``; ``targets``: one dict per window with ``boxes`` (N, 4) xyxy in input pixels,
  ``labels`` (N,) ones, ``mask`` (H, W) the centre slice's binary node mask): a dict of losses — the detector's
  (RPN objectness and box, RoI class and box), ``loss_sam`` (U-SAM's 0.4·CE + 0.6·Dice on one copy of the centre
  slice per sampled proposal, the target being the 8-connected node component of highest IoU with a positive
  proposal and nothing for a negative one, facts §3) and ``loss_ccm`` (cross-entropy of node vs false positive,
  positives = proposals the RoI head matched, §4); all weights 1.
* Inference: per window ``boxes`` (K, 4), ``scores`` (CCM: softmax node probability; it replaces the detector's score
  for ranking and AP, boxes unchanged), ``det_scores``, ``masks`` (K, H, W) per box and ``mask`` (H, W): the OR of the
  masks of the boxes kept by NMS (IoU 0.15) among boxes scoring ≥ 0.7 × the top score (the authors' code; the top box
  always survives).

The detector is :mod:`procto.nets.cosam_detector`; the segmenter ``usam_b`` with 2 classes (mask-token outputs through
``return_aux``); the CCM an MLP over ``concat(F_det, mean mask token)`` (facts §10.11; architecture not published).
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from procto.nets.registry import create_model, register_model

#: The authors' mask union: boxes scoring at least this fraction of the top score, NMS at this IoU.
SCORE_RATIO = 0.7
MASK_NMS_IOU = 0.15
#: U-SAM's loss weights (paper 002 / kanydao/U-SAM ``calc_loss``).
CE_WEIGHT, DICE_WEIGHT = 0.4, 0.6
#: Proposals per window prompting U-SAM in training (the authors chunk the sampled ones; a cap keeps CPU runs small).
MAX_TRAIN_PROMPTS = 16


class CollaborativeClassifier(nn.Module):
    """CCM: node vs false positive from the detector's sequence feature and U-SAM's mean mask token → 2 logits."""

    def __init__(self, det_dim: int = 256, token_dim: int = 256, hidden: int = 256):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(det_dim + token_dim, hidden), nn.ReLU(inplace=True),
                                 nn.Linear(hidden, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, 2))

    def forward(self, det_features: torch.Tensor, mask_tokens: torch.Tensor) -> torch.Tensor:
        tokens = mask_tokens.mean(dim=1) if mask_tokens.dim() == 3 else mask_tokens
        return self.mlp(torch.cat([det_features, tokens], dim=1))


def component_targets(mask: np.ndarray, boxes: np.ndarray, positive: np.ndarray) -> np.ndarray:
    """U-SAM's target per prompted box (facts §3): for a positive box the 8-connected component of ``mask`` whose
    bounding box has the highest IoU with it, for a negative box all zeros.  ``boxes`` (K, 4) xyxy in ``mask``'s
    pixels; returns (K, H, W) uint8."""
    from procto.metrics import box_iou
    from procto.preprocess.meply import components, slice_boxes

    comps = components(mask)
    out = np.zeros((len(boxes), *np.shape(mask)), np.uint8)
    comp_boxes, _ = slice_boxes(comps)
    if not len(comp_boxes) or not len(boxes):
        return out
    iou = box_iou(np.asarray(boxes, dtype=np.float64), comp_boxes)
    for k in np.flatnonzero(np.asarray(positive) > 0):
        out[k] = comps == int(np.argmax(iou[k])) + 1
    return out


def union_mask(masks: torch.Tensor, boxes: torch.Tensor, scores: torch.Tensor, ratio: float = SCORE_RATIO,
               nms_iou: float = MASK_NMS_IOU) -> torch.Tensor:
    """The window's mask: OR of the masks of the boxes kept by NMS(``nms_iou``) among boxes scoring ≥ ``ratio`` × the
    top score (zeros without boxes)."""
    from torchvision.ops import nms

    if not len(scores):
        return torch.zeros(masks.shape[-2:], dtype=torch.bool, device=masks.device)
    keep = torch.nonzero(scores >= ratio * scores.max()).flatten()
    keep = keep[nms(boxes[keep].float(), scores[keep].float(), nms_iou)]
    return masks[keep].bool().any(dim=0)


class CoSAM(nn.Module):
    """Detector + U-SAM + CCM (see the module docstring)."""

    def __init__(self, detector: nn.Module, segmenter: nn.Module, ccm: CollaborativeClassifier | None = None, *,
                 score_ratio: float = SCORE_RATIO, mask_nms_iou: float = MASK_NMS_IOU,
                 max_train_prompts: int = MAX_TRAIN_PROMPTS):
        super().__init__()
        self.detector = detector
        self.segmenter = segmenter
        self.ccm = ccm if ccm is not None else CollaborativeClassifier()
        self.score_ratio = float(score_ratio)
        self.mask_nms_iou = float(mask_nms_iou)
        self.max_train_prompts = int(max_train_prompts)
        from monai.losses import DiceCELoss

        # U-SAM's loss (= procto.train.usam.USamLoss with its defaults; tested equal)
        self.seg_loss = DiceCELoss(include_background=True, to_onehot_y=True, softmax=True, squared_pred=True,
                                   batch=True, smooth_nr=1e-5, smooth_dr=1e-5, lambda_ce=CE_WEIGHT,
                                   lambda_dice=DICE_WEIGHT)

    @property
    def window(self) -> int:
        return int(self.detector.window)

    # ------------------------------------------------------------------------------------------------ parts
    def _centre_images(self, windows: torch.Tensor) -> tuple[torch.Tensor, float, float]:
        """The centre slices as U-SAM input (B, 1, S, S) and the x/y scale from window pixels to U-SAM pixels."""
        centre = windows[:, windows.shape[1] // 2][:, None].float()
        size = int(self.segmenter.img_size)
        h, w = centre.shape[-2:]
        if (h, w) != (size, size):
            centre = F.interpolate(centre, size=(size, size), mode="bilinear", align_corners=False)
        return centre, size / w, size / h

    def segment_boxes(self, centre: torch.Tensor, boxes: torch.Tensor, sx: float, sy: float) -> dict[str, Any]:
        """U-SAM on one centre slice (1, S, S) prompted with each of ``boxes`` (K, 4, window pixels): logits
        (K, 2, S, S) and mask tokens (K, T, 256)."""
        scale = boxes.new_tensor([sx, sy, sx, sy])
        # one image, K prompts: U-SAM encodes the slice once (= K copies of it, as the authors batch them)
        out = self.segmenter(centre[None], boxes=(boxes * scale)[:, None, :], return_aux=True)
        return {"logits": out["logits"], "mask_tokens": out["mask_tokens"]}

    def _back_to_window(self, masks: torch.Tensor, shape: Sequence[int]) -> torch.Tensor:
        if tuple(masks.shape[-2:]) == tuple(shape):
            return masks
        return F.interpolate(masks[:, None].float(), size=tuple(shape), mode="nearest")[:, 0] > 0.5

    # ------------------------------------------------------------------------------------------------ training
    def _training_prompts(self, sampled: dict) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Up to ``max_train_prompts`` sampled proposals (boxes, features, labels): half positives, half negatives
        (the RoI sampler's, highest objectness first: the hard ones), either side filling what the other lacks — the
        CCM learns node vs false positive only if it sees both."""
        labels, k = sampled["labels"], self.max_train_prompts
        pos, neg = torch.nonzero(labels > 0).flatten(), torch.nonzero(labels <= 0).flatten()
        n_pos = min(len(pos), max(k - len(neg), (k + 1) // 2))
        order = torch.cat([pos[:n_pos], neg[: k - n_pos]])
        return sampled["boxes"][order].detach(), sampled["features"][order], (labels[order] > 0).long()

    def _training_losses(self, windows: torch.Tensor, targets: list[dict]) -> dict[str, torch.Tensor]:
        losses, sampled = self.detector(windows, targets)
        centres, sx, sy = self._centre_images(windows)
        seg_terms, ccm_terms = [], []
        for b, target in enumerate(targets):
            boxes, feats, labels = self._training_prompts(sampled[b])
            if not len(boxes):
                continue
            out = self.segment_boxes(centres[b], boxes, sx, sy)
            mask = np.asarray(target["mask"].detach().cpu() if torch.is_tensor(target["mask"]) else target["mask"])
            seg_t = component_targets(mask, boxes.cpu().numpy(), labels.cpu().numpy())
            seg_t = torch.as_tensor(seg_t, device=windows.device).float()[:, None]
            size = out["logits"].shape[-1]
            if seg_t.shape[-1] != size:
                seg_t = F.interpolate(seg_t, size=(size, size), mode="nearest")
            seg_terms.append(self.seg_loss(out["logits"].float(), seg_t))
            ccm_terms.append(F.cross_entropy(self.ccm(feats, out["mask_tokens"]), labels))
        zero = windows.sum() * 0.0
        losses["loss_sam"] = torch.stack(seg_terms).mean() if seg_terms else zero
        losses["loss_ccm"] = torch.stack(ccm_terms).mean() if ccm_terms else zero
        return losses

    # ------------------------------------------------------------------------------------------------ inference
    def _predict_one(self, centre: torch.Tensor, det: dict, shape: Sequence[int], sx: float, sy: float) -> dict:
        boxes, det_scores = det["boxes"], det["scores"]
        if not len(boxes):
            empty = torch.zeros((0, *shape), dtype=torch.bool, device=boxes.device)
            return {"boxes": boxes, "scores": det_scores, "det_scores": det_scores, "masks": empty,
                    "mask": torch.zeros(tuple(shape), dtype=torch.bool, device=boxes.device)}
        out = self.segment_boxes(centre, boxes, sx, sy)
        scores = torch.softmax(self.ccm(det["features"], out["mask_tokens"]), dim=1)[:, 1]
        masks = self._back_to_window(out["logits"].argmax(dim=1) == 1, shape)
        order = torch.argsort(scores, descending=True)
        boxes, scores, det_scores, masks = boxes[order], scores[order], det_scores[order], masks[order]
        return {"boxes": boxes, "scores": scores, "det_scores": det_scores, "masks": masks,
                "mask": union_mask(masks, boxes, scores, self.score_ratio, self.mask_nms_iou)}

    def forward(self, windows: torch.Tensor, targets: list[dict] | None = None):
        """``windows`` (B, L, H, W) in [0, 1]; training → dict of losses, eval → one dict per window."""
        if windows.dim() != 4 or windows.shape[1] != self.window:
            raise ValueError(f"expected windows of shape (B, {self.window}, H, W), got {tuple(windows.shape)}")
        if self.training:
            if targets is None or len(targets) != windows.shape[0]:
                raise ValueError("training needs one target dict (boxes, labels, mask) per window")
            return self._training_losses(windows, targets)
        detections = self.detector(windows)
        centres, sx, sy = self._centre_images(windows)
        return [self._predict_one(centres[b], det, windows.shape[-2:], sx, sy) for b, det in enumerate(detections)]


# ---------------------------------------------------------------------------------------------------------- builders
#: Small settings for CPU tests: the detector's small preset (ResNet-18-FPN, D = 128, its input size) keeping 20 boxes,
#: torchvision's anchors 32…512 scaled to the unresized 224 input (16…256: nodes are 14–60 px there), 64 sampled RoIs
#: per window instead of 512 (a 1-node window gives a few positives; 64 halves the step time and the classifier learns
#: the nodes instead of the background prior), a 1-block 64-wide ViT in U-SAM.
SMALL_DETECTOR = {"small": True, "box_detections_per_img": 20, "anchor_sizes": (16, 32, 64, 128, 256),
                  "box_batch_size_per_image": 64}
SMALL_SEGMENTER = {"encoder_depth": 1, "encoder_embed_dim": 64, "cnn_channels": (8, 8, 16, 16)}


@register_model("cosam_detector")
def cosam_detector(window: int = 9, num_classes: int = 2, small: bool = False, **kwargs) -> nn.Module:
    """CoSAM's 2.5D sequence detector (window 5…15, odd; paper default 9)."""
    from procto.nets.cosam_detector import build_cosam_detector

    return build_cosam_detector(window=window, num_classes=num_classes, **{**(SMALL_DETECTOR if small else {}),
                                                                           **kwargs})


@register_model("cosam")
def cosam(window: int = 9, img_size: int = 224, small: bool = False, detector_kwargs: dict | None = None,
          segmenter_kwargs: dict | None = None, **kwargs) -> CoSAM:
    """CoSAM: ``cosam_detector`` + ``usam_b`` (2 classes, ``img_size``) + CCM; ``small=True`` shrinks both encoders
    for CPU tests."""
    det = cosam_detector(window=window, small=small, **(detector_kwargs or {}))
    seg_kw = {**(SMALL_SEGMENTER if small else {}), **(segmenter_kwargs or {})}
    seg = create_model("usam_b", num_classes=2, img_size=img_size, **seg_kw)
    token_dim = seg.mask_decoder.transformer_dim
    ccm = CollaborativeClassifier(det_dim=int(getattr(det, "d_model", 256)), token_dim=int(token_dim))
    return CoSAM(det, seg, ccm, **kwargs)


__all__ = ["CoSAM", "CollaborativeClassifier", "component_targets", "union_mask", "cosam", "cosam_detector",
           "SCORE_RATIO", "MASK_NMS_IOU", "SMALL_DETECTOR", "SMALL_SEGMENTER"]
