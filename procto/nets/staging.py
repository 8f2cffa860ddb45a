"""Volumetric T2/T3 staging CNN for rectal MRI (2D/3D ResNet-18 mixtures + depth aggregation).

Paper: "volumetric convolutional neural network to accurately discriminate T2 from T3 stage rectal cancer with rectal
MR volumes" — a ResNet encoder that maps a volume to slice-wise features, "f : R^{H×W×D} → R^{D×256}", with "ResNet-18
with the 32 filters for the first convolution layer", a fully connected layer "shared across all slices" mapping each
slice feature to a T3 probability, and a depth aggregation function (:mod:`procto.nets.aggregation`) turning the slice
features into one volume feature.

Architecture (reproduces every parameter count of Table 2 exactly; see ``shared/spec/staging.md``):

* layer 1 = stem: ``7×7`` conv with 32 filters, spatial stride 2 → BN → ReLU → ``1×3×3`` max-pool, spatial stride 2;
* layers 2–5 = four stages of two BasicBlocks, widths 32 / 64 / 128 / 256, spatial strides 1 / 2 / 2 / 2 (torchvision's
  ResNet-18 layout), ``1×1×1`` conv + BN shortcut where the width changes;
* global average pooling over ``H×W`` only ("we have already aggregated x-y information by striding and by average
  pooling"), giving ``(B, D, 256)``; nothing ever strides along depth ("we did not stride along the third axis because
  our goal is to yield slice-wise scores"), and the 3D kernels are depth-padded, so ``D`` slices in give ``D`` out;
* shared ``Linear(256, 1)`` → one logit per slice.

A 256×256×D input is reduced to 8×8 per slice before the spatial pooling (total spatial stride 32).

Variants (``kind`` of layers 1…5):

* f-R2D: 2D everywhere (``1×k×k`` kernels) — 2,796,001 parameters;
* f-R3D: 3D everywhere (``3×k×k``) — 8,291,873;
* f-R(2+1)D: (2+1)D everywhere, stem included — 8,294,563;
* f-MCx: 3D in layers 1…x−1, 2D in layers x…5 — MC2 2,799,137 · MC3 2,872,865 · MC4 3,130,913 · MC5 4,163,105;
* f-rMCx: 2D in layers 1…x−1, 3D in layers x…5 — rMC2 8,288,737 · rMC3 8,215,009 · rMC4 7,956,961 · rMC5 6,924,769.

f-rMC5 (3D convolutions only in the last stage, "late fusion") is the paper's selected extractor;
``create_model("staging_f_rmc5")`` builds it.  ``create_model("staging_f_rmc5", aggregation="bilinear")`` wraps it in
:class:`StagingNet`, the paper's final volume classifier (f-rMC5 + bilinear encoding, trained with focal + triplet loss:
see :mod:`procto.train.staging_losses`).
"""

from __future__ import annotations

from typing import NamedTuple, Sequence

import torch
from torch import nn

from procto.errors import InputError
from procto.nets.aggregation import DepthAggregation, canonical_aggregation, make_aggregation
from procto.nets.registry import register_model
from procto.nets.staging_blocks import CONV_KINDS, Stem, make_stage

#: Stage widths of the paper's ResNet-18 ("32 filters for the first convolution layer").
WIDTHS: tuple[int, int, int, int] = (32, 64, 128, 256)
#: BasicBlocks per stage (ResNet-18).
BLOCKS: tuple[int, int, int, int] = (2, 2, 2, 2)
#: Spatial strides of the four stages (the stem adds ×2 conv and ×2 max-pool).  Depth stride is always 1.
STAGE_STRIDES: tuple[int, int, int, int] = (1, 2, 2, 2)

#: Table 2's parameter counts (extractor + shared slice FC), by variant.
PAPER_PARAMS: dict[str, int] = {
    "r2d": 2_796_001,
    "r3d": 8_291_873,
    "r2plus1d": 8_294_563,
    "mc2": 2_799_137,
    "mc3": 2_872_865,
    "mc4": 3_130_913,
    "mc5": 4_163_105,
    "rmc2": 8_288_737,
    "rmc3": 8_215_009,
    "rmc4": 7_956_961,
    "rmc5": 6_924_769,
}
VARIANTS: tuple[str, ...] = tuple(PAPER_PARAMS)
#: The paper's names of the variants (Table 2).
PAPER_NAMES: dict[str, str] = {
    "r2d": "f-R2D", "r3d": "f-R3D", "r2plus1d": "f-R(2+1)D",
    **{f"mc{x}": f"f-MC{x}" for x in range(2, 6)},
    **{f"rmc{x}": f"f-rMC{x}" for x in range(2, 6)},
}

