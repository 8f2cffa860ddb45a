"""RCSegNeXt's spacing-driven plan (Appendix A, Algorithm 1).  Expected values are derived by hand in the comments:

    each of the 4 rounds: ratio = s / min(s); stride = 2 if ratio <= 2 else 1; kernel = 3 if ratio <= 2 else 1;
                          s = s * stride
    then the bottleneck kernel from the final spacings.
"""

from __future__ import annotations

import pytest

from procto.errors import InputError
from procto.nets.plan import (
    RCSegNeXtPlan,
    anisotropic_stages,
    is_anisotropic,
    plan_kernels_strides,
    plan_rcsegnext,
    total_stride,
)

S122, S222, S221 = [1, 2, 2], [2, 2, 2], [2, 2, 1]
K133, K333, K331 = [1, 3, 3], [3, 3, 3], [3, 3, 1]


def test_dataset_a_spacing_matches_paper():
    # [4, .875, .875]: ratios [4.57,1,1] -> s 122 k 133; -> [4, 1.75, 1.75]: [2.29,1,1] -> 122/133;
    # -> [4, 3.5, 3.5]: [1.14,1,1] -> 222/333; -> [8, 7, 7]: [1.14,1,1] -> 222/333; -> [16, 14, 14]: bottleneck 333.
    strides, kernels = plan_kernels_strides([4.000, 0.875, 0.875])
    assert strides == [[1, 2, 2], [1, 2, 2], [2, 2, 2], [2, 2, 2]]
    assert kernels == [[1, 3, 3], [1, 3, 3], [3, 3, 3], [3, 3, 3], [3, 3, 3]]


@pytest.mark.parametrize(
    "spacing, strides, kernels",
    [
        # isotropic 1 mm: ratios always [1,1,1] -> every stride 222, every kernel 333.
        ([1.0, 1.0, 1.0], [S222] * 4, [K333] * 5),
        # [3, .5, .5]: ratio 6 -> 122/133; [3,1,1]: 3 -> 122/133; [3,2,2]: 1.5 -> 222/333; [6,4,4]: 1.5 -> 222/333;
        # [12,8,8]: 1.5 -> 333.  (Same plan as Dataset A.)
        ([3.0, 0.5, 0.5], [S122, S122, S222, S222], [K133, K133, K333, K333, K333]),
        # [6, .5, .5]: 12 -> 122; [6,1,1]: 6 -> 122; [6,2,2]: 3 -> 122; [6,4,4]: 1.5 -> 222; [12,8,8]: 1.5 -> 333.
        ([6.0, 0.5, 0.5], [S122, S122, S122, S222], [K133, K133, K133, K333, K333]),
        # [10, .5, .5]: 20, 10, 5, then [10,4,4]: 2.5 -> still 122; final [10,8,8]: 1.25 -> bottleneck 333.
        ([10.0, 0.5, 0.5], [S122] * 4, [K133] * 4 + [K333]),
        # [1, .8, 2.5] (x coarse): ratios [1.25,1,3.125] -> 221/331; [2,1.6,2.5]: [1.25,1,1.5625] -> 222/333;
        # [4,3.2,5] and [8,6.4,10]: same ratios -> 222/333; [16,12.8,20]: 333.
        ([1.0, 0.8, 2.5], [S221, S222, S222, S222], [K331, K333, K333, K333, K333]),
        # Dataset B [3.3, .234, .234]: 14.1, 7.05, 3.53 -> 122 x3; [3.3,1.872,1.872]: 1.76 -> 222;
        # [6.6,3.744,3.744]: 1.76 -> 333.
        ([3.3, 0.234, 0.234], [S122, S122, S122, S222], [K133, K133, K133, K333, K333]),
        # z finest, in-plane thick [.5, 2, 2]: ratios [1,4,4] -> 211/311; [1,2,2]: ratio exactly 2 counts (<= 2) ->
        # 222/333; [2,4,4]: [1,2,2] -> 222/333; [4,8,8] -> 222/333; [8,16,16]: 333.
        ([0.5, 2.0, 2.0], [[2, 1, 1], S222, S222, S222], [[3, 1, 1], K333, K333, K333, K333]),
    ],
)
def test_other_spacings_by_hand(spacing, strides, kernels):
    assert plan_kernels_strides(spacing) == (strides, kernels)


