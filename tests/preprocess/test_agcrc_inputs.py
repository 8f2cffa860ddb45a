"""AG-CRC anatomy inputs (procto.preprocess.agcrc): OOI and bowel-wall masks, the 3-channel input, the nnU-Net raw
data set writer and the MSD Task10_Colon reader.  Testable facts 5, 6 and 7 of shared/spec/agcrc.md on CT phantoms."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

from procto.errors import InputError, OutputError
from procto.io import Volume, read_image, write_image
from procto.phantom import make_case
from procto.preprocess.agcrc import (ID_SCHEMES, TS_GI, TS_V1_GI, WORD_GI, AGCRCCase, agcrc_inputs, bowel_wall_mask,
                                     check_label_ids, ooi_mask, read_msd_colon, write_agcrc_dataset)

CROSS = ndimage.generate_binary_structure(3, 1)
#: TotalSegmentator v2 → WORD ids of the organs the phantom draws (agcrc-facts.md §10); rectum 13 set separately.
TS_TO_WORD = {5: 1, 6: 5, 19: 9, 20: 10, 18: 11, 21: 14, 3: 3, 2: 4, 75: 15, 76: 16}


@pytest.fixture(scope="module")
def case0():
    return make_case(0, "ct")


def _without_tumour(case) -> Volume:
    """The organ map with the tumour voxels deleted (the paper's Fig. 1d failure)."""
    organs = case.organs.array.copy()
    organs[case.label.array == 2] = 0
    return case.organs.with_array(organs)


def _word_map(case) -> Volume:
    """A WORD-style map of a phantom: remapped ids, rectum 13 = colon ∧ label > 0."""
    ts = case.organs.array
    word = np.zeros_like(ts)
    for ts_id, word_id in TS_TO_WORD.items():
        word[ts == ts_id] = word_id
    word[(ts == 20) & (case.label.array > 0)] = 13
    return case.organs.with_array(word)


def _dilate(mask: np.ndarray, t: int) -> np.ndarray:
    return ndimage.binary_dilation(mask, CROSS, iterations=t) if t else mask


def _geometry(vol: Volume) -> tuple:
    return vol.shape, vol.spacing, vol.origin, vol.direction.round(9).tolist()


def _tiny_case(seed: int, shape=(8, 16, 16)) -> tuple[Volume, Volume, Volume]:
    """A small CT / TotalSegmentator map / tumour label (0/1) with a non-trivial geometry."""
    rng = np.random.default_rng(seed)
    geo = dict(spacing=(5.0, 0.8, 0.75), origin=(-30.0, 12.5, 7.0), direction=np.diag([1.0, -1.0, 1.0]))
    ct = Volume(rng.integers(-1000, 1500, size=shape).astype(np.int16), **geo)
    ts = np.zeros(shape, np.uint8)
    ts[2:6, 4:12, 4:12] = 20
    ts[2:6, 12:15, 4:12] = 18
    ts[0, 0, :4] = 5  # liver: in the MOS channel, not in the OOI
    label = np.zeros(shape, np.uint8)
    label[3:5, 6:9, 6:9] = 1
    return ct, Volume(ts, **geo), Volume(label, **geo)


# ---------------------------------------------------------------------------------------------------------- id sets
def test_gi_id_sets_and_schemes() -> None:
    assert TS_GI == {6, 18, 19, 20}
    assert TS_V1_GI == {6, 55, 56, 57}
    assert WORD_GI == {5, 9, 10, 11, 13}
    assert {k: (s.max_id, s.gi_ids) for k, s in ID_SCHEMES.items()} == {
        "ts_v2": (117, TS_GI), "ts_v1": (104, TS_V1_GI), "word": (16, WORD_GI)}


# ---------------------------------------------------------------------------------------------------------- OOI
def test_ooi_dilation_is_the_6_connected_cross_repeated() -> None:
    arr = np.zeros((11, 11, 11), np.uint8)
    arr[5, 5, 5] = 20
    vol = Volume(arr, spacing=(5.0, 0.78, 0.78))
    sizes = [int(ooi_mask([(vol, TS_GI)], t).array.sum()) for t in range(4)]
    assert sizes == [1, 7, 25, 63]  # |dz| + |dy| + |dx| <= t
    out = ooi_mask([(vol, TS_GI)])
    assert out.array.dtype == np.uint8 and set(np.unique(out.array)) == {0, 1}
    assert _geometry(out) == _geometry(vol)
    assert int(ooi_mask([(vol, {18})], 3).array.sum()) == 0


def test_fact5_ooi_unchanged_by_colon_small_bowel_swap(case0) -> None:
    organs = case0.organs.array
    swapped = organs.copy()
    swapped[organs == 20], swapped[organs == 18] = 18, 20
    assert (swapped != organs).sum() > 1000
    for t in (0, 3):
        a = ooi_mask([(case0.organs, TS_GI)], t).array
        b = ooi_mask([(case0.organs.with_array(swapped), TS_GI)], t).array
        assert np.array_equal(a, b)


def test_fact5_or_of_two_maps_is_the_dilation_of_their_union(case0) -> None:
    ts = _without_tumour(case0)  # the two maps differ: the WORD map keeps the tumour (rectum 13)
    word = _word_map(case0)
    union = np.isin(ts.array, list(TS_GI)) | np.isin(word.array, list(WORD_GI))
    assert union.sum() > np.isin(ts.array, list(TS_GI)).sum()
    for t in (0, 1, 3):
        both = ooi_mask([(ts, TS_GI), (word, WORD_GI)], t).array
        assert np.array_equal(both, _dilate(union, t).astype(np.uint8))
        assert np.array_equal(both, ooi_mask([(ts.with_array(union.astype(np.uint8)), {1})], t).array)


def test_fact6_dilation_recovers_a_tumour_deleted_from_the_organ_map(case0) -> None:
    tumour = case0.label.array == 2
    ts = _without_tumour(case0)
    cover = {t: float(ooi_mask([(ts, TS_GI)], t).array[tumour].mean()) for t in (0, 3)}
    assert cover[0] == 0.0
    assert cover[3] >= 0.99  # measured 0.998 (agcrc-facts.md §2)


def test_ooi_of_maps_of_different_geometry_is_one_input_error(case0) -> None:
    small = Volume(np.zeros((8, 16, 16), np.uint8))
    with pytest.raises(InputError, match="geometry mismatch"):
        ooi_mask([(case0.organs, TS_GI), (small, WORD_GI)])
    moved = Volume(case0.organs.array, spacing=case0.organs.spacing, origin=np.add(case0.organs.origin, 5.0))
    with pytest.raises(InputError, match="origin"):
        ooi_mask([(case0.organs, TS_GI), (moved, TS_GI)])
    with pytest.raises(InputError):
        ooi_mask([])
    with pytest.raises(InputError, match="dilation"):
        ooi_mask([(case0.organs, TS_GI)], -1)


# ---------------------------------------------------------------------------------------------------------- wall
@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_fact7_bowel_wall_lies_in_the_shell_and_covers_the_rectal_wall(seed: int) -> None:
    case = make_case(seed, "ct")
    ooi0 = ooi_mask([(case.organs, TS_GI)], 0)
    wall = bowel_wall_mask(ooi0)
    mask = ooi0.array > 0
    shell = _dilate(mask, 2) & ~ndimage.binary_erosion(mask, CROSS, iterations=2)
    w = wall.array.astype(bool)
    assert wall.array.dtype == np.uint8 and _geometry(wall) == _geometry(case.organs)
    assert not (w & ~shell).any()
    assert np.array_equal(w, shell)
    layers = np.isin(case.layers.array, [1, 2])
    assert w[layers].mean() >= 0.65  # measured 0.69-0.83 over seeds 0-3 (agcrc-facts.md §4)


def test_bowel_wall_iterations() -> None:
    arr = np.zeros((9, 9, 9), np.uint8)
    arr[2:7, 2:7, 2:7] = 1
    vol = Volume(arr)
    one = bowel_wall_mask(vol, 1).array.astype(bool)
    cube = arr.astype(bool)
    assert np.array_equal(one, _dilate(cube, 1) & ~ndimage.binary_erosion(cube, CROSS))
    assert bowel_wall_mask(vol, 2).array.sum() > one.sum()
    assert bowel_wall_mask(Volume(np.zeros((4, 4, 4), np.uint8))).array.sum() == 0
    with pytest.raises(InputError, match="iterations"):
        bowel_wall_mask(vol, 0)


# ---------------------------------------------------------------------------------------------------------- channels
def test_agcrc_inputs_three_channels_in_the_ct_geometry(case0) -> None:
    word = _word_map(case0)
    ct, mos, ooi = agcrc_inputs(case0.image, case0.organs, word)
    assert ct is case0.image
    for ch in (mos, ooi):
        assert _geometry(ch) == _geometry(case0.image)
    assert mos.array.dtype == np.float32 and float(mos.array.max()) <= 1.0
    assert np.allclose(mos.array * 117, case0.organs.array, atol=1e-4)
    expected = ooi_mask([(case0.organs, TS_GI), (word, WORD_GI)], 3)
    assert ooi.array.dtype == np.uint8 and np.array_equal(ooi.array, expected.array)
    _, _, ooi_ts = agcrc_inputs(case0.image, case0.organs, dilation=0)
    assert np.array_equal(ooi_ts.array, np.isin(case0.organs.array, list(TS_GI)).astype(np.uint8))


def test_agcrc_inputs_totalsegmentator_v1_ids(case0) -> None:
    v1 = case0.organs.array.copy()
    for v2_id, v1_id in ((18, 55), (19, 56), (20, 57), (88, 0), (89, 0)):
        v1[case0.organs.array == v2_id] = v1_id
    _, mos, ooi = agcrc_inputs(case0.image, case0.organs.with_array(v1), scheme="ts_v1")
    _, _, ooi_v2 = agcrc_inputs(case0.image, case0.organs)
    assert np.array_equal(ooi.array, ooi_v2.array)
    assert np.allclose(mos.array * 104, v1, atol=1e-4)
    with pytest.raises(InputError, match="scheme"):
        agcrc_inputs(case0.image, case0.organs, scheme="word")


def test_agcrc_inputs_refuses_a_map_of_another_geometry(tmp_path: Path) -> None:
    ct, ts, _ = _tiny_case(0)
    other = Volume(ts.array, spacing=(5.0, 0.8, 0.8), origin=ts.origin, direction=ts.direction)
    with pytest.raises(InputError, match="geometry mismatch: CT spacing") as err:
        agcrc_inputs(ct, other, case_id="c7")
    assert err.value.path == "case c7 TotalSegmentator v2 total map"
    write_image(other, tmp_path / "ts.nii.gz")
    with pytest.raises(InputError) as err:
        agcrc_inputs(ct, tmp_path / "ts.nii.gz")
    assert err.value.path == str(tmp_path / "ts.nii.gz") and "\n" not in str(err.value)
    assert str(err.value).startswith(f"{tmp_path / 'ts.nii.gz'}: geometry mismatch")
    with pytest.raises(InputError, match="WORD map"):
        agcrc_inputs(ct, ts, Volume(np.zeros((8, 16, 17), np.uint8), spacing=ts.spacing, origin=ts.origin))


def test_agcrc_inputs_refuses_nan_ct_and_ids_outside_the_scheme() -> None:
    ct, ts, _ = _tiny_case(1)
    nan_ct = ct.with_array(ct.array.astype(np.float32))
    nan_ct.array[1, 2, 3] = np.nan
    with pytest.raises(InputError, match="1 NaN/Inf") as err:
        agcrc_inputs(nan_ct, ts)
    assert err.value.path == "CT"
    bad = ts.array.copy()
    bad[0, 0, 0] = 200
    with pytest.raises(InputError, match="200 outside the TotalSegmentator v2 total scheme"):
        agcrc_inputs(ct, ts.with_array(bad))
    with pytest.raises(InputError, match="outside the TotalSegmentator v1"):
        agcrc_inputs(ct, ts.with_array(np.full(ts.shape, 110, np.uint8)), scheme="ts_v1")
    with pytest.raises(InputError, match="outside the WORD scheme") as err:
        agcrc_inputs(ct, ts, ts.with_array(np.full(ts.shape, 20, np.uint8)))
    assert err.value.path == "WORD map"
    with pytest.raises(InputError, match="non-integer"):
        check_label_ids(ts.with_array(ts.array + 0.5), "ts_v2", "m.nii.gz")
    check_label_ids(ts.with_array(ts.array.astype(np.float32)), "ts_v2")


# ---------------------------------------------------------------------------------------------------------- writer
def _read_case(root: Path, cid: str) -> tuple[list[Volume], Volume]:
    return ([read_image(root / "imagesTr" / f"{cid}_{i:04d}.nii.gz") for i in range(3)],
            read_image(root / "labelsTr" / f"{cid}.nii.gz"))


def test_write_agcrc_dataset_tumour_labels(tmp_path: Path) -> None:
    ct0, ts0, lab0 = _tiny_case(0)
    ct1, ts1, lab1 = _tiny_case(1, shape=(6, 12, 20))
    write_image(ct1, tmp_path / "ct1.nii.gz")
    write_image(ts1, tmp_path / "ts1.nii.gz")
    write_image(lab1, tmp_path / "lab1.nii.gz")
    word0 = ts0.with_array(np.where(ts0.array == 20, 10, 0).astype(np.uint8))
    src = [AGCRCCase("c0", ct0, ts0, word0, lab0),
           ("c1", tmp_path / "ct1.nii.gz", tmp_path / "ts1.nii.gz", None, tmp_path / "lab1.nii.gz")]
    seen = []
    root = write_agcrc_dataset(src, tmp_path / "raw", 812, progress=lambda d, n, c: seen.append((d, n, c)))
    assert root == tmp_path / "raw" / "Dataset812_AGCRC"
    assert seen == [(1, 2, "c0"), (2, 2, "c1")]
    assert sorted(p.name for p in (tmp_path / "raw").iterdir()) == ["Dataset812_AGCRC"]  # no staging left
    meta = json.loads((root / "dataset.json").read_text())
    assert meta["channel_names"] == {"0": "CT", "1": "noNorm", "2": "noNorm"}
    assert meta["labels"] == {"background": 0, "tumour": 1}
    assert meta["numTraining"] == 2 and meta["file_ending"] == ".nii.gz"
    rec = meta["procto_agcrc"]
    assert (rec["mos_scheme"], rec["mos_scale"], rec["dilation"], rec["word_maps"]) == ("ts_v2", 117, 3, 1)
    assert rec["ooi_ids"] == {"ts_v2": [6, 18, 19, 20], "word": [5, 9, 10, 11, 13]} and rec["target"] == "tumour"
    assert sorted(p.name for p in (root / "imagesTr").iterdir()) == [
        f"c{i}_000{k}.nii.gz" for i in range(2) for k in range(3)]
    for cid, (ct, ts, lab) in (("c0", (ct0, ts0, lab0)), ("c1", (ct1, ts1, lab1))):
        (img, mos, ooi), label = _read_case(root, cid)
        for vol in (img, mos, ooi, label):
            assert vol.same_geometry(ct, tol_mm=1e-6)  # NIfTI stores float32 spacing
        assert np.array_equal(img.array, ct.array)
        assert np.allclose(mos.array * 117, ts.array, atol=1e-4)
        maps = [(ts, TS_GI)] + ([(word0, WORD_GI)] if cid == "c0" else [])
        assert np.array_equal(ooi.array, ooi_mask(maps, 3).array)
        assert np.array_equal(label.array, lab.array) and label.array.sum() == 18


def test_write_agcrc_dataset_walls_and_tumour_ids(tmp_path: Path) -> None:
    ct, ts, lab = _tiny_case(2)
    phantom_label = lab.with_array(lab.array * 2 + (ts.array == 18))  # rectum-like 1, tumour 2
    root = write_agcrc_dataset([("a", ct, ts, None, phantom_label)], tmp_path, 3, tumour_ids=(2,), dilation=1)
    assert np.array_equal(_read_case(root, "a")[1].array, lab.array)
    assert json.loads((root / "dataset.json").read_text())["procto_agcrc"]["dilation"] == 1
    wall_root = write_agcrc_dataset([("a", ct, ts)], tmp_path, 4, wall=True)
    assert wall_root.name == "Dataset004_AGCRCWall"
    meta = json.loads((wall_root / "dataset.json").read_text())
    assert meta["labels"] == {"background": 0, "bowel_wall": 1}
    assert meta["procto_agcrc"]["wall_iterations"] == 2 and meta["procto_agcrc"]["target"] == "bowel_wall"
    expected = bowel_wall_mask(ooi_mask([(ts, TS_GI)], 0))
    assert np.array_equal(_read_case(wall_root, "a")[1].array, expected.array)


def test_write_agcrc_dataset_failure_leaves_nothing(tmp_path: Path) -> None:
    ct, ts, lab = _tiny_case(3)
    moved = Volume(lab.array, spacing=lab.spacing, origin=(0.0, 0.0, 0.0), direction=lab.direction)
    out = tmp_path / "new" / "raw"
    with pytest.raises(InputError, match="case b tumour label: geometry mismatch"):
        write_agcrc_dataset([("a", ct, ts, None, lab), ("b", ct, ts, None, moved)], out, 5)
    assert not (tmp_path / "new").exists()
    with pytest.raises(InputError, match="no tumour label"):
        write_agcrc_dataset([("a", ct, ts)], out, 5)
    with pytest.raises(InputError, match="twice"):
        write_agcrc_dataset([("a", ct, ts, None, lab)] * 2, out, 5)
    with pytest.raises(InputError, match="1 to 999"):
        write_agcrc_dataset([("a", ct, ts, None, lab)], out, 1000)
    assert not (tmp_path / "new").exists()
    write_agcrc_dataset([("a", ct, ts, None, lab)], tmp_path, 6)
    with pytest.raises(OutputError, match="already exists"):
        write_agcrc_dataset([("a", ct, ts, None, lab)], tmp_path, 6)
    (tmp_path / "file").write_text("x")
    with pytest.raises(OutputError):
        write_agcrc_dataset([("a", ct, ts, None, lab)], tmp_path / "file" / "raw", 7)


# ---------------------------------------------------------------------------------------------------------- MSD
def _fake_msd(tmp_path: Path, ids=("colon_001", "colon_005")) -> tuple[Path, Path]:
    msd, ts_dir = tmp_path / "Task10_Colon", tmp_path / "ts"
    training = []
    for k, cid in enumerate(ids):
        ct, ts, lab = _tiny_case(10 + k)
        write_image(ct, msd / "imagesTr" / f"{cid}.nii.gz")
        write_image(lab, msd / "labelsTr" / f"{cid}.nii.gz")
        write_image(ts, ts_dir / f"{cid}.nii.gz")
        training.append({"image": f"./imagesTr/{cid}.nii.gz", "label": f"./labelsTr/{cid}.nii.gz"})
    (msd / "imagesTr" / f"._{ids[0]}.nii.gz").write_bytes(b"\x00\x05")  # macOS resource fork in the MSD tar
    (msd / "dataset.json").write_text(json.dumps({
        "name": "Colon", "modality": {"0": "CT"}, "labels": {"0": "background", "1": "colon cancer primaries"},
        "numTraining": len(ids), "training": training, "test": ["./imagesTs/colon_002.nii.gz"]}))
    return msd, ts_dir


def test_read_msd_colon_pairs_cases_with_totalsegmentator_maps(tmp_path: Path) -> None:
    msd, ts_dir = _fake_msd(tmp_path)
    cases = read_msd_colon(msd, ts_dir)
    assert [c.case_id for c in cases] == ["colon_001", "colon_005"]
    assert cases[0] == AGCRCCase("colon_001", msd / "imagesTr/colon_001.nii.gz", ts_dir / "colon_001.nii.gz", None,
                                 msd / "labelsTr/colon_001.nii.gz")
    root = write_agcrc_dataset(cases, tmp_path / "raw", 10, name="MSDColon")
    assert sorted(p.name for p in (root / "labelsTr").iterdir()) == ["colon_001.nii.gz", "colon_005.nii.gz"]
    assert read_image(root / "labelsTr" / "colon_005.nii.gz").array.sum() == 18
    word_dir = tmp_path / "word"
    for c in cases:
        write_image(read_image(c.mos_ts), word_dir / f"{c.case_id}.nii.gz")
    assert read_msd_colon(msd, ts_dir, word_dir)[1].mos_word == word_dir / "colon_005.nii.gz"


def test_read_msd_colon_errors(tmp_path: Path) -> None:
    msd, ts_dir = _fake_msd(tmp_path)
    (ts_dir / "colon_005.nii.gz").unlink()
    with pytest.raises(InputError, match=r"no TotalSegmentator label map for 1 of 2 cases \(e.g. colon_005.nii.gz\)"):
        read_msd_colon(msd, ts_dir)
    (ts_dir / "colon_005").mkdir()
    with pytest.raises(InputError, match="--ml"):
        read_msd_colon(msd, ts_dir)
    with pytest.raises(InputError, match="organ-map folder not found"):
        read_msd_colon(msd, tmp_path / "nope")
    with pytest.raises(InputError, match="no dataset.json"):
        read_msd_colon(ts_dir, ts_dir)
    (msd / "labelsTr" / "colon_001.nii.gz").unlink()
    with pytest.raises(InputError, match="missing"):
        read_msd_colon(msd, ts_dir)
    (msd / "dataset.json").write_text("{not json")
    with pytest.raises(InputError, match="not readable JSON"):
        read_msd_colon(msd, ts_dir)


def test_write_agcrc_dataset_argument_checks(tmp_path: Path) -> None:
    ct, ts, lab = _tiny_case(4)
    for bad, match in ((["a", ct], "a case is"), ([("a/b", ct, ts, None, lab)], "file-name safe"), ([], "no cases")):
        with pytest.raises(InputError, match=match):
            write_agcrc_dataset(bad, tmp_path / "raw", 9)
    with pytest.raises(InputError, match="tumour id"):
        write_agcrc_dataset([("a", ct, ts, None, lab)], tmp_path / "raw", 9, tumour_ids=(0,))
    with pytest.raises(InputError, match="unknown id scheme"):
        check_label_ids(ts, "ts_v3")
    root = write_agcrc_dataset([("a", ct.with_array(ct.array.astype(np.float64)), ts, None, lab)], tmp_path, 9)
    assert _read_case(root, "a")[0][0].array.dtype == np.float32
    assert not (tmp_path / "raw").exists()
