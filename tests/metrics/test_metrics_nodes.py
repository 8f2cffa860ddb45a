"""Lymph-node metrics (CoSAM): testable facts 4 and 5 of ../shared/spec/cosam.md, AP against pycocotools (2D) and
MONAI's nnDetection COCO metric (3D), FROC against MONAI, pooled vs per-case Dice, N categories, table layouts."""

from __future__ import annotations

import numpy as np
import pytest

from procto.errors import InputError
from procto.metrics import (
    FROC_FP_RATES,
    ap50_windows,
    box_iou,
    case_dice,
    dice,
    expand_boxes,
    froc,
    instances_to_boxes3d,
    n_category,
    n_category_accuracy,
    node_ap3d,
    per_case_dice,
    pooled_dice_iou,
)
from procto.metrics import tables


# ------------------------------------------------------------------------------------------------ references
def monai_ap3d(detections, references, iou_threshold):
    """AP from MONAI's COCOMetric + matching_batch (nnDetection's coco.py / matching.py), 100 detections."""
    from monai.apps.detection.metrics.coco import COCOMetric
    from monai.apps.detection.metrics.matching import matching_batch
    from monai.data.box_utils import box_iou as monai_box_iou

    metric = COCOMetric(classes=["node"], iou_list=(iou_threshold,), iou_range=(iou_threshold, iou_threshold, 0.05),
                        max_detection=(100,))
    matched = matching_batch(iou_fn=monai_box_iou, iou_thresholds=metric.iou_thresholds,
                             pred_boxes=[b for b, _ in detections], pred_scores=[s for _, s in detections],
                             pred_classes=[np.zeros(len(b), int) for b, _ in detections],
                             gt_boxes=list(references), gt_classes=[np.zeros(len(r), int) for r in references],
                             max_detections=100)
    values, _ = metric(matched)
    return values[f"AP_IoU_{iou_threshold:.2f}_MaxDet_100"]


def random_boxes(seed, n_images=8, dims=2, jitter=0.15):
    """Per image: references, jittered detections of most of them and false positives; some images without
    references, some without detections; scores rounded to 2 decimals (ties)."""
    rng = np.random.default_rng(seed)
    detections, references = [], []
    for i in range(n_images):
        n_ref = 0 if i % 4 == 1 else int(rng.integers(1, 6))
        lo = rng.uniform(0, 200, (n_ref, dims))
        refs = np.concatenate([lo, lo + rng.uniform(5, 40, (n_ref, dims))], axis=1)
        dets = []
        if i % 4 != 2:
            for b in refs:
                if rng.random() < 0.8:
                    size = b[dims:] - b[:dims]
                    start = b[:dims] + rng.normal(0, jitter, dims) * size
                    dets.append(np.concatenate([start, start + size * np.exp(rng.normal(0, jitter, dims))]))
            for _ in range(int(rng.integers(0, 4))):
                start = rng.uniform(0, 200, dims)
                dets.append(np.concatenate([start, start + rng.uniform(5, 40, dims)]))
        dets = np.array(dets).reshape(-1, 2 * dims)
        detections.append((dets, np.round(rng.uniform(0.01, 1.0, len(dets)), 2)))
        references.append(refs)
    return detections, references


# ------------------------------------------------------------------------------------------ phantom nodes (facts)
@pytest.fixture(scope="module")
def phantom_nodes():
    """The node instance map of one CT phantom on the contract's grid (4 nodes)."""
    from procto.phantom import make_case

    case = make_case(0, "ct", shape=(96, 128, 128), spacing=(1.25, 0.7, 0.7), center="tumour", n_nodes=4)
    nodes = np.asarray(case.nodes.array)
    assert len(np.unique(nodes[nodes > 0])) == 4
    return nodes


def slice_windows(nodes):
    """Per node-bearing slice (a window's centre slice): the tight 2D boxes [x1, y1, x2, y2] of each node."""
    refs = []
    for z in range(nodes.shape[0]):
        boxes = []
        for i in np.unique(nodes[z][nodes[z] > 0]):
            ys, xs = np.nonzero(nodes[z] == i)
            boxes.append([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])
        if boxes:
            refs.append(np.array(boxes, float))
    return refs


