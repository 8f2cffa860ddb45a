"""T2/T3 staging CNN: Table 2 parameter counts, depth preservation, depth aggregation, StagingNet."""

from __future__ import annotations

import pytest
import torch

from procto.nets import create_model, list_models
from procto.nets.aggregation import (
    AttentionPoolDepth,
    AvgPoolDepth,
    BilinearPoolDepth,
    MaxPoolDepth,
    make_aggregation,
)
from procto.nets.staging import PAPER_PARAMS, SliceFeatureExtractor, StagingNet, variant_kinds
from procto.nets.staging_blocks import r2plus1d_mid_channels

torch.set_num_threads(min(2, torch.get_num_threads()))

# Table 2 of the paper, "# params" column.
TABLE2 = {
    "staging_f_r2d": 2796001,
    "staging_f_r3d": 8291873,
    "staging_f_r2plus1d": 8294563,
    "staging_f_mc2": 2799137,
    "staging_f_mc3": 2872865,
    "staging_f_mc4": 3130913,
    "staging_f_mc5": 4163105,
    "staging_f_rmc2": 8288737,
    "staging_f_rmc3": 8215009,
    "staging_f_rmc4": 7956961,
    "staging_f_rmc5": 6924769,
}


def n_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_all_eleven_registered():
    assert set(TABLE2) <= set(list_models("staging_f_*"))
    assert {f"staging_f_{v}" for v in PAPER_PARAMS} == set(TABLE2)


@pytest.mark.parametrize("name", sorted(TABLE2))
def test_parameter_count_matches_table2(name):
    assert n_params(create_model(name)) == TABLE2[name]


def test_named_parameter_counts():
    assert n_params(create_model("staging_f_r2d")) == 2_796_001
    assert n_params(create_model("staging_f_r3d")) == 8_291_873
    assert n_params(create_model("staging_f_rmc5")) == 6_924_769


def test_variant_layouts():
    assert variant_kinds("f-R2D") == ("2d",) * 5
    assert variant_kinds("r3d") == ("3d",) * 5
    assert variant_kinds("f-R(2+1)D") == ("2plus1d",) * 5
    assert variant_kinds("mc2") == ("3d", "2d", "2d", "2d", "2d")
    assert variant_kinds("mc5") == ("3d", "3d", "3d", "3d", "2d")
    assert variant_kinds("rmc2") == ("2d", "3d", "3d", "3d", "3d")
    assert variant_kinds("staging_f_rmc5") == ("2d", "2d", "2d", "2d", "3d")  # 3D only in the last layer
    assert r2plus1d_mid_channels(1, 32) == 8  # (2+1)D stem
    assert r2plus1d_mid_channels(32, 32) == 72  # 3·9·32·32 / (9·32 + 3·32) = 72
    with pytest.raises(ValueError):
        variant_kinds("mc6")


@pytest.mark.parametrize("name", sorted(TABLE2))
def test_depth_is_kept(name):
    net = create_model(name).eval()
    with torch.no_grad():
        for depth in (2, 5):
            feats, logits = net(torch.randn(1, 1, depth, 32, 32))
            assert feats.shape == (1, depth, 256)
            assert logits.shape == (1, depth)
            assert torch.isfinite(feats).all()


def test_spatial_strides_total_32():
    net = create_model("staging_f_rmc5").eval()
    with torch.no_grad():
        maps = net.feature_maps(torch.randn(2, 1, 3, 64, 96))
    assert maps.shape == (2, 256, 3, 2, 3)  # stem ×2, max-pool ×2, stages 1/2/2/2; depth untouched


def test_r2d_slices_independent_rmc5_not():
    torch.manual_seed(0)
    x = torch.randn(1, 1, 6, 32, 32)
    y = x.clone()
    y[:, :, 0] = torch.randn(32, 32)  # change the first slice only
    r2d = create_model("staging_f_r2d").eval()
    rmc5 = create_model("staging_f_rmc5").eval()
    with torch.no_grad():
        assert torch.allclose(r2d(x).logits[:, 1:], r2d(y).logits[:, 1:], atol=1e-6)
        f1, f2 = rmc5(x).features, rmc5(y).features
    assert not torch.allclose(f1[:, 1], f2[:, 1])  # the last-layer 3D conv sees the neighbouring slice
    assert not torch.allclose(f1[:, 4], f2[:, 4])
    # depth receptive field: ±4 slices (last stage = four convolutions 3 slices deep), so slice 5 is untouched
    assert torch.allclose(f1[:, 5], f2[:, 5], atol=1e-6)


