"""CoSAM's 2.5D sequence detector (paper 004 §4.2, Eq. 1–4; facts §2) on torchvision's Faster R-CNN parts.

A window of L CT slices ``(B, L, H, W)`` in [0, 1]: every slice, grey repeated to 3 channels, passes torchvision's
``GeneralizedRCNNTransform`` (ImageNet mean/std, resize to ``min_size``/``max_size``) and a ResNet-FPN backbone built
without weights (all B·L slices as one batch).

* Stage 1: torchvision's ``RegionProposalNetwork`` on the centre slice c = L // 2 with the centre slice's targets; its
  features per FPN level are ``alpha·mean(F_{c−2…c+2}) + (1 − alpha)·F_c`` (the authors' ``wsize = 5``,
  ``alpha = 0.5``; the range clamped to the window).
* Stage 2: each proposal is a *sequence proposal*, the same 2D box on every slice: RoIAlign 7×7 on all L slices'
  features (Eq. 1) → one token per slice (a ``TwoMLPHead`` to D) + a learnable positional embedding over the slice
  axis (Eq. 2) → ``nn.TransformerEncoder`` over the L tokens (Eq. 3) → ``nn.TransformerDecoder`` in which one learnable
  query, shared by all proposals, cross-attends to the proposal's L tokens (Eq. 4) → F_det (D) → torchvision's
  ``FastRCNNPredictor`` (class logits, box deltas with the box coder (10, 10, 5, 5)).

Matcher, sampler, losses (``fastrcnn_loss``, the RPN's) and post-processing (score 0.05, NMS 0.5, 100 detections) are
torchvision's ``RoIHeads``/``RegionProposalNetwork``; every setting the paper leaves open is a default of torchvision's
``FasterRCNN`` (read from its signature, :data:`TORCHVISION_DEFAULTS`).  Nothing is downloaded.

>>> det = build_cosam_detector(window=9)           # ResNet-50-FPN, the 800-px resize       # doctest: +SKIP
>>> losses, sampled = det.train()(windows, targets) # losses dict; per window boxes/features/labels  # doctest: +SKIP
>>> out = det.eval()(windows)                       # per window boxes, scores, labels, features   # doctest: +SKIP

``targets``: one dict per window with ``boxes`` (N, 4) xyxy in input pixels of the centre slice and ``labels`` (N,)
(ones; default ones).  Training returns ``(losses, sampled)``: the four losses (``loss_objectness``,
``loss_rpn_box_reg``, ``loss_classifier``, ``loss_box_reg``) and per window the RoI head's sampled proposals
(``boxes`` in input pixels, ``features`` F_det (N, D) with gradient, ``labels`` 1 where the matcher made the proposal
a positive (IoU ≥ 0.5), else 0).  Evaluation returns per window ``boxes`` (K, 4) in input pixels, ``scores``,
``labels`` and ``features`` (K, D) of the kept boxes.
"""

from __future__ import annotations

import inspect
from collections import OrderedDict
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models import resnet
from torchvision.models.detection.backbone_utils import BackboneWithFPN, _resnet_fpn_extractor
from torchvision.models.detection.faster_rcnn import FasterRCNN, FastRCNNPredictor, TwoMLPHead, _default_anchorgen
from torchvision.models.detection.generalized_rcnn import GeneralizedRCNN
from torchvision.models.detection.image_list import ImageList
from torchvision.models.detection.roi_heads import RoIHeads, fastrcnn_loss
from torchvision.models.detection.rpn import RegionProposalNetwork, RPNHead
from torchvision.models.detection.transform import GeneralizedRCNNTransform, resize_boxes
from torchvision.ops import MultiScaleRoIAlign
from torchvision.ops import boxes as box_ops
from torchvision.ops.feature_pyramid_network import FeaturePyramidNetwork, LastLevelMaxPool

from procto.errors import InputError

