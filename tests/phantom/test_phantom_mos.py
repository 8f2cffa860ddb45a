"""AG-CRC organ maps of CT phantoms: the WORD-style map, the injected MOS errors and the AG-CRC cases."""

from __future__ import annotations

import json

import numpy as np
import pytest

from procto.errors import InputError
from procto.io import read_image
from procto.phantom import agcrc_cases, delete_tumour, make_case, swap_colon_small_bowel, word_map
from procto.preprocess.agcrc import TS_GI, WORD_GI, AGCRCCase, ooi_mask, write_agcrc_dataset

#: TotalSegmentator v2 → WORD for the organs the phantom draws (agcrc-facts §2 and §10, by organ name).
FACTS_TS_TO_WORD = {5: 1, 6: 5, 19: 9, 20: 10, 18: 11, 21: 14, 3: 3, 2: 4, 75: 15, 76: 16}
CROP = {"shape": (16, 64, 64), "spacing": (5.0, 1.5, 1.5), "center": "tumour"}


@pytest.fixture(scope="module")
def abdomen():
    """A long CT field of view holding every organ of the id table (liver, kidneys, stomach, duodenum...)."""
    return make_case(0, "ct", shape=(120, 128, 128), spacing=(5.0, 3.125, 3.125))


@pytest.fixture(scope="module")
def crop():
    return make_case(0, "ct", **CROP)


def test_word_map_ids_follow_the_table(abdomen):
    ts, word = abdomen.organs.array, word_map(abdomen).array
    assert word.shape == ts.shape and word.dtype == np.uint8
    assert set(np.unique(word)) <= set(range(17))
    present = set(np.unique(ts).tolist())
    assert {5, 6, 19, 20, 18, 21, 3, 2, 75, 76} <= present
    for ts_id in present - {0, 20}:
        assert np.all(word[ts == ts_id] == FACTS_TS_TO_WORD.get(ts_id, 0)), ts_id
    assert set(np.unique(word[ts == 0])) == {0}


@pytest.mark.parametrize("site", ["rectum", "colon"])
def test_word_rectum_is_colon_and_rectal_label(site):
    case = make_case(1, "ct", shape=(32, 96, 96), tumour_site=site)
    ts, label, word = case.organs.array, case.label.array, word_map(case).array
    colon = ts == 20
    assert not np.any((word == 13) & ~(colon & (label > 0)))  # rectum only where colon ∧ label > 0
    assert np.all(word[colon & (word != 13)] == 10)  # colon elsewhere
    assert np.all(np.isin(word[colon], (10, 13)))
    assert np.all(word[colon & (label == 1)] == 13)
    # a rectal tumour is rectum; a tumour of the sigmoid colon stays colon
    tumour = label == 2
    assert tumour.any()
    assert np.all(word[tumour] == (13 if site == "rectum" else 10))


def test_word_map_keeps_the_ct_geometry(crop):
    word = word_map(crop)
    assert word.same_geometry(crop.image)
    assert word.meta.get("label_scheme") == "WORD"


def test_delete_tumour_leaves_no_organ_on_the_tumour(crop):
    before = crop.organs.array.copy()
    tumour = crop.label.array == 2
    assert np.all(before[tumour] == 20)
    for organs in (crop.organs, word_map(crop)):
        out = delete_tumour(organs, crop.label)
        assert out.same_geometry(organs)
        assert not np.any(out.array[tumour])
        assert np.array_equal(out.array[~tumour], organs.array[~tumour])
    assert np.array_equal(crop.organs.array, before)  # input unchanged


def test_delete_tumour_rejects_another_geometry(crop):
    other = make_case(0, "ct", shape=(16, 64, 60), spacing=(5.0, 1.5, 1.5), center="tumour")
    with pytest.raises(InputError):
        delete_tumour(crop.organs, other.label)


@pytest.mark.parametrize("scheme,colon,small", [("ts_v2", 20, 18), ("ts_v1", 57, 55), ("word", 10, 11)])
def test_swap_exchanges_colon_and_small_bowel(scheme, colon, small):
    arr = np.zeros((4, 6, 6), np.uint8)
    arr[0], arr[1], arr[2, :3] = colon, small, 5
    case_like = make_case(0, "ct", shape=(4, 6, 6), spacing=(5.0, 2.0, 2.0)).organs.with_array(arr)
    out = swap_colon_small_bowel(case_like, scheme)
    assert np.all(out.array[0] == small) and np.all(out.array[1] == colon)
    assert np.array_equal(out.array[2:], arr[2:])
    assert np.all(case_like.array[0] == colon)  # input unchanged
    half = np.zeros(arr.shape, bool)
    half[:, :3] = True
    part = swap_colon_small_bowel(case_like, scheme, where=half).array
    assert np.all(part[0, :3] == small) and np.all(part[0, 3:] == colon)