def test_bad_input_shape():
    net = create_model("staging_f_r2d")
    with pytest.raises(ValueError):
        net(torch.randn(1, 4, 32, 32))


# ----------------------------------------------------------------------------------------------- depth aggregation

AGGS = ["avg", "max", "attention", "bilinear"]


@pytest.mark.parametrize("name", AGGS)
def test_aggregation_shape_permutation_invariance_no_params(name):
    torch.manual_seed(1)
    agg = make_aggregation(name)
    f = torch.randn(3, 7, 256)
    out = agg(f)
    expected = 256 * 256 if name == "bilinear" else 256
    assert out.shape == (3, expected) == (3, agg.out_features(256))
    perm = torch.randperm(7)
    assert torch.allclose(agg(f[:, perm]), out, atol=1e-6)
    assert n_params(agg) == 0


def test_aggregation_values():
    f = torch.tensor([[[1.0, -2.0], [3.0, 0.0]]])  # B=1, D=2, C=2
    assert torch.allclose(AvgPoolDepth()(f), torch.tensor([[2.0, -1.0]]))
    assert torch.allclose(MaxPoolDepth()(f), torch.tensor([[3.0, 0.0]]))
    # eq. 4–5: channel 0: weights e^1, e^3; channel 1: e^-2, e^0
    e = torch.exp
    t = torch.tensor
    g0 = (e(t(1.0)) * 1 + e(t(3.0)) * 3) / (e(t(1.0)) + e(t(3.0)))
    g1 = (e(t(-2.0)) * -2 + e(t(0.0)) * 0) / (e(t(-2.0)) + e(t(0.0)))
    assert torch.allclose(AttentionPoolDepth()(f), torch.stack([g0, g1]).view(1, 2))
    # bilinear: mean outer product [[5, -1], [-1, 2]] → signed sqrt → l2 normalise
    b = torch.tensor([5.0, -1.0, -1.0, 2.0])
    b = torch.sign(b) * b.abs().sqrt()
    assert torch.allclose(BilinearPoolDepth()(f), (b / b.norm()).view(1, 4), atol=1e-5)
    assert torch.allclose(BilinearPoolDepth()(torch.randn(2, 3, 5)).norm(dim=1), torch.ones(2))


@pytest.mark.parametrize("name", AGGS)
def test_aggregation_mask_equals_truncation(name):
    torch.manual_seed(2)
    agg = make_aggregation(name)
    f = torch.randn(2, 5, 8)
    mask = torch.tensor([[True] * 5, [True, True, True, False, False]])
    out = agg(f, mask)
    assert torch.allclose(out[0], agg(f[:1])[0], atol=1e-6)
    assert torch.allclose(out[1], agg(f[1:, :3])[0], atol=1e-6)


# ---------------------------------------------------------------------------------------------------- StagingNet


def test_staging_net_bilinear_has_own_classifier():
    net = StagingNet("rmc5", aggregation="bilinear")
    assert net.feature_dim == 65536
    assert n_params(net) == TABLE2["staging_f_rmc5"] + 65536 + 1
    via_registry = create_model("staging_f_rmc5", aggregation="bilinear")
    assert isinstance(via_registry, StagingNet) and n_params(via_registry) == n_params(net)


@pytest.mark.parametrize("name", ["avg", "max", "attention"])
def test_staging_net_other_aggregations_add_no_parameters(name):
    net = StagingNet("r2d", aggregation=name)
    assert net.classifier is net.extractor.fc
    assert n_params(net) == TABLE2["staging_f_r2d"]
    assert n_params(StagingNet("r2d", aggregation=name, share_classifier=False)) == TABLE2["staging_f_r2d"] + 257


def test_staging_net_forward_and_backward():
    torch.manual_seed(3)
    net = create_model("staging_f_rmc5", aggregation="bilinear")
    out = net(torch.randn(2, 1, 3, 32, 32))
    assert out.logit.shape == (2,)
    assert out.slice_logits.shape == (2, 3)
    assert out.feature.shape == (2, 65536)
    assert out.slice_features.shape == (2, 3, 256)
    (out.logit.sum() + out.slice_logits.sum()).backward()
    assert net.head.weight.grad is not None
    assert net.extractor.stem[0].weight.grad is not None


def test_avg_aggregation_equals_mean_of_slice_logits():
    net = StagingNet(SliceFeatureExtractor(variant_kinds("r2d")), aggregation="avg").eval()
    with torch.no_grad():
        out = net(torch.randn(1, 1, 4, 32, 32))
    # shared linear FC: classifying the mean feature = mean of the slice logits
    assert torch.allclose(out.logit, out.slice_logits.mean(dim=1), atol=1e-5)