def test_fact4_reference_boxes_give_ap50_one_and_shifted_boxes_zero(phantom_nodes, coco_ap):
    refs = slice_windows(phantom_nodes)
    assert len(refs) > 10
    as_dets = [(r, np.ones(len(r))) for r in refs]
    assert ap50_windows(as_dets, refs) == pytest.approx(1.0, abs=1e-12)
    # shifted right by half their width: IoU with their node 1/3, with any other box below 0.5
    shifted = []
    for r in refs:
        s = r.copy()
        s[:, [0, 2]] += 0.5 * (r[:, 2] - r[:, 0])[:, None]
        assert box_iou(s, r).max() < 0.5
        shifted.append((s, np.ones(len(s))))
    assert ap50_windows(shifted, refs) == 0.0
    # the paper's margin: references enlarged by 16 px (clamped to the 128 x 128 slice) as detections -> 1
    enlarged = [np.column_stack([np.maximum(r[:, 0] - 16, 0), np.maximum(r[:, 1] - 16, 0),
                                 np.minimum(r[:, 2] + 16, 128), np.minimum(r[:, 3] + 16, 128)]) for r in refs]
    dets = [(e, np.ones(len(e))) for e in enlarged]
    assert ap50_windows(dets, refs, margin=16, image_size=(128, 128)) == pytest.approx(1.0, abs=1e-12)
    # tight boxes against margin-16 references: small nodes no longer reach IoU 0.5 (= pycocotools on enlarged refs)
    tight_vs_margin = ap50_windows(as_dets, refs, margin=16, image_size=(128, 128))
    assert tight_vs_margin == pytest.approx(coco_ap(as_dets, enlarged), abs=1e-12)
    assert tight_vs_margin < 0.5
    np.testing.assert_array_equal(expand_boxes(refs[0], 16, (128, 128)), enlarged[0])


def test_fact5_pooled_iou_is_d_over_2_minus_d(blob, perturbed):
    preds, refs = [], []
    for seed in range(6):
        ref = blob((12, 24, 24), seed, fill=0.05 + 0.05 * seed)
        preds.append(perturbed(ref, seed + 100, flip=0.3))
        refs.append(ref)
    preds.append(np.zeros((12, 24, 24), bool))  # a missed node
    refs.append(blob((12, 24, 24), 99, fill=0.02))
    d, i = pooled_dice_iou(preds, refs)
    tp = sum(int((p & r).sum()) for p, r in zip(preds, refs))
    size = sum(int(p.sum() + r.sum()) for p, r in zip(preds, refs))
    union = sum(int((p | r).sum()) for p, r in zip(preds, refs))
    assert d == pytest.approx(2 * tp / size, rel=1e-15)
    assert i == pytest.approx(tp / union, rel=1e-15)
    assert i == pytest.approx(d / (2 - d), rel=1e-14)


def test_fact5_pooled_iou_on_phantom_slices(phantom_nodes):
    ref = phantom_nodes > 0
    pred = np.roll(ref, 1, axis=2) | np.roll(ref, -1, axis=1)
    d, i = pooled_dice_iou(list(pred), list(ref))
    assert 0 < d < 1
    assert i == pytest.approx(d / (2 - d), rel=1e-14)
    assert (d, i) == pooled_dice_iou([pred], [ref])  # pooling over slices = the volume's Dice


def test_pooled_vs_per_case():
    big = np.zeros((40, 40), bool)
    big[:30, :30] = True
    small = np.zeros((40, 40), bool)
    small[:2, :2] = True
    preds, refs = [big, np.zeros_like(small)], [big, small]
    d, i = pooled_dice_iou(preds, refs)
    assert d == pytest.approx(2 * 900 / (900 + 904))
    per_case = per_case_dice(preds, refs)
    assert (per_case.mean, per_case.n) == (0.5, 2)
    assert per_case.sd == pytest.approx(np.std([1.0, 0.0], ddof=1))
    # cases pool their slices; case order = first seen; all-empty case scores 1
    preds = [big, big, np.zeros_like(big), np.zeros_like(big)]
    refs = [big, np.zeros_like(big), np.zeros_like(big), np.zeros_like(big)]
    per = case_dice(preds, refs, cases=["a", "a", "n0", "n0"])
    assert list(per) == ["a", "n0"]
    assert per["a"] == pytest.approx(2 * 900 / (1800 + 900))
    assert per["n0"] == 1.0
    assert case_dice([big], [big]) == {0: dice(big, big)}
    assert pooled_dice_iou([np.zeros((3, 3))], [np.zeros((3, 3))]) == (1.0, 1.0)


