"""The CARE slice format: reading the real CARE slices (skipped when absent), cutting phantom CT volumes into
CARE-style slices, writing/reading a CARE folder as a torch Dataset, putting slices back into 3D."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch

from procto.errors import InputError
from procto.infer.usam import assemble_volume
from procto.metrics import dice
from procto.preprocess.care import (
    CT_WINDOW,
    CareDataset,
    augment_slice,
    find_care_split,
    parse_slice_name,
    prepare_slice,
    read_care_npz,
    rectum_slices,
    resize_slice,
    volume_to_care_slices,
    window_ct,
    write_care_split,
)

#: Voxel counts (label 1, label 2) of the real CARE slices (SOURCES.md).
REAL_COUNTS = {"1002": (173, 202), "4120": (0, 571), "4883": (316, 221), "4979": (152, 127), "5657": (331, 0)}


@pytest.fixture(scope="module")
def phantom_case():
    from procto.phantom import make_case

    return make_case(3, "ct", shape=(32, 96, 96), fov_mm=150)


# ------------------------------------------------------------------------------------------------ real CARE slices
def test_real_care_slices(real_data):
    folder = real_data / "care-rectal-ct-2d"
    if not folder.is_dir():
        pytest.skip("care-rectal-ct-2d not present")
    ds = CareDataset(folder, split=None)
    assert [it.case for it in ds.items] == sorted(REAL_COUNTS)
    for i, item in enumerate(ds.items):
        image, label = read_care_npz(item.path)
        assert image.shape == label.shape == (224, 224)
        assert image.dtype == np.float32 and label.dtype == np.uint8
        assert ((label == 1).sum(), (label == 2).sum()) == REAL_COUNTS[item.case]
        # min–max normalised with the cubic-resize overshoot
        assert -0.3 < image.min() < 0.0 and 1.0 < image.max() < 1.3
        # stored transposed: the first array axis runs left-right (the body is wider than deep), the second
        # antero-posterior
        body = image > 0.2
        rows, cols = np.flatnonzero(body.any(axis=1)), np.flatnonzero(body.any(axis=0))
        assert rows[-1] - rows[0] > 1.2 * (cols[-1] - cols[0])
        disp_img, disp_lab = read_care_npz(item.path, display=True)
        np.testing.assert_array_equal(disp_img, image.T)
        np.testing.assert_array_equal(disp_lab, label.T)
        sample = ds[i]
        assert sample["image"].shape == (3, 224, 224) and sample["label"].shape == (224, 224)
        assert sample["label"].dtype == torch.int64
        np.testing.assert_allclose(sample["image"][0].numpy(), image)
    # the statistics the authors normalise with (mean 0.136) fit the real slices
    mean = np.mean([read_care_npz(it.path)[0].mean() for it in ds.items])
    assert 0.10 < mean < 0.17
    # resizing to another model input size keeps image and label aligned
    small = CareDataset(folder, split=None, img_size=112)[0]
    assert small["image"].shape == (3, 112, 112) and set(small["label"].unique().tolist()) <= {0, 1, 2}


# ------------------------------------------------------------------------------------------------ phantom CT
def test_phantom_volume_to_care_slices(phantom_case):
    img, lab = phantom_case.image, phantom_case.label
    cs = volume_to_care_slices(img, lab, case_id="p3")
    zs = rectum_slices(lab.array)
    np.testing.assert_array_equal(cs.z, zs)
    assert len(zs) > 5 and cs.images.shape == (len(zs), 224, 224) and cs.labels.shape == cs.images.shape
    assert cs.images.dtype == np.float32 and cs.labels.dtype == np.uint8
    assert all(cs.labels[i].any() for i in range(len(cs)))
    for i in (0, len(cs) // 2):
        z = cs.z[i]
        # HU window -> [0, 1], cubic resize, transposition (CARE orientation)
        expected = resize_slice(window_ct(img.array[z], CT_WINDOW), 224, 3).T
        np.testing.assert_allclose(cs.images[i], expected, atol=1e-6)
        np.testing.assert_array_equal(cs.labels[i], resize_slice(lab.array[z], 224, 0).T)
        np.testing.assert_allclose(prepare_slice(img.array[z]), cs.images[i], atol=1e-6)
    # CARE-like intensities (real CARE slices: fat ≈ 0.03-0.1, soft tissue ≈ 0.42-0.45)
    fat = np.percentile(cs.images, 10)
    assert -0.05 < fat < 0.15 and 0.3 < np.percentile(cs.images[cs.labels > 0], 90) < 0.7
    # pixel size of the 224 grid (transposed: first axis = x)
    assert cs.pixel_mm == pytest.approx((img.spacing[2] * 96 / 224, img.spacing[1] * 96 / 224))
    # explicit slices / all slices / no label
    assert len(volume_to_care_slices(img, None, slices="all")) == img.shape[0]
    assert volume_to_care_slices(img, slices=[1, 2]).labels is None
    with pytest.raises(InputError, match="needs a label"):
        volume_to_care_slices(img)
    with pytest.raises(InputError, match="slice indices"):
        volume_to_care_slices(img, slices=[99])


def test_care_folder_roundtrip(tmp_path, phantom_case):
    from procto.phantom import make_case

    other = make_case(4, "ct", shape=(32, 96, 96), fov_mm=150)
    cases = [volume_to_care_slices(c.image, c.label, case_id=f"case{k}") for k, c in ((3, phantom_case), (4, other))]
    folder = write_care_split(tmp_path, "train", cases)
    assert folder == tmp_path / "train_npz" == find_care_split(tmp_path, "train")
    names = sorted(p.stem for p in folder.glob("*.npz"))
    assert len(names) == len(cases[0]) + len(cases[1])
    assert names[0] == f"case3_{cases[0].z[0]:03d}" and parse_slice_name(names[0]) == ("case3", cases[0].z[0])
    with open(tmp_path / "train_bbox.csv", newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["name", "bbox"] and len(rows) == len(names) + 1
    box = json.loads(rows[1][1])
    lab = read_care_npz(folder / f"{rows[1][0]}.npz")[1]
    r, c = np.nonzero(lab)
    assert box == [c.min(), r.min(), c.max(), r.max()]
    geo = json.loads((tmp_path / "train_cases.json").read_text())
    assert set(geo) == {"case3", "case4"} and geo["case3"]["slices"] == cases[0].z.tolist()

    ds = CareDataset(tmp_path, "train")
    assert len(ds) == len(names) and ds.cases == ["case3", "case4"]
    item = ds[0]
    assert item["case"] == "case3" and item["z"] == int(cases[0].z[0])
    np.testing.assert_allclose(item["image"][1].numpy(), cases[0].images[0])
    np.testing.assert_array_equal(item["label"].numpy(), cases[0].labels[0])
    assert ds.pixel_mm("case3") == pytest.approx(cases[0].pixel_mm)
    assert len(CareDataset(tmp_path, "train", cases=["case4"])) == len(cases[1])

    # slices back to 3D in the input geometry
    preds = np.stack([read_care_npz(folder / f"case3_{z:03d}.npz")[1] for z in cases[0].z])
    vol = assemble_volume(preds, cases[0].z, geo["case3"])
    assert vol.shape == phantom_case.label.shape and vol.same_geometry(phantom_case.label)
    for c in (1, 2):
        assert dice(vol.array == c, phantom_case.label.array == c) > 0.97

    # the authors' nesting {split}/{split}_npz and the phantom writer's layout read too
    from procto.phantom import write_cohort

    root = write_cohort(tmp_path / "ph", 1, "ct", layout="care", n_test=1, shape=(24, 64, 64), fov_mm=150)
    assert len(CareDataset(root, "test")) > 0 and len(CareDataset(root, "train", skip_empty=True)) > 0


def test_augmentation_keeps_image_and_label_aligned():
    rng = np.random.default_rng(0)
    label = np.zeros((64, 64), np.uint8)
    label[10:30, 20:50] = 1
    label[15:20, 25:35] = 2
    image = label.astype(np.float32) / 2
    for _ in range(20):
        im, lb = augment_slice(image, label, rng)
        assert im.shape == lb.shape == (64, 64)
        assert ((im > 0.75) == (lb == 2)).mean() > 0.98
        assert ((im > 0.25) == (lb > 0)).mean() > 0.98


def test_bad_care_input(tmp_path):
    with pytest.raises(InputError, match="not found"):
        CareDataset(tmp_path / "nope")
    with pytest.raises(InputError, match="no CARE slices"):
        CareDataset(tmp_path, "train")
    np.savez(tmp_path / "a_001.npz", img=np.zeros((4, 4)))
    with pytest.raises(InputError, match="'image' and 'label'"):
        read_care_npz(tmp_path / "a_001.npz")
    np.savez(tmp_path / "b_001.npz", image=np.zeros((4, 4)), label=np.zeros((4, 5)))
    with pytest.raises(InputError, match="same shape"):
        read_care_npz(tmp_path / "b_001.npz")
    np.savez(tmp_path / "c_001.npz", image=np.full((4, 4), np.nan), label=np.zeros((4, 4)))
    with pytest.raises(InputError, match="NaN"):
        read_care_npz(tmp_path / "c_001.npz")
    (tmp_path / "d_001.npz").write_bytes(b"garbage")
    with pytest.raises(InputError, match="readable"):
        read_care_npz(tmp_path / "d_001.npz")
    with pytest.raises(InputError, match="window"):
        window_ct(np.zeros(3), (10, 5))
    # labels above 2 are read as 2 (the authors' 3-class reading)
    np.savez(tmp_path / "e_001.npz", image=np.zeros((4, 4)), label=np.full((4, 4), 3.0))
    assert read_care_npz(tmp_path / "e_001.npz")[1].max() == 2
