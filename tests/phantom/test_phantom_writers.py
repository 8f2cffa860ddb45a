"""write_cohort: nnU-Net v2 raw layout, CARE 2D npz slices, plain NIfTI folders and stages.csv."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from procto.errors import InputError
from procto.io import read_image
from procto.phantom import LABELS, canonical_axial, make_case, n_category, read_cohort_table, write_cohort

TINY = {"shape": (16, 48, 48)}


@pytest.fixture(scope="module")
def nnunet_ct(tmp_path_factory):
    out = tmp_path_factory.mktemp("nnunet")
    calls = []
    root = write_cohort(out, 3, "ct", layout="nnunet", seed=1, n_test=1, dataset_id=42, name="PhantomTest",
                        progress=lambda done, total, cid: calls.append((done, total, cid)), **TINY)
    return root, calls


def test_nnunet_layout_files(nnunet_ct):
    root, calls = nnunet_ct
    assert root.name == "Dataset042_PhantomTest"
    ids = [f"phantom_ct_{i:04d}" for i in range(4)]
    for cid in ids[:3]:
        assert (root / "imagesTr" / f"{cid}_0000.nii.gz").is_file()
        assert (root / "labelsTr" / f"{cid}.nii.gz").is_file()
        for extra in ("nodes", "organs", "layers"):
            assert (root / "extrasTr" / f"{cid}_{extra}.nii.gz").is_file()
    assert (root / "imagesTs" / f"{ids[3]}_0000.nii.gz").is_file()
    assert (root / "labelsTs" / f"{ids[3]}.nii.gz").is_file()
    assert sorted(p.name for p in (root / "imagesTr").iterdir()) == [f"{c}_0000.nii.gz" for c in ids[:3]]
    assert not list(root.rglob("*.tmp*"))
    assert [c[0] for c in calls] == [1, 2, 3, 4] and all(c[1] == 4 for c in calls)


def test_nnunet_dataset_json(nnunet_ct):
    root, _ = nnunet_ct
    ds = json.loads((root / "dataset.json").read_text())
    assert ds["channel_names"] == {"0": "CT"}
    assert ds["labels"] == {"background": 0, "rectum": 1, "tumour": 2} == LABELS
    assert ds["numTraining"] == 3
    assert ds["file_ending"] == ".nii.gz"


def test_nnunet_dataset_is_readable_by_nnunet(nnunet_ct):
    utils = pytest.importorskip("nnunetv2.utilities.utils")
    root, _ = nnunet_ct
    ds = json.loads((root / "dataset.json").read_text())
    found = utils.get_filenames_of_train_images_and_targets(str(root), ds)
    assert len(found) == ds["numTraining"]
    for cid, entry in found.items():
        assert len(entry["images"]) == 1 and entry["label"].endswith(f"{cid}.nii.gz")


def test_nnunet_volumes_round_trip_with_shared_geometry(nnunet_ct):
    root, _ = nnunet_ct
    rows = {r["case_id"]: r for r in read_cohort_table(root / "stages.csv")}
    cid = "phantom_ct_0001"
    image = read_image(root / "imagesTr" / f"{cid}_0000.nii.gz")
    label = read_image(root / "labelsTr" / f"{cid}.nii.gz")
    assert image.same_geometry(label)
    for extra in ("nodes", "organs", "layers"):
        assert read_image(root / "extrasTr" / f"{cid}_{extra}.nii.gz").same_geometry(image)
    assert set(np.unique(label.array)) <= {0, 1, 2}
    again = make_case(rows[cid]["seed"], "ct", t_stage=rows[cid]["t_stage"], n_nodes=rows[cid]["n_nodes"], **TINY)
    assert np.array_equal(image.array, again.image.array)
    assert np.array_equal(label.array, again.label.array)
    assert image.same_geometry(again.image)


def test_stages_csv(nnunet_ct):
    root, _ = nnunet_ct
    rows = read_cohort_table(root / "stages.csv")
    assert [r["case_id"] for r in rows] == [f"phantom_ct_{i:04d}" for i in range(4)]
    assert [r["split"] for r in rows] == ["train", "train", "train", "test"]
    assert [r["t_stage"] for r in rows] == ["T2", "T3", "T2", "T3"]
    for r in rows:
        assert r["n_category"] == n_category(r["n_nodes"])
        assert r["modality"] == "ct"
    with open(root / "stages.csv", newline="") as f:
        header = next(csv.reader(f))
    assert header[:7] == ["case_id", "split", "modality", "seed", "t_stage", "n_category", "n_nodes"]


def test_mri_nnunet_channel_is_t2(tmp_path):
    root = write_cohort(tmp_path, 1, "mri", layout="nnunet", dataset_id=7, **TINY)
    ds = json.loads((root / "dataset.json").read_text())
    assert ds["channel_names"] == {"0": "T2"}
    assert root.name == "Dataset007_ProctoPhantomMRI"
    img = read_image(root / "imagesTr" / "phantom_mri_0000_0000.nii.gz")
    assert img.spacing == pytest.approx((4.0, 224 / 48, 224 / 48))
    assert np.allclose(img.direction[:, 0], (0, 0, 1))  # array axis 0 = left-right (sagittal slices)


@pytest.fixture(scope="module")
def care_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("care")
    write_cohort(out, 2, "ct", layout="care", seed=2, n_test=1, shape=(16, 64, 64))
    return out


def test_care_layout(care_dir):
    train = sorted((care_dir / "train" / "train_npz").glob("*.npz"))
    test = sorted((care_dir / "test" / "test_npz").glob("*.npz"))
    assert train and test
    assert all(p.stem.startswith(("phantom_ct_0000_", "phantom_ct_0001_")) for p in train)
    assert all(p.stem.startswith("phantom_ct_0002_") and len(p.stem.rsplit("_", 1)[1]) == 3 for p in test)
    for split, files in (("train", train), ("test", test)):
        with open(care_dir / split / f"{split}_bbox.csv", newline="") as f:
            rows = list(csv.reader(f))[1:]
        assert [r[0] for r in rows] == [p.stem for p in files]
        for name, box in rows:
            x1, y1, x2, y2 = json.loads(box)
            assert 0 <= x1 <= x2 < 224 and 0 <= y1 <= y2 < 224
    rows = read_cohort_table(care_dir / "stages.csv")
    assert [r["split"] for r in rows] == ["train", "train", "test"]
    assert sum(int(r["n_slices"]) for r in rows) == len(train) + len(test)


def test_care_npz_content(care_dir):
    for path in sorted((care_dir / "train" / "train_npz").glob("*.npz")):
        with np.load(path) as z:
            assert sorted(z.files) == ["image", "label"]
            image, label = z["image"], z["label"]
        assert image.shape == label.shape == (224, 224)
        assert image.dtype == label.dtype == np.float64  # like the real CARE files
        # the min–max normalised window with the cubic resize's overshoot: the real CARE files' range
        assert -0.3 < image.min() and image.max() < 1.3
        assert set(np.unique(label)) <= {0.0, 1.0, 2.0} and label.max() > 0


def test_care_layout_uses_the_one_care_slice_writer(care_dir):
    """The phantom layout is written by the converter's functions: the authors' window (−125 … 275 HU), cubic
    resize, the converter's slice selection, bbox CSV and case geometry (which U-SAM reads the window from)."""
    from procto.phantom import cohort_plan
    from procto.preprocess.care import CT_WINDOW, read_care_npz, read_case_geometry, volume_to_care_slices

    entry = cohort_plan(3, "ct", 2)[0]
    case = make_case(entry.seed, "ct", t_stage=entry.t_stage, n_nodes=entry.n_nodes, case_id=entry.case_id,
                     shape=(16, 64, 64))
    expected = volume_to_care_slices(case.image, case.label, case_id=case.case_id)  # axial CT: canonical already
    folder = care_dir / "train" / "train_npz"
    files = sorted(folder.glob(f"{case.case_id}_*.npz"))
    assert [p.stem for p in files] == [f"{case.case_id}_{z:03d}" for z in expected.z]
    for i, path in enumerate(files):
        image, label = read_care_npz(path)
        np.testing.assert_array_equal(image, expected.images[i])
        np.testing.assert_array_equal(label, expected.labels[i])
    geometry = read_case_geometry(folder)[case.case_id]
    assert geometry["window"] == list(CT_WINDOW) and geometry["slices"] == expected.z.tolist()
    assert geometry["spacing"] == pytest.approx(case.image.spacing)


