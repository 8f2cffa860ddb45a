"""Spacing-driven network plan of RCSegNeXt (Appendix A, Algorithm 1 of the paper), next to the network it plans
(:mod:`procto.nets.rcsegnext`; :mod:`procto.plan` re-exports the public names).

The median voxel spacing of a data set decides, for each of the ``num_pool`` max-poolings, its stride and, for each
resolution stage (the ``num_pool`` encoder stages before a pooling plus the bottleneck, "saddle layer"), its convolution
kernel.  Algorithm 1, written out for spacings ``sp = (s_z, s_y, s_x)`` in millimetres::

    repeat num_pool times:
        ratio  = [s / min(sp) for s in sp]
        stride = [2 if q <= 2 else 1 for q in ratio]      # only axes within 2x of the finest one are halved
        kernel = [3 if q <= 2 else 1 for q in ratio]      # coarse axes get a 1 (no mixing across thick slices)
        sp     = [s * t for s, t in zip(sp, stride)]      # spacing of the next, pooled, stage
        append stride, kernel
    ratio = [s / min(sp) for s in sp];  append [3 if q <= 2 else 1 for q in ratio]   # bottleneck kernel

so for Dataset A's ``[4.000, 0.875, 0.875]``: strides ``[[1,2,2],[1,2,2],[2,2,2],[2,2,2]]`` and kernels
``[[1,3,3],[1,3,3],[3,3,3],[3,3,3],[3,3,3]]``.  The decoder mirrors the encoder (same kernel per resolution level,
transposed convolutions with the pooling strides).

A stage is *anisotropic* where its kernel has a 1 along z (:func:`is_anisotropic`): RCSegNeXt puts AniNeXt blocks there and
IsoNeXt blocks in the other, isotropic, stages.

>>> plan_kernels_strides((4.0, 0.875, 0.875))
([[1, 2, 2], [1, 2, 2], [2, 2, 2], [2, 2, 2]], [[1, 3, 3], [1, 3, 3], [3, 3, 3], [3, 3, 3], [3, 3, 3]])
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Sequence

from procto.errors import InputError

#: Algorithm 1's threshold on the spacing ratio ``s / min(spacing)`` (the paper's stopping criterion ``s_z/s_xy < 2``;
#: the algorithm itself tests ``ratio <= 2``).
RATIO_THRESHOLD = 2.0

#: Relative tolerance on the threshold so that a ratio that is 2 up to floating-point rounding counts as 2.
_RTOL = 1e-9

#: Authors' defaults for RCSegNeXt-B / -L.
DEFAULT_BASE_WIDTH = 32
DEFAULT_EXPANSION = 2  # r
DEFAULT_SCALE = 4  # s


def _check_spacing(spacing: Sequence[float]) -> list[float]:
    try:
        sp = [float(s) for s in spacing]
    except (TypeError, ValueError):
        raise InputError(f"spacing must be a sequence of numbers, got {spacing!r}") from None
    if len(sp) == 0:
        raise InputError("spacing is empty")
    if not all(math.isfinite(s) and s > 0 for s in sp):
        raise InputError(f"spacing must be positive and finite, got {spacing!r}")
    return sp


def _ratios(sp: Sequence[float]) -> list[float]:
    m = min(sp)
    return [s / m for s in sp]


def _fine(q: float, threshold: float) -> bool:
    return q <= threshold * (1.0 + _RTOL)


def plan_kernels_strides(
    spacing: Sequence[float], num_pool: int = 4, threshold: float = RATIO_THRESHOLD
) -> tuple[list[list[int]], list[list[int]]]:
    """Algorithm 1 of RCSegNeXt's Appendix A.

    Parameters
    ----------
    spacing:
        Median voxel spacing, one value per axis, (z, y, x) in mm (2-D spacings work too).
    num_pool:
        Number of max-poolings (the paper uses four: five resolution stages).
    threshold:
        An axis whose spacing is at most ``threshold`` × the finest spacing is pooled (stride 2) and convolved (kernel
        3); coarser axes get stride 1 and kernel 1.

    Returns
    -------
    strides, kernels:
        ``num_pool`` pooling strides and ``num_pool + 1`` kernel sizes (encoder stages, then the bottleneck), as lists of
        ints.
    """
    sp = _check_spacing(spacing)
    if int(num_pool) != num_pool or num_pool < 0:
        raise InputError(f"num_pool must be a non-negative integer, got {num_pool!r}")
    strides: list[list[int]] = []
    kernels: list[list[int]] = []
    for _ in range(int(num_pool)):
        ratio = _ratios(sp)
        stride = [2 if _fine(q, threshold) else 1 for q in ratio]
        kernel = [3 if _fine(q, threshold) else 1 for q in ratio]
        sp = [s * t for s, t in zip(sp, stride)]
        strides.append(stride)
        kernels.append(kernel)
    kernels.append([3 if _fine(q, threshold) else 1 for q in _ratios(sp)])
    return strides, kernels


def is_anisotropic(kernel: Sequence[int], axis: int | None = 0) -> bool:
    """Whether a stage with this ``kernel`` is anisotropic: its kernel is 1 along ``axis`` (default z, axis 0).

    ``axis=None`` asks whether the kernel is 1 along *any* axis.
    """
    k = [int(v) for v in kernel]
    if axis is None:
        return any(v == 1 for v in k)
    return k[axis] == 1


def anisotropic_stages(kernels: Sequence[Sequence[int]], axis: int | None = 0) -> list[bool]:
    """:func:`is_anisotropic` for each stage's kernel."""
    return [is_anisotropic(k, axis) for k in kernels]


