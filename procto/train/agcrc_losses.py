"""AG-CRC anatomy-focalised loss and bowel-wall masking (paper 001, §III-D/E, Eqs. 7–8;
``../shared/spec/agcrc-facts.md`` §4–5).

- :func:`af_loss` (Eq. 8, L_M(Y, Ŷ, O) = L₀(Y, Ŷ∘O)): p = softmax(logits), q_fg = p_fg·O, q_bg = 1 − Σ q_fg.  L₀ is
  nnU-Net's ``DC_and_CE_loss`` with weights 1/1: cross-entropy on q plus nnU-Net's soft Dice on q (no background,
  smooth 1e-5, ``batch_dice`` option; the Dice term is −dc).  CE is the mean over ALL voxels of −log q_y in which the
  voxels with O = 0 add 0 (under the literal formula they carry a constant with zero gradient), so ∂L/∂logits = 0
  exactly where O = 0, and with O ≡ 1 the value equals nnU-Net's loss.  O is binarised at 0.5 (procto's rule for the
  OOI channel on the preprocessed grid).
- :class:`AFLoss`: the ``nn.Module`` around it (what a trainer's ``_build_loss`` returns without deep supervision).
- Deep supervision as nnU-Net 2.8.1 does it: :func:`deep_supervision_scales` (1 / cumprod(pool kernels), last dropped),
  :func:`deep_supervision_weights` (1, ½, ¼, …, last 0, normalised), :func:`downsample_seg_for_ds` (nearest-exact, the
  way ``DownsampleSegForDSTransform`` downsamples segmentations) and :class:`AFDeepSupervisionLoss` (the weighted sum
  over scales, like ``DeepSupervisionWrapper``; the OOI may be given full-size and is then resampled like the targets).
- :func:`mask_bowel_wall` (AG-SSL, Eq. 7): the CT channel (channel 0) inside the bowel wall replaced by N(0, 1) noise
  drawn from a given generator; other channels unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "DICE_SMOOTH",
    "af_loss",
    "AFLoss",
    "AFDeepSupervisionLoss",
    "deep_supervision_scales",
    "deep_supervision_weights",
    "downsample_seg_for_ds",
    "mask_bowel_wall",
]

DICE_SMOOTH = 1e-5  # nnU-Net's smooth for the soft Dice of DC_and_CE_loss (nnUNetTrainer._build_loss)


def _binary(mask: torch.Tensor) -> torch.Tensor:
    """A 0/1 (or bool) mask as bool; float masks are thresholded at 0.5."""
    return mask if mask.dtype == torch.bool else mask > 0.5


def _check_shapes(logits: torch.Tensor, target: torch.Tensor, ooi: torch.Tensor) -> None:
    if logits.ndim < 3 or logits.shape[1] < 2:
        raise ValueError(f"logits must be (B, C, ...) with C >= 2, got shape {tuple(logits.shape)}")
    want = (logits.shape[0], 1, *logits.shape[2:])
    for name, t in (("target", target), ("ooi", ooi)):
        if tuple(t.shape) != want:
            raise ValueError(f"{name} must have shape {want} for logits of shape {tuple(logits.shape)}, "
                             f"got {tuple(t.shape)}")


def _soft_dice(q: torch.Tensor, labels: torch.Tensor, batch_dice: bool, ddp: bool) -> torch.Tensor:
    """nnU-Net's own ``MemoryEfficientSoftDiceLoss`` (no background, smooth 1e-5) on the probabilities ``q``: −dc."""
    from nnunetv2.training.loss.dice import MemoryEfficientSoftDiceLoss

    return MemoryEfficientSoftDiceLoss(apply_nonlin=None, batch_dice=batch_dice, do_bg=False, smooth=DICE_SMOOTH,
                                       ddp=ddp)(q, labels)


def af_loss(logits: torch.Tensor, target: torch.Tensor, ooi: torch.Tensor, batch_dice: bool = False, *,
            ddp: bool = False) -> torch.Tensor:
    """AF-loss (Eq. 8): nnU-Net's Dice + CE (weights 1, 1) on the OOI-masked softmax.

    ``logits`` (B, C, ...) raw network output, ``target`` (B, 1, ...) integer labels in [0, C), ``ooi`` (B, 1, ...) 0/1
    (float masks are thresholded at 0.5).  ``ddp`` all-gathers the batch-Dice sums across processes as nnU-Net does
    (only with ``batch_dice``).  Returns a scalar.
    """
    _check_shapes(logits, target, ooi)
    inside = _binary(ooi)
    labels = target.long()
    logits = logits.float()
    # CE on q: inside the OOI q = p (q_bg = 1 − Σ p_fg = p_bg), so −log q_y = −log_softmax_y; outside it adds 0.
    logp_y = torch.log_softmax(logits, 1).gather(1, labels)
    ce = -torch.where(inside, logp_y, torch.zeros_like(logp_y)).sum() / logp_y.numel()
    # Dice on q = (1 − Σ q_fg, q_fg) with q_fg = p_fg·O (the background channel is left out, as nnU-Net's Dice does)
    p_fg = torch.softmax(logits, 1)[:, 1:]
    q_fg = torch.where(inside, p_fg, torch.zeros_like(p_fg))
    q = torch.cat([1 - q_fg.sum(1, keepdim=True), q_fg], 1)
    return ce + _soft_dice(q, labels, batch_dice, ddp)


