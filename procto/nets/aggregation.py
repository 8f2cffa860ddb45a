"""Depth aggregation: summarise ``D`` slice features ``(B, D, C)`` into one volume feature ``(B, F)``.

The four functions compared in Table 4 of the staging paper (Sect. 2.4):

* ``"avg"`` (AVP) — mean over depth per channel, ``F = C``;
* ``"max"`` (MXP) — max over depth per channel, ``F = C``;
* ``"attention"`` (Att) — eq. 4–5: per channel ``i``, ``g_i = Σ_d A(i, d) f_i^d`` with ``A(i, ·) = softmax_d(f_i^·)``;
  "we did not create an additional embedding space but rather directly applied a softmax function", so no parameters,
  ``F = C``;
* ``"bilinear"`` (Bilin) — Lin et al.'s bilinear pooling with "the same features twice": the outer product
  ``f^d (f^d)ᵀ`` averaged over depth, flattened to ``F = C²`` (65,536 for ``C = 256``), then the signed square root
  ``sign(x)·√|x|`` and l2 normalisation.  No reduction: the paper says "No additional parameters are introduced for
  depth aggregation function except that the feature space is enlarged by bilinear encoding."

All of them are parameter-free ``nn.Module`` s, invariant to the order of the slices, and take an optional boolean
``mask`` ``(B, D)`` (``True`` = real slice) so that volumes of different depth can be padded into one batch.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from procto.errors import InputError

AGGREGATIONS: tuple[str, ...] = ("avg", "max", "attention", "bilinear")
_ALIASES = {
    "avg": "avg", "avp": "avg", "mean": "avg", "average": "avg",
    "max": "max", "mxp": "max",
    "attention": "attention", "att": "attention", "attn": "attention",
    "bilinear": "bilinear", "bilin": "bilinear", "bilinear_encoding": "bilinear",
}


def canonical_aggregation(name: str) -> str:
    """Canonical name: ``"AVP"`` → ``"avg"``, ``"MXP"`` → ``"max"``, ``"Att"`` → ``"attention"``, ``"Bilin"`` →
    ``"bilinear"``."""
    try:
        return _ALIASES[name.lower()]
    except (KeyError, AttributeError):
        raise ValueError(f"unknown depth aggregation {name!r}; expected one of {AGGREGATIONS}") from None


def _check(features: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor | None:
    if features.dim() != 3:
        raise InputError(f"slice features must be (B, D, C), got shape {tuple(features.shape)}")
    if mask is None:
        return None
    mask = mask.to(device=features.device, dtype=torch.bool)
    if mask.shape != features.shape[:2]:
        raise InputError(f"mask shape {tuple(mask.shape)} does not match slice features {tuple(features.shape[:2])}")
    if not bool(mask.any(dim=1).all()):
        raise InputError("every volume needs at least one unmasked slice")
    return mask


class DepthAggregation(nn.Module):
    """Base class: ``forward(features (B, D, C), mask=None) -> (B, out_features(C))``."""

    name: str = ""

    def out_features(self, channels: int) -> int:
        return channels

    def extra_repr(self) -> str:
        return self.name


class AvgPoolDepth(DepthAggregation):
    """AVP: mean of each channel over the (unmasked) slices."""

    name = "avg"

    def forward(self, features: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        mask = _check(features, mask)
        if mask is None:
            return features.mean(dim=1)
        m = mask.unsqueeze(-1).to(features.dtype)
        return (features * m).sum(dim=1) / m.sum(dim=1)


class MaxPoolDepth(DepthAggregation):
    """MXP: maximum of each channel over the (unmasked) slices."""

    name = "max"

    def forward(self, features: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        mask = _check(features, mask)
        if mask is not None:
            features = features.masked_fill(~mask.unsqueeze(-1), float("-inf"))
        return features.amax(dim=1)


class AttentionPoolDepth(DepthAggregation):
    """Attention weighting (eq. 4–5): softmax over depth of the feature itself, per channel; no parameters."""

    name = "attention"

    def forward(self, features: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        mask = _check(features, mask)
        scores = features if mask is None else features.masked_fill(~mask.unsqueeze(-1), float("-inf"))
        weights = torch.softmax(scores, dim=1)  # A(i, d), sums to 1 over d for each channel i
        if mask is not None:
            features = features.masked_fill(~mask.unsqueeze(-1), 0.0)
        return (weights * features).sum(dim=1)


class BilinearPoolDepth(DepthAggregation):
    """Bilinear encoding: depth-averaged outer product ``(C × C → C²)``, signed square root, l2 normalisation.

    ``eps`` keeps the square root differentiable near zero: ``sign(x)·√(|x| + eps)`` (zero stays zero).
    """

    name = "bilinear"

    def __init__(self, eps: float = 1e-10):
        super().__init__()
        self.eps = eps

    def out_features(self, channels: int) -> int:
        return channels * channels

    def forward(self, features: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        mask = _check(features, mask)
        b, d, c = features.shape
        if mask is None:
            outer = torch.einsum("bdi,bdj->bij", features, features) / d
        else:
            m = mask.unsqueeze(-1).to(features.dtype)
            outer = torch.einsum("bdi,bdj->bij", features * m, features) / m.sum(dim=1, keepdim=True)
        x = outer.reshape(b, c * c)
        x = torch.sign(x) * torch.sqrt(x.abs() + self.eps)
        return F.normalize(x, p=2.0, dim=1)


_CLASSES = {"avg": AvgPoolDepth, "max": MaxPoolDepth, "attention": AttentionPoolDepth, "bilinear": BilinearPoolDepth}


def make_aggregation(name: str) -> DepthAggregation:
    """The aggregation module called ``name``: ``avg``/``max``/``attention``/``bilinear`` or AVP/MXP/Att/Bilin."""
    return _CLASSES[canonical_aggregation(name)]()


__all__ = [
    "AGGREGATIONS",
    "AttentionPoolDepth",
    "AvgPoolDepth",
    "BilinearPoolDepth",
    "DepthAggregation",
    "MaxPoolDepth",
    "canonical_aggregation",
    "make_aggregation",
]
