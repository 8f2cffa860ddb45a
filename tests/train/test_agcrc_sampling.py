"""AG-CRC anatomy-guided patch sampling (procto.train.agcrc_sampling): testable facts 1, 2, 3 (and 8 when the OOI
builder exists) of ../shared/spec/agcrc.md, the gain map against a direct sum, pickling, determinism, errors."""

from __future__ import annotations

import itertools
import pickle

import numpy as np
import pytest
from scipy import stats

from procto.errors import InputError
from procto.train.agcrc_sampling import PSMSampler, final_psm, gain_map, psm_map


def _reference_gain(mask: np.ndarray, patch: tuple[int, int, int]) -> np.ndarray:
    """Eqs. 1–2 literally: g_i = Σ_q K_i(q)·O(q) over the image, K_i a truncated Gaussian around voxel i."""
    sigma = 0.1 * np.asarray(patch, dtype=float)
    half = np.asarray(patch) // 2
    norm = (2 * np.pi) ** -1.5 / np.prod(sigma)  # (2π)^-3/2 det(Σ)^-1/2 with Σ = diag(σ²)
    out = np.zeros(mask.shape)
    voxels = np.argwhere(mask)
    for i in itertools.product(*(range(n) for n in mask.shape)):
        total = 0.0
        for q in voxels:
            off = q - np.asarray(i)
            if np.all(np.abs(off) <= half):
                total += norm * np.exp(-0.5 * np.sum((off / sigma) ** 2))
        out[i] = total
    return out