def total_stride(strides: Sequence[Sequence[int]]) -> list[int]:
    """Overall down-sampling factor per axis: the product of the pooling strides (what a patch size must divide by)."""
    if not strides:
        return []
    out = [1] * len(strides[0])
    for st in strides:
        out = [a * int(b) for a, b in zip(out, st)]
    return out


@dataclass
class RCSegNeXtPlan:
    """Everything :class:`procto.nets.rcsegnext.RCSegNeXt` (and an nnU-Net plans file) needs, derived from a spacing.

    ``strides`` are the ``n_stages - 1`` pooling strides (Algorithm 1); :meth:`to_nnunet_arch_kwargs` writes nnU-Net's
    convention of ``n_stages`` strides with a leading all-ones entry.
    """

    spacing: list[float]
    strides: list[list[int]]
    kernels: list[list[int]]
    widths: list[int]
    blocks: list[int]
    decoder_blocks: list[int]
    expansion: int = DEFAULT_EXPANSION
    scale: int = DEFAULT_SCALE
    patch_size: list[int] | None = None
    anisotropic: list[bool] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.anisotropic:
            self.anisotropic = anisotropic_stages(self.kernels)

    @property
    def n_stages(self) -> int:
        return len(self.kernels)

    @property
    def divisor(self) -> list[int]:
        """What every patch dimension must be a multiple of."""
        return total_stride(self.strides)

    def arch_kwargs(self) -> dict:
        """Keyword arguments of ``RCSegNeXt(input_channels, num_classes, **arch_kwargs)``."""
        return {
            "strides": [list(s) for s in self.strides],
            "kernels": [list(k) for k in self.kernels],
            "widths": list(self.widths),
            "blocks": list(self.blocks),
            "decoder_blocks": list(self.decoder_blocks),
            "expansion": self.expansion,
            "scale": self.scale,
        }

    def to_nnunet_arch_kwargs(self) -> dict:
        """``arch_kwargs`` in nnU-Net v2 plans style (:func:`nnunet_arch_kwargs`)."""
        return nnunet_arch_kwargs(self)

    def to_dict(self) -> dict:
        return asdict(self)


def nnunet_arch_kwargs(arch) -> dict:
    """``arch_kwargs`` in nnU-Net v2 plans style of a plan or network with ``widths``, ``kernels``, ``strides``,
    ``blocks``, ``decoder_blocks``, ``expansion`` and ``scale``: ``n_stages``, ``features_per_stage``,
    ``kernel_sizes``, ``strides`` with a leading all-ones entry (which nnU-Net's trainer also reads as
    ``pool_op_kernel_sizes``), blocks per stage, expansion and scale."""
    ndim = len(arch.kernels[0])
    return {
        "n_stages": len(arch.kernels),
        "features_per_stage": list(arch.widths),
        "kernel_sizes": [list(k) for k in arch.kernels],
        "strides": [[1] * ndim] + [list(s) for s in arch.strides],
        "n_blocks_per_stage": list(arch.blocks),
        "n_blocks_per_stage_decoder": list(arch.decoder_blocks),
        "expansion": arch.expansion,
        "scale": arch.scale,
    }


def plan_rcsegnext(
    spacing: Sequence[float],
    patch_size: Sequence[int] | None = None,
    *,
    num_pool: int = 4,
    base_width: int = DEFAULT_BASE_WIDTH,
    blocks: Sequence[int] | None = None,
    decoder_blocks: Sequence[int] | None = None,
    expansion: int = DEFAULT_EXPANSION,
    scale: int = DEFAULT_SCALE,
    max_width: int | None = None,
) -> RCSegNeXtPlan:
    """The RCSegNeXt plan for a data set with median ``spacing``.

    Widths double per stage from ``base_width`` (32 → 512 for B; 48 → 768 for L), optionally capped at ``max_width``.
    ``blocks`` defaults to two per stage (RCSegNeXt-B); ``decoder_blocks`` (shallow → deep, one per decoder level)
    defaults to the mirror of the encoder, ``blocks[:-1]``.  A given ``patch_size`` is rounded *down* per axis to a
    multiple of the total stride (at least one multiple), as nnU-Net requires.
    """
    strides, kernels = plan_kernels_strides(spacing, num_pool=num_pool)
    n = num_pool + 1
    widths = [base_width * 2**i for i in range(n)]
    if max_width is not None:
        widths = [min(w, int(max_width)) for w in widths]
    blocks = [2] * n if blocks is None else [int(b) for b in blocks]
    if len(blocks) != n:
        raise InputError(f"blocks must have {n} entries (one per stage), got {blocks}")
    decoder_blocks = list(blocks[:-1]) if decoder_blocks is None else [int(b) for b in decoder_blocks]
    if len(decoder_blocks) != n - 1:
        raise InputError(f"decoder_blocks must have {n - 1} entries, got {decoder_blocks}")
    ps = None
    if patch_size is not None:
        div = total_stride(strides) if strides else [1] * len(kernels[0])
        if len(patch_size) != len(div):
            raise InputError(f"patch_size {tuple(patch_size)} does not match the spacing's {len(div)} axes")
        ps = [max(d, (int(p) // d) * d) for p, d in zip(patch_size, div)]
    return RCSegNeXtPlan(
        spacing=[float(s) for s in spacing],
        strides=strides,
        kernels=kernels,
        widths=widths,
        blocks=blocks,
        decoder_blocks=decoder_blocks,
        expansion=int(expansion),
        scale=int(scale),
        patch_size=ps,
    )


__all__ = [
    "RATIO_THRESHOLD",
    "DEFAULT_BASE_WIDTH",
    "DEFAULT_EXPANSION",
    "DEFAULT_SCALE",
    "plan_kernels_strides",
    "is_anisotropic",
    "anisotropic_stages",
    "total_stride",
    "RCSegNeXtPlan",
    "plan_rcsegnext",
]
