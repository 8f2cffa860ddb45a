"""AG-CRC AF-loss (testable fact 4 of ``../shared/spec/agcrc.md``), its deep supervision, and bowel-wall masking."""

from __future__ import annotations

import pytest
import torch

from procto.train.agcrc_losses import (
    AFDeepSupervisionLoss,
    AFLoss,
    af_loss,
    deep_supervision_scales,
    deep_supervision_weights,
    downsample_seg_for_ds,
    mask_bowel_wall,
)

SHAPES = {2: (3, 16, 12), 3: (2, 6, 10, 8)}  # (B, *spatial)


def _case(dim: int, n_classes: int, seed: int = 0, ooi_fraction: float = 0.6):
    g = torch.Generator().manual_seed(seed)
    b, *spatial = SHAPES[dim]
    logits = torch.randn((b, n_classes, *spatial), generator=g) * 2
    target = torch.randint(0, n_classes, (b, 1, *spatial), generator=g)
    ooi = (torch.rand((b, 1, *spatial), generator=g) < ooi_fraction).float()
    return logits, target, ooi


def _nnunet_loss(batch_dice: bool):
    from nnunetv2.training.loss.compound_losses import DC_and_CE_loss
    from nnunetv2.training.loss.dice import MemoryEfficientSoftDiceLoss

    return DC_and_CE_loss({"batch_dice": batch_dice, "smooth": 1e-5, "do_bg": False, "ddp": False}, {}, weight_ce=1,
                          weight_dice=1, ignore_label=None, dice_class=MemoryEfficientSoftDiceLoss)


@pytest.mark.parametrize("dim", [2, 3])
@pytest.mark.parametrize("n_classes", [2, 3])
@pytest.mark.parametrize("batch_dice", [False, True])
def test_gradient_is_exactly_zero_outside_the_ooi(dim, n_classes, batch_dice):
    logits, target, ooi = _case(dim, n_classes, seed=dim * 10 + n_classes)
    # make sure both tumour-outside-OOI and background-outside-OOI voxels exist
    assert ((ooi == 0) & (target > 0)).any() and ((ooi == 0) & (target == 0)).any()
    logits.requires_grad_(True)
    loss = af_loss(logits, target, ooi, batch_dice=batch_dice)
    (grad,) = torch.autograd.grad(loss, logits)
    outside = (ooi == 0).expand_as(grad)
    assert torch.all(grad[outside] == 0)
    assert (grad[~outside] != 0).float().mean() > 0.9  # inside, the loss does depend on the logits


@pytest.mark.parametrize("dim", [2, 3])
def test_loss_is_constant_under_changes_of_logits_outside_the_ooi(dim):
    logits, target, ooi = _case(dim, 3, seed=5)
    changed = torch.where(ooi.bool(), logits, torch.randn_like(logits) * 10)
    for batch_dice in (False, True):
        assert af_loss(changed, target, ooi, batch_dice) == af_loss(logits, target, ooi, batch_dice)


@pytest.mark.parametrize("dim", [2, 3])
@pytest.mark.parametrize("n_classes", [2, 3])
@pytest.mark.parametrize("batch_dice", [False, True])
def test_equals_nnunet_dc_and_ce_when_ooi_is_everywhere(dim, n_classes, batch_dice):
    logits, target, _ = _case(dim, n_classes, seed=dim + n_classes)
    ones = torch.ones_like(target, dtype=torch.float32)
    ref = _nnunet_loss(batch_dice)(logits, target)
    ours = af_loss(logits, target, ones, batch_dice=batch_dice)
    assert abs(ours.item() - ref.item()) <= 1e-6
    assert abs(AFLoss(batch_dice)(logits, target, ones.bool()).item() - ref.item()) <= 1e-6
    # the gradients agree too
    a = logits.clone().requires_grad_(True)
    b = logits.clone().requires_grad_(True)
    (ga,) = torch.autograd.grad(af_loss(a, target, ones, batch_dice), a)
    (gb,) = torch.autograd.grad(_nnunet_loss(batch_dice)(b, target), b)
    assert torch.allclose(ga, gb, atol=1e-8, rtol=1e-5)