# --------------------------------------------------------------------------------------------------- AP50
@pytest.mark.parametrize("seed", range(6))
def test_ap50_windows_equals_pycocotools(seed, coco_ap):
    detections, references = random_boxes(seed)
    assert ap50_windows(detections, references) == pytest.approx(coco_ap(detections, references), abs=1e-12)
    wide = [expand_boxes(r, 16, (224, 224)) for r in references]
    assert ap50_windows(detections, references, margin=16, image_size=(224, 224)) == pytest.approx(
        coco_ap(detections, wide), abs=1e-12)


def test_ap50_windows_keeps_100_detections_per_window(coco_ap):
    rng = np.random.default_rng(3)
    ref = np.array([[10.0, 10, 30, 30]])
    far = np.concatenate([rng.uniform(100, 150, (149, 2)), np.full((149, 2), 0.0)], axis=1)
    far[:, 2:] = far[:, :2] + 10
    boxes = np.concatenate([far, ref])
    scores = np.concatenate([np.linspace(0.99, 0.5, 149), [0.1]])  # the true box ranks 150th
    dets, refs = [(boxes, scores), (ref, [0.9])], [ref, ref]
    got = ap50_windows(dets, refs)
    assert got == pytest.approx(coco_ap(dets, refs, max_dets=100), abs=1e-12)
    assert ap50_windows(dets, refs, max_detections=1000) == pytest.approx(coco_ap(dets, refs, max_dets=1000),
                                                                          abs=1e-12)
    assert ap50_windows(dets, refs, max_detections=1000) != got


# ------------------------------------------------------------------------------------------------ 3D nodes
def test_instances_to_boxes3d(phantom_nodes):
    boxes, ids = instances_to_boxes3d(phantom_nodes)
    assert ids.tolist() == [1, 2, 3, 4]
    for box, i in zip(boxes, ids):
        zs, ys, xs = np.nonzero(phantom_nodes == i)
        assert box.tolist() == [xs.min(), ys.min(), zs.min(), xs.max() + 1, ys.max() + 1, zs.max() + 1]
    gapped = np.zeros((3, 4, 5), np.int16)
    gapped[0, 0, 0] = 7
    gapped[1:3, 2:4, 1:5] = 2
    boxes, ids = instances_to_boxes3d(gapped)
    assert ids.tolist() == [2, 7]
    assert boxes.tolist() == [[1, 2, 1, 5, 4, 3], [0, 0, 0, 1, 1, 1]]
    empty_boxes, empty_ids = instances_to_boxes3d(np.zeros((2, 2, 2), np.uint8))
    assert empty_boxes.shape == (0, 6) and empty_ids.size == 0
    assert node_ap3d([(*instances_to_boxes3d(phantom_nodes)[:1], np.ones(4))],
                     [instances_to_boxes3d(phantom_nodes)[0]]) == pytest.approx(1.0, abs=1e-12)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("threshold", [0.1, 0.5])
def test_node_ap3d_equals_monai_coco_metric(seed, threshold):
    detections, references = random_boxes(seed, dims=3)
    assert node_ap3d(detections, references, threshold) == pytest.approx(
        monai_ap3d(detections, references, threshold), abs=1e-12)


