"""Building blocks of U-SAM's U-shaped adapter (Zhang et al., Commun. Med. 2025) and a LoRA adapter for SAM's ViT.

Tensors are ``(B, C, H, W)``.  Layouts follow the authors' public code (``../shared/spec/usam.md``), because Table 5's
parameter and MAC counts depend on them:

=====================  ========================================================================================
:class:`ConvBNReLU`    Conv3×3 (bias) → BatchNorm2d → ReLU
:class:`DownBlock`     MaxPool2d(2) → ``n_conv`` × :class:`ConvBNReLU` (halves the resolution)
:class:`DownPath`      the "downsampling adapter": ``inc`` (f0, full resolution) and four DownBlocks (f1 … f4)
:class:`UpBlock`       ConvTranspose2d(k=2, s=2) on the incoming features → concat the skip → ``n_conv`` × ConvBNReLU
:class:`SegHead`       Conv3×3 → BN → ReLU → Conv1×1 to one logit map per class
:class:`LoRAQKV`       a ViT attention ``qkv`` projection with low-rank updates on q and v (SAMed-style, rank 4)
=====================  ========================================================================================
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import nn


class ConvBNReLU(nn.Module):
    """Conv3×3 (with bias, padding 1) → BatchNorm2d → ReLU."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1)
        self.norm = nn.BatchNorm2d(out_channels)
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.norm(self.conv(x)))


def conv_stack(in_channels: int, out_channels: int, n_conv: int = 2) -> nn.Sequential:
    """``n_conv`` :class:`ConvBNReLU` layers, the first mapping ``in_channels`` to ``out_channels``."""
    if n_conv < 1:
        raise ValueError(f"n_conv must be >= 1, got {n_conv}")
    layers = [ConvBNReLU(in_channels, out_channels)]
    layers += [ConvBNReLU(out_channels, out_channels) for _ in range(n_conv - 1)]
    return nn.Sequential(*layers)


class DownBlock(nn.Module):
    """MaxPool2d(2) then ``n_conv`` × (Conv3×3 + BN + ReLU): ``(B, C_in, H, W) -> (B, C_out, H/2, W/2)``."""

    def __init__(self, in_channels: int, out_channels: int, n_conv: int = 2) -> None:
        super().__init__()
        self.pool = nn.MaxPool2d(2)
        self.convs = conv_stack(in_channels, out_channels, n_conv)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.convs(self.pool(x))


class DownPath(nn.Module):
    """U-SAM's CNN "downsampling adapter".

    ``inc`` (Conv3×3+BN+ReLU, ``channels[0]`` at full resolution) gives f0; DownBlocks give f1 … f4 at 1/2 … 1/16 of
    the input size.  The defaults are the paper's ViT-B setting: (32, 64, 128, 256, 768) channels, the last equal to
    the ViT's embedding width so that f4 replaces the patch embedding.

    ``forward`` returns ``(f4, [f0, f1, f2, f3])``.
    """

    def __init__(self, in_channels: int = 3, channels: Sequence[int] = (32, 64, 128, 256, 768), n_conv: int = 2) -> None:
        super().__init__()
        channels = tuple(int(c) for c in channels)
        if len(channels) != 5:
            raise ValueError(f"DownPath needs 5 channel widths (f0 … f4), got {channels}")
        self.channels = channels
        self.inc = ConvBNReLU(in_channels, channels[0])
        self.down1 = DownBlock(channels[0], channels[1], n_conv)
        self.down2 = DownBlock(channels[1], channels[2], n_conv)
        self.down3 = DownBlock(channels[2], channels[3], n_conv)
        self.down4 = DownBlock(channels[3], channels[4], n_conv)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        f0 = self.inc(x)
        f1 = self.down1(f0)
        f2 = self.down2(f1)
        f3 = self.down3(f2)
        f4 = self.down4(f3)
        return f4, [f0, f1, f2, f3]


class UpBlock(nn.Module):
    """2× up-sampling block of U-SAM's decoder.

    ``ConvTranspose2d(in, in, k=2, s=2)`` on the incoming features, concatenation with the skip features
    (``skip_channels``; 0 = no skip connection), then ``n_conv`` × (Conv3×3 + BN + ReLU) to ``out_channels``.
    (The authors' ``UpBlock(in_channels=2C, ...)`` names the concatenated width; the layers are the same.)
    """

    def __init__(self, in_channels: int, skip_channels: int, out_channels: int, n_conv: int = 2) -> None:
        super().__init__()
        self.skip_channels = int(skip_channels)
        self.up = nn.ConvTranspose2d(in_channels, in_channels, kernel_size=2, stride=2)
        self.convs = conv_stack(in_channels + self.skip_channels, out_channels, n_conv)

    def forward(self, x: torch.Tensor, skip: torch.Tensor | None = None) -> torch.Tensor:
        x = self.up(x)
        if self.skip_channels:
            if skip is None:
                raise ValueError("this UpBlock was built with a skip connection but got no skip features")
            x = torch.cat([x, skip], dim=1)
        return self.convs(x)