_NUM_LAYERS = 5  # layer 1 = stem, layers 2–5 = the residual stages


def canonical_variant(variant: str) -> str:
    """Key of :data:`PAPER_PARAMS` for a variant name: ``"f-rMC5"``, ``"staging_f_rmc5"``, ``"rmc5"`` → ``"rmc5"``;
    ``"f-R(2+1)D"`` → ``"r2plus1d"``."""
    v = str(variant).lower().replace("(2+1)", "2plus1").replace("-", "_")
    v = v.removeprefix("staging_").removeprefix("f_").replace("_", "")
    if v not in PAPER_PARAMS:
        raise ValueError(f"unknown staging variant {variant!r}; expected one of {VARIANTS}")
    return v


def variant_kinds(variant: str) -> tuple[str, ...]:
    """Convolution kind (``"2d"``, ``"3d"``, ``"2plus1d"``) of layers 1…5 (stem, stages 1–4) of a variant.

    >>> variant_kinds("mc3")
    ('3d', '3d', '2d', '2d', '2d')
    >>> variant_kinds("f-rMC5")
    ('2d', '2d', '2d', '2d', '3d')
    """
    v = canonical_variant(variant)
    uniform = {"r2d": "2d", "r3d": "3d", "r2plus1d": "2plus1d"}
    if v in uniform:
        return (uniform[v],) * _NUM_LAYERS
    # f-MCx: 3D in layers 1 … x-1, 2D in layers x … 5; f-rMCx: the reverse
    early, late = ("2d", "3d") if v.startswith("rmc") else ("3d", "2d")
    x = int(v[-1])
    return tuple(early if layer < x else late for layer in range(1, _NUM_LAYERS + 1))


class SliceOutput(NamedTuple):
    """Output of :class:`SliceFeatureExtractor`: ``features`` ``(B, D, C)`` and per-slice T3 ``logits`` ``(B, D)``."""

    features: torch.Tensor
    logits: torch.Tensor


class StagingOutput(NamedTuple):
    """Output of :class:`StagingNet`.

    ``logit`` ``(B,)`` volume T3 logit; ``slice_logits`` ``(B, D)`` from the shared slice FC (slice-level training);
    ``feature`` ``(B, F)`` the aggregated volume feature; ``slice_features`` ``(B, D, C)``.
    """

    logit: torch.Tensor
    slice_logits: torch.Tensor
    feature: torch.Tensor
    slice_features: torch.Tensor


def _check_input(x: torch.Tensor, in_channels: int) -> None:
    if x.dim() != 5 or x.shape[1] != in_channels:
        raise InputError(f"expected a (B, {in_channels}, D, H, W) volume batch, got shape {tuple(x.shape)}")


class SliceFeatureExtractor(nn.Module):
    """ResNet-18 (widths 32–256) mixing 2D / 3D / (2+1)D convolutions; volume ``(B, 1, D, H, W)`` → slice features.

    ``kinds``: the convolution kind of each of the five layers (stem + four stages), see :func:`variant_kinds`.
    ``forward`` returns :class:`SliceOutput` ``(features (B, D, 256), logits (B, D))``.
    """

    def __init__(
        self,
        kinds: Sequence[str],
        in_channels: int = 1,
        widths: Sequence[int] = WIDTHS,
        blocks: Sequence[int] = BLOCKS,
        stem_kernel: int = 7,
        variant: str | None = None,
    ):
        super().__init__()
        kinds = tuple(kinds)
        if len(kinds) != 1 + len(widths) or any(k not in CONV_KINDS for k in kinds):
            raise ValueError(f"kinds must name {1 + len(widths)} kinds from {CONV_KINDS}, got {kinds}")
        if len(blocks) != len(widths):
            raise ValueError("widths and blocks must have the same length")
        self.kinds = kinds
        self.variant = variant
        self.in_channels = in_channels
        self.stem = Stem(in_channels, widths[0], kinds[0], stem_kernel)
        stages, cin = [], widths[0]
        strides = STAGE_STRIDES if len(widths) == len(STAGE_STRIDES) else (1,) + (2,) * (len(widths) - 1)
        for i, (cout, n, stride) in enumerate(zip(widths, blocks, strides)):
            stages.append(make_stage(cin, cout, n, stride, kinds[i + 1]))
            cin = cout
        self.stages = nn.ModuleList(stages)
        self.out_channels = cin
        self.fc = nn.Linear(cin, 1)  # shared across slices: slice feature → T3 logit
        self._init_weights()

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv3d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm3d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def feature_maps(self, x: torch.Tensor) -> torch.Tensor:
        """Last-stage feature maps ``(B, C, D, H/32, W/32)``."""
        _check_input(x, self.in_channels)
        x = self.stem(x)
        for stage in self.stages:
            x = stage(x)
        return x

    def slice_features(self, x: torch.Tensor) -> torch.Tensor:
        """Slice-wise features ``(B, D, C)``: spatial global average pooling of the last feature maps."""
        return self.feature_maps(x).mean(dim=(3, 4)).transpose(1, 2)

    def forward(self, x: torch.Tensor) -> SliceOutput:
        feats = self.slice_features(x)
        return SliceOutput(feats, self.fc(feats).squeeze(-1))

    def extra_repr(self) -> str:
        name = PAPER_NAMES.get(self.variant or "", self.variant)
        return f"variant={name}, kinds={self.kinds}"