@pytest.mark.parametrize("seed", range(3))
def test_node_ap3d_with_unit_depth_equals_pycocotools(seed, coco_ap):
    detections, references = random_boxes(seed)

    def lift(b):
        b = np.asarray(b, float).reshape(-1, 4)
        z = np.full((len(b), 1), 5.0)
        return np.concatenate([b[:, :2], z, b[:, 2:], z + 1], axis=1)

    got = node_ap3d([(lift(b), s) for b, s in detections], [lift(r) for r in references], 0.1)
    assert got == pytest.approx(coco_ap(detections, references, 0.1), abs=1e-12)


# ------------------------------------------------------------------------------------------------------ FROC
def box3(lo, size=10.0):
    lo = np.asarray(lo, float)
    return np.concatenate([lo, lo + size])


def hand_case():
    """Scan A: two nodes; a hit (0.9), a duplicate of it (0.8, FP), a false box (0.75) tied with the second node's
    hit (0.75).  Scan B (N0): one false box (0.85)."""
    refs_a = np.stack([box3([0, 0, 0]), box3([20, 20, 20])])
    dets_a = np.stack([box3([0, 0, 0]), box3([1, 0, 0]), box3([60, 60, 60]), box3([21, 20, 20])])
    return [(dets_a, np.array([0.9, 0.8, 0.75, 0.75])), (box3([90, 0, 0])[None], np.array([0.85]))], \
        [refs_a, np.zeros((0, 6))]


def test_froc_hand_computed():
    dets, refs = hand_case()
    res = froc(dets, refs)
    # operating points (FP/scan, sensitivity): (0, 0), 0.9: (0, .5), 0.85: (.5, .5), 0.8: (1, .5), 0.75: (1.5, 1)
    np.testing.assert_allclose(res.fps_per_scan, [0, 0, 0.5, 1.0, 1.5])
    np.testing.assert_allclose(res.sensitivity, [0, 0.5, 0.5, 0.5, 1.0])
    assert res.sensitivities == pytest.approx((0.5, 0.5, 0.5, 0.5, 1.0, 1.0, 1.0))
    assert res.score == pytest.approx(5 / 7)
    assert res.sensitivity_at(1.25) == pytest.approx(0.75)  # between (1, .5) and (1.5, 1)
    assert res.sensitivity_at(0) == 0.5
    assert (res.n_references, res.n_scans) == (2, 2)
    assert sorted(res.tp_scores.tolist()) == [0.75, 0.9]
    assert sorted(res.fp_scores.tolist()) == [0.75, 0.8, 0.85]
    assert res.fp_rates == FROC_FP_RATES
    # a stricter IoU loses the duplicate-free hit 2 (IoU 0.82 with its node) only above 0.82
    assert froc(dets, refs, iou=0.9).sensitivity_at(8) == 0.5


def monai_froc(res, rates):
    """MONAI's FROC from the same matched scores: tp_probs per reference node (0 for a missed one, as CAMELYON16),
    plus one 0 so that MONAI's first threshold (it skips the lowest distinct score) is the lowest real score."""
    from monai.metrics.froc import compute_froc_curve_data, compute_froc_score

    tp_probs = np.concatenate([res.tp_scores, np.zeros(res.n_references - len(res.tp_scores) + 1)])
    fps, sens = compute_froc_curve_data(res.fp_scores, tp_probs, res.n_references, res.n_scans)
    return [float(compute_froc_score(fps, sens, (r,))) for r in rates], float(compute_froc_score(fps, sens, rates))


@pytest.mark.parametrize("seed", range(6))
def test_froc_equals_monai(seed):
    detections, references = random_boxes(seed, n_images=10, dims=3)
    res = froc(detections, references, iou=0.1)
    per_rate, score = monai_froc(res, FROC_FP_RATES)
    assert res.sensitivities == pytest.approx(per_rate, abs=1e-12)
    assert res.score == pytest.approx(score, abs=1e-12)
    rates = (0.1, 0.3, 0.75, 1.3, 2.2)
    assert [res.sensitivity_at(r) for r in rates] == pytest.approx(monai_froc(res, rates)[0], abs=1e-12)


