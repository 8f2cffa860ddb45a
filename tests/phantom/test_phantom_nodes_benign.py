"""Lymph nodes of the CT phantom: fact 1 of the CoSAM contract (every default node is metastatic and visible on the
facts grid), and the optional benign nodes — flagged, small, round, homogeneous, in the mesorectal fat, clear of
everything, not counted in the N category, and leaving every other part of the case unchanged."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage as ndi

from procto.errors import InputError
from procto.phantom import LAYERS, Tissue, make_case

FACTS_GRID = {"shape": (96, 128, 128), "spacing": (1.25, 0.7, 0.7), "center": "tumour"}
SMALL = {"shape": (48, 96, 96), "spacing": (1.25, 0.9, 0.9), "center": "tumour"}


def _n_category(k: int) -> str:
    return "N0" if k == 0 else ("N1" if k <= 3 else "N2")


@pytest.fixture(scope="module")
def facts_cases():
    return [make_case(s, "ct", **FACTS_GRID) for s in range(3)]


@pytest.fixture(scope="module")
def benign_cases():
    """Noise- and blur-free CT with 5 benign nodes (intensities readable voxel by voxel), seeds 0-3."""
    return [make_case(s, "ct", noise=0.0, blur=False, benign_nodes=5, **SMALL) for s in range(4)]


def test_fact1_default_nodes_are_metastatic_ids_with_voxels(facts_cases):
    categories = set()
    for case in facts_cases:
        ids = set(np.unique(case.nodes.array).tolist()) - {0}
        assert ids == set(range(1, case.n_nodes + 1))
        assert len(case.node_info) == case.n_nodes and case.n_benign == 0
        assert all(n["voxels"] > 0 and n["metastatic"] is True for n in case.node_info)
        assert [n["id"] for n in case.node_info] == list(range(1, case.n_nodes + 1))
        if case.n_nodes == 0:
            assert not case.nodes.array.any()
        categories.add(case.n_category)
    assert categories == {"N0", "N1", "N2"}


def test_benign_nodes_are_flagged_after_the_metastatic_ids(benign_cases):
    for case in benign_cases:
        info = case.node_info
        assert case.n_benign == 5 and len(info) == case.n_nodes + 5
        assert [n["id"] for n in info] == list(range(1, len(info) + 1))
        assert [n["metastatic"] for n in info] == [True] * case.n_nodes + [False] * 5
        assert case.n_category == _n_category(sum(n["metastatic"] for n in info))
        present = set(np.unique(case.nodes.array).tolist()) - {0}
        assert present == {n["id"] for n in info if n["voxels"] > 0}
        for n in info:
            assert int((case.nodes.array == n["id"]).sum()) == n["voxels"]
        meta = case.metastatic_nodes()
        assert meta.same_geometry(case.nodes) and meta.array.max() <= case.n_nodes
        np.testing.assert_array_equal(meta.array > 0, (case.nodes.array > 0) & (case.nodes.array <= case.n_nodes))
        row = case.summary()
        assert row["n_benign_nodes"] == 5 and row["n_nodes"] == case.n_nodes
        assert row["max_node_short_axis_mm"] == max((n["short_axis_mm"] for n in info[:case.n_nodes]), default=0.0)


def _principal_ratio(mask: np.ndarray, spacing) -> float:
    pts = np.argwhere(mask) * np.asarray(spacing)
    ev = np.sort(np.linalg.eigvalsh(np.cov(pts.T)))
    return float(np.sqrt(ev[-1] / max(ev[0], 1e-9)))


def test_benign_nodes_are_small_and_round(benign_cases):
    benign_vox, meta_vox, ratios = [], [], []
    for case in benign_cases:
        for n in case.node_info:
            if n["metastatic"]:
                meta_vox.append(n["voxels"])
                continue
            assert 3.0 <= n["short_axis_mm"] <= 6.0
            assert n["long_axis_mm"] <= 1.15 * n["short_axis_mm"] + 0.02
            benign_vox.append(n["voxels"])
            if n["voxels"] >= 40:
                ratios.append(_principal_ratio(case.nodes.array == n["id"], case.nodes.spacing))
    assert len(meta_vox) >= 4 and len(ratios) >= 5
    assert np.mean(benign_vox) < np.mean(meta_vox)
    assert max(ratios) < 1.6  # round on the voxel grid too


def test_benign_nodes_are_homogeneous_lower_than_metastatic_in_the_mesorectum(benign_cases):
    for case in benign_cases:
        img, nodes, tissue = case.image.array, case.nodes.array, case.tissue.array
        benign = nodes > case.n_nodes
        metastatic = (nodes > 0) & ~benign
        assert benign.any()
        np.testing.assert_array_equal(tissue[benign], Tissue.BENIGN_NODE)
        assert (tissue == Tissue.BENIGN_NODE).sum() == benign.sum()
        assert np.all(img[benign] == 30)  # no noise, no blur: a flat 30 HU, no texture
        if metastatic.sum() > 20:
            assert img[metastatic].std() > 1.0 and img[metastatic].mean() > 30
        assert np.all(case.layers.array[benign] == LAYERS["mesorectal_fat"])
        assert np.all(case.label.array[benign] == 0)  # not in the rectum or the tumour


def test_benign_nodes_touch_no_other_node(benign_cases):
    six = ndi.generate_binary_structure(3, 1)
    for case in benign_cases:
        nodes = case.nodes.array
        for i in range(case.n_nodes + 1, case.n_nodes + case.n_benign + 1):
            ring = ndi.binary_dilation(nodes == i, six) & (nodes != i)
            assert not np.any(nodes[ring] > 0), (case.seed, i)
            assert not np.any(case.label.array[ring] == 2)


def test_n0_patient_with_benign_nodes_has_no_metastatic_node():
    case = make_case(3, "ct", n_nodes=0, benign_nodes=3, **SMALL)
    assert case.n_nodes == 0 and case.n_category == "N0" and case.n_benign == 3
    assert [n["metastatic"] for n in case.node_info] == [False] * 3
    assert not case.metastatic_nodes().array.any()
    assert case.summary()["max_node_short_axis_mm"] == 0.0


def test_benign_option_leaves_the_rest_of_the_case_unchanged():
    plain = make_case(5, "ct", shape=(32, 64, 64))
    zero = make_case(5, "ct", shape=(32, 64, 64), benign_nodes=0)
    for name in ("image", "label", "nodes", "organs", "layers", "tissue"):
        np.testing.assert_array_equal(getattr(plain, name).array, getattr(zero, name).array)
    assert "benign_nodes" not in plain.options and "n_benign_nodes" not in plain.summary()
    more = make_case(5, "ct", benign_nodes=4, **SMALL)
    base = make_case(5, "ct", **SMALL)
    for name in ("label", "layers"):
        np.testing.assert_array_equal(getattr(more, name).array, getattr(base, name).array)
    np.testing.assert_array_equal(more.metastatic_nodes().array, base.nodes.array)
    assert more.node_info[:more.n_nodes] == base.node_info and more.t_stage == base.t_stage
    again = make_case(5, "ct", benign_nodes=4, **SMALL)
    np.testing.assert_array_equal(again.image.array, more.image.array)


def test_benign_count_range_and_mri():
    counts = {make_case(s, "ct", shape=(24, 48, 48), benign_nodes=(1, 3)).n_benign for s in range(6)}
    assert counts <= {1, 2, 3} and len(counts) > 1
    mri = make_case(2, "mri", shape=(24, 64, 64), benign_nodes=2)
    assert mri.n_benign == 2 and mri.options["benign_nodes"] == 2


@pytest.mark.parametrize("bad", [-1, 9, (3, 1), (0, 9), "x", True, (1, 2, 3)])
def test_bad_benign_counts_are_input_errors(bad):
    with pytest.raises(InputError, match="benign_nodes"):
        make_case(0, "ct", shape=(16, 32, 32), benign_nodes=bad)