class SegHead(nn.Module):
    """Conv3×3(C→C) + BN + ReLU + Conv1×1(C→num_classes): one logit map per class."""

    def __init__(self, channels: int, num_classes: int, bias: bool = False) -> None:
        super().__init__()
        self.conv = ConvBNReLU(channels, channels)
        self.out = nn.Conv2d(channels, num_classes, kernel_size=1, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.conv(x))


class LoRAQKV(nn.Module):
    """A fused ``qkv`` projection (``nn.Linear(d, 3d)``) with trainable low-rank updates.

    ``qkv(x) + scale · [B_q A_q x, B_k A_k x, B_v A_v x]`` for the projections named in ``targets`` (default ``"qv"``,
    as SAMed, the paper's SAM+LoRA reference: rank 4 on q and v).  The base projection is kept as the child ``base``
    (an ``nn.Linear``), the adapters as bias-free ``nn.Linear`` children ``lora_a_<t>`` (d→r, Kaiming-uniform init) and
    ``lora_b_<t>`` (r→d, zero init), so the wrapped layer computes exactly the base projection until trained.
    ``scale = alpha / rank`` (``alpha`` defaults to ``rank``: scale 1, as SAMed).
    """

    def __init__(self, base: nn.Linear, rank: int = 4, alpha: float | None = None, targets: str = "qv") -> None:
        super().__init__()
        if base.out_features != 3 * base.in_features:
            raise ValueError(f"expected a fused qkv Linear(d, 3d), got {base}")
        if rank < 1:
            raise ValueError(f"LoRA rank must be >= 1, got {rank}")
        targets = "".join(sorted(set(targets), key="qkv".index)) if targets else ""
        if not targets or set(targets) - set("qkv"):
            raise ValueError(f"LoRA targets must be a non-empty subset of 'qkv', got {targets!r}")
        self.base = base
        self.dim = base.in_features
        self.rank = int(rank)
        self.alpha = float(rank if alpha is None else alpha)
        self.scale = self.alpha / self.rank
        self.targets = targets
        for t in targets:
            a = nn.Linear(self.dim, self.rank, bias=False)
            b = nn.Linear(self.rank, self.dim, bias=False)
            nn.init.kaiming_uniform_(a.weight, a=math.sqrt(5))
            nn.init.zeros_(b.weight)
            setattr(self, f"lora_a_{t}", a)
            setattr(self, f"lora_b_{t}", b)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.base(x)
        parts = list(out.split(self.dim, dim=-1))
        for t in self.targets:
            i = "qkv".index(t)
            delta = getattr(self, f"lora_b_{t}")(getattr(self, f"lora_a_{t}")(x))
            parts[i] = parts[i] + self.scale * delta
        return torch.cat(parts, dim=-1)

    def extra_repr(self) -> str:
        return f"rank={self.rank}, alpha={self.alpha:g}, targets={self.targets!r}"


def apply_lora(image_encoder: nn.Module, rank: int = 4, alpha: float | None = None, targets: str = "qv",
               freeze: bool = True) -> list[str]:
    """Wrap every ``blocks[i].attn.qkv`` of a SAM ``ImageEncoderViT`` in :class:`LoRAQKV`.

    With ``freeze`` (default) every parameter of ``image_encoder`` is frozen except the LoRA matrices.  Returns the
    names (relative to ``image_encoder``) of the wrapped layers.  Idempotent: already wrapped layers are left as they
    are.
    """
    wrapped = []
    for i, blk in enumerate(image_encoder.blocks):
        qkv = blk.attn.qkv
        if isinstance(qkv, LoRAQKV):
            continue
        blk.attn.qkv = LoRAQKV(qkv, rank=rank, alpha=alpha, targets=targets)
        wrapped.append(f"blocks.{i}.attn.qkv")
    if freeze:
        for name, p in image_encoder.named_parameters():
            p.requires_grad_(".lora_" in f".{name}")
    return wrapped


def lora_parameters(module: nn.Module) -> list[nn.Parameter]:
    """The LoRA matrices under ``module``."""
    return [p for n, p in module.named_parameters() if ".lora_" in f".{n}"]


__all__ = [
    "ConvBNReLU",
    "conv_stack",
    "DownBlock",
    "DownPath",
    "UpBlock",
    "SegHead",
    "LoRAQKV",
    "apply_lora",
    "lora_parameters",
]
