"""procto.preprocess.meply: Meply's 2.5D and 3D files, CT windows (fact 3), per-slice node boxes (fact 2), the HU
window, the authors' loader (paper protocol) and the whole-slice protocol, bad input."""

from __future__ import annotations

import numpy as np
import pytest
from skimage.measure import label as sk_label, regionprops

from procto.errors import InputError
from procto.io import Volume
from procto.phantom import make_case
from procto.preprocess.meply import (
    MeplyDataset,
    hu_window,
    read_meply_targets,
    read_meply_volume,
    read_meply_window,
    slice_boxes,
    volume_to_windows,
)

FACTS_GRID = {"shape": (96, 128, 128), "spacing": (1.25, 0.7, 0.7), "center": "tumour"}


@pytest.fixture(scope="module")
def facts_cases():
    """The facts file's grid, seeds 0-2 (N1, N0, N2)."""
    return [make_case(s, "ct", **FACTS_GRID) for s in range(3)]


# ------------------------------------------------------------------------------------------------ HU window, boxes
def test_hu_window_maps_minus_100_to_100_onto_unit_interval():
    out = hu_window(np.array([-1000, -100, 0, 50, 100, 3000], np.int16))
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, [0, 0, 0.5, 0.75, 1, 1])
    np.testing.assert_allclose(hu_window([0.0, 10.0], lo=0, hi=20), [0, 0.5])
    with pytest.raises(InputError):
        hu_window([0.0], lo=1, hi=1)


def test_slice_boxes_are_continuous_with_clamped_margin():
    inst = np.zeros((10, 12), np.uint8)
    inst[3, 5] = 2  # one pixel: [5, 3, 6, 4]
    inst[6:9, 0:4] = 4  # rows 6-8, cols 0-3: [0, 6, 4, 9]
    boxes, ids = slice_boxes(inst)
    assert ids.tolist() == [2, 4]
    np.testing.assert_array_equal(boxes, [[5, 3, 6, 4], [0, 6, 4, 9]])
    boxes, _ = slice_boxes(inst, margin=2)
    np.testing.assert_array_equal(boxes, [[3, 1, 8, 6], [0, 4, 6, 10]])  # clamped to x ∈ [0, 12], y ∈ [0, 10]
    boxes, _ = slice_boxes(inst, margin=2, shape=(9, 5))
    np.testing.assert_array_equal(boxes, [[3, 1, 5, 6], [0, 4, 5, 9]])
    empty, no_ids = slice_boxes(np.zeros((4, 4), np.uint8))
    assert empty.shape == (0, 4) and no_ids.shape == (0,)
    with pytest.raises(InputError):
        slice_boxes(np.zeros((2, 3, 4), np.uint8))


def test_fact2_instance_boxes_equal_8_connected_component_boxes(facts_cases):
    """Fact 2 on the facts grid: per slice, the instance map's boxes are those of the 8-connected components of
    nodes > 0 (regionprops' bbox, read as continuous [x1, y1, x2, y2])."""
    n_slices_with_nodes = 0
    for case in facts_cases:
        nodes = case.nodes.array
        for z in range(nodes.shape[0]):
            if not nodes[z].any():
                continue
            n_slices_with_nodes += 1
            boxes, _ = slice_boxes(nodes[z])
            ref = sorted((r.bbox[1], r.bbox[0], r.bbox[3], r.bbox[2])
                         for r in regionprops(sk_label(nodes[z] > 0, connectivity=2)))
            assert sorted(map(tuple, boxes.tolist())) == ref, (case.seed, z)
    assert n_slices_with_nodes > 20