def test_care_slices_are_stored_transposed(care_dir):
    """Displayed as ``image.T`` (like the real CARE files) the rectum lies in the posterior (lower) half, in the
    middle third left-right."""
    rows, cols = [], []
    for path in sorted((care_dir / "train" / "train_npz").glob("*.npz")):
        with np.load(path) as z:
            r, c = np.nonzero(z["label"].T)
        rows.append(r.mean())
        cols.append(c.mean())
    assert np.mean(rows) > 112
    assert 224 / 3 < np.mean(cols) < 2 * 224 / 3


def test_care_npz_matches_real_care_files(care_dir, real_data):
    real = sorted((real_data / "care-rectal-ct-2d").glob("*.npz"))
    if not real:
        pytest.skip("real CARE npz files not found")
    with np.load(real[0]) as z:
        ref = {k: (z[k].shape, z[k].dtype) for k in z.files}
        real_rows = np.nonzero(z["label"].T)[0].mean()
    path = next((care_dir / "train" / "train_npz").glob("*.npz"))
    with np.load(path) as z:
        ours = {k: (z[k].shape, z[k].dtype) for k in z.files}
    assert ours == ref
    assert real_rows > 112  # the real files, displayed transposed, also hold the rectum in the lower half


def test_nifti_layout(tmp_path):
    root = write_cohort(tmp_path, 2, "mri", layout="nifti", seed=4, **TINY)
    assert root == tmp_path
    for folder in ("images", "labels", "nodes", "organs", "layers"):
        assert sorted(p.name for p in (root / folder).iterdir()) == ["phantom_mri_0000.nii.gz",
                                                                     "phantom_mri_0001.nii.gz"]
    meta = json.loads((root / "phantom.json").read_text())
    assert meta["modality"] == "mri" and meta["seed"] == 4 and meta["options"]["shape"] == [16, 48, 48]