#: Window sizes of the paper's ablation (Table 3): odd, 5 … 15; 9 is the paper's choice.
MIN_WINDOW, MAX_WINDOW, DEFAULT_WINDOW = 5, 15, 9
#: The authors' RPN feature fusion: ``wsize`` slices around the centre, weight ``alpha`` on their mean.
FUSE_WINDOW, FUSE_ALPHA = 5, 0.5
#: ImageNet statistics (torchvision's detection defaults; the authors copy them into U-SAM's normalisation).
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
#: torchvision's ``FasterRCNN`` keyword defaults (anchors come from its ``_default_anchorgen``).
TORCHVISION_DEFAULTS: dict[str, Any] = {
    name: p.default for name, p in inspect.signature(FasterRCNN.__init__).parameters.items()
    if p.default is not inspect.Parameter.empty}
#: ``FasterRCNN`` keywords the builder passes on (the rest it sets itself); plus the transform's.
TORCHVISION_KWARGS = (set(TORCHVISION_DEFAULTS) - {"num_classes", "min_size", "max_size", "rpn_head", "box_head",
                                                   "box_predictor"}) | {"size_divisible", "fixed_size"}
#: Small CPU preset (``small=True``): ResNet-18-FPN with 64 FPN channels, D = 128, 4 heads, the 224 input unresized.
SMALL_PRESET: dict[str, Any] = {"backbone": "resnet18", "fpn_channels": 64, "d_model": 128, "heads": 4,
                                "min_size": 224, "max_size": 224}
RESNETS = ("resnet18", "resnet34", "resnet50", "resnet101", "resnet152", "resnext50_32x4d", "resnext101_32x8d",
           "wide_resnet50_2", "wide_resnet101_2")


def check_window(window: int) -> int:
    """``window`` as an int if it is odd and within 5…15 (the paper's ablation range), else :class:`InputError`."""
    if isinstance(window, bool) or int(window) != window or not (MIN_WINDOW <= window <= MAX_WINDOW) or window % 2 == 0:
        raise InputError(f"the window must be an odd number of slices from {MIN_WINDOW} to {MAX_WINDOW}, got {window}")
    return int(window)


def fusion_range(window: int, fuse_window: int = FUSE_WINDOW) -> tuple[int, int]:
    """Slice indices ``[lo, hi)`` whose features are averaged for the RPN: ``fuse_window`` slices around the centre
    ``window // 2``, clamped to the window."""
    c, half = window // 2, fuse_window // 2
    return max(0, c - half), min(window, c + half + 1)


def build_backbone(name: str = "resnet50", trainable_layers: int = 5, fpn_channels: int = 256,
                   norm_layer: type[nn.Module] = nn.BatchNorm2d) -> BackboneWithFPN:
    """torchvision's ResNet-FPN (levels ``0``–``3`` and ``pool``) without weights.  ``norm_layer`` defaults to
    BatchNorm as torchvision uses for an untrained backbone; ``fpn_channels`` other than 256 replaces the FPN by one of
    that width."""
    if name not in RESNETS:
        raise ValueError(f"unknown backbone {name!r}; known: {', '.join(RESNETS)}")
    net = getattr(resnet, name)(weights=None, norm_layer=norm_layer)
    backbone = _resnet_fpn_extractor(net, trainable_layers)
    if fpn_channels != backbone.out_channels:
        in_channels = [block[0].in_channels for block in backbone.fpn.inner_blocks]
        backbone.fpn = FeaturePyramidNetwork(in_channels, fpn_channels, extra_blocks=LastLevelMaxPool())
        backbone.out_channels = fpn_channels
    return backbone


