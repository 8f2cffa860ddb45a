"""T2 vs T3 tumours, lymph nodes / N categories, and cohort balance."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from procto.phantom import cohort_plan, make_case, make_cohort, n_category
from procto.phantom.labels import MESORECTUM, MUSCULARIS, TUMOUR

SEEDS = range(4)


@pytest.mark.parametrize("modality", ["ct", "mri"])
def test_t3_tumour_reaches_the_mesorectal_fat(modality, small_cases):
    for seed in SEEDS:
        case = small_cases(modality, seed, "T3")
        tumour = case.label.array == TUMOUR
        outside = tumour & (case.layers.array == MESORECTUM)
        assert outside.sum() > 0, seed
        assert case.tumour_info["extramural_voxels"] == outside.sum()
        assert case.tumour_info["extramural_depth_mm"] > 0


@pytest.mark.parametrize("modality", ["ct", "mri"])
def test_t2_tumour_stays_within_the_muscularis(modality, small_cases):
    for seed in SEEDS:
        case = small_cases(modality, seed, "T2")
        tumour = case.label.array == TUMOUR
        assert tumour.sum() > 0
        assert not np.any(tumour & (case.layers.array == MESORECTUM)), seed
        # it does invade the muscularis (T2, not T1) somewhere
        assert np.any(tumour & (case.layers.array == MUSCULARIS)), seed


def test_t3_is_bigger_outwards_than_t2_for_the_same_patient(small_cases):
    for seed in SEEDS:
        t2, t3 = small_cases("mri", seed, "T2"), small_cases("mri", seed, "T3")
        assert (t3.label.array == TUMOUR).sum() > (t2.label.array == TUMOUR).sum()


def test_n_category_mapping():
    assert [n_category(k) for k in range(7)] == ["N0", "N1", "N1", "N1", "N2", "N2", "N2"]
    with pytest.raises(ValueError):
        n_category(-1)


@pytest.mark.parametrize("n_nodes", [0, 1, 3, 4, 6])
def test_forced_node_count(n_nodes):
    case = make_case(5, "mri", shape=(32, 96, 96), n_nodes=n_nodes)
    assert case.n_nodes == n_nodes == len(case.node_info)
    assert case.n_category == n_category(n_nodes)
    assert set(np.unique(case.nodes.array)) - {0} == set(range(1, n_nodes + 1))


def test_nodes_are_small_ovoids_in_the_mesorectal_fat():
    for seed in range(2):
        case = make_case(seed, "mri", shape=(48, 128, 128), spacing=(2.0, 1.0, 1.0), n_nodes=6)
        nodes, layers = case.nodes.array, case.layers.array
        assert np.all(layers[nodes > 0] == MESORECTUM)
        assert not np.any((nodes > 0) & (case.label.array > 0))
        for info in case.node_info:
            assert 3.0 <= info["short_axis_mm"] <= 15.0
            assert info["long_axis_mm"] >= info["short_axis_mm"]
            mask = nodes == info["id"]
            assert mask.sum() == info["voxels"] > 0
            # the voxel extent along the thickest axis is about the short axis, never far above the long axis
            extent_mm = [(np.ptp(ix) + 1) * sp for ix, sp in zip(np.nonzero(mask), case.image.spacing)]
            assert max(extent_mm) <= info["long_axis_mm"] + 2 * max(case.image.spacing)


def test_random_stages_and_node_counts_vary():
    cases = [make_case(s, "ct", shape=(16, 48, 48)) for s in range(12)]
    assert {c.t_stage for c in cases} == {"T2", "T3"}
    assert {c.n_category for c in cases} == {"N0", "N1", "N2"}
    for c in cases:
        assert c.n_category == n_category(c.n_nodes)


def test_cohort_plan_is_balanced():
    plan = cohort_plan(12, "ct", seed=3)
    assert Counter(e.t_stage for e in plan) == {"T2": 6, "T3": 6}
    assert Counter(e.n_category for e in plan) == {"N0": 4, "N1": 4, "N2": 4}
    assert len({(e.t_stage, e.n_category) for e in plan}) == 6
    assert len({e.seed for e in plan}) == 12 and len({e.case_id for e in plan}) == 12
    assert cohort_plan(12, "ct", seed=3) == plan
    assert cohort_plan(4, "ct", seed=3, start=8) == plan[8:]
    forced = cohort_plan(6, "ct", seed=3, t_stage="T3", n_nodes=2)
    assert {(e.t_stage, e.n_nodes) for e in forced} == {("T3", 2)}


def test_make_cohort_matches_make_case():
    cases = list(make_cohort(3, "mri", seed=9, shape=(16, 48, 48)))
    plan = cohort_plan(3, "mri", seed=9)
    assert [c.case_id for c in cases] == [e.case_id for e in plan]
    for c, e in zip(cases, plan):
        assert (c.t_stage, c.n_nodes) == (e.t_stage, e.n_nodes)
        again = make_case(e.seed, "mri", shape=(16, 48, 48), t_stage=e.t_stage, n_nodes=e.n_nodes)
        assert np.array_equal(again.image.array, c.image.array)