def test_froc_all_found_and_edge_cases():
    dets, refs = hand_case()
    res = froc(dets, refs)
    assert res.sensitivities == pytest.approx(monai_froc(res, FROC_FP_RATES)[0], abs=1e-12)
    none = froc([(np.zeros((0, 6)), np.zeros(0))], [refs[0]])
    assert none.sensitivities == (0.0,) * 7 and none.score == 0.0
    n0 = froc([dets[1]], [np.zeros((0, 6))])
    assert np.isnan(n0.score) and np.isnan(n0.sensitivity_at(1))


# ------------------------------------------------------------------------------------------------ N category
def test_n_category_boundaries():
    assert [n_category(n) for n in (0, 1, 2, 3, 4, 5, 6, 12)] == ["N0", "N1", "N1", "N1", "N2", "N2", "N2", "N2"]
    assert n_category(np.int64(4)) == "N2" and n_category(3.0) == "N1"
    for bad in (-1, 1.5, True, "two", None):
        with pytest.raises(InputError, match="node count"):
            n_category(bad)
    assert n_category_accuracy([0, 2, 5, 4, 1], [0, 3, 4, 3, 0]) == pytest.approx(3 / 5)
    with pytest.raises(InputError, match="counts"):
        n_category_accuracy([0, 1], [0])
    with pytest.raises(InputError, match="no patients"):
        n_category_accuracy([], [])


# ------------------------------------------------------------------------------------------------- bad input
def test_bad_input_raises():
    box2, box6 = np.array([[0.0, 0, 1, 1]]), np.array([[0.0, 0, 0, 1, 1, 1]])
    with pytest.raises(InputError, match=r"2D \(N, 4\)"):
        ap50_windows([(box6, [1.0])], [box6])
    with pytest.raises(InputError, match=r"3D \(N, 6\)"):
        node_ap3d([(box2, [1.0])], [box2])
    with pytest.raises(InputError, match=r"3D \(N, 6\)"):
        froc([(box6, [1.0])], [box2])
    with pytest.raises(InputError, match="scans"):
        froc([(box6, [1.0])], [box6, box6])
    with pytest.raises(InputError, match="scores"):
        ap50_windows([(box2, [1.0, 0.5])], [box2])
    with pytest.raises(InputError, match="images"):
        ap50_windows([(box2, [1.0])], [box2, box2])
    with pytest.raises(InputError, match="pair"):
        froc([box6], [box6])
    with pytest.raises(InputError, match="fp_per_scan"):
        froc([(box6, [1.0])], [box6]).sensitivity_at(-1)
    with pytest.raises(InputError, match="mask pair 1: shape mismatch"):
        pooled_dice_iou([np.zeros((2, 2)), np.zeros((2, 2))], [np.zeros((2, 2)), np.zeros((3, 2))])
    with pytest.raises(InputError, match="2 predicted masks but 1"):
        pooled_dice_iou([np.zeros((2, 2))] * 2, [np.zeros((2, 2))])
    with pytest.raises(InputError, match="case ids"):
        per_case_dice([np.zeros((2, 2))], [np.zeros((2, 2))], cases=["a", "b"])
    with pytest.raises(InputError, match="3D"):
        instances_to_boxes3d(np.zeros((4, 4)))
    with pytest.raises(InputError, match="negative"):
        instances_to_boxes3d(-np.ones((2, 2, 2)))
    with pytest.raises(InputError, match="integer"):
        instances_to_boxes3d(np.full((2, 2, 2), 0.5))
    with pytest.raises(InputError, match="margin"):
        expand_boxes(box2, -1)


# ---------------------------------------------------------------------------------------------------- tables
#: The paper's numbers, copied from ../shared/spec/cosam-facts.md §7 (data, not computed).
TABLE2 = {"U-Net": ("68.35", "65.17"), "MissFormer": ("64.54", "47.64"), "TransUnet": ("67.61", "51.07"),
          "V-Net": ("66.37", "49.66"), "DoubleUnet": ("65.40", "48.59"), "SwinUnet": ("68.47", "52.05"),
          "UCTransNet": ("68.68", "52.30"), "AttenUnet": ("65.23", "48.40"), "MultiResUnet": ("69.05", "52.73"),
          "SAM": ("67.74", "46.77"), "SAMed": ("70.79", "54.79"), "U-SAM": ("69.08", "52.76"),
          "CoSAM": ("74.12", "58.59")}
