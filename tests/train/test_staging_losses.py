"""Staging objectives against hand-computed values: focal (eq. 1), center (eq. 2), batch-hard triplet (eq. 3), joint."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from procto.train.staging_losses import (
    CenterLoss,
    FocalLoss,
    JointStagingLoss,
    TripletLoss,
    focal_loss,
    hard_triplets,
)

LN = math.log


def test_focal_gamma0_equals_bce():
    torch.manual_seed(0)
    logits = torch.randn(17) * 3
    targets = (torch.rand(17) > 0.5).float()
    bce = F.binary_cross_entropy_with_logits(logits, targets)
    assert torch.allclose(focal_loss(logits, targets, gamma=0.0, alpha=None), bce, atol=1e-6)
    assert torch.allclose(FocalLoss(gamma=0.0)(logits, targets), bce, atol=1e-6)
    # alpha = 0.5 weights both classes equally: half the BCE
    assert torch.allclose(focal_loss(logits, targets, gamma=0.0, alpha=0.5), 0.5 * bce, atol=1e-6)


def test_focal_gamma2_by_hand():
    # p = sigmoid(logit): 0.5, 0.75, 0.75; targets 1, 1, 0 → p_t = 0.5, 0.75, 0.25
    logits = torch.tensor([0.0, LN(3.0), LN(3.0)])
    targets = torch.tensor([1.0, 1.0, 0.0])
    terms = [0.25 * LN(2.0), 0.0625 * LN(4 / 3), 0.5625 * LN(4.0)]  # (1 - p_t)^2 · (-log p_t)
    got = focal_loss(logits, targets, gamma=2.0, reduction="none")
    assert torch.allclose(got, torch.tensor(terms), atol=1e-6)
    assert math.isclose(float(FocalLoss()(logits, targets)), sum(terms) / 3, rel_tol=1e-5)
    # alpha = 0.25 on positives, 0.75 on negatives (Lin et al.)
    weighted = 0.25 * terms[0] + 0.25 * terms[1] + 0.75 * terms[2]
    assert math.isclose(float(focal_loss(logits, targets, alpha=0.25, reduction="sum")), weighted, rel_tol=1e-5)


def test_focal_downweights_easy_examples():
    easy = focal_loss(torch.tensor([4.0]), torch.tensor([1.0]))
    hard = focal_loss(torch.tensor([-4.0]), torch.tensor([1.0]))
    bce_ratio = F.softplus(torch.tensor(4.0)) / F.softplus(torch.tensor(-4.0))
    assert hard / easy > 100 * bce_ratio


def _reference_focal(logits, targets, gamma=2.0, alpha=None, reduction="mean"):
    """The hand-written binary focal loss of eq. 1 (procto's definition before MONAI): −α_t (1 − p_t)^γ log p_t."""
    targets = targets.to(logits.dtype)
    ce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")  # −log p_t
    loss = ce
    if gamma != 0:
        p = torch.sigmoid(logits)
        p_t = p * targets + (1 - p) * (1 - targets)
        loss = (1 - p_t).clamp_min(0).pow(gamma) * ce
    if alpha is not None:
        loss = (alpha * targets + (1 - alpha) * (1 - targets)) * loss
    return {"mean": loss.mean(), "sum": loss.sum(), "none": loss}[reduction]


@pytest.mark.parametrize("gamma", [0.0, 0.5, 2.0, 3.0])
@pytest.mark.parametrize("alpha", [None, 0.25])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_monai_focal_equals_the_hand_written_definition(gamma, alpha, reduction):
    """procto's focal loss is MONAI's FocalLoss (sigmoid); on binary targets it equals eq. 1 as written by hand —
    values and gradients, for slice-level (N,) and batched (B, D) logits, including saturated logits."""
    torch.manual_seed(1)
    for shape in [(64,), (4, 6)]:
        logits = (torch.randn(shape) * 4).requires_grad_(True)
        logits.data[..., 0] = 30.0  # saturated: p ≈ 1
        targets = (torch.rand(shape) > 0.5).float()
        got = focal_loss(logits, targets, gamma=gamma, alpha=alpha, reduction=reduction)
        ref_logits = logits.detach().clone().requires_grad_(True)
        ref = _reference_focal(ref_logits, targets, gamma, alpha, reduction)
        assert got.shape == ref.shape
        assert torch.allclose(got, ref, rtol=1e-5, atol=1e-6)
        got.sum().backward()
        ref.sum().backward()
        assert torch.allclose(logits.grad, ref_logits.grad, rtol=1e-4, atol=1e-6)
    # the paper's setting (binary, sigmoid, γ = 2, no α, mean) is the default of the module and the joint loss
    logits, targets = torch.randn(32), (torch.rand(32) > 0.5).float()
    assert torch.allclose(FocalLoss()(logits, targets), _reference_focal(logits, targets), rtol=1e-5, atol=1e-7)
    assert torch.allclose(JointStagingLoss(None)(logits, targets), _reference_focal(logits, targets), rtol=1e-5,
                          atol=1e-7)


def _triplet_batch():
    # 2-D embeddings; class 0 on the x axis, class 1 at (0, 2) and (5, 0)
    x = torch.tensor([[0.0, 0.0], [1.0, 0.0], [3.0, 0.0], [0.0, 2.0], [5.0, 0.0]])
    y = torch.tensor([0, 0, 0, 1, 1])
    return x, y


def test_triplet_hard_mining_picks_hardest():
    x, y = _triplet_batch()
    anchors, pos, neg = hard_triplets(x, y)
    assert anchors.tolist() == [0, 1, 2, 3, 4]
    assert pos.tolist() == [2, 2, 0, 4, 3]  # farthest same-class sample
    assert neg.tolist() == [3, 3, 4, 0, 2]  # closest other-class sample


def test_triplet_loss_by_hand():
    x, y = _triplet_batch()
    # squared distances (d_ap, d_an) per anchor: (9, 4), (4, 5), (9, 4), (29, 4), (29, 4); margin 1
    per_anchor = [9 - 4 + 1, max(0, 4 - 5 + 1), 9 - 4 + 1, 29 - 4 + 1, 29 - 4 + 1]
    loss = TripletLoss(margin=1.0, normalize=False)
    assert loss(x, y).item() == pytest.approx(sum(per_anchor) / 5)
    assert TripletLoss(margin=1.0, normalize=False, reduction="none")(x, y).tolist() == pytest.approx(per_anchor)
    # larger margin: anchor 1 becomes active too (4 - 5 + 3 = 2)
    assert TripletLoss(margin=3.0, normalize=False)(x, y).item() == pytest.approx((8 + 2 + 8 + 28 + 28) / 5)


def test_triplet_normalized_and_degenerate_batches():
    x, y = _triplet_batch()
    xn = F.normalize(x + torch.tensor([0.5, 0.5]), dim=1)
    assert torch.allclose(TripletLoss(0.2)(x + torch.tensor([0.5, 0.5]), y), TripletLoss(0.2, normalize=False)(xn, y))
    one_class = torch.randn(4, 3, requires_grad=True)
    out = TripletLoss()(one_class, torch.zeros(4, dtype=torch.long))
    assert out.item() == 0.0
    out.backward()  # still part of the graph
    # a singleton class contributes only as a negative
    a, p, n = hard_triplets(torch.randn(3, 2), torch.tensor([0, 0, 1]))
    assert a.tolist() == [0, 1] and n.tolist() == [2, 2]


def test_center_loss_by_hand():
    loss = CenterLoss(num_classes=2, feature_dim=2, reduction="sum")
    with torch.no_grad():
        loss.centers.copy_(torch.tensor([[0.0, 0.0], [1.0, 1.0]]))
    x = torch.tensor([[1.0, 2.0], [1.0, 1.0], [3.0, 1.0]])
    y = torch.tensor([0, 1, 1])
    # ½‖x − c_y‖²: ½(1 + 4) = 2.5, 0, ½(4 + 0) = 2
    assert loss(x, y).item() == pytest.approx(4.5)
    loss.reduction = "mean"
    out = loss(x, y)
    assert out.item() == pytest.approx(1.5)
    out.backward()
    # d/dc_1 of (1/3)·½Σ‖x − c_1‖² over samples of class 1 = −(1/3)·((0, 0) + (2, 0))
    assert torch.allclose(loss.centers.grad, torch.tensor([[-1 / 3, -2 / 3], [-2 / 3, 0.0]]))


def test_joint_loss():
    x, y = _triplet_batch()
    logits = torch.tensor([-1.0, 0.0, 2.0, 1.0, -0.5])
    joint = JointStagingLoss("triplet", weight=0.5, margin=1.0, normalize=False)
    total, parts = joint(logits, y.float(), x, return_parts=True)
    focal = focal_loss(logits, y.float())
    assert torch.allclose(parts["focal"], focal)
    assert parts["triplet"].item() == pytest.approx(12.8)
    assert total.item() == pytest.approx(focal.item() + 0.5 * 12.8, rel=1e-5)
    # defaults: triplet weight 1, center weight 0.003 (Wen et al.), focal alone without a supplementary loss
    assert JointStagingLoss().weight == 1.0
    center = JointStagingLoss("center", feature_dim=2)
    assert center.weight == 0.003
    c = center(logits, y.float(), x, return_parts=True)[1]["center"]
    assert c.item() == pytest.approx(0.5 * float((x**2).sum()) / 5)
    assert torch.allclose(JointStagingLoss(None)(logits, y.float()), focal)
    with pytest.raises(ValueError):
        JointStagingLoss("triplet")(logits, y.float())
