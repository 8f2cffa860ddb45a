"""Building blocks of the T2/T3 staging CNN: 2D / 3D / (2+1)D convolutions on volumes and a ResNet BasicBlock.

Every convolution works on 5-D tensors ``(B, C, D, H, W)`` and never strides along depth ``D`` (the paper keeps one
feature per slice: "unlike Tran et al., we did not stride along the third axis because our goal is to yield slice-wise
scores").  The three kinds of a ``k×k`` convolution are

* ``"2d"``  — one ``Conv3d`` with kernel ``1×k×k`` (each slice on its own),
* ``"3d"``  — one ``Conv3d`` with kernel ``3×k×k`` (depth padding 1, so ``D`` slices in give ``D`` slices out),
* ``"2plus1d"`` — ``1×k×k`` (``cin→M``) → BatchNorm(M) → ReLU → ``3×1×1`` (``M→cout``), Tran et al.'s R(2+1)D
  factorisation, with the mid width ``M`` from :func:`r2plus1d_mid_channels`.

No convolution has a bias (each is followed by BatchNorm), as in torchvision's ResNet.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

ConvKind = Literal["2d", "3d", "2plus1d"]
CONV_KINDS: tuple[str, ...] = ("2d", "3d", "2plus1d")

#: Depth extent of the "3D" kernels (and of the temporal convolution of (2+1)D).
DEPTH_KERNEL = 3


def _check_kind(kind: str) -> str:
    if kind not in CONV_KINDS:
        raise ValueError(f"unknown convolution kind {kind!r}; expected one of {CONV_KINDS}")
    return kind


def r2plus1d_mid_channels(cin: int, cout: int) -> int:
    """Width ``M`` of the intermediate space of a (2+1)D convolution.

    Tran et al. choose ``M`` so that the (2+1)D block has about the parameters of the full ``3×3×3`` convolution:
    ``M = ⌊t·d²·cin·cout / (d²·cin + t·cout)⌋`` with ``t = 3`` and ``d = 3``.  The same ``d = 3`` formula is used
    for the 7×7 stem too (giving ``M = 8`` for ``1 → 32``), which is what reproduces f-R(2+1)D's 8,294,563 parameters
    in Table 2.
    """
    t, d2 = DEPTH_KERNEL, 9
    return (t * d2 * cin * cout) // (d2 * cin + t * cout)


class Conv2Plus1d(nn.Sequential):
    """``1×k×k`` spatial conv (``cin→mid``) → BN → ReLU → ``3×1×1`` depth conv (``mid→cout``); strides spatial only."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1, mid: int | None = None):
        mid = r2plus1d_mid_channels(cin, cout) if mid is None else mid
        pad = kernel // 2
        super().__init__(
            nn.Conv3d(cin, mid, (1, kernel, kernel), stride=(1, stride, stride), padding=(0, pad, pad), bias=False),
            nn.BatchNorm3d(mid),
            nn.ReLU(inplace=True),
            nn.Conv3d(mid, cout, (DEPTH_KERNEL, 1, 1), padding=(DEPTH_KERNEL // 2, 0, 0), bias=False),
        )
        self.mid_channels = mid


def conv_kxk(cin: int, cout: int, kernel: int = 3, stride: int = 1, kind: ConvKind = "2d") -> nn.Module:
    """A ``k×k`` convolution of kind ``"2d"`` / ``"3d"`` / ``"2plus1d"`` with spatial ``stride`` and "same" padding.

    Spatial size ``H`` becomes ``⌈H / stride⌉`` (for odd ``kernel``); depth ``D`` is always kept.
    """
    _check_kind(kind)
    pad = kernel // 2
    if kind == "2d":
        return nn.Conv3d(cin, cout, (1, kernel, kernel), stride=(1, stride, stride), padding=(0, pad, pad), bias=False)
    if kind == "3d":
        return nn.Conv3d(
            cin, cout, (DEPTH_KERNEL, kernel, kernel), stride=(1, stride, stride),
            padding=(DEPTH_KERNEL // 2, pad, pad), bias=False,
        )
    return Conv2Plus1d(cin, cout, kernel, stride)


def conv1x1(cin: int, cout: int, stride: int = 1) -> nn.Conv3d:
    """Pointwise ``1×1×1`` convolution (shortcut projection), spatial stride only."""
    return nn.Conv3d(cin, cout, 1, stride=(1, stride, stride), bias=False)


class BasicBlock(nn.Module):
    """ResNet BasicBlock on volumes: two ``3×3`` convs of one kind, each with BatchNorm, and an identity or
    ``1×1×1``-conv+BN shortcut (used when the width or spatial size changes)."""

    expansion = 1

    def __init__(self, cin: int, cout: int, stride: int = 1, kind: ConvKind = "2d"):
        super().__init__()
        self.kind = _check_kind(kind)
        self.conv1 = conv_kxk(cin, cout, 3, stride, kind)
        self.bn1 = nn.BatchNorm3d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv_kxk(cout, cout, 3, 1, kind)
        self.bn2 = nn.BatchNorm3d(cout)
        self.downsample: nn.Module | None = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(conv1x1(cin, cout, stride), nn.BatchNorm3d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Stem(nn.Sequential):
    """ResNet stem: ``7×7`` conv (spatial stride 2) → BN → ReLU → ``1×3×3`` max-pool (spatial stride 2)."""

    def __init__(self, cin: int, cout: int, kind: ConvKind = "2d", kernel: int = 7):
        _check_kind(kind)
        super().__init__(
            conv_kxk(cin, cout, kernel, 2, kind),
            nn.BatchNorm3d(cout),
            nn.ReLU(inplace=True),
            nn.MaxPool3d((1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1)),
        )
        self.kind = kind


def make_stage(cin: int, cout: int, blocks: int, stride: int, kind: ConvKind) -> nn.Sequential:
    """``blocks`` BasicBlocks of one kind; the first one carries the spatial ``stride`` and the width change."""
    layers = [BasicBlock(cin, cout, stride, kind)]
    layers += [BasicBlock(cout, cout, 1, kind) for _ in range(blocks - 1)]
    return nn.Sequential(*layers)


__all__ = [
    "CONV_KINDS",
    "ConvKind",
    "BasicBlock",
    "Conv2Plus1d",
    "Stem",
    "conv1x1",
    "conv_kxk",
    "make_stage",
    "r2plus1d_mid_channels",
]
