"""COCO-style AP against pycocotools; 3D boxes; box IoU; bad input."""

from __future__ import annotations


import numpy as np
import pytest

from procto.errors import InputError
from procto.metrics import average_precision, box_iou


def random_case(seed, n_images=8):
    """Per image: references, jittered detections of some of them (overlaps spread around 0.5) and false
    positives; some images have no references and some no detections."""
    rng = np.random.default_rng(seed)
    detections, references = [], []
    for i in range(n_images):
        n_ref = 0 if i % 4 == 1 else int(rng.integers(1, 6))
        xy = rng.uniform(0, 200, (n_ref, 2))
        wh = rng.uniform(5, 40, (n_ref, 2))
        refs = np.concatenate([xy, xy + wh], axis=1)
        dets = []
        if i % 4 != 2:  # images with index 2 mod 4 get no detections
            for b in refs:
                if rng.random() < 0.8:
                    size = b[2:] - b[:2]
                    shift = rng.normal(0, 0.25, 2) * size
                    scale = np.exp(rng.normal(0, 0.2, 2))
                    lo = b[:2] + shift
                    dets.append(np.concatenate([lo, lo + size * scale]))
            for _ in range(int(rng.integers(0, 4))):
                lo = rng.uniform(0, 200, 2)
                dets.append(np.concatenate([lo, lo + rng.uniform(5, 40, 2)]))
        dets = np.array(dets).reshape(-1, 4)
        scores = np.round(rng.random(len(dets)), 2)  # rounded: ties across and within images
        detections.append((dets, scores))
        references.append(refs)
    return detections, references


@pytest.mark.parametrize("seed", range(8))
def test_ap50_matches_pycocotools(seed, coco_ap):
    detections, references = random_case(seed)
    assert average_precision(detections, references, 0.5) == pytest.approx(
        coco_ap(detections, references, max_dets=100_000), abs=1e-12)


@pytest.mark.parametrize("threshold", [0.3, 0.75])
def test_other_thresholds_and_max_detections_match_pycocotools(threshold, coco_ap):
    detections, references = random_case(42, n_images=6)
    assert average_precision(detections, references, threshold) == pytest.approx(
        coco_ap(detections, references, threshold, max_dets=100_000), abs=1e-12
    )
    assert average_precision(detections, references, threshold, max_detections=2) == pytest.approx(
        coco_ap(detections, references, threshold, max_dets=2), abs=1e-12
    )


def test_no_detections_or_no_references():
    refs = [np.array([[0, 0, 10, 10]]), np.zeros((0, 4))]
    assert average_precision([(np.zeros((0, 4)), np.zeros(0)), ([], [])], refs) == 0.0
    assert np.isnan(average_precision([(np.array([[0, 0, 1, 1]]), np.array([0.5]))], [np.zeros((0, 4))]))


def test_3d_hand_computed():
    refs = [np.array([[0, 0, 0, 10, 10, 10], [20, 20, 20, 30, 30, 30]], float)]
    dets = [(
        np.array([
            [0, 0, 0, 10, 10, 10],  # IoU 1 with the first reference  -> TP
            [20, 20, 20, 30, 30, 24],  # IoU 0.4 with the second       -> FP
            [20, 20, 20, 30, 30, 25],  # IoU 0.5 with the second       -> TP (IoU >= threshold)
        ], float),
        np.array([0.9, 0.8, 0.7]),
    )]
    # ranking TP, FP, TP: recall 0.5, 0.5, 1; precision envelope 1, 2/3, 2/3
    # -> 51 recall points (0 ... 0.50) at precision 1, 50 points at 2/3
    want = (51 * 1.0 + 50 * (2 / 3)) / 101
    assert average_precision(dets, refs) == pytest.approx(want, rel=1e-12)
    iou = box_iou(dets[0][0], refs[0])
    np.testing.assert_allclose(iou, [[1.0, 0.0], [0.0, 0.4], [0.0, 0.5]])


@pytest.mark.parametrize("seed", range(3))
def test_3d_boxes_with_unit_depth_equal_2d(seed):
    detections, references = random_case(seed)

    def lift(b):
        b = np.asarray(b, float).reshape(-1, 4)
        z = np.zeros((len(b), 1))
        return np.concatenate([b[:, :2], z, b[:, 2:], z + 1], axis=1)

    det3 = [(lift(b), s) for b, s in detections]
    ref3 = [lift(b) for b in references]
    assert average_precision(det3, ref3) == average_precision(detections, references)


def test_box_iou_2d():
    a = np.array([[0, 0, 2, 2], [1, 1, 3, 3]], float)
    b = np.array([[1, 1, 3, 3], [5, 5, 6, 6]], float)
    np.testing.assert_allclose(box_iou(a, b), [[1 / 7, 0], [1, 0]])
    assert box_iou(np.zeros((0, 4)), b).shape == (0, 2)


def test_bad_input_raises():
    good = np.array([[0, 0, 1, 1]], float)
    with pytest.raises(InputError, match="images"):
        average_precision([(good, [1.0])], [good, good])
    with pytest.raises(InputError, match="scores"):
        average_precision([(good, [1.0, 0.5])], [good])
    with pytest.raises(InputError, match=r"\(N, 4\)"):
        average_precision([(np.zeros((1, 5)), [1.0])], [good])
    with pytest.raises(InputError, match="max < min"):
        average_precision([(np.array([[2, 0, 1, 1]]), [1.0])], [good])
    with pytest.raises(InputError, match="columns"):
        average_precision([(np.zeros((1, 6)), [1.0])], [good])
    with pytest.raises(InputError, match="iou_threshold"):
        average_precision([(good, [1.0])], [good], iou_threshold=0.0)
    with pytest.raises(InputError, match="pair"):
        average_precision([good], [good])