def test_matches_the_literal_masked_formula_by_hand():
    """q_fg = p_fg·O, q_bg = 1 − Σq_fg; CE averages −log q_y over all voxels, O = 0 voxels adding 0; Dice on q_fg."""
    logits, target, ooi = _case(3, 3, seed=11)
    p = torch.softmax(logits.double(), 1)
    q = p.clone()
    q[:, 1:] = p[:, 1:] * ooi
    q[:, :1] = 1 - q[:, 1:].sum(1, keepdim=True)
    qy = q.gather(1, target)
    # outside O, q_y is 1 (background) or 0 (tumour, −log 0 = ∞): the reading adds 0 for both
    ce = -torch.where(ooi.bool(), torch.log(qy), 0.0).sum() / qy.numel()
    onehot = torch.zeros_like(p).scatter_(1, target, 1)[:, 1:]
    axes = (2, 3, 4)
    tp = (q[:, 1:] * onehot).sum(axes)
    dc = (2 * tp + 1e-5) / (q[:, 1:].sum(axes) + onehot.sum(axes) + 1e-5)
    expected = ce - dc.mean()
    assert af_loss(logits, target, ooi).item() == pytest.approx(expected.item(), abs=1e-6)


def test_soft_ooi_is_thresholded_at_one_half():
    logits, target, ooi = _case(2, 2, seed=3)
    soft = ooi * 0.8 + (1 - ooi) * 0.3  # 0.8 inside, 0.3 outside
    assert af_loss(logits, target, soft) == af_loss(logits, target, ooi)


def test_shape_errors_are_clear():
    logits, target, ooi = _case(2, 2)
    with pytest.raises(ValueError, match="ooi must have shape"):
        af_loss(logits, target, ooi[:, :, :-1])
    with pytest.raises(ValueError, match="target must have shape"):
        af_loss(logits, target[:, 0], ooi)


def test_deep_supervision_weights_and_scales_are_nnunets():
    assert deep_supervision_weights(5) == pytest.approx([1 / (1 + 1 / 2 + 1 / 4 + 1 / 8) / 2 ** i for i in range(4)]
                                                        + [0.0])
    assert sum(deep_supervision_weights(6)) == pytest.approx(1.0)
    assert deep_supervision_weights(1) == (1.0,)
    pools = [[1, 1, 1], [1, 2, 2], [2, 2, 2], [2, 2, 2]]
    assert deep_supervision_scales(pools) == [[1, 1, 1], [1, 0.5, 0.5], [0.5, 0.25, 0.25]]


def test_downsampling_equals_nnunets_transform():
    from batchgeneratorsv2.transforms.utils.deep_supervision_downsampling import DownsampleSegForDSTransform

    scales = [[1, 1, 1], [1, 0.5, 0.5], [0.5, 0.25, 0.25]]
    g = torch.Generator().manual_seed(2)
    seg = torch.randint(0, 3, (2, 1, 7, 20, 18), generator=g).to(torch.int16)
    ours = downsample_seg_for_ds(seg, scales)
    for i in range(seg.shape[0]):
        ref = DownsampleSegForDSTransform(ds_scales=scales)(segmentation=seg[i])["segmentation"]
        for o, r in zip(ours, ref):
            assert o.dtype == r.dtype and torch.equal(o[i], r)
    assert ours[0] is seg
    assert [tuple(o.shape[2:]) for o in ours] == [(7, 20, 18), (7, 10, 9), (4, 5, 4)]