def test_swap_keeps_the_ooi(abdomen):
    """agcrc.md fact 5: swapping colon and small bowel leaves the OOI unchanged (TS and WORD maps)."""
    ts, word = abdomen.organs, word_map(abdomen)
    assert np.any(ts.array == 18) and np.any(ts.array == 20)
    ts_sw, word_sw = swap_colon_small_bowel(ts), swap_colon_small_bowel(word, "word")
    assert not np.array_equal(ts_sw.array, ts.array)
    for dilation in (0, 3):
        a = ooi_mask([(ts, TS_GI), (word, WORD_GI)], dilation).array
        b = ooi_mask([(ts_sw, TS_GI), (word_sw, WORD_GI)], dilation).array
        assert np.array_equal(a, b)
        assert np.array_equal(ooi_mask([(ts, TS_GI)], dilation).array, ooi_mask([(ts_sw, TS_GI)], dilation).array)


def test_swap_rejects_an_unknown_scheme(crop):
    with pytest.raises(InputError):
        swap_colon_small_bowel(crop.organs, "ts_v3")


@pytest.mark.parametrize("site", ["rectum", "colon"])
def test_ooi_of_ts_and_word_maps_covers_the_tumour(site):
    case = make_case(0, "ct", tumour_site=site, **CROP)
    tumour = case.label.array == 2
    maps = [(case.organs, TS_GI), (word_map(case), WORD_GI)]
    assert np.all(ooi_mask(maps, 0).array[tumour] == 1)
    # with the tumour deleted from both maps only the dilation covers it (seed 0 is T2: a thin extramural rim)
    deleted = [(delete_tumour(m, case.label), ids) for m, ids in maps]
    assert not np.any(ooi_mask(deleted, 0).array[tumour])
    assert ooi_mask(deleted, 3).array[tumour].mean() >= 0.95


def test_agcrc_cases_structure():
    seeds = [0, 1]
    cases = agcrc_cases(seeds, word=True, **CROP)
    assert len(cases) == 2 and all(isinstance(c, AGCRCCase) for c in cases)
    for seed, c in zip(seeds, cases):
        ref = make_case(seed, "ct", **CROP)
        assert c.case_id == ref.case_id
        assert np.array_equal(c.ct.array, ref.image.array)
        assert np.array_equal(c.mos_ts.array, ref.organs.array)
        assert np.array_equal(c.mos_word.array, word_map(ref).array)
        assert np.array_equal(c.label.array, ref.label.array)
        for v in (c.mos_ts, c.mos_word, c.label):
            assert v.same_geometry(c.ct)
    assert agcrc_cases([0], **CROP)[0].mos_word is None


def test_agcrc_cases_inject_errors():
    clean = agcrc_cases([0], word=True, **CROP)[0]
    (bad,) = agcrc_cases([0], word=True, mos_errors=("delete_tumour", "swap"), **CROP)
    tumour = clean.label.array == 2
    for m in (bad.mos_ts, bad.mos_word):
        assert not np.any(m.array[tumour])
    outside = ~tumour
    ts, ts_bad = clean.mos_ts.array, bad.mos_ts.array
    assert np.all(ts_bad[outside & (ts == 20)] == 18) and np.all(ts_bad[outside & (ts == 18)] == 20)
    wd, wd_bad = clean.mos_word.array, bad.mos_word.array
    assert np.all(wd_bad[outside & (wd == 10)] == 11) and np.all(wd_bad[outside & (wd == 13)] == 13)
    (one,) = agcrc_cases([0], mos_errors="swap", **CROP)
    assert np.array_equal(one.mos_ts.array, swap_colon_small_bowel(clean.mos_ts).array)


@pytest.mark.parametrize("kwargs", [
    {"mos_errors": ("delete",)}, {"mos_errors": ("swap", "flip")}, {"shapes": (8, 8, 8)}, {"modality": "mri"},
    {"case_id": "x"}, {"tumour_site": "caecum"},
])
def test_agcrc_cases_bad_options(kwargs):
    with pytest.raises(InputError):
        agcrc_cases([0], **kwargs)


def test_agcrc_cases_write_an_nnunet_dataset(tmp_path):
    cases = agcrc_cases([0, 1], word=True, mos_errors=("delete_tumour",), shape=(8, 48, 48),
                        spacing=(5.0, 1.5, 1.5), center="tumour")
    root = write_agcrc_dataset(cases, tmp_path, 510, tumour_ids=(2,))
    meta = json.loads((root / "dataset.json").read_text())
    assert meta["numTraining"] == 2
    for c in cases:
        label = read_image(root / "labelsTr" / f"{c.case_id}.nii.gz")
        assert np.array_equal(label.array > 0, c.label.array == 2)
        ooi = read_image(root / "imagesTr" / f"{c.case_id}_0002.nii.gz").array
        assert ooi[c.label.array == 2].mean() > 0.5  # the deleted tumour is covered through the dilation