class SliceSequenceHead(nn.Module):
    """Eq. 1–4 after RoIAlign: per-slice RoI features ``(N, L, C, r, r)`` → tokens (N, L, D) + positional embedding →
    transformer encoder over the L tokens → decoder with one learnable query → F_det ``(N, D)``."""

    def __init__(self, in_features: int, window: int, d_model: int = 256, encoder_layers: int = 2,
                 decoder_layers: int = 1, heads: int = 8, dim_feedforward: int | None = None, dropout: float = 0.1,
                 norm_first: bool = True):
        super().__init__()
        if d_model % heads:
            raise ValueError(f"d_model ({d_model}) must be divisible by heads ({heads})")
        self.window, self.d_model = int(window), int(d_model)
        ff = dim_feedforward or 4 * d_model
        self.token = TwoMLPHead(in_features, d_model)
        self.pos_embed = nn.Parameter(torch.zeros(1, window, d_model))
        self.query = nn.Parameter(torch.zeros(1, 1, d_model))
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.normal_(self.query, std=1.0)
        enc = nn.TransformerEncoderLayer(d_model, heads, ff, dropout, batch_first=True, norm_first=norm_first)
        dec = nn.TransformerDecoderLayer(d_model, heads, ff, dropout, batch_first=True, norm_first=norm_first)
        self.encoder = nn.TransformerEncoder(enc, encoder_layers, nn.LayerNorm(d_model) if norm_first else None,
                                             enable_nested_tensor=False)
        self.decoder = nn.TransformerDecoder(dec, decoder_layers, nn.LayerNorm(d_model) if norm_first else None)

    def tokens(self, x: torch.Tensor) -> torch.Tensor:
        """Per-slice tokens with positions (N, L, D) of RoI features (N, L, C, r, r)."""
        n, length = x.shape[:2]
        if length != self.window:
            raise ValueError(f"expected {self.window} slices per proposal, got {length}")
        return self.token(x.flatten(0, 1)).view(n, length, self.d_model) + self.pos_embed

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.tokens(x)
        if not len(tokens):
            return tokens.new_zeros((0, self.d_model))
        memory = self.encoder(tokens)
        return self.decoder(self.query.expand(len(tokens), -1, -1), memory)[:, 0]