def _ds_inputs(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    scales = [[1, 1, 1], [1, 0.5, 0.5], [0.5, 0.25, 0.25]]
    target = torch.randint(0, 2, (2, 1, 8, 16, 16), generator=g)
    ooi = (torch.rand((2, 1, 8, 16, 16), generator=g) < 0.7).float()
    targets = downsample_seg_for_ds(target, scales)
    oois = downsample_seg_for_ds(ooi, scales)
    logits = [torch.randn((2, 2, *t.shape[2:]), generator=g) for t in targets]
    return logits, targets, ooi, oois


@pytest.mark.parametrize("batch_dice", [False, True])
def test_deep_supervision_is_the_weighted_sum(batch_dice):
    logits, targets, ooi, oois = _ds_inputs()
    weights = deep_supervision_weights(len(logits))
    expected = sum(w * af_loss(x, y, o, batch_dice) for w, x, y, o in zip(weights, logits, targets, oois))
    ds = AFDeepSupervisionLoss(weights, batch_dice=batch_dice)
    assert ds(logits, targets, oois).item() == pytest.approx(expected.item(), abs=1e-7)
    # a full-resolution OOI is resampled like the targets; default weights are nnU-Net's
    assert ds(logits, targets, ooi).item() == pytest.approx(expected.item(), abs=1e-7)
    assert AFDeepSupervisionLoss(batch_dice=batch_dice)(logits, targets, ooi).item() == pytest.approx(
        expected.item(), abs=1e-7)


def test_deep_supervision_equals_nnunet_wrapper_when_ooi_is_everywhere():
    from nnunetv2.training.loss.deep_supervision import DeepSupervisionWrapper

    logits, targets, ooi, _ = _ds_inputs(seed=4)
    weights = deep_supervision_weights(len(logits))
    ref = DeepSupervisionWrapper(_nnunet_loss(True), weights)(logits, targets)
    ours = AFDeepSupervisionLoss(weights, batch_dice=True)(logits, targets, torch.ones_like(ooi))
    assert abs(ours.item() - ref.item()) <= 1e-6


def test_deep_supervision_gradient_zero_outside_the_resampled_ooi():
    logits, targets, ooi, oois = _ds_inputs(seed=7)
    logits = [x.requires_grad_(True) for x in logits]
    loss = AFDeepSupervisionLoss()(logits, targets, ooi)
    grads = torch.autograd.grad(loss, logits, allow_unused=True)
    for g, o in zip(grads[:-1], oois[:-1]):
        assert torch.all(g[(o == 0).expand_as(g)] == 0)
        assert (g[(o == 1).expand_as(g)] != 0).any()
    assert grads[-1] is None  # weight 0: the lowest output is not used, as in nnU-Net


def test_deep_supervision_argument_errors():
    logits, targets, _, oois = _ds_inputs()
    with pytest.raises(ValueError, match="weight"):
        AFDeepSupervisionLoss([0, 0])
    with pytest.raises(ValueError, match="OOI"):
        AFDeepSupervisionLoss()(logits, targets, oois[:2])


def _ssl_batch(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn((2, 3, 6, 12, 10), generator=g) * 100 + 40
    wall = torch.rand((2, 1, 6, 12, 10), generator=g) < 0.2
    return x, wall


def test_mask_bowel_wall_changes_only_ct_inside_the_wall():
    x, wall = _ssl_batch()
    before = x.clone()
    out = mask_bowel_wall(x, wall, torch.Generator().manual_seed(1))
    assert torch.equal(x, before) and out is not x  # input untouched, a new tensor
    assert torch.equal(out[:, 1:], x[:, 1:])
    outside = ~wall[:, 0]
    assert torch.equal(out[:, 0][outside], x[:, 0][outside])
    inside = out[:, 0][wall[:, 0]]
    assert torch.all(inside != x[:, 0][wall[:, 0]])
    # the replacement is N(0, 1) noise (the CT here has mean 40, sd 100)
    assert abs(inside.mean().item()) < 0.25 and abs(inside.std().item() - 1) < 0.2


def test_mask_bowel_wall_is_seeded():
    x, wall = _ssl_batch(3)
    a = mask_bowel_wall(x, wall, torch.Generator().manual_seed(7))
    b = mask_bowel_wall(x, wall.float(), torch.Generator().manual_seed(7))
    c = mask_bowel_wall(x, wall[:, 0], torch.Generator().manual_seed(8))
    assert torch.equal(a, b)
    assert not torch.equal(a[:, 0][wall[:, 0]], c[:, 0][wall[:, 0]])
    assert torch.equal(a[:, 0][~wall[:, 0]], c[:, 0][~wall[:, 0]])


def test_mask_bowel_wall_with_empty_wall_is_a_copy_and_bad_shape_is_an_error():
    x, wall = _ssl_batch()
    out = mask_bowel_wall(x, torch.zeros_like(wall), None)
    assert torch.equal(out, x) and out.data_ptr() != x.data_ptr()
    with pytest.raises(ValueError, match="wall must have shape"):
        mask_bowel_wall(x, wall[..., :-1], None)

