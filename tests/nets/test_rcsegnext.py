"""RCSegNeXt network: registry names, the paper's parameter counts, forward shapes, deep supervision, nnU-Net plans."""

from __future__ import annotations

import pytest
import torch

from procto.nets import create_model, list_models
from procto.nets.rcsegnext import ABLATION_VARIANTS, MODELS, RCSegNeXt
from procto.nets.plan import plan_rcsegnext

torch.set_num_threads(1)

SPACING_A = (4.0, 0.875, 0.875)
NAMES = ["rcsegnext_b", "rcsegnext_l", "rcsegnext_b_plain", "rcsegnext_b_conv", "rcsegnext_b_convnext",
         "rcsegnext_b_res2net", "rcsegnext_b_res2next", "rcsegnext_b_grouped"]


def build(name: str, **kwargs):
    """The builder straight from procto.nets.rcsegnext (the registry tests go through create_model)."""
    return MODELS[name](**kwargs)


def n_params(m) -> int:
    return sum(p.numel() for p in m.parameters())


def test_registry_names():
    models = list_models()
    for name in NAMES:
        assert name in models
    assert set(list_models("rcsegnext*")) >= set(NAMES)


def test_module_registers_its_builders():
    from procto.nets.registry import _REGISTRY

    assert set(MODELS) == set(NAMES)
    for name in NAMES:
        assert _REGISTRY[name] is MODELS[name]


@pytest.mark.parametrize(
    "name, paper, total",
    [
        # paper count (no deep-supervision heads) and all parameters (heads 3*(256+128+64)+9 = 1,353 for B,
        # 3*(384+192+96)+9 = 2,025 for L)
        ("rcsegnext_b", 2_759_363, 2_760_716),
        ("rcsegnext_l", 10_767_651, 10_769_676),
    ],
)
def test_parameter_counts(name, paper, total):
    net = create_model(name, input_channels=1, num_classes=3, spacing=SPACING_A)
    assert net.paper_num_parameters() == paper
    assert n_params(net) == total
    expected = {"rcsegnext_b": 2.76, "rcsegnext_l": 10.77}[name]
    assert round(net.paper_num_parameters() / 1e6, 2) == expected
    assert round(n_params(net) / 1e6, 2) == expected


@pytest.mark.parametrize("name", [n for n in ABLATION_VARIANTS if n != "rcsegnext_b"])
def test_table4_ablation_counts(name):
    # Table 4: plain 22.14 (22,137,347), conv 22.07 (22,067,331), convnext 5.54 (5,539,587),
    # res2net 8.11 (8,111,491), res2next 5.52 (5,522,115)
    aniso, iso, reported = ABLATION_VARIANTS[name]
    net = build(name)
    assert set(net.block_kinds) == {aniso, iso}
    assert round(net.paper_num_parameters() / 1e6, 2) == reported


def test_grouped_variant_has_isonext_parameters():
    assert build("rcsegnext_b_grouped").paper_num_parameters() == 2_759_363


def test_structure_b_and_l():
    b = build("rcsegnext_b")
    assert b.block_kinds == ["aninext", "aninext", "isonext", "isonext", "isonext"]
    assert b.widths == [32, 64, 128, 256, 512]
    assert [len(s) for s in b.encoder.stages] == [2, 2, 2, 2, 2]
    assert [len(s) for s in b.decoder.stages] == [2, 2, 2, 2]
    assert b.encoder.stages[0][0].dwconv.kernel_size == (1, 3, 3)
    assert [p.kernel_size for p in b.encoder.pools] == [(1, 2, 2), (1, 2, 2), (2, 2, 2), (2, 2, 2)]
    assert [t.stride for t in b.decoder.transpconvs] == [(2, 2, 2), (2, 2, 2), (1, 2, 2), (1, 2, 2)]
    assert [s.kind for s in b.decoder.stages] == ["isonext", "isonext", "aninext", "aninext"]  # deepest first
    lg = build("rcsegnext_l")
    assert lg.widths == [48, 96, 192, 384, 768]
    assert [len(s) for s in lg.encoder.stages] == [2, 2, 2, 8, 4]
    assert [len(s) for s in lg.decoder.stages] == [8, 2, 2, 2]  # deepest first: stage 4's depth mirrored


