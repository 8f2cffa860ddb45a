"""CoSAM's assembly (procto.nets.cosam) around a stand-in detector: U-SAM prompted box by box on the centre slice, the
collaborative classifier re-scores boxes without moving them (fact 6), the authors' mask union, the training losses
(U-SAM's loss equals procto.train.usam.USamLoss; component targets for positive proposals, nothing for negatives)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from procto.nets import create_model
from procto.nets.cosam import CoSAM, CollaborativeClassifier, component_targets, union_mask

SIZE = 64
WINDOW = 5


class _StubDetector(nn.Module):
    """The detector's interface: training → (losses, sampled), eval → per window boxes/scores/labels/features."""

    window = WINDOW
    d_model = 16

    def __init__(self, boxes, scores):
        super().__init__()
        self.boxes = torch.as_tensor(boxes, dtype=torch.float32)
        self.scores = torch.as_tensor(scores, dtype=torch.float32)
        self.feat = nn.Parameter(torch.randn(len(boxes), self.d_model))

    def forward(self, windows, targets=None):
        if self.training:
            labels = torch.tensor([1] + [0] * (len(self.boxes) - 1))
            sampled = [{"boxes": self.boxes, "features": self.feat, "labels": labels} for _ in range(windows.shape[0])]
            return {"loss_classifier": self.feat.pow(2).mean()}, sampled
        return [{"boxes": self.boxes.clone(), "scores": self.scores.clone(), "labels": torch.ones(len(self.boxes)),
                 "features": self.feat.detach()} for _ in range(windows.shape[0])]


def _model(boxes, scores) -> CoSAM:
    torch.manual_seed(0)
    seg = create_model("usam_b", num_classes=2, img_size=SIZE, encoder_depth=1, encoder_embed_dim=64,
                       cnn_channels=(8, 8, 16, 16))
    return CoSAM(_StubDetector(boxes, scores), seg, CollaborativeClassifier(det_dim=16, token_dim=256, hidden=32))


BOXES = [[10.0, 10.0, 30.0, 30.0], [12.0, 12.0, 31.0, 29.0], [40.0, 40.0, 60.0, 58.0]]


def test_ccm_changes_scores_never_boxes():
    model = _model(BOXES, [0.9, 0.8, 0.3]).eval()
    windows = torch.rand(2, WINDOW, SIZE, SIZE)
    with torch.no_grad():
        out = model(windows)
    for o in out:
        got = {tuple(b) for b in o["boxes"].tolist()}
        assert got == {tuple(b) for b in BOXES}  # the same boxes, reordered by the CCM score
        assert torch.all(o["scores"][:-1] >= o["scores"][1:])
        assert o["masks"].shape == (3, SIZE, SIZE) and o["mask"].shape == (SIZE, SIZE)
        # det_scores travel with their boxes
        for box, det in zip(o["boxes"].tolist(), o["det_scores"].tolist()):
            assert det == pytest.approx([0.9, 0.8, 0.3][BOXES.index(box)])


def test_no_detection_gives_an_empty_mask():
    model = _model(np.zeros((0, 4)), []).eval()
    with torch.no_grad():
        out = model(torch.rand(1, WINDOW, SIZE, SIZE))[0]
    assert len(out["boxes"]) == 0 and not out["mask"].any()


def test_union_keeps_the_top_box_and_drops_low_and_overlapping_ones():
    masks = torch.zeros(3, 8, 8, dtype=torch.bool)
    masks[0, 0, 0] = masks[1, 1, 1] = masks[2, 7, 7] = True
    boxes = torch.tensor([[0.0, 0, 4, 4], [0.0, 0, 4, 3], [5.0, 5, 8, 8]])
    # box 1 overlaps box 0 (IoU 0.75 > 0.15) → suppressed; box 2 scores 0.5 < 0.7 × 0.9 → dropped
    m = union_mask(masks, boxes, torch.tensor([0.9, 0.8, 0.5]))
    assert m[0, 0] and not m[1, 1] and not m[7, 7]
    m = union_mask(masks, boxes, torch.tensor([0.9, 0.8, 0.7]))  # 0.7 ≥ 0.63: box 2 joins
    assert m[0, 0] and m[7, 7]
    assert union_mask(masks, boxes, torch.tensor([0.01, 0.001, 0.005]))[0, 0]  # the top box always survives


def test_component_targets_follow_the_box_for_positives_only():
    mask = np.zeros((20, 20), np.uint8)
    mask[2:6, 2:6] = 1
    mask[10:16, 12:18] = 1
    mask[15, 18] = 1  # 8-connected to the second component (diagonal)
    boxes = np.array([[11.0, 9, 19, 17], [1.0, 1, 7, 7], [0.0, 0, 3, 3]])
    out = component_targets(mask, boxes, np.array([1, 1, 0]))
    assert out[0].sum() == 37 and out[0][15, 18] == 1 and out[0][3, 3] == 0
    assert out[1].sum() == 16 and out[1][3, 3] == 1
    assert out[2].sum() == 0  # a negative proposal: U-SAM learns to output nothing


def test_training_losses_and_usam_loss_is_procto_usam_loss():
    from procto.train.usam import USamLoss

    model = _model(BOXES, [0.9, 0.8, 0.3]).train()
    windows = torch.rand(1, WINDOW, SIZE, SIZE)
    mask = torch.zeros(SIZE, SIZE, dtype=torch.uint8)
    mask[12:28, 12:28] = 1
    losses = model(windows, [{"boxes": torch.tensor([BOXES[0]]), "labels": torch.ones(1, dtype=torch.int64),
                              "mask": mask}])
    assert {"loss_classifier", "loss_sam", "loss_ccm"} <= set(losses)
    total = sum(losses.values())
    total.backward()
    assert model.ccm.mlp[0].weight.grad is not None and model.segmenter.mask_decoder.head.out.weight.grad is not None
    logits = torch.randn(3, 2, 16, 16)
    target = torch.randint(0, 2, (3, 1, 16, 16)).float()
    ref = USamLoss(num_classes=2)(logits, target[:, 0])["loss"]
    assert torch.allclose(model.seg_loss(logits, target), ref)


def test_window_size_is_checked():
    model = _model(BOXES, [0.9, 0.8, 0.3]).eval()
    with pytest.raises(ValueError, match="windows of shape"):
        model(torch.rand(1, WINDOW + 2, SIZE, SIZE))