TABLE3 = {5: "0.820", 7: "0.835", 9: "0.845", 11: "0.849", 13: "0.839", 15: "0.810"}
TABLE4 = [("✗", "✗", "0.849", "59.45"), ("✓", "✗", "0.847", "69.46"), ("✓", "✓", "0.875", "74.12")]


def _rows(markdown: str) -> list[list[str]]:
    lines = markdown.splitlines()
    assert lines[1] == ""
    body = lines[2:]
    assert set(body[1]) == {"-", "|"} and body[1].count("|") == body[0].count("|")
    assert all(line.startswith("| ") and line.endswith(" |") for line in [body[0], *body[2:]])
    return [[c.strip() for c in line.strip("|").split("|")] for line in [body[0], *body[2:]]]


def test_table2_layout():
    text = tables.cosam_table2([("CoSAM (procto)", 0.7012, 0.54)])
    assert "paper protocol" in text.splitlines()[0]
    rows = _rows(text)
    assert rows[0] == ["Method", "Dice (%)", "IoU (%)", "Source"]
    paper = {r[0]: (r[1], r[2]) for r in rows[1:] if r[3] == "paper, Table 2"}
    assert paper == TABLE2
    assert ["CoSAM", "74.21", "59.00", "paper, text §5.2"] in rows
    assert rows[-1] == ["CoSAM (procto)", "70.12", "54.00", "procto"]
    assert len(_rows(tables.cosam_table2(paper=False))) == 1


def test_table3_and_table4_layouts():
    text = tables.cosam_table3({9: 0.5, 11: float("nan")})
    assert "paper protocol" in text.splitlines()[0]
    rows = _rows(text)
    assert rows[0] == ["Window L", "AP50 (paper)", "AP50 (procto)"]
    assert {int(r[0]): r[1] for r in rows[1:]} == TABLE3
    assert {int(r[0]): r[2] for r in rows[1:]} == {5: "n/a", 7: "n/a", 9: "0.500", 11: "n/a", 13: "n/a", 15: "n/a"}
    text = tables.cosam_table4({(True, True): (0.61, 0.705)})
    assert "paper protocol" in text.splitlines()[0]
    rows = _rows(text)
    assert rows[0][:4] == ["E2E", "CCM", "AP50 (paper)", "Dice % (paper)"]
    assert [tuple(r[:4]) for r in rows[1:]] == TABLE4
    assert rows[-1][4:] == ["0.610", "70.50"] and rows[1][4:] == ["n/a", "n/a"]


def test_whole_volume_table_layout():
    dets, refs = hand_case()
    res = froc(dets, refs)
    results = {"CoSAM": {"ap50_2d": 0.4321, "ap3d": 0.5, "froc": res, "dice": 0.7, "dice_per_case": (0.6, 0.1),
                         "n_accuracy": 0.75},
               "detector only": {"froc": {0.125: 0.25}}}
    text = tables.cosam_whole_volume_table(results)
    assert "whole-volume protocol, not in the paper" in text.splitlines()[0]
    rows = {r[0]: r[1:] for r in _rows(text)}
    assert rows["Metric"] == ["CoSAM", "detector only"]
    assert rows["2D AP50 (per slice, pycocotools)"] == ["0.432", "n/a"]
    assert rows["3D node AP@0.1 (nnDetection)"] == ["0.500", "n/a"]
    assert rows["FROC sensitivity @ 0.125 FP/scan"] == ["0.500", "0.250"]
    assert rows["FROC sensitivity @ 2 FP/scan"] == ["1.000", "n/a"]
    assert rows["FROC mean sensitivity"] == [f"{5 / 7:.3f}", "n/a"]
    assert rows["Dice pooled (%)"] == ["70.00", "n/a"]
    assert rows["Dice per case (%, mean ± sd)"] == ["60.00 ± 10.00", "n/a"]
    assert rows["N-category accuracy (%)"] == ["75.0", "n/a"]
    assert len(rows) == 1 + 2 + 7 + 1 + 3