def test_forward_shapes_and_deep_supervision():
    torch.manual_seed(0)
    x = torch.randn(1, 1, 8, 64, 64)
    net = build("rcsegnext_b", input_channels=1, num_classes=3, spacing=SPACING_A)
    assert net.decoder.deep_supervision is False
    with torch.no_grad():
        y = net(x)
        assert isinstance(y, torch.Tensor) and y.shape == (1, 3, 8, 64, 64)
        net.decoder.deep_supervision = True  # what nnU-Net's trainer toggles
        ys = net(x)
        net.decoder.deep_supervision = False
        y2 = net(x)
    assert [tuple(o.shape) for o in ys] == [(1, 3, 8, 64, 64), (1, 3, 8, 32, 32), (1, 3, 8, 16, 16), (1, 3, 4, 8, 8)]
    torch.testing.assert_close(ys[0], y)  # the full-resolution output is the same head either way
    torch.testing.assert_close(y2, y)


def test_deep_supervision_backward_and_state_dict_compatibility():
    torch.manual_seed(0)
    ds = build("rcsegnext_b", deep_supervision=True)
    outs = ds(torch.randn(2, 1, 4, 32, 32))
    sum(o.mean() for o in outs).backward()
    assert ds.decoder.seg_layers[0].weight.grad is not None
    # nnU-Net's predictor builds with deep_supervision=False and loads the trained weights strictly
    plain = build("rcsegnext_b", deep_supervision=False)
    plain.load_state_dict(ds.state_dict())


def test_l_forward():
    net = build("rcsegnext_l")
    with torch.no_grad():
        assert net(torch.randn(1, 1, 4, 32, 32)).shape == (1, 3, 4, 32, 32)


def test_ablation_forward():
    with torch.no_grad():
        for name in ("rcsegnext_b_plain", "rcsegnext_b_res2net", "rcsegnext_b_grouped"):
            assert build(name, num_classes=2)(torch.randn(1, 1, 4, 32, 32)).shape == (1, 2, 4, 32, 32)


def test_other_spacing_builds_isotropic_network():
    net = build("rcsegnext_b", spacing=(1.0, 1.0, 1.0), num_classes=2)
    assert net.block_kinds == ["isonext"] * 5 and net.divisor == [16, 16, 16]
    with torch.no_grad():
        assert net(torch.randn(1, 1, 32, 32, 32)).shape == (1, 2, 32, 32, 32)


def test_indivisible_input_and_bad_kwargs():
    net = build("rcsegnext_b")
    with pytest.raises(ValueError, match="divisible"):
        net(torch.randn(1, 1, 6, 64, 64))
    with pytest.raises(TypeError):
        RCSegNeXt(1, 3, not_an_argument=1)
    with pytest.raises(ValueError):
        RCSegNeXt(1, 3, iso_block="nope")


def test_nnunet_plans_construction():
    gnp = pytest.importorskip("nnunetv2.utilities.get_network_from_plans")
    plan = plan_rcsegnext(SPACING_A, patch_size=(16, 320, 320))
    kwargs = plan.to_nnunet_arch_kwargs()
    # keys of nnU-Net's own networks are accepted and ignored
    kwargs.update(conv_op="torch.nn.modules.conv.Conv3d", norm_op="torch.nn.modules.instancenorm.InstanceNorm3d",
                  norm_op_kwargs={"eps": 1e-5, "affine": True}, conv_bias=True, dropout_op=None,
                  dropout_op_kwargs=None, nonlin="torch.nn.LeakyReLU", nonlin_kwargs={"inplace": True})
    net = gnp.get_network_from_plans("procto.nets.rcsegnext.RCSegNeXt", kwargs, ["conv_op", "norm_op", "nonlin"],
                                     1, 3, deep_supervision=True)
    assert isinstance(net, RCSegNeXt) and net.decoder.deep_supervision is True
    assert net.strides == plan.strides and net.paper_num_parameters() == 2_759_363
    # also direct construction from Algorithm-1 style kwargs
    assert RCSegNeXt(1, 3, **plan.arch_kwargs()).paper_num_parameters() == 2_759_363