def test_ratio_exactly_two_is_pooled():
    # [1.75, .875, .875]: ratio 2.0 exactly -> <= 2 -> isotropic from the start.
    assert plan_kernels_strides([1.75, 0.875, 0.875]) == ([S222] * 4, [K333] * 5)
    # floating-point: 0.6 / 0.3 = 1.9999999999999998, 0.7 / 0.35 = 2.0 -> both pooled
    assert plan_kernels_strides([0.7, 0.35, 0.35])[0][0] == S222


def test_num_pool_and_validation():
    strides, kernels = plan_kernels_strides([4.0, 0.875, 0.875], num_pool=2)
    assert strides == [S122, S122] and kernels == [K133, K133, K333]
    assert plan_kernels_strides([4.0, 1.0, 1.0], num_pool=0) == ([], [K133])
    for bad in ([0.0, 1.0, 1.0], [-1.0, 1.0, 1.0], [float("nan"), 1.0, 1.0], [], "abc"):
        with pytest.raises(InputError):
            plan_kernels_strides(bad)
    with pytest.raises(InputError):
        plan_kernels_strides([1.0, 1.0, 1.0], num_pool=-1)


def test_is_anisotropic():
    assert is_anisotropic([1, 3, 3]) and not is_anisotropic([3, 3, 3])
    assert not is_anisotropic([3, 3, 1])  # default: along z only
    assert is_anisotropic([3, 3, 1], axis=None) and is_anisotropic([3, 1, 1], axis=None)
    _, kernels = plan_kernels_strides([4.0, 0.875, 0.875])
    assert anisotropic_stages(kernels) == [True, True, False, False, False]


def test_plan_rcsegnext():
    plan = plan_rcsegnext([4.0, 0.875, 0.875], patch_size=[16, 320, 320])
    assert isinstance(plan, RCSegNeXtPlan)
    assert plan.widths == [32, 64, 128, 256, 512]
    assert plan.blocks == [2, 2, 2, 2, 2] and plan.decoder_blocks == [2, 2, 2, 2]
    assert plan.anisotropic == [True, True, False, False, False]
    assert plan.divisor == [4, 16, 16] == total_stride(plan.strides)
    assert plan.patch_size == [16, 320, 320]
    # rounded down to multiples of the divisor, at least one multiple
    assert plan_rcsegnext([4.0, 0.875, 0.875], patch_size=[18, 330, 8]).patch_size == [16, 320, 16]

    kw = plan.to_nnunet_arch_kwargs()
    assert kw["n_stages"] == 5 and kw["strides"][0] == [1, 1, 1] and kw["strides"][1:] == plan.strides
    assert kw["kernel_sizes"] == plan.kernels and kw["features_per_stage"] == plan.widths

    large = plan_rcsegnext([4.0, 0.875, 0.875], base_width=48, blocks=[2, 2, 2, 8, 4])
    assert large.widths[-1] == 768 and large.decoder_blocks == [2, 2, 2, 8]
    with pytest.raises(InputError):
        plan_rcsegnext([4.0, 0.875, 0.875], blocks=[2, 2])


def test_procto_plan_is_an_alias_of_nets_plan():
    """``procto.plan`` (the public API's path) re-exports :mod:`procto.nets.plan`, where the plan lives next to the
    network it plans."""
    import procto.nets.plan as nets_plan
    import procto.plan as alias

    assert alias.plan_kernels_strides is nets_plan.plan_kernels_strides
    for name in nets_plan.__all__:
        assert getattr(alias, name) is getattr(nets_plan, name)
