"""NSD / HD95 / ASD against DeepMind surface-distance (to 1e-6), empty-mask rules, bad input."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from procto.errors import InputError
from procto.metrics import asd, hd95, nsd, surface_distances, surface_metrics
from procto.metrics._surfels import contour_length_table, neighbour_codes, surface_area_table

TOL = 1e-6

# surface-distance 0.1 imports from deprecated scipy.ndimage namespaces
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def reference_metrics(sd, pred, ref, spacing, tolerance):
    d = sd.compute_surface_distances(ref.astype(bool), pred.astype(bool), list(spacing))
    a, b = sd.compute_average_surface_distance(d)
    return {
        "nsd": sd.compute_surface_dice_at_tolerance(d, tolerance),
        "hd95": sd.compute_robust_hausdorff(d, 95),
        "asd": (a + b) / 2,
        "raw": d,
    }


def assert_matches(sd, pred, ref, spacing, tolerance):
    want = reference_metrics(sd, pred, ref, spacing, tolerance)
    got = surface_metrics(pred, ref, spacing, tolerance_mm=tolerance)
    for key in ("nsd", "hd95", "asd"):
        assert abs(got[key] - want[key]) <= TOL, (key, got[key], want[key])
    # the (distance, area) lists themselves agree (compared as multisets: equal distances can come out of the two
    # implementations in a different order when they differ in the last bit)
    ours = surface_distances(pred, ref, spacing)
    raw = want["raw"]
    for d_ours, a_ours, d_raw, a_raw in (
        (ours.distances_ref_to_pred, ours.areas_ref, raw["distances_gt_to_pred"], raw["surfel_areas_gt"]),
        (ours.distances_pred_to_ref, ours.areas_pred, raw["distances_pred_to_gt"], raw["surfel_areas_pred"]),
    ):
        assert d_ours.shape == d_raw.shape
        o1 = np.lexsort((a_ours, np.round(d_ours, 9)))
        o2 = np.lexsort((a_raw, np.round(d_raw, 9)))
        np.testing.assert_allclose(d_ours[o1], d_raw[o2], atol=1e-9, rtol=0)
        np.testing.assert_allclose(a_ours[o1], a_raw[o2], atol=1e-9, rtol=0)
    for pct in (50, 100):
        assert abs(ours.hausdorff(pct) - sd.compute_robust_hausdorff(raw, pct)) <= TOL
    return got


@pytest.mark.parametrize("spacing", [(5.0, 0.76, 0.76), (1.0, 0.78, 0.78), (2.3, 0.61, 1.07)])
def test_area_table_matches_surface_distance(sd, spacing):
    want = sd.lookup_tables.create_table_neighbour_code_to_surface_area(spacing)
    np.testing.assert_array_equal(surface_area_table(spacing), want)


@pytest.mark.parametrize("spacing", [(0.76, 0.76), (3.0, 0.7)])
def test_contour_table_matches_surface_distance(sd, spacing):
    want = sd.lookup_tables.create_table_neighbour_code_to_contour_length(spacing)
    np.testing.assert_array_equal(contour_length_table(spacing), want)


@pytest.mark.parametrize("shape", [(5, 6, 7), (9, 8)])
def test_neighbour_codes_match_correlation(sd, shape):
    mask = np.random.default_rng(1).random(shape) > 0.5
    kernel = sd.lookup_tables.ENCODE_NEIGHBOURHOOD_3D_KERNEL if len(shape) == 3 else (
        sd.lookup_tables.ENCODE_NEIGHBOURHOOD_2D_KERNEL
    )
    padded = np.zeros(np.array(shape) + 1, np.uint8)
    padded[tuple(slice(0, -1) for _ in shape)] = mask
    want = ndimage.correlate(padded, kernel, mode="constant", cval=0)
    np.testing.assert_array_equal(neighbour_codes(mask), want)


@pytest.mark.parametrize("seed", range(6))
def test_random_3d_masks_match(sd, blob, perturbed, seed):
    rng = np.random.default_rng(100 + seed)
    spacing = tuple(np.round(rng.uniform([1.0, 0.4, 0.4], [6.0, 1.2, 1.2]), 3))
    ref = blob((18, 40, 36), seed, sigma=2.0, fill=0.2)
    pred = perturbed(ref, seed)
    if seed % 2:  # an extra false-positive island
        pred[1:3, 2:5, 30:34] = True
    assert_matches(sd, pred, ref, spacing, tolerance=float(rng.uniform(1.0, 5.0)))


@pytest.mark.parametrize("strategy", ["transform", "offsets", "tree"])
@pytest.mark.parametrize("seed", range(3))
def test_every_nearest_surfel_strategy_matches(sd, blob, perturbed, monkeypatch, strategy, seed):
    # the nearest-surfel search picks a strategy by size; force each one on small masks
    import procto.metrics.surface as surface

    monkeypatch.setattr(surface, "_FORCE_STRATEGY", strategy)
    rng = np.random.default_rng(seed)
    spacing = [(5.0, 0.76, 0.76), (1.0, 0.78, 0.78), (2.2, 0.5, 0.9)][seed]
    ref = blob((16, 48, 40), seed + 20, sigma=2.5, fill=0.15)
    pred = perturbed(ref, seed + 20, flip=0.3)
    pred[rng.integers(0, 16), 40:46, 2:6] = True  # island far from the reference
    assert_matches(sd, pred, ref, spacing, tolerance=2.0)
    assert_matches(sd, ref[5], pred[5], spacing[1:], tolerance=2.0)  # 2D


@pytest.mark.parametrize("seed", range(2))
def test_noisy_dense_masks_match(sd, seed):
    # dense surfaces take the feature-transform path instead of the k-d tree
    rng = np.random.default_rng(seed)
    ref = rng.random((10, 24, 24)) < 0.3
    pred = rng.random((10, 24, 24)) < 0.3
    assert_matches(sd, pred, ref, (3.0, 0.8, 0.7), tolerance=1.0)


def test_separate_objects_far_apart_match(sd, blob):
    ref = np.zeros((20, 60, 60), bool)
    ref[2:8, 5:20, 5:20] = blob((6, 15, 15), 3, sigma=1.5, fill=0.5)
    pred = np.zeros_like(ref)
    pred[12:19, 35:58, 30:55] = blob((7, 23, 25), 4, sigma=1.5, fill=0.5)
    assert_matches(sd, pred, ref, (4.0, 0.9, 0.9), tolerance=3.0)


def test_masks_touching_the_array_border_match(sd, blob):
    ref = blob((8, 20, 20), 5, sigma=1.5, fill=0.6)
    ref[0] = True
    ref[:, :, -1] = True
    pred = np.roll(ref, 1, axis=1)
    assert_matches(sd, pred, ref, (2.0, 0.5, 0.5), tolerance=1.0)


@pytest.mark.parametrize("seed", range(3))
def test_random_2d_masks_match(sd, blob, perturbed, seed):
    ref = blob((64, 56), seed, sigma=3.0, fill=0.25)
    pred = perturbed(ref, seed)
    assert_matches(sd, pred, ref, (0.7, 1.3), tolerance=1.5)


def test_identical_masks(blob):
    ref = blob((10, 20, 20), 7)
    got = surface_metrics(ref, ref, (3.0, 1.0, 1.0))
    assert got == {"nsd": 1.0, "hd95": 0.0, "asd": 0.0}


def test_single_functions_agree_with_surface_metrics(blob, perturbed):
    ref = blob((12, 30, 30), 11)
    pred = perturbed(ref, 11)
    spacing = (2.5, 0.8, 0.8)
    both = surface_metrics(pred, ref, spacing, tolerance_mm=2.0, empty_penalty=500.0)
    assert nsd(pred, ref, spacing, 2.0) == both["nsd"]
    assert hd95(pred, ref, spacing, empty_penalty=500.0) == both["hd95"]
    assert asd(pred, ref, spacing) == both["asd"]


def test_accepts_integer_masks(blob, perturbed):
    ref = blob((10, 20, 20), 2)
    pred = perturbed(ref, 2)
    spacing = (2.0, 1.0, 1.0)
    assert surface_metrics(pred.astype(np.uint8) * 3, ref.astype(np.int64), spacing) == surface_metrics(
        pred, ref, spacing
    )


# ----------------------------------------------------------------------------------------------------- empty masks


@pytest.mark.parametrize("shape,spacing", [((6, 10, 10), (3.0, 1.0, 1.0)), ((10, 10), (1.0, 1.0))])
def test_both_empty(sd, shape, spacing):
    empty = np.zeros(shape, bool)
    assert surface_metrics(empty, empty, spacing) == {"nsd": 1.0, "hd95": 0.0, "asd": 0.0}
    assert nsd(empty, empty, spacing, 2.0) == 1.0
    assert hd95(empty, empty, spacing) == 0.0
    assert asd(empty, empty, spacing) == 0.0
    # surface-distance leaves this case undefined (0/0 and an infinite Hausdorff distance)
    d = sd.compute_surface_distances(empty, empty, list(spacing))
    with np.errstate(invalid="ignore"):
        assert np.isnan(sd.compute_surface_dice_at_tolerance(d, 2.0))
    assert sd.compute_robust_hausdorff(d, 95) == np.inf


@pytest.mark.parametrize("empty_side", ["pred", "ref"])
@pytest.mark.parametrize("shape,spacing", [((6, 10, 10), (3.0, 1.0, 1.0)), ((10, 10), (1.0, 1.0))])
def test_one_empty(sd, empty_side, shape, spacing):
    full = np.zeros(shape, bool)
    full[tuple(slice(2, 5) for _ in shape)] = True
    empty = np.zeros(shape, bool)
    pred, ref = (empty, full) if empty_side == "pred" else (full, empty)
    assert surface_metrics(pred, ref, spacing) == {"nsd": 0.0, "hd95": 1000.0, "asd": 1000.0}
    assert surface_metrics(pred, ref, spacing, empty_penalty=373.0)["hd95"] == 373.0
    assert asd(pred, ref, spacing, empty_penalty=373.0) == 373.0
    assert nsd(pred, ref, spacing, 5.0) == 0.0
    # surface-distance: NSD 0 and an infinite HD95 (which procto replaces by the penalty)
    d = sd.compute_surface_distances(ref, pred, list(spacing))
    assert sd.compute_surface_dice_at_tolerance(d, 5.0) == 0.0
    assert sd.compute_robust_hausdorff(d, 95) == np.inf
    ours = surface_distances(pred, ref, spacing)
    assert ours.ref_empty == (empty_side == "ref") and ours.pred_empty == (empty_side == "pred")


# ------------------------------------------------------------------------------------------------------ bad input


def test_shape_mismatch_raises():
    with pytest.raises(InputError, match="shape mismatch"):
        surface_metrics(np.zeros((4, 5, 6), bool), np.zeros((4, 5, 7), bool), (1.0, 1.0, 1.0))


@pytest.mark.parametrize("spacing", [(1.0, 1.0), (1.0, 1.0, 1.0, 1.0), 1.0, (1.0, -1.0, 1.0), (1.0, np.nan, 1.0)])
def test_bad_spacing_raises(spacing):
    m = np.zeros((4, 5, 6), bool)
    with pytest.raises(InputError, match="spacing"):
        hd95(m, m, spacing)


def test_wrong_dimensionality_raises():
    with pytest.raises(InputError, match="2D or 3D"):
        nsd(np.zeros((2, 3, 4, 5), bool), np.zeros((2, 3, 4, 5), bool), (1.0,) * 4, 1.0)
    with pytest.raises(InputError, match="2D or 3D"):
        asd(np.zeros(5, bool), np.zeros(5, bool), (1.0,))


def test_bad_tolerance_and_nan_mask_raise():
    m = np.zeros((3, 4, 4), bool)
    with pytest.raises(InputError, match="tolerance"):
        nsd(m, m, (1.0, 1.0, 1.0), -1.0)
    with pytest.raises(InputError, match="NaN"):
        nsd(np.full((3, 4, 4), np.nan), m, (1.0, 1.0, 1.0), 1.0)
    with pytest.raises(InputError):
        surface_metrics(m, m, (1.0, 1.0, 1.0), empty_penalty=-5)
