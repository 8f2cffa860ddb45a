"""Dice / IoU / precision / recall: MONAI agreement, empty-mask rules, bad input."""

from __future__ import annotations

import numpy as np
import pytest

from procto.errors import InputError
from procto.metrics import dice, iou, overlap_counts, precision, recall


@pytest.fixture(scope="module")
def monai_metrics():
    torch = pytest.importorskip("torch")
    metrics = pytest.importorskip("monai.metrics")
    return torch, metrics


@pytest.mark.parametrize("seed", range(4))
def test_dice_and_iou_match_monai(monai_metrics, blob, perturbed, seed):
    torch, metrics = monai_metrics
    ref = blob((12, 24, 20), seed, fill=0.25)
    pred = perturbed(ref, seed, flip=0.4)
    p = torch.from_numpy(pred[None, None].astype(np.float32))
    r = torch.from_numpy(ref[None, None].astype(np.float32))
    want_dice = metrics.DiceMetric(include_background=True, reduction="mean")(p, r).item()
    want_iou = metrics.MeanIoU(include_background=True, reduction="mean")(p, r).item()
    assert dice(pred, ref) == pytest.approx(want_dice, abs=1e-6)
    assert iou(pred, ref) == pytest.approx(want_iou, abs=1e-6)


def test_hand_counts():
    pred = np.array([[1, 1, 0, 0], [1, 0, 0, 0]], bool)
    ref = np.array([[0, 1, 1, 0], [1, 0, 0, 1]], bool)
    assert overlap_counts(pred, ref) == (2, 1, 2)
    assert dice(pred, ref) == pytest.approx(4 / 7)
    assert iou(pred, ref) == pytest.approx(2 / 5)
    assert precision(pred, ref) == pytest.approx(2 / 3)
    assert recall(pred, ref) == pytest.approx(2 / 4)
    assert isinstance(dice(pred, ref), float)


def test_empty_rules():
    empty = np.zeros((3, 4, 5), bool)
    full = empty.copy()
    full[1, 1:3, 2:4] = True
    for fn in (dice, iou, precision, recall):
        assert fn(empty, empty) == 1.0  # both empty
        assert fn(empty, full) == 0.0  # prediction empty
        assert fn(full, empty) == 0.0  # reference empty


def test_numeric_masks_are_binarised():
    pred = np.array([0, 2, 5, 0], np.uint8)
    ref = np.array([0.0, 1.0, 0.0, 1.0])
    assert dice(pred, ref) == pytest.approx(0.5)


def test_bad_input_raises():
    with pytest.raises(InputError, match="shape mismatch"):
        dice(np.zeros((3, 4)), np.zeros((4, 3)))
    with pytest.raises(InputError, match="NaN"):
        iou(np.array([np.nan, 1.0]), np.array([0.0, 1.0]))
    with pytest.raises(InputError, match="dtype"):
        precision(np.array(["a", "b"]), np.array(["a", "b"]))
