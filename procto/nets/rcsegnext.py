"""RCSegNeXt (rectum and tumour segmentation in sagittal T2 MRI): a non-uniform, pure-convolutional U-shaped network.

Five resolution stages; the shallow, *anisotropic* ones (kernel 1 along z in the spacing plan of
:func:`procto.nets.plan.plan_kernels_strides`) use AniNeXt blocks and 1×2×2 max-pooling, the deep, *isotropic* ones
IsoNeXt blocks and 2×2×2 max-pooling.  The decoder mirrors the encoder: transposed convolutions (kernel = stride = the
pooling stride) halve the channels, the skip is concatenated, and the level's blocks (same kind and kernel as the encoder
stage) bring ``2·C`` back to ``C``; a 1×1×1 convolution gives the class logits.

Layout of RCSegNeXt-B (spacing [4.0, 0.875, 0.875], ``C = 32``)::

    stem 1×1×1, in → C
    level  encoder (after pooling)            decoder (up-conv from the level below, concat skip)
    1      AniNeXt×2 1×3×3   C → C            AniNeXt×2 1×3×3  2C → C     → 1×1×1 head (the output)
    2      pool 1×2×2, AniNeXt×2  C → 2C      AniNeXt×2 1×3×3  4C → 2C    (→ deep-supervision head)
    3      pool 1×2×2, IsoNeXt×2 2C → 4C      IsoNeXt×2 3×3×3  8C → 4C    (→ deep-supervision head)
    4      pool 2×2×2, IsoNeXt×2 4C → 8C      IsoNeXt×2 3×3×3 16C → 8C    (→ deep-supervision head)
    5      pool 2×2×2, IsoNeXt×2 8C → 16C (bottleneck)

The first block of each stage changes the width (through its 1×1×1 shortcut projection).

Parameter counts (what the paper reports):

* ``rcsegnext_b`` — 2,759,363 (2.76 M): ``C = 32``, blocks [2,2,2,2,2], decoder [2,2,2,2], r = 2, s = 4;
* ``rcsegnext_l`` — 10,767,651 (10.77 M): ``C = 48``, encoder blocks [2,2,2,8,4], decoder blocks (shallow → deep)
  [2,2,2,8], i.e. the stage-4 depth is mirrored in the deepest decoder level; r = 2, s = 4.  This is the authors'
  ``RCSegNeXt_L.py`` (base width 48, ``num_blocks=8`` in encoder 4 and decoder 4, 4 in encoder 5).

Both counts are :meth:`RCSegNeXt.paper_num_parameters`: all parameters *except* the deep-supervision heads, which the
paper's model does not have.  They include, as the authors' code does, a 1×1×1 shortcut projection in every residual
block even where it is never applied (``C_in == C_out``; see :mod:`procto.nets.blocks`).  The deep-supervision heads
(1×1×1 convs at the three coarser decoder levels, 1,353 parameters for B and 2,025 for L) are always built, like
nnU-Net's own decoders, so that a checkpoint trained with deep supervision loads into the network nnU-Net's predictor
builds with ``deep_supervision=False``; ``sum(p.numel() for p in net.parameters())`` is therefore 2,760,716 (B) and
10,769,676 (L), still 2.76 M and 10.77 M.

nnU-Net v2: ``RCSegNeXt(input_channels, num_classes, deep_supervision, **arch_kwargs)`` accepts nnU-Net's plan keys
(``n_stages``, ``features_per_stage``, ``kernel_sizes``, ``strides`` with the leading ``[1, 1, 1]``), see
:meth:`procto.nets.plan.RCSegNeXtPlan.to_nnunet_arch_kwargs`; :meth:`RCSegNeXt.nnunet_arch_kwargs` gives those keys
for a built network (what procto's nnU-Net trainers write into the plans); the trainer toggles
``net.decoder.deep_supervision``.
With deep supervision on, ``forward`` returns ``n_stages - 1`` logits maps, full resolution first.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from procto.nets.blocks import BLOCKS, build_block
from procto.nets.registry import register_model
from procto.nets.plan import (
    DEFAULT_BASE_WIDTH,
    anisotropic_stages,
    nnunet_arch_kwargs,
    plan_kernels_strides,
    total_stride,
)

#: Spacing of Dataset A, (z, y, x) mm: the default plan.
DATASET_A_SPACING = (4.0, 0.875, 0.875)

#: nnU-Net plan keys that configure nnU-Net's own networks (conv/norm/dropout/nonlinearity ops, conv counts) and are
#: meaningless here: RCSegNeXt fixes its ops as the paper specifies.  They are accepted and ignored so that an nnU-Net
#: plans ``arch_kwargs`` dict can be passed through.
NNUNET_IGNORED_KWARGS = frozenset({
    "conv_op", "norm_op", "norm_op_kwargs", "dropout_op", "dropout_op_kwargs", "nonlin", "nonlin_kwargs",
    "conv_bias", "n_conv_per_stage", "n_conv_per_stage_decoder", "nonlin_first",
})

#: Table 4 of the paper (ablation of the blocks; the anisotropic stages fixed to AniNeXt except in the baseline):
#: registry name → (anisotropic-stage block, isotropic-stage block, #P (M) reported).  ``paper_num_parameters()`` of
#: these constructions: 22,137,347 / 22,067,331 / 5,539,587 / 8,111,491 / 5,522,115 / 2,759,363 — every row matches to
#: the paper's two decimals (the Res2Net block is not public; see :class:`procto.nets.blocks.Res2NetBlock`).
ABLATION_VARIANTS: dict[str, tuple[str, str, float]] = {
    "rcsegnext_b_plain": ("conv", "conv", 22.14),  # baseline: 3D U-Net + aniso kernels + IN
    "rcsegnext_b_conv": ("aninext", "conv", 22.07),
    "rcsegnext_b_convnext": ("aninext", "convnext", 5.54),
    "rcsegnext_b_res2net": ("aninext", "res2net", 8.11),
    "rcsegnext_b_res2next": ("aninext", "res2next", 5.52),
    "rcsegnext_b": ("aninext", "isonext", 2.76),
}

#: Not in Table 4: IsoNeXt with SAIM's grouped convolutions but no regrouping (isolates the regrouping).
GROUPED_VARIANT = ("rcsegnext_b_grouped", "aninext", "isonext_grouped")


def _as_int_lists(x: Sequence[Sequence[int]], what: str) -> list[list[int]]:
    try:
        return [[int(v) for v in row] for row in x]
    except TypeError:
        raise ValueError(f"{what} must be a list of per-axis lists, got {x!r}") from None


def _strides_and_kernels(strides: Sequence[Sequence[int]] | None, kernels: Sequence[Sequence[int]] | None,
                         spacing: Sequence[float] | None,
                         n_stages: int | None) -> tuple[list[list[int]], list[list[int]]]:
    """Pooling strides (``n - 1``, nnU-Net's leading ones dropped) and ``n`` stage kernels, from the arguments or, where
    missing, from ``plan_kernels_strides(spacing)``; checked for consistency."""
    if strides is None or kernels is None:
        p_strides, p_kernels = plan_kernels_strides(spacing if spacing is not None else DATASET_A_SPACING)
        strides = p_strides if strides is None else strides
        kernels = p_kernels if kernels is None else kernels
    kernels = _as_int_lists(kernels, "kernels")
    strides = _as_int_lists(strides, "strides")
    n = len(kernels)
    if len(strides) == n and all(v == 1 for v in strides[0]):
        strides = strides[1:]  # nnU-Net convention: the first stage does not pool
    if len(strides) != n - 1:
        raise ValueError(f"{n} kernels need {n - 1} pooling strides (or nnU-Net's {n}), got {len(strides)}")
    if n_stages is not None and int(n_stages) != n:
        raise ValueError(f"n_stages={n_stages} but {n} kernels were given")
    if any(len(k) != 3 for k in kernels) or any(len(s) != 3 for s in strides):
        raise ValueError("RCSegNeXt is 3-D: kernels and strides need 3 entries each")
    return strides, kernels


class _Stage(nn.Sequential):
    """``n`` blocks of one kind; the first maps ``cin → cout``."""

    def __init__(self, kind: str, n: int, cin: int, cout: int, kernel: Sequence[int], expansion: int, scale: int,
                 always_build_shortcut: bool):
        if n < 1:
            raise ValueError(f"a stage needs at least one block, got {n}")
        super().__init__(*[
            build_block(kind, cin if i == 0 else cout, cout, tuple(kernel), expansion, scale, always_build_shortcut)
            for i in range(n)
        ])
        self.kind = kind


class RCSegNeXtEncoder(nn.Module):
    """Stem (1×1×1) and ``n_stages`` stages separated by max-poolings; returns every stage's output (the skips, the last
    being the bottleneck)."""

    def __init__(self, input_channels: int, widths: list[int], strides: list[list[int]], kernels: list[list[int]],
                 blocks: list[int], kinds: list[str], expansion: int, scale: int, always_build_shortcut: bool):
        super().__init__()
        self.stem = nn.Conv3d(input_channels, widths[0], kernel_size=1, bias=True)
        self.pools = nn.ModuleList(nn.MaxPool3d(kernel_size=tuple(s), stride=tuple(s)) for s in strides)
        self.stages = nn.ModuleList(
            _Stage(kinds[i], blocks[i], widths[0] if i == 0 else widths[i - 1], widths[i], kernels[i], expansion,
                   scale, always_build_shortcut)
            for i in range(len(widths))
        )
        self.strides = strides

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.stem(x)
        skips = []
        for i, stage in enumerate(self.stages):
            if i > 0:
                x = self.pools[i - 1](x)
            x = stage(x)
            skips.append(x)
        return skips


class RCSegNeXtDecoder(nn.Module):
    """Mirror of the encoder.  Module lists run deepest level first (as in nnU-Net's ``UNetDecoder``): ``transpconvs[j]``,
    ``stages[j]`` and ``seg_layers[j]`` serve decoder level ``n_stages - 2 - j``; ``seg_layers[-1]`` is the paper's
    output convolution, the others are the deep-supervision heads."""

    def __init__(self, num_classes: int, widths: list[int], strides: list[list[int]], kernels: list[list[int]],
                 decoder_blocks: list[int], kinds: list[str], expansion: int, scale: int,
                 always_build_shortcut: bool, deep_supervision: bool):
        super().__init__()
        self.deep_supervision = bool(deep_supervision)
        levels = list(range(len(widths) - 2, -1, -1))  # deepest decoder level first
        self.transpconvs = nn.ModuleList(
            nn.ConvTranspose3d(widths[i + 1], widths[i], kernel_size=tuple(strides[i]), stride=tuple(strides[i]),
                               bias=True)
            for i in levels
        )
        self.stages = nn.ModuleList(
            _Stage(kinds[i], decoder_blocks[i], 2 * widths[i], widths[i], kernels[i], expansion, scale,
                   always_build_shortcut)
            for i in levels
        )
        self.seg_layers = nn.ModuleList(nn.Conv3d(widths[i], num_classes, kernel_size=1, bias=True) for i in levels)

    def forward(self, skips: list[torch.Tensor]) -> torch.Tensor | list[torch.Tensor]:
        x = skips[-1]
        outputs = []
        n = len(self.stages)
        for j, (up, stage) in enumerate(zip(self.transpconvs, self.stages)):
            x = stage(torch.cat((up(x), skips[-(j + 2)]), dim=1))
            if self.deep_supervision:
                outputs.append(self.seg_layers[j](x))
            elif j == n - 1:
                outputs.append(self.seg_layers[-1](x))
        if not self.deep_supervision:
            return outputs[0]
        return outputs[::-1]  # full resolution first, as nnU-Net's loss expects


class RCSegNeXt(nn.Module):
    """RCSegNeXt.  Returns raw logits ``(B, num_classes, D, H, W)``, or, with ``decoder.deep_supervision`` on, a list of
    ``n_stages - 1`` logits maps from full resolution down.

    Parameters
    ----------
    input_channels, num_classes:
        Image channels (1: sagittal T2) and classes (3: background, rectum, tumour).
    deep_supervision:
        Initial value of ``self.decoder.deep_supervision`` (the heads are built either way).
    strides:
        Pooling strides, ``n_stages - 1`` entries, or nnU-Net's ``n_stages`` entries whose first is all ones.
    kernels (alias ``kernel_sizes``):
        Kernel per resolution stage (``n_stages`` entries).  Stages whose kernel is 1 along z get ``aniso_block``, the
        others ``iso_block``.  Without ``strides``/``kernels`` both come from ``plan_kernels_strides(spacing)``.
    widths (alias ``features_per_stage``) / base_width:
        Channels per stage; default ``base_width · 2**i`` (32 … 512).
    blocks (alias ``n_blocks_per_stage``):
        Blocks per encoder stage; [2, 2, 2, 2, 2] for B, [2, 2, 2, 8, 4] for L.
    decoder_blocks (alias ``n_blocks_per_stage_decoder``):
        Blocks per decoder level, shallow → deep (``n_stages - 1`` entries); default ``blocks[:-1]`` (mirror).
    expansion, scale:
        ``r`` and ``s`` (2 and 4).
    aniso_block, iso_block:
        Block kinds (keys of :data:`procto.nets.blocks.BLOCKS`) for the ablation of Table 4.
    always_build_shortcut:
        Build the (unused) 1×1×1 shortcut in blocks with ``C_in == C_out`` too, as the authors do (their counts include
        it).
    spacing:
        Median spacing for the plan when ``strides``/``kernels`` are not given (default Dataset A's).
    n_stages:
        Optional consistency check (nnU-Net plans carry it).
    """

    def __init__(
        self,
        input_channels: int = 1,
        num_classes: int = 3,
        deep_supervision: bool = False,
        *,
        strides: Sequence[Sequence[int]] | None = None,
        kernels: Sequence[Sequence[int]] | None = None,
        widths: Sequence[int] | None = None,
        base_width: int = DEFAULT_BASE_WIDTH,
        blocks: Sequence[int] | None = None,
        decoder_blocks: Sequence[int] | None = None,
        expansion: int = 2,
        scale: int = 4,
        aniso_block: str = "aninext",
        iso_block: str = "isonext",
        always_build_shortcut: bool = True,
        spacing: Sequence[float] | None = None,
        n_stages: int | None = None,
        kernel_sizes: Sequence[Sequence[int]] | None = None,
        features_per_stage: Sequence[int] | None = None,
        n_blocks_per_stage: Sequence[int] | None = None,
        n_blocks_per_stage_decoder: Sequence[int] | None = None,
        **nnunet_kwargs,
    ):
        super().__init__()
        unknown = set(nnunet_kwargs) - NNUNET_IGNORED_KWARGS
        if unknown:
            raise TypeError(f"RCSegNeXt got unexpected keyword arguments {sorted(unknown)}")
        kernels = kernels if kernels is not None else kernel_sizes
        widths = widths if widths is not None else features_per_stage
        blocks = blocks if blocks is not None else n_blocks_per_stage
        decoder_blocks = decoder_blocks if decoder_blocks is not None else n_blocks_per_stage_decoder
        for kind in (aniso_block, iso_block):
            if kind not in BLOCKS:
                raise ValueError(f"unknown block kind {kind!r}; known: {', '.join(BLOCKS)}")

        strides, kernels = _strides_and_kernels(strides, kernels, spacing, n_stages)
        n = len(kernels)

        widths = [int(base_width) * 2**i for i in range(n)] if widths is None else [int(w) for w in widths]
        blocks = [2] * n if blocks is None else [int(b) for b in blocks]
        decoder_blocks = blocks[:-1] if decoder_blocks is None else [int(b) for b in decoder_blocks]
        if len(widths) != n or len(blocks) != n or len(decoder_blocks) != n - 1:
            raise ValueError(f"need {n} widths, {n} encoder block counts and {n - 1} decoder block counts; got "
                             f"{widths}, {blocks}, {decoder_blocks}")

        aniso = anisotropic_stages(kernels)
        kinds = [aniso_block if a else iso_block for a in aniso]

        self.input_channels = int(input_channels)
        self.num_classes = int(num_classes)
        self.strides = strides
        self.kernels = kernels
        self.widths = widths
        self.blocks = blocks
        self.decoder_blocks = decoder_blocks
        self.anisotropic = aniso
        self.block_kinds = kinds
        self.aniso_block = aniso_block
        self.iso_block = iso_block
        self.expansion = int(expansion)
        self.scale = int(scale)
        self.divisor = total_stride(strides)

        self.encoder = RCSegNeXtEncoder(input_channels, widths, strides, kernels, blocks, kinds, expansion, scale,
                                        always_build_shortcut)
        self.decoder = RCSegNeXtDecoder(num_classes, widths, strides, kernels, decoder_blocks, kinds, expansion,
                                        scale, always_build_shortcut, deep_supervision)

    def forward(self, x: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:
        if x.ndim != 5:
            raise ValueError(f"RCSegNeXt expects (B, C, D, H, W), got shape {tuple(x.shape)}")
        bad = [int(s) for s, d in zip(x.shape[2:], self.divisor) if s % d]
        if bad:
            raise ValueError(f"input spatial shape {tuple(x.shape[2:])} must be divisible by {tuple(self.divisor)}")
        return self.decoder(self.encoder(x))

    def nnunet_arch_kwargs(self) -> dict:
        """This network's construction in nnU-Net v2 plans style (``RCSegNeXt(in, classes, ds, **kwargs)`` rebuilds it;
        ``strides`` with nnU-Net's leading all-ones entry, which nnU-Net reads as ``pool_op_kernel_sizes``)."""
        return {**nnunet_arch_kwargs(self), "aniso_block": self.aniso_block, "iso_block": self.iso_block}

    def deep_supervision_heads(self) -> list[nn.Module]:
        """The 1×1×1 heads used only with deep supervision (not part of the paper's model)."""
        return list(self.decoder.seg_layers[:-1])

    def paper_num_parameters(self) -> int:
        """Parameters counted as the paper does: everything except the deep-supervision heads."""
        total = sum(p.numel() for p in self.parameters())
        return total - sum(p.numel() for m in self.deep_supervision_heads() for p in m.parameters())


# ----------------------------------------------------------------------------------------------------------- registry
def _build(input_channels: int, num_classes: int, spacing: Sequence[float], deep_supervision: bool,
           **kwargs) -> RCSegNeXt:
    strides, kernels = plan_kernels_strides(spacing)
    return RCSegNeXt(input_channels, num_classes, deep_supervision, strides=strides, kernels=kernels, **kwargs)


@register_model("rcsegnext_b")
def rcsegnext_b(input_channels: int = 1, num_classes: int = 3, spacing: Sequence[float] = DATASET_A_SPACING,
                deep_supervision: bool = False, **kwargs) -> RCSegNeXt:
    """RCSegNeXt-B: ``C = 32``, two blocks per stage, r = 2, s = 4 (2.76 M parameters)."""
    return _build(input_channels, num_classes, spacing, deep_supervision, **kwargs)


@register_model("rcsegnext_l")
def rcsegnext_l(input_channels: int = 1, num_classes: int = 3, spacing: Sequence[float] = DATASET_A_SPACING,
                deep_supervision: bool = False, **kwargs) -> RCSegNeXt:
    """RCSegNeXt-L: ``C = 48``, blocks [2, 2, 2, 8, 4], decoder mirrored ([2, 2, 2, 8] shallow → deep) (10.77 M)."""
    kwargs.setdefault("base_width", 48)
    kwargs.setdefault("blocks", [2, 2, 2, 8, 4])
    return _build(input_channels, num_classes, spacing, deep_supervision, **kwargs)


#: The builders this module registers, by name (also reachable through ``procto.nets.create_model``).
MODELS: dict[str, object] = {"rcsegnext_b": rcsegnext_b, "rcsegnext_l": rcsegnext_l}


def _register_variant(name: str, aniso: str, iso: str) -> None:
    def builder(input_channels: int = 1, num_classes: int = 3, spacing: Sequence[float] = DATASET_A_SPACING,
                deep_supervision: bool = False, **kwargs) -> RCSegNeXt:
        return _build(input_channels, num_classes, spacing, deep_supervision, aniso_block=aniso, iso_block=iso,
                      **kwargs)

    builder.__name__ = name
    builder.__qualname__ = name
    builder.__doc__ = f"RCSegNeXt-B ablation: {aniso} blocks in anisotropic stages, {iso} blocks in isotropic ones."
    register_model(name)(builder)
    MODELS[name] = builder


for _name, (_aniso, _iso, _params) in ABLATION_VARIANTS.items():
    if _name != "rcsegnext_b":
        _register_variant(_name, _aniso, _iso)
_register_variant(*GROUPED_VARIANT)


__all__ = [
    "RCSegNeXt",
    "RCSegNeXtEncoder",
    "RCSegNeXtDecoder",
    "ABLATION_VARIANTS",
    "GROUPED_VARIANT",
    "DATASET_A_SPACING",
    "MODELS",
    "rcsegnext_b",
    "rcsegnext_l",
]
