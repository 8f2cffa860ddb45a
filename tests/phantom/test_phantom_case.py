"""make_case: determinism, geometry, label value sets, organ ids, timing, option checks."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest

from procto.errors import InputError
from procto.phantom import LABELS, ORGAN_IDS, make_case
from procto.phantom.grid import SAGITTAL_DIRECTION

SMALL = (32, 96, 96)

MAPS = ("image", "label", "nodes", "organs", "layers", "tissue")


@pytest.mark.parametrize("modality", ["ct", "mri"])
def test_same_seed_is_bit_identical(modality):
    a = make_case(11, modality, shape=SMALL)
    b = make_case(11, modality, shape=SMALL)
    for name in MAPS:
        va, vb = getattr(a, name), getattr(b, name)
        assert va.array.dtype == vb.array.dtype
        assert np.array_equal(va.array, vb.array), name
        assert va.same_geometry(vb)
    assert (a.t_stage, a.n_nodes, a.node_info, a.tumour_info) == (b.t_stage, b.n_nodes, b.node_info, b.tumour_info)


@pytest.mark.parametrize("modality", ["ct", "mri"])
def test_different_seeds_differ(modality, small_cases):
    a, b = small_cases(modality, 0), small_cases(modality, 1)
    assert not np.array_equal(a.image.array, b.image.array)
    assert not np.array_equal(a.label.array, b.label.array)


def test_ct_geometry_default_and_explicit():
    case = make_case(0, "ct", shape=(16, 64, 80))
    assert case.image.shape == (16, 64, 80)
    assert case.image.spacing == pytest.approx((5.0, 400 / 64, 400 / 80))
    assert np.allclose(case.image.direction, np.eye(3))
    assert case.image.array.dtype == np.int16
    case = make_case(0, "ct", shape=(24, 64, 64), spacing=(1.25, 0.78, 0.78))
    assert case.image.spacing == pytest.approx((1.25, 0.78, 0.78))
    for vol in case.maps().values():
        assert vol.same_geometry(case.image)
        assert vol.array.dtype == np.uint8


def test_mri_geometry_is_sagittal_thick_slice():
    case = make_case(0, "mri", shape=(20, 64, 64), spacing=(4.0, 0.875, 0.875))
    vol = case.image
    assert vol.shape == (20, 64, 64)
    assert vol.spacing == pytest.approx((4.0, 0.875, 0.875))
    assert np.allclose(vol.direction, SAGITTAL_DIRECTION)
    # array axis 0 runs along physical x (left-right), axis 1 along -z (superior→inferior), axis 2 along +y
    assert np.allclose(vol.direction[:, 0], (0, 0, 1))
    assert np.allclose(vol.direction[:, 1], (-1, 0, 0))
    assert np.allclose(vol.direction[:, 2], (0, 1, 0))
    assert vol.array.dtype == np.float32
    default = make_case(0, "mri", shape=(24, 128, 128))
    assert default.image.spacing == pytest.approx((4.0, 224 / 128, 224 / 128))
    # the thick axis is the slice axis: the rectum is seen in full in-plane (label spans many rows and columns)
    rows = np.flatnonzero(default.label.array.any(axis=(0, 2)))
    assert rows.size * default.image.spacing[1] > 60


def test_same_seed_same_patient_in_ct_and_mri(small_cases):
    ct, mri = small_cases("ct", 3), small_cases("mri", 3)
    assert (ct.t_stage, ct.n_nodes) == (mri.t_stage, mri.n_nodes)
    assert [n["center_zyx_mm"] for n in ct.node_info] == [n["center_zyx_mm"] for n in mri.node_info]


def test_forcing_stage_keeps_the_anatomy():
    a = make_case(4, "ct", shape=SMALL, t_stage="T2")
    b = make_case(4, "ct", shape=SMALL, t_stage="T3")
    assert (a.t_stage, b.t_stage) == ("T2", "T3")
    for organ in ("urinary_bladder", "sacrum", "hip_left"):
        oid = ORGAN_IDS[organ]
        assert np.array_equal(a.organs.array == oid, b.organs.array == oid), organ


@pytest.mark.parametrize("modality", ["ct", "mri"])
def test_label_value_sets(modality, small_cases):
    for seed in range(3):
        case = small_cases(modality, seed)
        assert set(np.unique(case.label.array)) == set(LABELS.values())
        assert set(np.unique(case.layers.array)) <= {0, 1, 2, 3}
        assert {1, 2, 3} <= set(np.unique(case.layers.array))
        ids = set(np.unique(case.nodes.array)) - {0}
        assert ids == set(range(1, case.n_nodes + 1))
        assert case.n_nodes == len(case.node_info)
        # the rectum (1) and tumour (2) are colon (20) in the organ map
        assert np.all(case.organs.array[case.label.array > 0] == ORGAN_IDS["colon"])


def test_organ_ids_are_totalsegmentator_ids(small_cases, real_data):
    path = real_data / "totalseg-ct-abdpelvis" / "labels.json"
    if not path.is_file():
        pytest.skip("TotalSegmentator labels.json not found")
    ts = {int(k): v for k, v in json.loads(path.read_text())["labels"].items()}
    for name, oid in ORGAN_IDS.items():
        assert ts[oid] == name
    for modality in ("ct", "mri"):
        present = set(np.unique(small_cases(modality, 0).organs.array)) - {0}
        assert present <= set(ts)
        assert {ORGAN_IDS["colon"], ORGAN_IDS["urinary_bladder"], ORGAN_IDS["sacrum"]} <= present


def test_ct_has_the_abdomino_pelvic_organs():
    case = make_case(2, "ct", shape=(96, 64, 64))
    present = set(np.unique(case.organs.array)) - {0}
    for name in ("small_bowel", "colon", "urinary_bladder", "sacrum", "femur_left", "femur_right", "hip_left",
                 "hip_right", "vertebrae_L5"):
        assert ORGAN_IDS[name] in present, name


@pytest.mark.parametrize("modality", ["ct", "mri"])
def test_small_case_is_fast(modality):
    make_case(0, modality, shape=SMALL)  # warm imports / caches
    best = min(_timed(lambda: make_case(seed, modality, shape=SMALL)) for seed in (1, 2))
    assert best < 1.0


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


@pytest.mark.parametrize("where", ["tumour", "rectum"])
def test_center_on_tumour_or_rectum(where):
    case = make_case(3, "ct", shape=(16, 64, 64), spacing=(2.5, 0.8, 0.8), center=where)
    label = case.label.array
    target = label == 2 if where == "tumour" else label > 0
    assert target.any()
    centroid = np.array(np.nonzero(target)).mean(1)
    # the structure sits near the middle of the small, fine field of view
    assert np.all(np.abs(centroid - (np.array(label.shape) - 1) / 2) < np.array(label.shape) / 4)


@pytest.mark.parametrize("kwargs", [
    {"center": "bladder"}, {"center": (1.0, 2.0)}, {"modality": "pet"}, {"t_stage": "T4"}, {"n_nodes": 7}, {"n_nodes": -1}, {"noise": -1.0}, {"sex": "x"},
    {"shape": (4, 8)}, {"spacing": (1.0, 0.0, 1.0)},
])
def test_bad_options_raise_input_error(kwargs):
    modality = kwargs.pop("modality", "ct")
    with pytest.raises(InputError):
        make_case(0, modality, **kwargs)


def test_bad_seed_raises():
    with pytest.raises(InputError):
        make_case(-1)