def _patch_box(centre, patch):
    """Centres whose patch (lower corner = centre − patch//2, nnU-Net's cropping) contains the voxel ``centre``."""
    return tuple(slice(c - (d - 1 - d // 2), c + d // 2 + 1) for c, d in zip(centre, patch))


# ---------------------------------------------------------------------------------------------------------------------
# the maps


@pytest.mark.parametrize("patch", [(3, 4, 5), (2, 9, 1), (12, 3, 6)])
def test_gain_map_matches_direct_sum(patch):
    rng = np.random.default_rng(3)
    mask = rng.random((5, 7, 6)) < 0.15
    mask[0, 0, 0] = mask[-1, -1, -1] = True  # corners: truncation at the image border
    np.testing.assert_allclose(gain_map(mask, patch), _reference_gain(mask, patch), rtol=1e-12, atol=1e-15)


def test_gain_map_bounding_box_and_dtypes():
    mask = np.zeros((30, 40, 50), dtype=np.uint8)
    mask[12:15, 20:22, 5:9] = 1
    g = gain_map(mask, (8, 10, 12))
    # the same map with the box trick defeated (mask voxels at opposite corners are far apart)
    big = mask.astype(bool).copy()
    big[0, 0, 0] = True
    corner = np.zeros(mask.shape, bool)
    corner[0, 0, 0] = True
    full = gain_map(big, (8, 10, 12)) - gain_map(corner, (8, 10, 12))
    np.testing.assert_allclose(g, full, atol=1e-15)
    assert g.dtype == np.float64 and g.shape == mask.shape
    assert np.all(g[:, :, 5 + 3 + 6 + 1:] == 0)  # nothing beyond patch//2 from the mask
    np.testing.assert_array_equal(gain_map(mask.astype(bool), (8, 10, 12)), g)
    np.testing.assert_array_equal(gain_map(mask.astype(np.float32), (8, 10, 12)), g)


def test_fact1_psm_is_a_distribution_and_empty_is_uniform():
    rng = np.random.default_rng(0)
    mask = rng.random((12, 20, 16)) < 0.05
    s = psm_map(mask, (4, 8, 8))
    assert np.all(s >= 0)
    assert s.sum() == pytest.approx(1.0, abs=1e-12)
    empty = psm_map(np.zeros((12, 20, 16), bool), (4, 8, 8))
    np.testing.assert_allclose(empty, 1.0 / empty.size, rtol=1e-12)
    f = final_psm(mask, np.zeros_like(mask), (4, 8, 8))
    assert np.all(f >= 0) and f.sum() == pytest.approx(1.0, abs=1e-12)
    # mu weighs the gain against the uniform floor: a large mu tends to uniform
    np.testing.assert_allclose(psm_map(mask, (4, 8, 8), mu=1e12), 1.0 / s.size, rtol=1e-6)


def test_fact2_one_voxel_mass():
    shape, patch, voxel = (64, 128, 128), (16, 64, 64), (32, 64, 64)
    mask = np.zeros(shape, bool)
    mask[voxel] = True
    box = _patch_box(voxel, patch)
    tumour_only = psm_map(mask, patch)[box].sum()
    assert tumour_only == pytest.approx(0.531, abs=0.01)
    final = final_psm(np.zeros(shape, bool), mask, patch)[box].sum()
    assert final == pytest.approx(0.217, abs=0.01)
    # the closed form of agcrc-facts.md: 0.67·|box|/n + 0.33·0.531
    assert final == pytest.approx(0.67 * np.prod(patch) / np.prod(shape) + 0.33 * tumour_only, rel=1e-9)


# ---------------------------------------------------------------------------------------------------------------------
# the sampler


def _chi2_pvalue(centres: np.ndarray, probs: np.ndarray) -> float:
    counts = np.zeros(probs.size)
    np.add.at(counts, np.ravel_multi_index(tuple(centres.T), probs.shape), 1)
    expected = probs.ravel() * centres.shape[0]
    big = expected >= 5  # pool the cells too small for the χ² approximation into one bin
    obs = np.append(counts.ravel()[big], counts.ravel()[~big].sum())
    exp = np.append(expected[big], expected[~big].sum())
    if exp[-1] == 0:
        assert obs[-1] == 0
        obs, exp = obs[:-1], exp[:-1]
    return float(stats.chisquare(obs, exp * obs.sum() / exp.sum()).pvalue)


def _blobs(shape):
    zz, yy, xx = np.indices(shape)
    ooi = ((yy - 8) ** 2 + (xx - 15) ** 2 < 30) & (zz >= 2)
    ooi |= (yy >= 20) & (xx <= 2)  # along the image border: the offsets must be restricted to the image
    tumour = np.zeros(shape, bool)
    tumour[4:6, 9:11, 12:14] = True
    tumour[9, 23, 0] = True  # a corner voxel
    return ooi, tumour


def test_fact3_sampler_chi2_against_final_psm():
    shape, patch = (10, 24, 24), (4, 12, 10)
    ooi, tumour = _blobs(shape)
    sampler = PSMSampler(ooi, tumour, patch, lam=0.33, seed=11)
    centres = sampler.sample(400_000)
    assert centres.shape == (400_000, 3) and centres.dtype == np.int64
    assert np.all(centres >= 0) and np.all(centres < np.asarray(shape))
    p = _chi2_pvalue(centres, final_psm(ooi, tumour, patch, lam=0.33))
    assert p > 1e-3


@pytest.mark.parametrize("case", ["empty", "ooi_only", "big_patch", "lam1_mu"])
def test_sampler_chi2_edge_cases(case):
    shape = (6, 9, 8)
    ooi, tumour = _blobs((10, 24, 24))
    ooi, tumour = ooi[2:8, 5:14, 10:18], tumour[2:8, 5:14, 10:18]
    patch, lam, mu = (3, 4, 4), 0.33, 1.0
    if case == "empty":
        ooi, tumour = np.zeros(shape, bool), np.zeros(shape, bool)
    elif case == "ooi_only":
        tumour = np.zeros(shape, bool)
    elif case == "big_patch":
        patch = (20, 30, 2)
    else:
        lam, mu = 1.0, 40.0
    sampler = PSMSampler(ooi, tumour, patch, lam=lam, seed=5, mu=mu)
    p = _chi2_pvalue(sampler.sample(100_000), final_psm(ooi, tumour, patch, lam=lam, mu=mu))
    assert p > 1e-3


def test_sampler_part_probabilities_match_the_maps():
    shape, patch = (10, 24, 24), (4, 12, 10)
    ooi, tumour = _blobs(shape)
    parts = PSMSampler(ooi, tumour, patch, lam=0.25).part_probabilities
    n = np.prod(shape)
    for (uniform, gain), mask, w in ((parts[:2], ooi, 0.75), (parts[2:], tumour, 0.25)):
        g_total = gain_map(mask, patch).sum()
        assert uniform == pytest.approx(w / (g_total + 1), rel=1e-10)
        assert gain == pytest.approx(w * g_total / (g_total + 1), rel=1e-10)
        assert uniform / n == pytest.approx(w * psm_map(np.zeros(shape, bool), patch).flat[0] / (g_total + 1))
    assert parts.sum() == pytest.approx(1.0)


def test_sampler_seeded_deterministic_and_picklable():
    ooi, tumour = _blobs((10, 24, 24))
    a = PSMSampler(ooi, tumour, (4, 12, 10), seed=7)
    b = PSMSampler(ooi.astype(np.uint8), tumour.astype(np.uint8), (4, 12, 10), seed=7)
    np.testing.assert_array_equal(a.sample(50), b.sample(50))
    assert not np.array_equal(a.sample(50), PSMSampler(ooi, tumour, (4, 12, 10), seed=8).sample(50))
    a.sample(3)
    clone = pickle.loads(pickle.dumps(a))
    np.testing.assert_array_equal(clone.sample(100), a.sample(100))
    assert a.sample(0).shape == (0, 3)
    assert "PSMSampler(" in repr(a)


# ---------------------------------------------------------------------------------------------------------------------
# errors


@pytest.mark.parametrize("call, words", [
    (lambda: gain_map(np.zeros((4, 4), bool), (2, 2, 2)), "3-D"),
    (lambda: gain_map(np.zeros((4, 4, 4), bool), (2, 2)), "patch"),
    (lambda: gain_map(np.zeros((4, 4, 4), bool), (2, 0, 2)), ">= 1"),
    (lambda: gain_map(np.zeros((4, 4, 4), bool), (2.0, 2, 2)), "patch"),
    (lambda: gain_map(np.zeros((4, 4, 4), bool), 3), "patch"),
    (lambda: gain_map(np.full((4, 4, 4), 0.5), (2, 2, 2)), "binary"),
    (lambda: gain_map(np.zeros((4, 4, 4), complex), (2, 2, 2)), "dtype"),
    (lambda: gain_map([[[1]]], (2, 2, 2)), "numpy"),
    (lambda: gain_map(np.zeros((0, 4, 4), bool), (2, 2, 2)), "empty"),
    (lambda: psm_map(np.zeros((4, 4, 4), bool), (2, 2, 2), mu=0), "mu"),
    (lambda: final_psm(np.zeros((4, 4, 4), bool), np.zeros((4, 4, 5), bool), (2, 2, 2)), "shapes differ"),
    (lambda: final_psm(np.zeros((4, 4, 4), bool), np.zeros((4, 4, 4), bool), (2, 2, 2), lam=1.5), "lam"),
    (lambda: PSMSampler(np.zeros((4, 4, 4), bool), np.zeros((4, 4), bool), (2, 2, 2)), "tumour"),
    (lambda: PSMSampler(np.zeros((4, 4, 4), bool), np.zeros((4, 4, 4), bool), (2, 2, 2), lam="x"), "lam"),
    (lambda: PSMSampler(np.zeros((4, 4, 4), bool), np.zeros((4, 4, 4), bool), (2, 2, 2)).sample(-1), "draws"),
    (lambda: PSMSampler(np.zeros((4, 4, 4), bool), np.zeros((4, 4, 4), bool), (2, 2, 2), seed=-3), "seed"),
])
def test_bad_input_is_one_line_input_error(call, words):
    with pytest.raises(InputError) as info:
        call()
    message = str(info.value)
    assert words in message and "\n" not in message


# ---------------------------------------------------------------------------------------------------------------------
# fact 8: phantoms (the OOI of procto.preprocess.agcrc.ooi_mask)


def _phantom_ooi(organs) -> np.ndarray:
    """The OOI of a phantom's TotalSegmentator-v2 organ map (a procto Volume), dilation 3."""
    from procto.preprocess.agcrc import TS_GI, ooi_mask

    return np.asarray(ooi_mask([(organs, TS_GI)]).array) > 0


def _patches_hold_tumour(centres: np.ndarray, tumour: np.ndarray, patch) -> np.ndarray:
    """Whether the patch at each centre (lower corner centre − patch//2, as nnU-Net crops) holds a tumour voxel,
    from a summed-volume table."""
    table = np.pad(tumour.astype(np.int64), ((1, 0), (1, 0), (1, 0))).cumsum(0).cumsum(1).cumsum(2)
    lower = centres - np.asarray(patch) // 2
    z0, y0, x0 = np.clip(lower, 0, tumour.shape).T
    z1, y1, x1 = np.clip(lower + np.asarray(patch), 0, tumour.shape).T
    count = (table[z1, y1, x1] - table[z0, y1, x1] - table[z1, y0, x1] - table[z1, y1, x0]
             + table[z0, y0, x1] + table[z0, y1, x0] + table[z1, y0, x0] - table[z0, y0, x0])
    return count > 0


@pytest.mark.parametrize("seed", [0, 1])
def test_fact8_phantom_sampling(seed):
    from procto.phantom import make_case

    patch = (16, 128, 128)
    case = make_case(seed, "ct")
    ooi = _phantom_ooi(case.organs)
    tumour = case.label.array == 2
    centres = PSMSampler(ooi, tumour, patch, seed=seed).sample(20_000)
    assert ooi[tuple(centres.T)].mean() == pytest.approx(0.50, abs=0.03)
    assert _patches_hold_tumour(centres, tumour, patch).mean() == pytest.approx(0.39, abs=0.03)