class StagingNet(nn.Module):
    """Volume-level T2/T3 classifier: slice feature extractor → depth aggregation → linear → one T3 logit.

    ``extractor``: a :class:`SliceFeatureExtractor` or a variant name (``"rmc5"``, ``"staging_f_rmc5"`` ...).
    ``aggregation``: ``"bilinear"`` (paper's choice), ``"avg"``, ``"max"`` or ``"attention"``.

    Classifier: for AVP / MXP / attention the volume feature lives in the slice-feature space (``C = 256``), so the
    extractor's shared slice FC classifies it too — the paper's "No additional parameters are introduced for depth
    aggregation function except that the feature space is enlarged by bilinear encoding" (and AVP then "equals applying
    global average pooling after the last convolution layer").  Bilinear encoding gives a ``C² = 65,536``-d feature,
    which gets its own ``Linear(65536, 1)`` (65,537 parameters).  ``share_classifier=False`` gives every aggregation
    its own linear layer.
    """

    def __init__(
        self,
        extractor: SliceFeatureExtractor | str = "rmc5",
        aggregation: str = "bilinear",
        share_classifier: bool = True,
        in_channels: int = 1,
    ):
        super().__init__()
        if isinstance(extractor, str):
            v = canonical_variant(extractor)
            extractor = SliceFeatureExtractor(variant_kinds(v), in_channels=in_channels, variant=v)
        self.extractor = extractor
        self.aggregation_name = canonical_aggregation(aggregation)
        self.aggregation: DepthAggregation = make_aggregation(self.aggregation_name)
        channels = extractor.out_channels
        self.feature_dim = self.aggregation.out_features(channels)
        self.shares_classifier = bool(share_classifier and self.feature_dim == channels)
        self.head: nn.Linear | None = None if self.shares_classifier else nn.Linear(self.feature_dim, 1)

    @property
    def classifier(self) -> nn.Linear:
        """The linear layer mapping the volume feature to the volume logit."""
        return self.extractor.fc if self.head is None else self.head

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> StagingOutput:
        """``x`` ``(B, 1, D, H, W)``; optional ``mask`` ``(B, D)`` marks real (``True``) vs padding slices."""
        slice_features, slice_logits = self.extractor(x)
        feature = self.aggregation(slice_features, mask)
        logit = self.classifier(feature).squeeze(-1)
        return StagingOutput(logit, slice_logits, feature, slice_features)


def build_staging(
    variant: str,
    aggregation: str | None = None,
    in_channels: int = 1,
    share_classifier: bool = True,
    **kwargs,
) -> nn.Module:
    """Extractor of ``variant`` (Table 2 parameter count) or, with ``aggregation``, a :class:`StagingNet` around it."""
    v = canonical_variant(variant)
    extractor = SliceFeatureExtractor(variant_kinds(v), in_channels=in_channels, variant=v, **kwargs)
    if aggregation is None:
        return extractor
    return StagingNet(extractor, aggregation, share_classifier=share_classifier)


def _register(variant: str) -> None:
    def builder(aggregation: str | None = None, in_channels: int = 1, **kwargs) -> nn.Module:
        return build_staging(variant, aggregation=aggregation, in_channels=in_channels, **kwargs)

    name = f"staging_f_{variant}"
    builder.__name__ = name
    builder.__qualname__ = name
    builder.__doc__ = (
        f"{PAPER_NAMES[variant]} slice feature extractor + shared slice FC ({PAPER_PARAMS[variant]:,} parameters, "
        "Table 2); pass ``aggregation=`` ('bilinear', 'avg', 'max', 'attention') for the volume-level StagingNet."
    )
    register_model(name)(builder)


for _v in VARIANTS:
    _register(_v)
del _v


__all__ = [
    "BLOCKS",
    "PAPER_NAMES",
    "PAPER_PARAMS",
    "STAGE_STRIDES",
    "VARIANTS",
    "WIDTHS",
    "SliceFeatureExtractor",
    "SliceOutput",
    "StagingNet",
    "StagingOutput",
    "build_staging",
    "canonical_variant",
    "variant_kinds",
]