def test_canonical_axial_of_mri_matches_ct_orientation():
    ct = make_case(6, "ct", shape=(20, 48, 48))
    mri = make_case(6, "mri", shape=(20, 48, 48))
    arr = canonical_axial(mri.label)
    assert arr.shape == (48, 48, 20)  # (z up, y A→P, x R→L)
    # the rectum is posterior to the bladder in both canonical arrays (y index grows posteriorly)
    for case, lab in ((ct, canonical_axial(ct.label)), (mri, arr)):
        bladder = canonical_axial(case.organs) == 21
        assert np.nonzero(lab)[1].mean() > np.nonzero(bladder)[1].mean()


@pytest.mark.parametrize("kwargs", [{"layout": "dicom"}, {"modality": "pet"}, {"dataset_id": 0},
                                    {"name": "bad name"}, {"n": -1}])
def test_write_cohort_rejects_bad_arguments(tmp_path, kwargs):
    args = {"n": 1, "modality": "ct", "layout": "nnunet", **kwargs}
    with pytest.raises(InputError):
        write_cohort(tmp_path, **args, **TINY)


def test_rich_progress_bar(tmp_path, capsys):
    write_cohort(tmp_path, 1, "ct", layout="nifti", progress=True, **TINY)
    assert (tmp_path / "images" / "phantom_ct_0000.nii.gz").is_file()
