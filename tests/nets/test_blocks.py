"""RCSegNeXt's blocks: shapes, parameter formulas, and that SAIM (with its regrouping) really mixes scales."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from procto.nets.blocks import (
    BLOCKS,
    SAIM,
    AniNeXtBlock,
    GroupedIsoNeXtBlock,
    IsoNeXtBlock,
    MultiScaleDepthwise,
    Res2NeXtBlock,
    build_block,
    channel_regroup,
)

torch.set_num_threads(1)


def n_params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


@pytest.mark.parametrize("kind", sorted(BLOCKS))
@pytest.mark.parametrize("cin, cout", [(16, 16), (16, 32), (32, 16)])
def test_block_shapes(kind, cin, cout):
    torch.manual_seed(0)
    kernel = (1, 3, 3) if kind == "aninext" else (3, 3, 3)
    block = build_block(kind, cin, cout, kernel, expansion=2, scale=4)
    y = block(torch.randn(2, cin, 3, 6, 5))
    assert y.shape == (2, cout, 3, 6, 5)
    assert torch.isfinite(y).all()


def test_unknown_block():
    with pytest.raises(ValueError):
        build_block("transformer", 8, 8, 3)


def test_aninext_parameters():
    # dw 1x3x3: 8*9 + 8 = 80; expand 8->16: 8*16 + 16 = 144; compress 16->16: 256 + 16 = 272; shortcut 8->16: 144
    b = AniNeXtBlock(8, 16, expansion=2)
    assert b.dwconv.kernel_size == (1, 3, 3) and b.dwconv.groups == 8
    assert n_params(b) == 80 + 144 + 272 + 144
    assert sum(p.numel() for p in b.norm.parameters()) == 0  # non-affine IN


def test_isonext_parameters_and_unused_shortcut():
    # C=16, s=4 (w=4), r=2: three depthwise 3x3x3 convs 3*(4*27+4)=336; intra 16->32 groups 4: 16*32/4+32=160;
    # inter 32->16 groups w=4: 32*16/4+16=144; 1x1x1 shortcut 16*16+16=272 (built, unused since C_in == C_out)
    b = IsoNeXtBlock(16, 16, expansion=2, scale=4)
    assert n_params(b) == 336 + 160 + 144 + 272
    assert b.mixer.intra.groups == 4 and b.mixer.inter.groups == 4
    lean = IsoNeXtBlock(16, 16, expansion=2, scale=4, always_build_shortcut=False)
    assert lean.shortcut is None and n_params(lean) == 336 + 160 + 144
    # the unused projection never changes the output
    lean.load_state_dict({k: v for k, v in b.state_dict().items() if not k.startswith("shortcut")})
    x = torch.randn(1, 16, 3, 4, 4)
    torch.testing.assert_close(lean(x), b(x))


def test_res2next_and_isonext_differ_only_in_the_mixer():
    r2 = Res2NeXtBlock(16, 16, expansion=2, scale=4, always_build_shortcut=False)
    iso = IsoNeXtBlock(16, 16, expansion=2, scale=4, always_build_shortcut=False)
    # inverted bottleneck 16->32->16 full: (512+32) + (512+16) = 1072 vs SAIM 160 + 144 = 304
    assert n_params(r2) - n_params(iso) == 1072 - 304
    assert [type(m) for m in r2.multiscale.convs] == [type(m) for m in iso.multiscale.convs]


def test_channel_regroup_takes_one_channel_of_every_block():
    x = torch.arange(12.0).reshape(1, 12, 1, 1, 1)
    y = channel_regroup(x, 3).flatten().tolist()  # blocks [0..3], [4..7], [8..11]
    assert y == [0, 4, 8, 1, 5, 9, 2, 6, 10, 3, 7, 11]


def test_saim_groups_see_every_scale_structurally():
    # r*C = 32 expanded channels ordered by scale (8 per scale, s=4); after regrouping, each of the w=4 inter-scale
    # groups (8 consecutive channels) holds r=2 channels of every scale.
    s, r, c = 4, 2, 16
    scale_of = torch.arange(r * c).div(r * c // s, rounding_mode="floor").float().reshape(1, r * c, 1, 1, 1)
    regrouped = channel_regroup(scale_of, s * r).flatten().long()
    for g in range(c // s):
        counts = torch.bincount(regrouped[g * s * r:(g + 1) * s * r], minlength=s)
        assert counts.tolist() == [r] * s


def test_multiscale_handover():
    torch.manual_seed(0)
    m = MultiScaleDepthwise(16, scale=4, kernel_size=3).double()
    x = torch.randn(1, 16, 3, 4, 4, dtype=torch.double)
    y = m(x)
    torch.testing.assert_close(y[:, 12:], x[:, 12:])  # last group passes unchanged
    dep = _dependency(m, x, groups=4, width=4)
    # output group i depends on input groups 0..i (hierarchical hand-over), the last one only on itself
    assert dep[0].tolist() == [True, False, False, False]
    assert dep[4].tolist() == [True, True, False, False]
    assert dep[8].tolist() == [True, True, True, False]
    assert dep[12].tolist() == [False, False, False, True]


def _dependency(module: nn.Module, x: torch.Tensor, groups: int, width: int) -> torch.Tensor:
    """(C_out, groups) bool: does output channel o depend on any input channel of scale group g (autograd Jacobian)?"""
    jac = torch.autograd.functional.jacobian(module, x)  # (1, C_out, *sp, 1, C_in, *sp)
    c_out, c_in = jac.shape[1], jac.shape[x.ndim + 1]
    per_channel = jac.abs().reshape(c_out, -1, c_in, x[0, 0].numel()).sum(dim=(1, 3))  # (C_out, C_in)
    return torch.stack([per_channel[:, g * width:(g + 1) * width].sum(1) > 0 for g in range(groups)], dim=1)


def test_saim_mixes_all_scales_grouped_only_does_not():
    torch.manual_seed(0)
    x = torch.randn(1, 16, 2, 3, 3, dtype=torch.double)
    saim = SAIM(16, 16, expansion=2, scale=4, regroup=True).double()
    grouped = SAIM(16, 16, expansion=2, scale=4, regroup=False).double()
    grouped.load_state_dict(saim.state_dict())  # identical weights: only the regrouping differs
    assert _dependency(saim, x, 4, 4).all()  # every output channel depends on every scale
    dep = _dependency(grouped, x, 4, 4)
    assert (dep.sum(1) == 1).all()  # each output channel sees exactly one scale
    assert dep[0].tolist() == [True, False, False, False] and dep[15].tolist() == [False, False, False, True]


def test_isonext_block_output_depends_on_every_scale_group():
    torch.manual_seed(0)
    x = torch.randn(1, 16, 2, 3, 3, dtype=torch.double)
    iso = IsoNeXtBlock(16, 16, expansion=2, scale=4).double()
    grouped = GroupedIsoNeXtBlock(16, 16, expansion=2, scale=4).double()
    grouped.load_state_dict(iso.state_dict())
    assert _dependency(iso, x, 4, 4).all()
    dep = _dependency(grouped, x, 4, 4)
    # output channel 0 (first inter group, reading the first scale only) ignores input groups 1..3;
    # output channel 15 (last scale = the pass-through group) only sees input group 3
    assert dep[0].tolist() == [True, False, False, False]
    assert dep[15].tolist() == [False, False, False, True]
    assert not dep.all()


def test_saim_rejects_bad_widths():
    with pytest.raises(ValueError):
        SAIM(18, 18, scale=4)
    with pytest.raises(ValueError):
        SAIM(16, 6, scale=4)  # 6 not divisible by the 4 inter-scale groups
