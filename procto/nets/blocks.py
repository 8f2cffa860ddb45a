"""3-D building blocks of RCSegNeXt (AniNeXt, IsoNeXt with its Scale-Aware Integration Module) and of its ablation
(Table 4: plain convolution, ConvNeXt-style, Res2Net bottleneck, Res2NeXt, and IsoNeXt without SAIM's regrouping).

Tensors are ``(B, C, D, H, W)``.  Conventions follow the authors' code (``../shared/spec/rcsegnext.md``), because the
paper's parameter counts depend on them:

* every convolution has a bias; normalisation is ``InstanceNorm3d`` without affine parameters (no parameters);
* residual blocks add their input, through a 1×1×1 projection where ``C_in != C_out``.  The authors build that projection
  in *every* residual block, even where it is never used (``C_in == C_out``), and their 2.76 M / 10.77 M counts include
  those unused weights.  ``always_build_shortcut=True`` (the default) reproduces this; ``False`` builds it only where it is
  applied.  Either way it is *applied* only where ``C_in != C_out``.

Every block takes ``(in_channels, out_channels, kernel_size, expansion, scale, always_build_shortcut)`` so that
:func:`build_block` can swap them (arguments a block has no use for are ignored).  The blocks:

=====================  =======================================================================================
``ConvBlock``          conv k (bias) → IN → ReLU (the baseline "Conv" of Table 4: two of them make a U-Net stage)
``ConvNeXtBlock``      depthwise conv k → IN → 1×1×1 C→rC → GELU → 1×1×1 rC→C_out; residual
``AniNeXtBlock``       ``ConvNeXtBlock`` with the anisotropic 1×3×3 kernel (Fig. 3a)
``Res2NetBlock``       Res2Net bottleneck (Fig. 3b): 1×1×1 → IN/ReLU → split s, full k-convs with hand-over →
                       IN/ReLU → 1×1×1 → IN; residual; ReLU
``Res2NeXtBlock``      multi-scale depthwise k-convs (:class:`MultiScaleDepthwise`) → IN → inverted bottleneck (Fig. 3c)
``IsoNeXtBlock``       multi-scale depthwise k-convs → IN → :class:`SAIM` (Fig. 3d)
``GroupedIsoNeXtBlock`` IsoNeXt whose SAIM skips the channel regrouping (grouped 1×1×1s only: no inter-scale fusion)
=====================  =======================================================================================
"""

from __future__ import annotations

from typing import Sequence, Union

import torch
from torch import nn

KernelSize = Union[int, Sequence[int]]


def _triple(k: KernelSize) -> tuple[int, int, int]:
    if isinstance(k, int):
        return (k, k, k)
    k = tuple(int(v) for v in k)
    if len(k) != 3:
        raise ValueError(f"kernel size must have 3 entries (z, y, x), got {k}")
    return k  # type: ignore[return-value]