class AFLoss(nn.Module):
    """:func:`af_loss` as a module: ``AFLoss(batch_dice)(logits, target, ooi)``."""

    def __init__(self, batch_dice: bool = False, ddp: bool = False) -> None:
        super().__init__()
        self.batch_dice = bool(batch_dice)
        self.ddp = bool(ddp)

    def forward(self, logits: torch.Tensor, target: torch.Tensor, ooi: torch.Tensor) -> torch.Tensor:
        return af_loss(logits, target, ooi, self.batch_dice, ddp=self.ddp)

    def extra_repr(self) -> str:
        return f"batch_dice={self.batch_dice}, ddp={self.ddp}"


def deep_supervision_scales(pool_op_kernel_sizes: Sequence[Sequence[int]]) -> list[list[float]]:
    """nnU-Net's ``_get_deep_supervision_scales``: 1 / cumprod(pool kernels) per stage, the last stage dropped."""
    scales = 1 / np.cumprod(np.vstack(pool_op_kernel_sizes), axis=0)
    return [[float(v) for v in row] for row in scales[:-1]]


def deep_supervision_weights(n_scales: int) -> tuple[float, ...]:
    """nnU-Net's deep-supervision weights: 1/2^i, the lowest resolution weighted 0, normalised to sum 1."""
    if n_scales < 1:
        raise ValueError(f"need at least one deep-supervision scale, got {n_scales}")
    if n_scales == 1:
        return (1.0,)
    weights = np.array([1 / (2 ** i) for i in range(n_scales)])
    weights[-1] = 0
    weights = weights / weights.sum()
    return tuple(float(w) for w in weights)


def _resample_nearest(seg: torch.Tensor, shape: Sequence[int]) -> torch.Tensor:
    if tuple(seg.shape[2:]) == tuple(shape):
        return seg
    return F.interpolate(seg.float(), [int(s) for s in shape], mode="nearest-exact").to(seg.dtype)


def downsample_seg_for_ds(seg: torch.Tensor, ds_scales: Sequence[float | Sequence[float]]) -> list[torch.Tensor]:
    """A batch of segmentations (B, C, ...) at each deep-supervision scale, as ``DownsampleSegForDSTransform``.

    Each scale is one factor or one per spatial axis; the new shape is round(size·factor) (Python rounding) and the
    resampling is ``nearest-exact``; a scale of all ones returns ``seg`` itself.
    """
    spatial = seg.shape[2:]
    out = []
    for s in ds_scales:
        factors = list(s) if isinstance(s, (tuple, list)) else [s] * len(spatial)
        if len(factors) != len(spatial):
            raise ValueError(f"scale {s} has {len(factors)} factors for {len(spatial)} spatial axes")
        if all(f == 1 for f in factors):
            out.append(seg)
        else:
            out.append(_resample_nearest(seg, [round(n * f) for n, f in zip(spatial, factors)]))
    return out


class AFDeepSupervisionLoss(nn.Module):
    """AF-loss with nnU-Net's deep supervision: Σ_i w_i · af_loss(logits_i, target_i, ooi_i) over w_i != 0.

    ``weights`` default to :func:`deep_supervision_weights` of the number of outputs.  ``ooi`` is a list at the
    deep-supervision scales or one full-resolution tensor, then resampled (nearest-exact) to each target's shape, which
    is what ``DownsampleSegForDSTransform`` gives for the same scales.
    """

    def __init__(self, weights: Sequence[float] | None = None, batch_dice: bool = False, ddp: bool = False) -> None:
        super().__init__()
        if weights is not None and not any(w != 0 for w in weights):
            raise ValueError("at least one deep-supervision weight must be != 0")
        self.weights = None if weights is None else tuple(float(w) for w in weights)
        self.loss = AFLoss(batch_dice, ddp)

    def forward(self, logits: Sequence[torch.Tensor], targets: Sequence[torch.Tensor],
                ooi: Sequence[torch.Tensor] | torch.Tensor) -> torch.Tensor:
        if len(logits) != len(targets):
            raise ValueError(f"{len(logits)} outputs but {len(targets)} targets")
        if isinstance(ooi, torch.Tensor):
            ooi = [_resample_nearest(ooi, t.shape[2:]) for t in targets]
        elif len(ooi) != len(targets):
            raise ValueError(f"{len(targets)} targets but {len(ooi)} OOI masks")
        from nnunetv2.training.loss.deep_supervision import DeepSupervisionWrapper

        weights = self.weights if self.weights is not None else deep_supervision_weights(len(logits))
        if len(weights) < len(logits):
            raise ValueError(f"{len(weights)} weights for {len(logits)} outputs")
        return DeepSupervisionWrapper(self.loss, weights)(list(logits), list(targets), list(ooi))


def mask_bowel_wall(x: torch.Tensor, wall: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """AG-SSL input corruption (Eq. 7): a copy of ``x`` (B, C, ...) with channel 0 (CT) inside ``wall`` set to N(0, 1).

    ``wall`` is (B, 1, ...) or (B, ...), 0/1 or bool (float masks thresholded at 0.5).  The noise is drawn for the whole
    channel from ``generator`` (on ``x``'s device; ``None`` uses torch's global generator), so the result depends only
    on the generator's state, not on the wall's size.  Other channels are copied unchanged.
    """
    if x.ndim < 3:
        raise ValueError(f"x must be (B, C, ...), got shape {tuple(x.shape)}")
    if wall.ndim == x.ndim - 1:
        wall = wall.unsqueeze(1)
    want = (x.shape[0], 1, *x.shape[2:])
    if tuple(wall.shape) != want:
        raise ValueError(f"wall must have shape {want} (or without the channel axis), got {tuple(wall.shape)}")
    noise = torch.randn(want, generator=generator, device=x.device, dtype=x.dtype)
    out = x.clone()
    out[:, :1] = torch.where(_binary(wall), noise, x[:, :1])
    return out