class SequenceRoIHeads(RoIHeads):
    """torchvision's ``RoIHeads`` (matcher, sampler, box coder, ``fastrcnn_loss``, NMS settings) with a sequence box
    head: each proposal is pooled on all L slices of its window and classified from F_det."""

    def __init__(self, box_roi_pool: MultiScaleRoIAlign, box_head: SliceSequenceHead, box_predictor: nn.Module,
                 *, eval_chunk: int | None = 256, **roi_kwargs: Any):
        super().__init__(box_roi_pool, box_head, box_predictor, **roi_kwargs)
        self.window = box_head.window
        self.eval_chunk = eval_chunk

    def sequence_features(self, features: dict[str, torch.Tensor], boxes: Sequence[torch.Tensor],
                          image_shapes: list[tuple[int, int]]) -> torch.Tensor:
        """F_det (ΣN, D) of the boxes of each window (transformed pixels); ``features`` and ``image_shapes`` hold
        B·L slices, window b's slice j at b·L + j.  Outside training, window by window and ``eval_chunk`` boxes at a
        time (the L·N pooled RoIs are the memory peak)."""
        chunk, length = self.eval_chunk, self.window
        if self.training or not chunk or sum(len(b) for b in boxes) <= chunk:
            return self._pooled_sequences(features, boxes, image_shapes)
        parts = []
        for i, window_boxes in enumerate(boxes):
            part = slice(i * length, (i + 1) * length)
            feats = OrderedDict((k, v[part]) for k, v in features.items())
            parts += [self._pooled_sequences(feats, [b], image_shapes[part]) for b in window_boxes.split(chunk)]
        return torch.cat(parts)

    def _pooled_sequences(self, features: dict[str, torch.Tensor], boxes: Sequence[torch.Tensor],
                          image_shapes: list[tuple[int, int]]) -> torch.Tensor:
        length = self.window
        pooled = self.box_roi_pool(features, [b for b in boxes for _ in range(length)], image_shapes)
        counts = [len(b) for b in boxes]
        chunks = pooled.split([n * length for n in counts])
        seq = torch.cat([c.view(length, n, *c.shape[1:]).transpose(0, 1) for c, n in zip(chunks, counts)])
        return self.box_head(seq)

    def postprocess_sequences(self, class_logits: torch.Tensor, box_regression: torch.Tensor,
                              proposals: list[torch.Tensor], image_shapes: list[tuple[int, int]],
                              features: torch.Tensor) -> list[dict[str, torch.Tensor]]:
        """torchvision's ``postprocess_detections`` (decode, clip, score > ``score_thresh``, drop empty boxes, NMS per
        class, top ``detections_per_img``) keeping track of each box's proposal, whose F_det is returned too."""
        num_fg = class_logits.shape[-1] - 1
        counts = [len(p) for p in proposals]
        pred_boxes = self.box_coder.decode(box_regression, proposals)
        pred_scores = F.softmax(class_logits, -1)
        results = []
        for boxes, scores, feats, shape in zip(pred_boxes.split(counts), pred_scores.split(counts),
                                               features.split(counts), image_shapes):
            boxes = box_ops.clip_boxes_to_image(boxes, shape)[:, 1:].reshape(-1, 4)
            labels = torch.arange(1, num_fg + 1, device=scores.device).repeat(len(scores))
            source = torch.arange(len(scores), device=scores.device).repeat_interleave(num_fg)
            scores = scores[:, 1:].reshape(-1)
            keep = torch.where(scores > self.score_thresh)[0]
            keep = keep[box_ops.remove_small_boxes(boxes[keep], min_size=1e-2)]
            keep = keep[box_ops.batched_nms(boxes[keep], scores[keep], labels[keep], self.nms_thresh)]
            keep = keep[: self.detections_per_img]
            results.append({"boxes": boxes[keep], "scores": scores[keep], "labels": labels[keep],
                            "features": feats[source[keep]]})
        return results

    def forward(self, features: dict[str, torch.Tensor], proposals: list[torch.Tensor],
                image_shapes: list[tuple[int, int]], targets: list[dict[str, torch.Tensor]] | None = None):
        """``proposals``/``targets`` per window, ``features``/``image_shapes`` per slice.  Training → (sampled,
        losses), evaluation → (detections, {}), all in transformed pixels."""
        labels = regression_targets = None
        if self.training:
            proposals, _, labels, regression_targets = self.select_training_samples(proposals, targets)
        f_det = self.sequence_features(features, proposals, image_shapes)
        class_logits, box_regression = self.box_predictor(f_det)
        if not self.training:
            centre = image_shapes[self.window // 2::self.window]
            return self.postprocess_sequences(class_logits, box_regression, proposals, centre, f_det), {}
        loss_classifier, loss_box_reg = fastrcnn_loss(class_logits, box_regression, labels, regression_targets)
        sampled = [{"boxes": p, "features": f, "labels": (lab > 0).long()}
                   for p, f, lab in zip(proposals, f_det.split([len(p) for p in proposals]), labels)]
        return sampled, {"loss_classifier": loss_classifier, "loss_box_reg": loss_box_reg}


class SequenceDetector(GeneralizedRCNN):
    """CoSAM's sequence detector (module docstring): torchvision's ``GeneralizedRCNN`` parts (``transform``,
    ``backbone``, ``rpn``, ``roi_heads``) with a window of L slices per sample."""

    def __init__(self, backbone: nn.Module, rpn: RegionProposalNetwork, roi_heads: SequenceRoIHeads,
                 transform: GeneralizedRCNNTransform, fuse_window: int = FUSE_WINDOW, fuse_alpha: float = FUSE_ALPHA):
        super().__init__(backbone, rpn, roi_heads, transform)
        self.window = check_window(roi_heads.window)
        if fuse_window < 1 or fuse_window % 2 == 0:
            raise ValueError(f"fuse_window must be odd and positive, got {fuse_window}")
        self.fuse_window, self.fuse_alpha = int(fuse_window), float(fuse_alpha)

    @property
    def d_model(self) -> int:
        """The width D of F_det."""
        return self.roi_heads.box_head.d_model

    # ---------------------------------------------------------------------------------------------------- checks
    def _check_windows(self, windows: torch.Tensor) -> torch.Tensor:
        if not torch.is_tensor(windows) or windows.dim() != 4:
            shape = tuple(windows.shape) if torch.is_tensor(windows) else type(windows).__name__
            raise InputError(f"windows must be a (B, L, H, W) tensor, got {shape}")
        if windows.shape[1] != self.window:
            raise InputError(f"the detector takes windows of {self.window} slices, got {windows.shape[1]}")
        if not windows.is_floating_point():
            raise InputError(f"windows must hold floats in [0, 1], got {windows.dtype}")
        if windows.shape[0] == 0 or min(windows.shape[2:]) == 0:
            raise InputError(f"empty windows {tuple(windows.shape)}")
        return windows.to(next(self.parameters()).dtype)

    def _check_targets(self, targets: Sequence[dict] | None, batch: int, device: torch.device) -> list[dict]:
        if targets is None or len(targets) != batch:
            raise ValueError(f"training needs one target dict per window ({batch}), got "
                             f"{'none' if targets is None else len(targets)}")
        out = []
        for i, t in enumerate(targets):
            boxes = torch.as_tensor(t["boxes"], dtype=torch.float32, device=device)
            if boxes.numel() == 0:
                boxes = boxes.reshape(0, 4)
            if boxes.dim() != 2 or boxes.shape[1] != 4:
                raise ValueError(f"target {i}: boxes must be (N, 4), got {tuple(boxes.shape)}")
            if not torch.isfinite(boxes).all() or (boxes[:, 2:] <= boxes[:, :2]).any():
                raise ValueError(f"target {i}: every box needs x2 > x1 and y2 > y1 (finite), got {boxes.tolist()}")
            labels = t.get("labels")
            labels = (torch.ones(len(boxes), dtype=torch.int64, device=device) if labels is None
                      else torch.as_tensor(labels, device=device).long().reshape(-1))
            if len(labels) != len(boxes):
                raise ValueError(f"target {i}: {len(labels)} labels for {len(boxes)} boxes")
            out.append({"boxes": boxes, "labels": labels})
        return out

    # ---------------------------------------------------------------------------------------------------- parts
    def encode(self, windows: torch.Tensor, targets: list[dict] | None = None):
        """Transform every slice (grey → 3 channels) and run the backbone on all B·L slices: (ImageList of the
        slices, FPN features per level (B·L, C, h, w), the windows' targets in transformed pixels or None)."""
        b, length, h, w = windows.shape
        slices = list(windows.reshape(b * length, 1, h, w).expand(-1, 3, -1, -1))
        slice_targets = None if targets is None else [t for t in targets for _ in range(length)]
        images, slice_targets = self.transform(slices, slice_targets)
        features = self.backbone(images.tensors)
        if isinstance(features, torch.Tensor):
            features = OrderedDict([("0", features)])
        centre_targets = None if slice_targets is None else slice_targets[length // 2::length]
        return images, features, centre_targets

    def fuse_centre(self, features: dict[str, torch.Tensor], batch: int) -> OrderedDict:
        """The RPN's input: per level ``alpha·mean(F[lo:hi]) + (1 − alpha)·F_c`` of each window (B, C, h, w)."""
        lo, hi = fusion_range(self.window, self.fuse_window)
        c, a = self.window // 2, self.fuse_alpha
        out = OrderedDict()
        for name, f in features.items():
            f = f.view(batch, self.window, *f.shape[1:])
            out[name] = a * f[:, lo:hi].mean(dim=1) + (1.0 - a) * f[:, c]
        return out

    def sequence_features(self, windows: torch.Tensor, boxes: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """F_det (N_b, D) of given boxes (N_b, 4) in input pixels, one tensor per window (e.g. reference boxes);
        BatchNorm and dropout follow the module's mode."""
        windows = self._check_windows(windows)
        if len(boxes) != windows.shape[0]:
            raise ValueError(f"{len(boxes)} box sets for {windows.shape[0]} windows")
        images, features, _ = self.encode(windows)
        size = images.image_sizes[self.window // 2]
        scaled = [resize_boxes(torch.as_tensor(bx, dtype=torch.float32, device=windows.device).reshape(-1, 4),
                               list(windows.shape[-2:]), list(size)) for bx in boxes]
        f_det = self.roi_heads.sequence_features(features, scaled, images.image_sizes)
        return list(f_det.split([len(s) for s in scaled]))

    def forward(self, windows: torch.Tensor, targets: Sequence[dict] | None = None):
        """``windows`` (B, L, H, W) in [0, 1]; training → ``(losses, sampled)``, evaluation → detections per window
        (module docstring)."""
        windows = self._check_windows(windows)
        b, length, h, w = windows.shape
        targets = self._check_targets(targets, b, windows.device) if self.training else None
        images, features, centre_targets = self.encode(windows, targets)
        centre = list(range(length // 2, b * length, length))
        rpn_images = ImageList(images.tensors[centre], [images.image_sizes[i] for i in centre])
        proposals, rpn_losses = self.rpn(rpn_images, self.fuse_centre(features, b), centre_targets)
        result, roi_losses = self.roi_heads(features, proposals, images.image_sizes, centre_targets)
        if not self.training:
            return self.transform.postprocess(result, rpn_images.image_sizes, [(h, w)] * b)
        for r, size in zip(result, rpn_images.image_sizes):
            r["boxes"] = resize_boxes(r["boxes"], list(size), [h, w])
        return {**rpn_losses, **roi_losses}, result


def _rpn(channels: int, tv: dict[str, Any]) -> RegionProposalNetwork:
    anchors = tv["rpn_anchor_generator"] or _default_anchorgen()
    head = RPNHead(channels, anchors.num_anchors_per_location()[0])
    pre_nms = {"training": tv["rpn_pre_nms_top_n_train"], "testing": tv["rpn_pre_nms_top_n_test"]}
    post_nms = {"training": tv["rpn_post_nms_top_n_train"], "testing": tv["rpn_post_nms_top_n_test"]}
    return RegionProposalNetwork(
        anchors, head, tv["rpn_fg_iou_thresh"], tv["rpn_bg_iou_thresh"], tv["rpn_batch_size_per_image"],
        tv["rpn_positive_fraction"], pre_nms, post_nms, tv["rpn_nms_thresh"], score_thresh=tv["rpn_score_thresh"])


def build_cosam_detector(window: int = DEFAULT_WINDOW, num_classes: int = 2, backbone: str = "resnet50",
                         trainable_layers: int = 5, d_model: int = 256, encoder_layers: int = 2,
                         decoder_layers: int = 1, heads: int = 8, min_size: int = 800, max_size: int = 1333, *,
                         small: bool = False, fpn_channels: int = 256, dim_feedforward: int | None = None,
                         dropout: float = 0.1, norm_first: bool = True, fuse_window: int = FUSE_WINDOW,
                         fuse_alpha: float = FUSE_ALPHA,
                         eval_chunk: int | None = 256, anchor_sizes: Sequence[int] | None = None,
                         **torchvision_kwargs: Any) -> SequenceDetector:
    """CoSAM's sequence detector (module docstring).  Defaults: ResNet-50-FPN without weights, all layers trainable,
    D = 256, 2 encoder layers, 1 decoder layer, 8 heads (the paper gives no sizes), torchvision's 800/1333 resize.
    ``small=True`` takes :data:`SMALL_PRESET` for every argument left at its default (CPU tests).  ``eval_chunk``:
    proposals per pass of the sequence head outside training (memory; None = all at once).  ``anchor_sizes``: one anchor
    size per FPN level (pixels after the transform's resize; default torchvision's 32 … 512) with ratios 0.5/1/2 —
    plain numbers, so a checkpoint records them (small inputs without the 800-px resize need smaller anchors).
    ``torchvision_kwargs``: ``FasterRCNN``'s keywords (:data:`TORCHVISION_KWARGS`, e.g. ``box_score_thresh``,
    ``rpn_post_nms_top_n_test``, ``rpn_anchor_generator``, ``box_roi_pool``, ``image_mean``) and the transform's
    ``size_divisible``/``fixed_size``; defaults :data:`TORCHVISION_DEFAULTS`."""
    if small:
        args = dict(backbone=backbone, d_model=d_model, heads=heads, min_size=min_size, max_size=max_size,
                    fpn_channels=fpn_channels)
        defaults = inspect.signature(build_cosam_detector).parameters
        args = {k: (SMALL_PRESET[k] if v == defaults[k].default else v) for k, v in args.items()}
        return build_cosam_detector(window, num_classes, trainable_layers=trainable_layers,
                                    encoder_layers=encoder_layers, decoder_layers=decoder_layers,
                                    dim_feedforward=dim_feedforward, dropout=dropout, norm_first=norm_first,
                                    fuse_window=fuse_window,
                                    fuse_alpha=fuse_alpha, eval_chunk=eval_chunk, anchor_sizes=anchor_sizes, **args,
                                    **torchvision_kwargs)
    window = check_window(window)
    if num_classes < 2:
        raise ValueError(f"num_classes counts the background: at least 2, got {num_classes}")
    unknown = sorted(set(torchvision_kwargs) - TORCHVISION_KWARGS)
    if unknown:
        raise TypeError(f"unknown detector arguments {unknown}; torchvision's are {sorted(TORCHVISION_KWARGS)}")
    tv = {**TORCHVISION_DEFAULTS, **torchvision_kwargs}
    if anchor_sizes is not None:
        if tv["rpn_anchor_generator"] is not None:
            raise TypeError("give anchor_sizes or rpn_anchor_generator, not both")
        from torchvision.models.detection.anchor_utils import AnchorGenerator

        sizes = tuple((int(a),) for a in anchor_sizes)
        tv["rpn_anchor_generator"] = AnchorGenerator(sizes, ((0.5, 1.0, 2.0),) * len(sizes))
    net = build_backbone(backbone, trainable_layers, fpn_channels)
    roi_pool = tv["box_roi_pool"] or MultiScaleRoIAlign(featmap_names=["0", "1", "2", "3"], output_size=7,
                                                        sampling_ratio=2)
    resolution = roi_pool.output_size[0]
    head = SliceSequenceHead(net.out_channels * resolution ** 2, window, d_model, encoder_layers, decoder_layers,
                             heads, dim_feedforward, dropout, norm_first)
    roi_heads = SequenceRoIHeads(
        roi_pool, head, FastRCNNPredictor(d_model, num_classes), fg_iou_thresh=tv["box_fg_iou_thresh"],
        bg_iou_thresh=tv["box_bg_iou_thresh"], batch_size_per_image=tv["box_batch_size_per_image"],
        positive_fraction=tv["box_positive_fraction"], bbox_reg_weights=tv["bbox_reg_weights"],
        score_thresh=tv["box_score_thresh"], nms_thresh=tv["box_nms_thresh"],
        detections_per_img=tv["box_detections_per_img"], eval_chunk=eval_chunk)
    transform_kw = {k: tv[k] for k in ("size_divisible", "fixed_size") if k in tv}
    transform = GeneralizedRCNNTransform(min_size, max_size, list(tv["image_mean"] or IMAGENET_MEAN),
                                         list(tv["image_std"] or IMAGENET_STD), **transform_kw)
    return SequenceDetector(net, _rpn(net.out_channels, tv), roi_heads, transform, fuse_window, fuse_alpha)


__all__ = ["SequenceDetector", "SequenceRoIHeads", "SliceSequenceHead", "build_backbone", "build_cosam_detector",
           "check_window", "fusion_range", "DEFAULT_WINDOW", "FUSE_ALPHA", "FUSE_WINDOW", "IMAGENET_MEAN",
           "IMAGENET_STD", "MAX_WINDOW", "MIN_WINDOW", "SMALL_PRESET", "TORCHVISION_DEFAULTS", "TORCHVISION_KWARGS"]
