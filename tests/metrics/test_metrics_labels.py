"""Per-class evaluation of label maps."""

from __future__ import annotations

import numpy as np
import pytest

from procto.errors import InputError
from procto.metrics import METRIC_NAMES, dice, evaluate_labels, iou, precision, recall, surface_metrics


def _label_maps(blob, perturbed, seed=0):
    ref = np.zeros((12, 32, 32), np.uint8)
    ref[blob((12, 32, 32), seed, fill=0.3)] = 1
    ref[blob((12, 32, 32), seed + 50, fill=0.08)] = 2
    pred = np.zeros_like(ref)
    pred[perturbed(ref == 1, seed)] = 1
    pred[perturbed(ref == 2, seed + 1)] = 2
    return pred, ref


def test_per_class_values_match_binary_metrics(blob, perturbed):
    pred, ref = _label_maps(blob, perturbed)
    spacing = (3.0, 0.8, 0.8)
    res = evaluate_labels(pred, ref, spacing, {1: "rectum", 2: "tumour"}, tolerance_mm=2.0)
    assert list(res) == ["rectum", "tumour"]
    for label, name in ((1, "rectum"), (2, "tumour")):
        p, r = pred == label, ref == label
        assert tuple(res[name]) == METRIC_NAMES
        assert res[name]["dice"] == dice(p, r)
        assert res[name]["iou"] == iou(p, r)
        assert res[name]["precision"] == precision(p, r)
        assert res[name]["recall"] == recall(p, r)
        surf = surface_metrics(p, r, spacing, tolerance_mm=2.0)
        for k in ("nsd", "hd95", "asd"):
            assert res[name][k] == surf[k]


def test_label_forms_and_absent_class(blob, perturbed):
    pred, ref = _label_maps(blob, perturbed, seed=3)
    by_list = evaluate_labels(pred, ref, (3.0, 0.8, 0.8), [1, 2, 3])
    assert list(by_list) == ["1", "2", "3"]
    assert by_list["3"]["dice"] == 1.0 and by_list["3"]["hd95"] == 0.0  # absent from both maps
    auto = evaluate_labels(pred, ref, (3.0, 0.8, 0.8))
    assert list(auto) == ["1", "2"]
    assert auto["2"] == by_list["2"]
    missed = evaluate_labels(np.zeros_like(ref), ref, (3.0, 0.8, 0.8), {2: "tumour"}, empty_penalty=99.0)
    assert missed["tumour"]["dice"] == 0.0 and missed["tumour"]["hd95"] == 99.0 and missed["tumour"]["asd"] == 99.0


def test_2d_label_maps():
    ref = np.zeros((20, 20), np.int32)
    ref[5:12, 4:15] = 1
    res = evaluate_labels(ref, ref, (0.7, 0.7), {1: "rectum"})
    assert res["rectum"]["dice"] == 1.0 and res["rectum"]["nsd"] == 1.0


def test_bad_input_raises():
    a = np.zeros((4, 5, 6), np.uint8)
    with pytest.raises(InputError, match="shape mismatch"):
        evaluate_labels(a, np.zeros((4, 5, 7), np.uint8), (1.0, 1.0, 1.0))
    with pytest.raises(InputError, match="spacing"):
        evaluate_labels(a, a, (1.0, 1.0))
    with pytest.raises(InputError, match="integer"):
        evaluate_labels(a + 0.5, a, (1.0, 1.0, 1.0))
    with pytest.raises(InputError, match="2D or 3D"):
        evaluate_labels(np.zeros(5, np.uint8), np.zeros(5, np.uint8), (1.0,))
    with pytest.raises(InputError, match="labels"):
        evaluate_labels(a, a, (1.0, 1.0, 1.0), labels="rectum")
