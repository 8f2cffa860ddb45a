"""CoSAM's window evaluation (procto.train.cosam_eval) with a stand-in detector: reference boxes as detections give
AP50 = 1 with either score (fact 4), pooled IoU = D / (2 − D) exactly (fact 5), windows without nodes contribute only
false positives (fact 6), and the controls (reference-box prompts, detector-only boxes) are computed."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from procto.nets import create_model
from procto.nets.cosam import CoSAM, CollaborativeClassifier
from procto.train.cosam_eval import evaluate_cosam

SIZE, WINDOW = 64, 5


class _FixedDetector(nn.Module):
    window, d_model = WINDOW, 8

    def __init__(self, boxes_per_window, top_scores=None):
        super().__init__()
        self.boxes = boxes_per_window
        self.top = top_scores or [0.9] * len(boxes_per_window)
        self.i = 0
        self.dummy = nn.Parameter(torch.zeros(1))

    def forward(self, windows, targets=None):
        out = []
        for _ in range(windows.shape[0]):
            b = torch.as_tensor(self.boxes[self.i % len(self.boxes)], dtype=torch.float32).reshape(-1, 4)
            top = self.top[self.i % len(self.boxes)]
            self.i += 1
            out.append({"boxes": b, "scores": torch.linspace(top, 0.5, len(b)), "labels": torch.ones(len(b)),
                        "features": torch.zeros(len(b), self.d_model)})
        return out


def _items():
    items = []
    for k in range(3):
        label = np.zeros((SIZE, SIZE), np.uint8)
        box = [10.0 + 5 * k, 12.0, 30.0 + 5 * k, 28.0]
        label[12:28, int(box[0]):int(box[2])] = 1
        items.append({"image": np.random.default_rng(k).random((WINDOW, SIZE, SIZE)).astype(np.float32),
                      "label": label, "boxes": np.array([box]), "case": f"c{k // 2}"})
    return items


def _model(boxes, top_scores=None):
    torch.manual_seed(0)
    seg = create_model("usam_b", num_classes=2, img_size=SIZE, encoder_depth=1, encoder_embed_dim=64,
                       cnn_channels=(8, 8, 16, 16))
    return CoSAM(_FixedDetector(boxes, top_scores), seg, CollaborativeClassifier(det_dim=8, hidden=16))


def test_reference_boxes_as_detections_give_ap50_one_and_pooled_iou_is_d_over_2_minus_d():
    items = _items()
    res = evaluate_cosam(_model([it["boxes"] for it in items]), items)
    assert res["ap50"] == pytest.approx(1.0) and res["ap50_det"] == pytest.approx(1.0)
    assert res["iou"] == pytest.approx(res["dice"] / (2 - res["dice"]), abs=1e-12)
    # detector-only control: the reference boxes filled are exactly the labels here
    assert res["dice_detector_only"] == pytest.approx(1.0)
    assert 0.0 <= res["dice_gt_prompt"] <= 1.0 and res["n_windows"] == 3
    assert len(res["dice_per_case"]) == 2


def test_shifted_boxes_score_zero_and_node_free_windows_only_add_false_positives():
    items = _items()
    shifted = [it["boxes"] + [40.0, 30.0, 40.0, 30.0] for it in items]
    assert evaluate_cosam(_model(shifted), items)["ap50_det"] == 0.0
    empty = {"image": np.zeros((WINDOW, SIZE, SIZE), np.float32), "label": np.zeros((SIZE, SIZE), np.uint8),
             "boxes": np.zeros((0, 4)), "case": "n0"}
    boxes = [it["boxes"] for it in items] + [np.array([[5.0, 5.0, 15.0, 15.0]])]
    # the N0 window's box (ranked first) can only be a false positive: AP drops below 1
    res = evaluate_cosam(_model(boxes, [0.9, 0.9, 0.9, 0.99]), items + [empty])
    assert res["ap50_det"] < 1.0 and res["n_windows"] == 4
