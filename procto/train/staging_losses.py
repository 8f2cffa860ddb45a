"""Objectives of the T2/T3 staging CNN (Sect. 2.3): focal loss (eq. 1), center loss (eq. 2), triplet loss with online
hard mining (eq. 3), and the joint focal + λ·supplementary objective.

The task is binary (T3 = positive class 1, T2 = 0) and the networks output one logit per slice / volume, so the focal
loss takes logits and ``p`` is the sigmoid probability of the true class (the binary form of the paper's softmax ``p``);
it is MONAI's :class:`monai.losses.FocalLoss` in its sigmoid form, which equals eq. 1 (a test proves it).

The paper uses "the suggested hyperparameters settings from their respective original manuscripts": focal loss γ = 2
(Lin et al.; their α = 0.25 is available but eq. 1 has no α, so the default is none), center loss λ = 0.003 (Wen et
al.), triplet margin 0.2 on l2-normalised embeddings (Schroff et al., FaceNet).  Table 3: focal + triplet is the best.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

Reduction = Literal["mean", "sum", "none"]


def _reduce(x: torch.Tensor, reduction: str) -> torch.Tensor:
    if reduction == "mean":
        return x.mean()
    if reduction == "sum":
        return x.sum()
    if reduction == "none":
        return x
    raise ValueError(f"reduction must be 'mean', 'sum' or 'none', got {reduction!r}")


def _monai_focal(gamma: float, alpha: float | None):
    from monai.losses import FocalLoss as MonaiFocalLoss

    return MonaiFocalLoss(include_background=True, to_onehot_y=False, gamma=gamma, alpha=alpha, reduction="none",
                          use_softmax=False)


def focal_loss(
    logits: torch.Tensor,
    targets: torch.Tensor,
    gamma: float = 2.0,
    alpha: float | None = None,
    reduction: Reduction = "mean",
) -> torch.Tensor:
    """Binary focal loss (eq. 1) on logits: ``−α_t (1 − p_t)^γ log p_t``, computed by MONAI's sigmoid
    :class:`monai.losses.FocalLoss` (``tests/train/test_staging_losses.py`` proves it equal to this definition).

    ``p_t`` is the predicted probability of the true class (``σ(z)`` for target 1, ``1 − σ(z)`` for target 0);
    ``α_t = α`` for positives and ``1 − α`` for negatives, or 1 when ``alpha`` is ``None``.  With ``γ = 0`` and no
    ``alpha`` this is binary cross-entropy.  ``targets`` are 0/1 (T2/T3); logits and targets share one shape.
    """
    return FocalLoss(gamma, alpha, reduction)(logits, targets)


class FocalLoss(nn.Module):
    """Module form of :func:`focal_loss` (defaults γ = 2, no α, mean): MONAI's sigmoid focal loss applied to the
    logits as one channel, reduced here (MONAI's ``"sum"`` would first average over spatial axes)."""

    def __init__(self, gamma: float = 2.0, alpha: float | None = None, reduction: Reduction = "mean"):
        super().__init__()
        self.gamma, self.alpha, self.reduction = gamma, alpha, reduction
        self.loss = _monai_focal(gamma, alpha)

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        targets = targets.to(logits.dtype)
        if targets.shape != logits.shape:
            raise ValueError(f"logits {tuple(logits.shape)} and targets {tuple(targets.shape)} must have the same "
                             "shape")
        per_element = self.loss(logits.reshape(-1, 1), targets.reshape(-1, 1)).reshape(logits.shape)
        return _reduce(per_element, self.reduction)

    def extra_repr(self) -> str:
        return f"gamma={self.gamma}, alpha={self.alpha}, reduction={self.reduction!r}"


class CenterLoss(nn.Module):
    """Center loss (eq. 2): ``½ Σ_i ‖x_i − c_{y_i}‖²`` with one learnable centre per class.

    ``reduction="sum"`` is eq. 2 over the mini-batch; ``"mean"`` (default) divides by the batch size (as Wen et al.'s
    implementation does), keeping the scale independent of the batch size.  The centres are an ``nn.Parameter``
    ``(num_classes, feature_dim)`` trained by the optimiser with the network (initialised to zero).
    """

    def __init__(self, num_classes: int = 2, feature_dim: int = 256, reduction: Reduction = "mean"):
        super().__init__()
        self.centers = nn.Parameter(torch.zeros(num_classes, feature_dim))
        self.reduction = reduction

    def forward(self, features: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        if features.dim() != 2 or features.shape[1] != self.centers.shape[1]:
            raise ValueError(f"features must be (N, {self.centers.shape[1]}), got {tuple(features.shape)}")
        c = self.centers[labels.long().view(-1)]
        per_sample = 0.5 * (features - c).pow(2).sum(dim=1)
        return _reduce(per_sample, self.reduction)

    def extra_repr(self) -> str:
        n, d = self.centers.shape
        return f"num_classes={n}, feature_dim={d}, reduction={self.reduction!r}"


def pairwise_squared_distances(x: torch.Tensor) -> torch.Tensor:
    """``(N, N)`` matrix of squared Euclidean distances between the rows of ``x`` (exact differences, no Gram trick)."""
    diff = x.unsqueeze(1) - x.unsqueeze(0)
    return diff.pow(2).sum(dim=-1)


def hard_triplets(embeddings: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Online hard mining within a batch (Schroff et al.): for each anchor, the hardest positive (farthest sample of
    the same class, itself excluded) and the hardest negative (closest sample of another class).

    Returns ``(anchor, positive, negative)`` index tensors over the anchors that have both a positive and a negative.
    """
    labels = labels.view(-1)
    n = embeddings.shape[0]
    d = pairwise_squared_distances(embeddings.detach())
    same = labels.unsqueeze(0) == labels.unsqueeze(1)
    eye = torch.eye(n, dtype=torch.bool, device=embeddings.device)
    pos_mask, neg_mask = same & ~eye, ~same
    valid = pos_mask.any(dim=1) & neg_mask.any(dim=1)
    pos = d.masked_fill(~pos_mask, float("-inf")).argmax(dim=1)
    neg = d.masked_fill(~neg_mask, float("inf")).argmin(dim=1)
    anchors = torch.nonzero(valid, as_tuple=False).view(-1)
    return anchors, pos[anchors], neg[anchors]


class TripletLoss(nn.Module):
    """Triplet loss (eq. 3) ``max(0, ‖f − f⁺‖² − ‖f − f⁻‖² + m)`` with batch-hard online mining.

    Every sample of the batch is an anchor (if its class has another sample and another class is present); its
    positive is the farthest same-class sample, its negative the closest other-class sample (:func:`hard_triplets`).
    ``normalize=True`` (default) puts the embeddings on the unit hypersphere first, as FaceNet does, for which the
    margin ``0.2`` was suggested.  A batch without any valid triplet gives 0 (still attached to the graph).
    """

    def __init__(self, margin: float = 0.2, normalize: bool = True, reduction: Reduction = "mean"):
        super().__init__()
        self.margin, self.normalize, self.reduction = margin, normalize, reduction

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        if embeddings.dim() != 2:
            raise ValueError(f"embeddings must be (N, F), got {tuple(embeddings.shape)}")
        if self.normalize:
            embeddings = F.normalize(embeddings, p=2.0, dim=1)
        a, p, n = hard_triplets(embeddings, labels)
        if a.numel() == 0:
            zero = embeddings.sum() * 0.0
            return zero if self.reduction != "none" else zero.view(0)
        d_ap = (embeddings[a] - embeddings[p]).pow(2).sum(dim=1)
        d_an = (embeddings[a] - embeddings[n]).pow(2).sum(dim=1)
        return _reduce(F.relu(d_ap - d_an + self.margin), self.reduction)

    def extra_repr(self) -> str:
        return f"margin={self.margin}, normalize={self.normalize}, reduction={self.reduction!r}"


#: Default weight λ of the supplementary loss: Wen et al.'s λ = 0.003 for the center loss; the triplet loss is added
#: with weight 1 (FaceNet trains with the triplet loss alone, so it suggests no weight).
DEFAULT_WEIGHTS = {"triplet": 1.0, "center": 0.003}


class JointStagingLoss(nn.Module):
    """``focal + λ · supplementary`` with ``supplementary`` ``"triplet"`` (paper's choice), ``"center"`` or ``None``.

    ``forward(logits, targets, features)`` — ``logits`` and ``targets`` of the same shape (slice- or volume-level),
    ``features`` ``(N, F)`` the embeddings of the same N samples (needed by the supplementary loss).  With
    ``return_parts=True`` it returns ``(total, {"focal": ..., "triplet"/"center": ...})`` (detached parts).
    """

    def __init__(
        self,
        supplementary: Literal["triplet", "center"] | None = "triplet",
        weight: float | None = None,
        gamma: float = 2.0,
        alpha: float | None = None,
        margin: float = 0.2,
        normalize: bool = True,
        num_classes: int = 2,
        feature_dim: int = 256,
    ):
        super().__init__()
        if supplementary not in (None, "triplet", "center"):
            raise ValueError(f"supplementary must be 'triplet', 'center' or None, got {supplementary!r}")
        self.supplementary = supplementary
        self.focal = FocalLoss(gamma=gamma, alpha=alpha)
        self.aux: nn.Module | None = None
        if supplementary == "triplet":
            self.aux = TripletLoss(margin=margin, normalize=normalize)
        elif supplementary == "center":
            self.aux = CenterLoss(num_classes=num_classes, feature_dim=feature_dim)
        self.weight = DEFAULT_WEIGHTS.get(supplementary or "", 0.0) if weight is None else float(weight)

    def forward(
        self,
        logits: torch.Tensor,
        targets: torch.Tensor,
        features: torch.Tensor | None = None,
        return_parts: bool = False,
    ):
        focal = self.focal(logits, targets)
        total, parts = focal, {"focal": focal.detach()}
        if self.aux is not None:
            if features is None:
                raise ValueError(f"the {self.supplementary} loss needs the features")
            aux = self.aux(features.reshape(-1, features.shape[-1]), targets.reshape(-1).round().long())
            total = total + self.weight * aux
            parts[self.supplementary] = aux.detach()
        return (total, parts) if return_parts else total

    def extra_repr(self) -> str:
        return f"supplementary={self.supplementary!r}, weight={self.weight}"


__all__ = [
    "CenterLoss",
    "FocalLoss",
    "JointStagingLoss",
    "TripletLoss",
    "focal_loss",
    "hard_triplets",
    "pairwise_squared_distances",
]