def _same_padding(k: tuple[int, int, int]) -> tuple[int, int, int]:
    if any(v % 2 == 0 for v in k):
        raise ValueError(f"kernel sizes must be odd to keep the shape, got {k}")
    return tuple(v // 2 for v in k)  # type: ignore[return-value]


def _conv(cin: int, cout: int, kernel: KernelSize = 1, groups: int = 1, bias: bool = True) -> nn.Conv3d:
    k = _triple(kernel)
    return nn.Conv3d(cin, cout, kernel_size=k, padding=_same_padding(k), groups=groups, bias=bias)


def _norm(channels: int) -> nn.InstanceNorm3d:
    # Non-affine IN (PyTorch's default), as the authors use: no parameters.
    return nn.InstanceNorm3d(channels)


def channel_regroup(x: torch.Tensor, groups: int) -> torch.Tensor:
    """Channel shuffle: view the ``C`` channels as ``groups`` blocks of ``C / groups`` and transpose, so that new block ``j``
    holds channel ``j`` of every old block.

    SAIM calls it with ``groups = s·r`` on the ``r·C`` expanded channels (``s`` scale blocks of ``r`` sub-blocks of
    ``w = C/s``): the compressing convolution's group ``j`` (of ``w`` groups, ``s·r`` channels each) then sees ``r``
    channels of every scale.
    """
    b, c = x.shape[:2]
    if c % groups:
        raise ValueError(f"{c} channels do not split into {groups} groups")
    return x.reshape(b, groups, c // groups, *x.shape[2:]).transpose(1, 2).reshape(b, c, *x.shape[2:])


class _Residual(nn.Module):
    """Base of residual blocks: ``out = body(x) + shortcut(x)`` with the authors' projection rule (module docstring)."""

    def __init__(self, in_channels: int, out_channels: int, always_build_shortcut: bool = True):
        super().__init__()
        self.in_channels = int(in_channels)
        self.out_channels = int(out_channels)
        self.project = self.in_channels != self.out_channels
        if self.project or always_build_shortcut:
            self.shortcut = nn.Conv3d(self.in_channels, self.out_channels, kernel_size=1, bias=True)
        else:
            self.shortcut = None

    def body(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def residual(self, x: torch.Tensor) -> torch.Tensor:
        return self.shortcut(x) if self.project else x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x) + self.residual(x)


# --------------------------------------------------------------------------------------------------- plain convolution
class ConvBlock(nn.Module):
    """conv ``kernel_size`` (bias) → InstanceNorm → ReLU; no residual.  Two in a row are the stage of the ablation's
    baseline (a 3D U-Net with anisotropic kernels and IN instead of BN, Table 4 row 1)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: KernelSize = 3, expansion: int = 2,
                 scale: int = 4, always_build_shortcut: bool = True):
        super().__init__()
        self.conv = _conv(in_channels, out_channels, kernel_size)
        self.norm = _norm(out_channels)
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.norm(self.conv(x)))


# ------------------------------------------------------------------------------------------------ ConvNeXt / AniNeXt
class ConvNeXtBlock(_Residual):
    """ConvNeXt-style block with IN: depthwise conv ``kernel_size`` → IN → 1×1×1 ``C_in → r·C_in`` → GELU →
    1×1×1 ``r·C_in → C_out``; residual."""

    default_kernel: KernelSize = 3

    def __init__(self, in_channels: int, out_channels: int, kernel_size: KernelSize | None = None,
                 expansion: int = 2, scale: int = 4, always_build_shortcut: bool = True):
        super().__init__(in_channels, out_channels, always_build_shortcut)
        k = self.default_kernel if kernel_size is None else kernel_size
        self.dwconv = _conv(in_channels, in_channels, k, groups=in_channels)
        self.norm = _norm(in_channels)
        self.expand = _conv(in_channels, expansion * in_channels)
        self.act = nn.GELU()
        self.compress = _conv(expansion * in_channels, out_channels)

    def body(self, x: torch.Tensor) -> torch.Tensor:
        return self.compress(self.act(self.expand(self.norm(self.dwconv(x)))))


class AniNeXtBlock(ConvNeXtBlock):
    """AniNeXt (Fig. 3a): the ConvNeXt-style block with an anisotropic depthwise 1×3×3 kernel, for the shallow stages
    whose slices are thick."""

    default_kernel: KernelSize = (1, 3, 3)


# --------------------------------------------------------------------------------------- multi-scale (Res2Net family)
class MultiScaleDepthwise(nn.Module):
    """Res2Net-style hierarchical split of ``channels`` into ``scale`` groups of ``w = channels / scale``.

    Group 0 goes through a depthwise conv; group ``i`` (``0 < i < s-1``) through its own depthwise conv applied to its split
    *plus the previous group's output* (the hand-over, so receptive fields grow with ``i``); the last group passes
    unchanged (as in the authors' code and Res2Net's ``stype='normal'``); the outputs are concatenated in order.
    ``depthwise=False`` makes the per-group convs full ``w → w`` convolutions (the original Res2Net).
    """

    def __init__(self, channels: int, scale: int = 4, kernel_size: KernelSize = 3, depthwise: bool = True):
        super().__init__()
        if scale < 1 or channels % scale:
            raise ValueError(f"{channels} channels do not split into scale={scale} groups")
        self.scale = int(scale)
        self.width = channels // scale
        n = 1 if scale == 1 else scale - 1
        self.convs = nn.ModuleList(
            _conv(self.width, self.width, kernel_size, groups=self.width if depthwise else 1) for _ in range(n)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        splits = torch.split(x, self.width, dim=1)
        outs = []
        y = None
        for i, conv in enumerate(self.convs):
            y = conv(splits[i] if y is None else y + splits[i])
            outs.append(y)
        if self.scale > 1:
            outs.append(splits[-1])
        return torch.cat(outs, dim=1)


class InvertedBottleneck(nn.Module):
    """Unconstrained channel mixer of ConvNeXt/Res2NeXt: 1×1×1 ``C_in → r·C_in`` → GELU → 1×1×1 ``r·C_in → C_out``."""

    def __init__(self, in_channels: int, out_channels: int, expansion: int = 2):
        super().__init__()
        self.expand = _conv(in_channels, expansion * in_channels)
        self.act = nn.GELU()
        self.compress = _conv(expansion * in_channels, out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.compress(self.act(self.expand(x)))


class SAIM(nn.Module):
    """Scale-Aware Integration Module (Sec. 3.3), replacing the inverted bottleneck of Res2NeXt.

    Input: ``C_in`` channels ordered by scale (``s`` blocks of ``w = C_in / s``, as :class:`MultiScaleDepthwise` emits).

    1. *intra-scale*: 1×1×1 ``C_in → r·C_in`` with ``groups = s`` — each scale is expanded on its own;
    2. GELU;
    3. *regroup*: :func:`channel_regroup` with ``s·r`` blocks, so that each of the next ``w`` groups holds ``r`` channels of
       every scale;
    4. *inter-scale*: 1×1×1 ``r·C_in → C_out`` with ``groups = w = C_in / s`` — each group fuses all scales.

    ``regroup=False`` skips step 3 (the "grouped-only" ablation): each compressing group then reads a single scale, so
    scales never meet.
    """

    def __init__(self, in_channels: int, out_channels: int, expansion: int = 2, scale: int = 4, regroup: bool = True):
        super().__init__()
        if in_channels % scale:
            raise ValueError(f"SAIM: {in_channels} channels do not split into scale={scale} groups")
        self.scale = int(scale)
        self.expansion = int(expansion)
        self.width = in_channels // scale
        if out_channels % self.width:
            raise ValueError(f"SAIM: C_out={out_channels} is not divisible by the {self.width} inter-scale groups")
        self.regroup = bool(regroup)
        self.intra = _conv(in_channels, expansion * in_channels, groups=self.scale)
        self.act = nn.GELU()
        self.inter = _conv(expansion * in_channels, out_channels, groups=self.width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act(self.intra(x))
        if self.regroup:
            x = channel_regroup(x, self.scale * self.expansion)
        return self.inter(x)


class Res2NeXtBlock(_Residual):
    """Res2NeXt (Fig. 3c): multi-scale depthwise convs → IN → inverted bottleneck; residual."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: KernelSize = 3, expansion: int = 2,
                 scale: int = 4, always_build_shortcut: bool = True):
        super().__init__(in_channels, out_channels, always_build_shortcut)
        self.multiscale = MultiScaleDepthwise(in_channels, scale, kernel_size)
        self.norm = _norm(in_channels)
        self.mixer = InvertedBottleneck(in_channels, out_channels, expansion)

    def body(self, x: torch.Tensor) -> torch.Tensor:
        return self.mixer(self.norm(self.multiscale(x)))


class IsoNeXtBlock(_Residual):
    """IsoNeXt (Fig. 3d): multi-scale depthwise convs → IN → :class:`SAIM`; residual."""

    regroup = True

    def __init__(self, in_channels: int, out_channels: int, kernel_size: KernelSize = 3, expansion: int = 2,
                 scale: int = 4, always_build_shortcut: bool = True):
        super().__init__(in_channels, out_channels, always_build_shortcut)
        self.multiscale = MultiScaleDepthwise(in_channels, scale, kernel_size)
        self.norm = _norm(in_channels)
        self.mixer = SAIM(in_channels, out_channels, expansion, scale, regroup=self.regroup)

    def body(self, x: torch.Tensor) -> torch.Tensor:
        return self.mixer(self.norm(self.multiscale(x)))


class GroupedIsoNeXtBlock(IsoNeXtBlock):
    """IsoNeXt whose SAIM keeps the two grouped 1×1×1 convs but drops the regrouping (ablation of the regrouping: same
    parameters as IsoNeXt, no inter-scale fusion)."""

    regroup = False


class Res2NetBlock(_Residual):
    """Res2Net bottleneck (Gao et al., Fig. 3b) in 3-D with IN: 1×1×1 ``C_in → C_in`` → IN → ReLU → split into ``s`` groups,
    full ``w → w`` convs ``kernel_size`` with the hand-over (last group passes) each → IN → ReLU → concatenate →
    1×1×1 ``C_in → C_out`` → IN; add the residual; ReLU.

    As in the original Res2Net (whose convs feed BatchNorm), the convolutions followed by a norm have no bias; the
    shortcut projection keeps its bias as in the other blocks.  The bottleneck keeps the input width (no ``baseWidth``
    narrowing).  The authors' Res2Net block is not public; this construction gives 8,111,491 parameters for the
    Table-4 network, the paper's 8.11 M (with biases it would be 8,118,419 = 8.12 M)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: KernelSize = 3, expansion: int = 2,
                 scale: int = 4, always_build_shortcut: bool = True):
        super().__init__(in_channels, out_channels, always_build_shortcut)
        if in_channels % scale:
            raise ValueError(f"{in_channels} channels do not split into scale={scale} groups")
        self.scale = int(scale)
        self.width = in_channels // scale
        self.reduce = _conv(in_channels, in_channels, bias=False)
        self.norm1 = _norm(in_channels)
        n = 1 if scale == 1 else scale - 1
        self.convs = nn.ModuleList(_conv(self.width, self.width, kernel_size, bias=False) for _ in range(n))
        self.norms = nn.ModuleList(_norm(self.width) for _ in range(n))
        self.restore = _conv(in_channels, out_channels, bias=False)
        self.norm3 = _norm(out_channels)
        self.act = nn.ReLU(inplace=True)

    def body(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act(self.norm1(self.reduce(x)))
        splits = torch.split(x, self.width, dim=1)
        outs, y = [], None
        for i, (conv, norm) in enumerate(zip(self.convs, self.norms)):
            y = self.act(norm(conv(splits[i] if y is None else y + splits[i])))
            outs.append(y)
        if self.scale > 1:
            outs.append(splits[-1])
        return self.norm3(self.restore(torch.cat(outs, dim=1)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(super().forward(x))


#: Block kinds by name (the ``aniso_block`` / ``iso_block`` arguments of ``RCSegNeXt``).
BLOCKS: dict[str, type[nn.Module]] = {
    "conv": ConvBlock,
    "convnext": ConvNeXtBlock,
    "aninext": AniNeXtBlock,
    "res2net": Res2NetBlock,
    "res2next": Res2NeXtBlock,
    "isonext": IsoNeXtBlock,
    "isonext_grouped": GroupedIsoNeXtBlock,
}


def build_block(kind: str, in_channels: int, out_channels: int, kernel_size: KernelSize, expansion: int = 2,
                scale: int = 4, always_build_shortcut: bool = True) -> nn.Module:
    """Instantiate block ``kind`` (a key of :data:`BLOCKS`)."""
    try:
        cls = BLOCKS[kind]
    except KeyError:
        raise ValueError(f"unknown block kind {kind!r}; known: {', '.join(BLOCKS)}") from None
    return cls(in_channels, out_channels, kernel_size=kernel_size, expansion=expansion, scale=scale,
               always_build_shortcut=always_build_shortcut)


__all__ = [
    "channel_regroup",
    "ConvBlock",
    "ConvNeXtBlock",
    "AniNeXtBlock",
    "MultiScaleDepthwise",
    "InvertedBottleneck",
    "SAIM",
    "Res2NeXtBlock",
    "IsoNeXtBlock",
    "GroupedIsoNeXtBlock",
    "Res2NetBlock",
    "BLOCKS",
    "build_block",
]