# ------------------------------------------------------------------------------------------------------- windows
def test_fact3_windows_odd_5_to_15_centred_in_the_input_geometry(facts_cases):
    case = facts_cases[2]  # N2
    img, nodes = case.image.array.astype(np.float64), case.nodes.array
    with_nodes = [z for z in range(nodes.shape[0]) if nodes[z].max() > 0]
    for L in (5, 7, 9, 11, 13, 15):
        wins = volume_to_windows(case.image, case.nodes, window=L, slices="nodes")
        assert [w.index for w in wins] == with_nodes
        for w in wins[:: max(1, len(wins) // 4)]:
            assert w.image.shape == (L, *img.shape[1:]) and w.image.dtype == np.float32
            np.testing.assert_allclose(w.image[L // 2], np.clip((img[w.index] + 100) / 200, 0, 1), atol=1e-6)
            np.testing.assert_array_equal(w.instances, nodes[w.index])
            assert w.image.min() >= 0 and w.image.max() <= 1
    assert len(volume_to_windows(case.image, case.nodes, slices="all")) == img.shape[0]


def test_window_edges_replicate_the_border_slice():
    arr = np.broadcast_to(np.arange(8, dtype=np.int16)[:, None, None] * 10, (8, 4, 5)).copy()
    wins = volume_to_windows(Volume(arr), None, window=5, slices="all", hu=None)
    first, last = wins[0], wins[-1]
    np.testing.assert_array_equal(first.image[:, 0, 0], [0, 0, 0, 10, 20])
    np.testing.assert_array_equal(last.image[:, 0, 0], [50, 60, 70, 70, 70])
    np.testing.assert_array_equal(wins[3].slices, [1, 2, 3, 4, 5])
    assert first.instances is None


def test_window_bad_input_is_an_input_error():
    ct = Volume(np.zeros((10, 8, 8), np.int16), spacing=(2.0, 0.7, 0.7))
    nodes = Volume(np.zeros((10, 8, 8), np.uint8), spacing=(2.0, 0.7, 0.7))
    with pytest.raises(InputError, match="geometry mismatch"):
        volume_to_windows(ct, Volume(np.zeros((10, 8, 8), np.uint8), spacing=(2.5, 0.7, 0.7)))
    with pytest.raises(InputError, match="geometry mismatch"):
        volume_to_windows(ct, Volume(np.zeros((10, 8, 9), np.uint8), spacing=(2.0, 0.7, 0.7)))
    with pytest.raises(InputError, match="empty"):
        volume_to_windows(Volume(np.zeros((0, 8, 8), np.int16)), None, slices="all")
    with pytest.raises(InputError, match="larger than"):
        volume_to_windows(ct, nodes, window=11)
    for bad in (4, 3, 17, 9.5):
        with pytest.raises(InputError, match="odd"):
            volume_to_windows(ct, nodes, window=bad)
    with pytest.raises(InputError):
        volume_to_windows(ct, None, slices="nodes")
    with pytest.raises(InputError):
        volume_to_windows(ct, nodes, slices="some")


# ------------------------------------------------------------------------------------------------------- readers
def test_read_window_is_slice_first(tmp_path):
    img = np.random.default_rng(0).integers(-200, 200, size=(6, 7, 15)).astype(np.int16)
    lab = np.zeros((6, 7, 15), np.uint8)
    lab[2, 3, 7] = 1
    np.savez(tmp_path / "0_143.npz", img=img, label=lab)
    image, label = read_meply_window(tmp_path / "0_143.npz")
    assert image.shape == label.shape == (15, 6, 7) and image.dtype == np.float32 and label.dtype == np.uint8
    np.testing.assert_array_equal(image[4], img[:, :, 4])
    assert label[7, 2, 3] == 1 and label.sum() == 1


@pytest.mark.parametrize("content", ["garbage", "truncated", "missing_key", "2d", "shape_mismatch", "nan"])
def test_bad_window_file_is_an_input_error_naming_it(tmp_path, content):
    path = tmp_path / f"bad_{content}.npz"
    good = np.zeros((4, 4, 15), np.int16)
    if content == "garbage":
        path.write_bytes(b"not a zip at all")
    elif content == "truncated":
        np.savez_compressed(path, img=good, label=good.astype(np.uint8))
        path.write_bytes(path.read_bytes()[:60])
    elif content == "missing_key":
        np.savez(path, img=good)
    elif content == "2d":
        np.savez(path, img=good[..., 0], label=good[..., 0])
    elif content == "shape_mismatch":
        np.savez(path, img=good, label=good[:, :, :5])
    else:
        np.savez(path, img=np.full((4, 4, 15), np.nan), label=good)
    with pytest.raises(InputError) as err:
        read_meply_window(path)
    assert err.value.path == str(path) and str(path) in str(err.value)
    with pytest.raises(InputError, match="file not found"):
        read_meply_window(tmp_path / "missing.npz")


def _write_targets(path, rows, header=True):
    lines = (["pid, target_index, volume, lower z, lower y, lower x, upper z, upper y, upper x"] if header else [])
    path.write_text("\n".join(lines + [", ".join(map(str, r)) for r in rows]) + "\n")


def test_read_volume_hwd_and_dhw_give_zyx_volumes(tmp_path):
    zyx = np.arange(5 * 6 * 6, dtype=np.int16).reshape(5, 6, 6)  # z = 5 slices of 6 x 6
    lbl = np.zeros_like(zyx, dtype=np.uint8)
    lbl[1:3, 2:4, 0:2] = 1
    np.savez(tmp_path / "c1.npz", img=np.transpose(zyx, (1, 2, 0)), lbl=np.transpose(lbl, (1, 2, 0)),
             spacing=np.array([0.7, 0.7, 1.25]))  # README: (H, W, D), spacing in the array's order
    np.savez(tmp_path / "c2.npz", img=zyx, lbl=lbl, spacing=np.array([1.25, 0.7, 0.7]))  # the loader's D x H x W
    _write_targets(tmp_path / "t.csv", [("c1", 1, 8, 1, 2, 0, 3, 4, 2), ("c2", 1, 8, 1, 2, 0, 3, 4, 2)])
    for name in ("c1", "c2"):
        image, label, targets = read_meply_volume(tmp_path / f"{name}.npz", tmp_path / "t.csv")
        np.testing.assert_array_equal(image.array, zyx)
        np.testing.assert_array_equal(label.array, lbl)
        assert image.spacing == (1.25, 0.7, 0.7) and label.same_geometry(image)
        assert targets == [{"pid": name, "target_index": 1, "volume": 8.0, "box": (1.0, 2.0, 0.0, 3.0, 4.0, 2.0)}]
    image, _, _ = read_meply_volume(tmp_path / "c2.npz", axes="hwd")  # forced: the README's reading
    assert image.shape == (6, 5, 6)
    assert read_meply_volume(tmp_path / "c1.npz")[2] == []


def test_read_volume_and_targets_bad_input(tmp_path):
    np.savez(tmp_path / "nospacing.npz", img=np.zeros((4, 4, 4)), lbl=np.zeros((4, 4, 4)))
    np.savez(tmp_path / "badspacing.npz", img=np.zeros((4, 4, 4)), lbl=np.zeros((4, 4, 4)), spacing=[1.0, 0.0, 1.0])
    np.savez(tmp_path / "neglabel.npz", img=np.zeros((4, 4, 4)), lbl=-np.ones((4, 4, 4)), spacing=[1.0, 1.0, 1.0])
    (tmp_path / "corrupt.npz").write_bytes(b"PK\x03\x04 broken")
    for name in ("nospacing", "badspacing", "neglabel", "corrupt"):
        with pytest.raises(InputError) as err:
            read_meply_volume(tmp_path / f"{name}.npz")
        assert str(tmp_path / f"{name}.npz") in str(err.value)
    _write_targets(tmp_path / "bad.csv", [("c1", 1, 8, 1, 2)], header=False)
    with pytest.raises(InputError, match="line 1") as err:
        read_meply_targets(tmp_path / "bad.csv")
    assert str(tmp_path / "bad.csv") in str(err.value)
    _write_targets(tmp_path / "nohead.csv", [("a", 2, 5, 0, 0, 0, 1, 1, 1)], header=False)
    assert read_meply_targets(tmp_path / "nohead.csv")[0]["target_index"] == 2


# ------------------------------------------------------------------------------------------------------- dataset
def _meply_folder(root, split="test"):
    """Two hand-made windows (160 x 160 x 15 HU): background -90 + slice index; node A rows 60-69 x cols 70-79 and
    node B rows 60-69 x cols 125-134 (100 px each) at 50 HU, a 4-px speck at rows 140-141 x cols 2-3.  File 1 has
    them on every slice; file 2 has only the speck on its centre slice."""
    (root / split).mkdir(parents=True)
    img = np.empty((160, 160, 15), np.int16)
    img[:] = (-90 + np.arange(15)).astype(np.int16)
    lab = np.zeros((160, 160, 15), np.uint8)
    lab[60:70, 70:80] = 1
    lab[60:70, 125:135] = 1
    lab[140:142, 2:4] = 1
    img[lab > 0] = 50
    np.savez(root / split / "case7_020.npz", img=img, label=lab)
    speck = np.zeros_like(lab)
    speck[140:142, 2:4] = 1
    np.savez(root / split / "case7_021.npz", img=img, label=speck)
    (root / f"caselist_{split}.txt").write_text("case7_020\ncase7_021\n")
    return root


def test_paper_protocol_test_mode_crops_around_the_first_component(tmp_path):
    ds = MeplyDataset(_meply_folder(tmp_path), "test", window=9, protocol="paper")
    assert len(ds) == 1  # the speck-only window has no component >= 50 px
    item = ds[0]
    assert item["case"] == "case7" and item["slice"] == 20 and item["name"] == "case7_020"
    # centroid of A = (64.5, 74.5) -> (64, 74); crop rows 8..120, cols 18..130 (112 px), x2 resized to 224
    assert item["crop"] == (8, 18, 120, 130)
    assert item["image"].shape == (9, 224, 224) and item["label"].shape == (224, 224)
    # A: rows (60-8)*2 .. (70-8)*2, cols (70-18)*2 .. (80-18)*2, plus the 16-px margin; B touches the crop border
    np.testing.assert_array_equal(item["boxes"], [[104 - 16, 104 - 16, 124 + 16, 124 + 16]])
    assert item["label"].sum() == 20 * 20 + 2 * (130 - 125) * 20  # A and the part of B inside the crop
    assert item["instances"].max() == 2
    # window 9 of the stored 15: stored slices 3..11; HU -> [0, 1]: background (-90 + k + 100) / 200, node 0.75
    np.testing.assert_allclose(item["image"][:, 0, 0], (10 + np.arange(3, 12)) / 200, atol=1e-6)
    np.testing.assert_allclose(item["image"][:, 114, 114], 0.75, atol=1e-6)
    with pytest.raises(IndexError):
        ds[1]
    assert [it["name"] for it in ds] == ["case7_020"]


def test_whole_protocol_keeps_every_window_and_component(tmp_path):
    ds = MeplyDataset(_meply_folder(tmp_path), "test", window=5, size=160, protocol="whole")
    assert len(ds) == 2
    first, second = ds[0], ds[1]
    assert first["image"].shape == (5, 160, 160) and first["crop"] == (0, 0, 160, 160)
    np.testing.assert_array_equal(first["boxes"], [[70, 60, 80, 70], [125, 60, 135, 70], [2, 140, 4, 142]])
    np.testing.assert_array_equal(second["boxes"], [[2, 140, 4, 142]])
    with_margin = MeplyDataset(tmp_path, "test", window=5, size=160, protocol="whole", margin=3)[1]
    np.testing.assert_array_equal(with_margin["boxes"], [[0, 137, 7, 145]])


def test_training_crops_are_random_reproducible_and_keep_the_node_inside(tmp_path):
    ds = MeplyDataset(_meply_folder(tmp_path), "test", window=9, protocol="paper", train=True, seed=3)
    ds.reseed(11)
    a = ds[0]
    ds.reseed(11)
    b = ds[0]
    np.testing.assert_array_equal(a["image"], b["image"])
    np.testing.assert_array_equal(a["boxes"], b["boxes"])
    crops = set()
    for seed in range(12):
        ds.reseed(seed)
        item = ds[0]
        y1, x1, y2, x2 = item["crop"]
        crops.add(item["crop"])
        assert y2 - y1 == x2 - x1 == 112
        assert len(item["boxes"]) >= 1 and item["image"].min() >= 0 and item["image"].max() <= 1
        assert set(np.unique(item["label"])) <= {0, 1}
    assert len(crops) > 3


def test_dataset_bad_input(tmp_path):
    with pytest.raises(InputError, match="no 'train' folder"):
        MeplyDataset(tmp_path, "train")
    _meply_folder(tmp_path)
    for kwargs in ({"window": 8}, {"protocol": "crop"}, {"intensity": "raw"}):
        with pytest.raises(InputError):
            MeplyDataset(tmp_path, "test", **kwargs)
    (tmp_path / "test" / "case7_020.npz").write_bytes(b"corrupt")
    with pytest.raises(InputError) as err:
        MeplyDataset(tmp_path, "test")
    assert str(tmp_path / "test" / "case7_020.npz") in str(err.value)
