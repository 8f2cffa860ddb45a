"""AG-CRC inference (procto.infer.agcrc) without a trained network: nnU-Net's probabilities are replaced by a fixed
"network" so that the OOI masking of AF models, the output geometry, the input channels built from the model's
dataset.json, the pairing of CT and organ-map files and the TotalSegmentator switch are checked exactly."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

from procto.errors import InputError, OutputError
from procto.infer import agcrc as agcrc_infer
from procto.infer.agcrc import AGCRCPredictor, mask_probabilities, plan_agcrc_cases, plans_record, predict_agcrc
from procto.infer.nnunet import NNUNetPredictor
from procto.io import Volume, read_image, write_image
from procto.preprocess.agcrc import agcrc_dataset_json

SHAPE = (10, 24, 24)
SPACING = (5.0, 1.5, 1.25)
ORIGIN = (-12.0, 30.5, 7.25)
DIRECTION = np.array([[0, 0, 1], [0, 1, 0], [-1, 0, 0]], float)  # not the identity
#: The fake network's tumour probability in a bright voxel (> 100 HU) and elsewhere.
P_BRIGHT, P_DARK = 0.9, 0.2


def make_model(root: Path, *, af: bool | None = True, scheme: str = "ts_v2", dilation: int = 3, wall: bool = False,
               configuration: str = "3d_fullres", plans: dict | None = None) -> Path:
    """A model folder that passes the cheap checks: nnU-Net's layout, procto's AG-CRC records, an empty checkpoint
    (the network is never loaded here)."""
    model = root / f"nnUNetTrainerAGCRC__nnUNetPlans__{configuration}"
    (model / "fold_0").mkdir(parents=True)
    if plans is None:
        record = {} if af is None else {"procto_agcrc": {"config": "MPSF" if af else "MP", "af_loss": af,
                                                         "sampling": "ag"}}
        plans = {"configurations": {configuration: {"patch_size": [8, 16, 16], **record}}}
    (model / "plans.json").write_text(json.dumps(plans))
    dataset = agcrc_dataset_json("AGCRC", 2, scheme=scheme, dilation=dilation, wall=wall)
    (model / "dataset.json").write_text(json.dumps(dataset))
    (model / "fold_0" / "checkpoint_final.pth").write_bytes(b"")
    return model


@pytest.fixture()
def fake_network(monkeypatch):
    """nnU-Net's probabilities from a fixed rule on the CT channel: tumour P_BRIGHT where CT > 100 HU, else P_DARK.
    Records the channels it was given."""
    seen: dict = {}

    def probabilities(self, image):
        vols = self.channels(image)
        seen["channels"] = vols
        fg = np.where(np.asarray(vols[0].array) > 100, P_BRIGHT, P_DARK).astype(np.float32)
        return np.stack([1.0 - fg, fg])

    monkeypatch.setattr(NNUNetPredictor, "probabilities", probabilities)
    return seen


def ct_and_map() -> tuple[Volume, Volume, np.ndarray, np.ndarray]:
    """A CT with two bright blobs — A inside the colon (TS v2 id 20), B far from every GI organ — and its
    TotalSegmentator map (colon, plus a liver (5) around B: not an organ of interest)."""
    ct = np.full(SHAPE, -50.0, np.float32)
    organs = np.zeros(SHAPE, np.uint8)
    organs[3:7, 4:12, 4:12] = 20
    organs[2:9, 15:23, 15:23] = 5
    blob_a = np.zeros(SHAPE, bool)
    blob_a[4:6, 6:9, 6:9] = True
    blob_b = np.zeros(SHAPE, bool)
    blob_b[4:6, 18:21, 18:21] = True
    ct[blob_a | blob_b] = 200.0
    geometry = dict(spacing=SPACING, origin=ORIGIN, direction=DIRECTION)
    return Volume(ct, **geometry), Volume(organs, **geometry), blob_a, blob_b


# ------------------------------------------------------------------------------------------------- masking
def test_mask_probabilities_is_eq8_output():
    rng = np.random.default_rng(0)
    p_fg = rng.uniform(size=(4, 5, 6)).astype(np.float32)
    probs = np.stack([1 - p_fg, p_fg])
    ooi = rng.integers(0, 2, size=(4, 5, 6))
    q = mask_probabilities(probs, ooi)
    assert np.allclose(q[1], np.where(ooi == 1, p_fg, 0.0))
    assert np.allclose(q[0], np.where(ooi == 1, 1 - p_fg, 1.0))
    assert np.allclose(q.sum(axis=0), 1.0)
    assert np.array_equal(probs[1], p_fg)  # the input is not changed
    # a resampled (non-binary) OOI is thresholded at 0.5
    assert np.allclose(mask_probabilities(probs, ooi * 0.6)[1], q[1])
    with pytest.raises(InputError, match="does not match"):
        mask_probabilities(probs, ooi[:, :, :5])


def test_af_model_removes_tumour_outside_the_ooi_and_keeps_it_with_mask_off(tmp_path, fake_network):
    ct, organs, blob_a, blob_b = ct_and_map()
    model = make_model(tmp_path)
    masked = AGCRCPredictor(model, device="cpu")
    assert masked.af_loss and masked.mask_ooi
    seg = masked.predict(ct, organs)
    assert seg.array.dtype == np.uint8
    assert np.array_equal(seg.array, blob_a.astype(np.uint8))  # B (outside the OOI) is gone
    unmasked = AGCRCPredictor(model, device="cpu", mask_ooi=False)
    assert np.array_equal(unmasked.predict(ct, organs).array, (blob_a | blob_b).astype(np.uint8))
    probs = masked.probabilities(ct, organs)
    assert probs.shape == (2, *SHAPE)
    assert np.allclose(probs[1][blob_b], 0.0) and np.allclose(probs[1][blob_a], P_BRIGHT)
    assert np.allclose(probs.sum(axis=0), 1.0)


def test_mask_default_follows_the_plans(tmp_path, fake_network):
    ct, organs, blob_a, blob_b = ct_and_map()
    no_af = AGCRCPredictor(make_model(tmp_path / "a", af=False), device="cpu")
    assert not no_af.af_loss and not no_af.mask_ooi
    assert np.array_equal(no_af.predict(ct, organs).array, (blob_a | blob_b).astype(np.uint8))
    assert not AGCRCPredictor(make_model(tmp_path / "b", af=None), device="cpu").mask_ooi  # plans say nothing
    forced = AGCRCPredictor(make_model(tmp_path / "c", af=False), device="cpu", mask_ooi=True)
    assert np.array_equal(forced.predict(ct, organs).array, blob_a.astype(np.uint8))


def test_output_is_in_the_ct_geometry(tmp_path, fake_network):
    ct, organs, _, _ = ct_and_map()
    seg = AGCRCPredictor(make_model(tmp_path), device="cpu").predict(ct, organs)
    assert seg.shape == ct.shape and seg.spacing == ct.spacing and seg.origin == ct.origin
    assert np.array_equal(seg.direction, ct.direction)
    # the network was given the three channels on the CT's grid
    assert [v.shape for v in fake_network["channels"]] == [SHAPE] * 3
    assert all(v.same_geometry(ct) for v in fake_network["channels"])
    # from files too
    write_image(ct, tmp_path / "ct.nii.gz")
    write_image(organs, tmp_path / "ts.nii.gz")
    seg2 = AGCRCPredictor(make_model(tmp_path / "m2"), device="cpu").predict(tmp_path / "ct.nii.gz",
                                                                            tmp_path / "ts.nii.gz")
    assert seg2.same_geometry(read_image(tmp_path / "ct.nii.gz"))
    assert np.array_equal(seg2.array, seg.array)


@pytest.mark.parametrize("scheme,max_id,gi,dilation", [("ts_v2", 117, (6, 18, 19, 20), 3),
                                                       ("ts_v1", 104, (6, 55, 56, 57), 1)])
def test_channels_follow_the_models_dataset_json(tmp_path, fake_network, scheme, max_id, gi, dilation):
    ct, _, _, _ = ct_and_map()
    organs = np.zeros(SHAPE, np.uint8)
    organs[2, 2, 2] = 20  # colon in v2, a rib-like id in v1
    organs[7, 20, 20] = 57  # colon in v1, not a GI organ in v2
    organs[5, 12, 3] = 5
    predictor = AGCRCPredictor(make_model(tmp_path, scheme=scheme, dilation=dilation), device="cpu")
    assert (predictor.scheme, predictor.dilation) == (scheme, dilation)
    predictor.predict(ct, ct.with_array(organs))
    ch_ct, ch_mos, ch_ooi = fake_network["channels"]
    assert np.array_equal(ch_ct.array, ct.array)
    assert np.allclose(ch_mos.array, organs / max_id)
    cross = ndimage.generate_binary_structure(3, 1)
    expected = ndimage.binary_dilation(np.isin(organs, gi), structure=cross, iterations=dilation)
    assert np.array_equal(ch_ooi.array, expected.astype(np.uint8))
    # WORD maps add to the OOI
    word = np.zeros(SHAPE, np.uint8)
    word[8, 3, 20] = 13  # rectum
    predictor.predict(ct, ct.with_array(organs), ct.with_array(word))
    with_word = ndimage.binary_dilation(np.isin(organs, gi) | (word == 13), structure=cross, iterations=dilation)
    assert np.array_equal(fake_network["channels"][2].array, with_word.astype(np.uint8))
    # an id outside the model's scheme is one InputError
    organs[0, 0, 0] = max_id + 1
    with pytest.raises(InputError, match="outside"):
        predictor.predict(ct, ct.with_array(organs))


def test_models_that_are_not_agcrc_are_refused(tmp_path):
    model = make_model(tmp_path / "a")
    meta = json.loads((model / "dataset.json").read_text())
    del meta["procto_agcrc"]
    (model / "dataset.json").write_text(json.dumps(meta))
    with pytest.raises(InputError, match="not an AG-CRC model"):
        AGCRCPredictor(model, device="cpu")
    with pytest.raises(InputError, match="AG-SSL"):
        AGCRCPredictor(make_model(tmp_path / "b", wall=True), device="cpu")
    model = make_model(tmp_path / "c")
    meta = json.loads((model / "dataset.json").read_text())
    meta["channel_names"] = {"0": "CT"}
    (model / "dataset.json").write_text(json.dumps(meta))
    with pytest.raises(InputError, match="takes 1 input channel"):
        AGCRCPredictor(model, device="cpu")


def test_plans_record_reads_the_trained_configuration(tmp_path):
    plans = {"configurations": {"3d_fullres": {"procto_agcrc": {"af_loss": False}},
                                "3d_big": {"inherits_from": "3d_lowres"},
                                "3d_lowres": {"procto_agcrc": {"af_loss": True, "config": "MPSF"}}}}
    assert plans_record(make_model(tmp_path / "a", plans=plans)) == {"af_loss": False}
    model = make_model(tmp_path / "b", plans=plans, configuration="3d_big")
    assert plans_record(model) == {"af_loss": True, "config": "MPSF"}
    assert AGCRCPredictor(model, device="cpu").mask_ooi
    (model / "plans.json").write_text("{not json")
    with pytest.raises(InputError, match="plans.json"):
        plans_record(model)


# ------------------------------------------------------------------------------------------------- files
def write_cases(root: Path, names: list[str], ct_names: list[str] | None = None) -> tuple[Path, Path]:
    """imagesTs/<ct name>.nii.gz and ts/<name>.nii.gz for each case (MSD-Colon + TotalSegmentator --ml layout)."""
    ct, organs, _, _ = ct_and_map()
    images, maps = root / "imagesTs", root / "ts"
    for name, ct_name in zip(names, ct_names or names):
        write_image(ct, images / f"{ct_name}.nii.gz")
        write_image(organs, maps / f"{name}.nii.gz")
    return images, maps


def test_predict_folders_pairs_cts_with_maps_by_case_name(tmp_path, fake_network):
    _, _, blob_a, _ = ct_and_map()
    model = make_model(tmp_path / "model")
    images, maps = write_cases(tmp_path, ["colon_001", "colon_007"])
    seen = []
    written = predict_agcrc(model, images, maps, tmp_path / "pred", device="cpu", on_start=seen.append,
                            on_case=seen.append)
    assert written == [tmp_path / "pred" / "colon_001.nii.gz", tmp_path / "pred" / "colon_007.nii.gz"]
    assert seen == [2, *written]
    for path in written:
        seg = read_image(path)
        assert seg.same_geometry(read_image(images / path.name))
        assert np.array_equal(seg.array, blob_a)
    # nnU-Net style CT names (case_0000) find maps named after the case; outputs are named after the case
    images2, maps2 = write_cases(tmp_path / "nn", ["colon_002"], ["colon_002_0000"])
    [out] = predict_agcrc(model, images2, maps2, tmp_path / "pred2", device="cpu")
    assert out == tmp_path / "pred2" / "colon_002.nii.gz"
    # one file to one file, the maps given as a file or as the folder holding it
    [one] = predict_agcrc(model, images / "colon_001.nii.gz", maps / "colon_001.nii.gz", tmp_path / "one.nrrd",
                          device="cpu")
    assert one == tmp_path / "one.nrrd" and read_image(one).same_geometry(read_image(images / "colon_001.nii.gz"))
    [two] = predict_agcrc(model, images / "colon_007.nii.gz", maps, tmp_path / "pred3", device="cpu")
    assert two == tmp_path / "pred3" / "colon_007.nii.gz"


def test_missing_maps_and_bad_pairings_are_one_error_and_create_nothing(tmp_path):
    images, maps = write_cases(tmp_path, ["colon_001", "colon_002", "colon_003"])
    (maps / "colon_002.nii.gz").unlink()
    (maps / "colon_003.nii.gz").unlink()
    out = tmp_path / "pred"
    with pytest.raises(InputError, match=r"no TotalSegmentator label map for 2 of 3 case\(s\) \(e\.g\. colon_002"):
        plan_agcrc_cases(images, maps, out)
    with pytest.raises(InputError, match="must be a folder of maps"):
        plan_agcrc_cases(images, maps / "colon_001.nii.gz", out)
    with pytest.raises(OutputError, match="must be a folder too"):
        plan_agcrc_cases(images, maps, tmp_path / "seg.nii.gz")
    per_organ = tmp_path / "ts_per_organ" / "colon_001"
    per_organ.mkdir(parents=True)
    for organ in ("colon", "small_bowel"):
        (per_organ / f"{organ}.nii.gz").write_bytes(b"")
    with pytest.raises(InputError, match="--ml"):
        plan_agcrc_cases(images / "colon_001.nii.gz", per_organ.parent, out)
    with pytest.raises(InputError, match="--ml"):
        plan_agcrc_cases(images / "colon_001.nii.gz", per_organ, out)
    assert not out.exists()


def test_a_bad_case_stops_before_anything_is_written(tmp_path, fake_network):
    """Every case's inputs are checked before the first label map is written (and before the network loads)."""
    model = make_model(tmp_path / "model")
    images, maps = write_cases(tmp_path, ["colon_001", "colon_002"])
    bad = read_image(maps / "colon_002.nii.gz")
    write_image(bad.with_array(np.where(bad.array == 5, 140, bad.array).astype(np.uint8)), maps / "colon_002.nii.gz")
    with pytest.raises(InputError, match="colon_002.nii.gz: label ids 140 outside"):
        predict_agcrc(model, images, maps, tmp_path / "pred", device="cpu")
    assert not (tmp_path / "pred").exists() and "channels" not in fake_network


# ------------------------------------------------------------------------------------------------- TotalSegmentator
def test_mos_auto_without_the_package_says_how_to_make_the_map(tmp_path, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "totalsegmentator"
                        else real(name, *a))
    images, _ = write_cases(tmp_path, ["colon_001"])
    for call in (lambda: agcrc_infer.check_totalsegmentator(),
                 lambda: agcrc_infer.run_totalsegmentator(images / "colon_001.nii.gz", tmp_path / "ts.nii.gz"),
                 lambda: predict_agcrc(make_model(tmp_path / "m"), images, "auto", tmp_path / "pred", device="cpu")):
        with pytest.raises(InputError) as info:
            call()
        message = str(info.value)
        assert "pip install TotalSegmentator" in message and "--ts" in message and "--ml" in message
        assert "\n" not in message
    assert not (tmp_path / "pred").exists() and not (tmp_path / "ts.nii.gz").exists()


FAKE_TS_CONFIG = """
import os
from pathlib import Path

def get_weights_dir():
    return Path(os.environ["FAKE_TS_WEIGHTS"])
"""
FAKE_TS_API = """
import json, os
import numpy as np
import SimpleITK as sitk

def totalsegmentator(input, output=None, ml=False, task="total", quiet=False, v1_order=False, device="gpu", **kw):
    with open(os.environ["FAKE_TS_CALLS"], "a") as fh:
        fh.write(json.dumps({"input": str(input), "ml": ml, "task": task, "v1_order": v1_order, "device": device})
                 + "\\n")
    ct = sitk.ReadImage(str(input))
    organs = np.zeros(sitk.GetArrayFromImage(ct).shape, np.uint8)
    organs[3:7, 4:12, 4:12] = 20
    out = sitk.GetImageFromArray(organs)
    out.CopyInformation(ct)
    sitk.WriteImage(out, str(output))
"""


@pytest.fixture()
def fake_totalsegmentator(tmp_path, monkeypatch):
    """An importable stand-in for the totalsegmentator package (config.get_weights_dir, python_api.totalsegmentator)
    that writes a colon box; its calls are logged."""
    pkg = tmp_path / "site" / "totalsegmentator"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "config.py").write_text(FAKE_TS_CONFIG)
    (pkg / "python_api.py").write_text(FAKE_TS_API)
    weights, calls = tmp_path / "ts_weights", tmp_path / "ts_calls.jsonl"
    weights.mkdir()
    monkeypatch.setenv("FAKE_TS_WEIGHTS", str(weights))
    monkeypatch.setenv("FAKE_TS_CALLS", str(calls))
    monkeypatch.syspath_prepend(str(pkg.parent))
    yield weights, calls
    for name in [m for m in sys.modules if m == "totalsegmentator" or m.startswith("totalsegmentator.")]:
        del sys.modules[name]


def test_mos_auto_runs_totalsegmentator_only_with_its_weights(tmp_path, fake_network, fake_totalsegmentator):
    weights, calls = fake_totalsegmentator
    model = make_model(tmp_path / "model")
    images, _ = write_cases(tmp_path, ["colon_001", "colon_002"])
    (weights / "Dataset291_TotalSegmentator_part1_organs_1559subj").mkdir()
    with pytest.raises(InputError, match=r"Dataset292_.*procto downloads nothing"):
        predict_agcrc(model, images, "auto", tmp_path / "pred", device="cpu")
    assert not calls.exists() and not (tmp_path / "pred").exists()
    for task in (292, 293, 294, 295):
        (weights / f"Dataset{task}_TotalSegmentator_part").mkdir()
    written = predict_agcrc(model, images, "auto", tmp_path / "pred", device="cpu")
    _, _, blob_a, _ = ct_and_map()
    assert [p.name for p in written] == ["colon_001.nii.gz", "colon_002.nii.gz"]
    for path in written:  # the fake map's colon is where ct_and_map's is: blob B (outside) is masked away
        seg = read_image(path)
        assert seg.same_geometry(read_image(images / path.name)) and np.array_equal(seg.array, blob_a)
    logged = [json.loads(line) for line in calls.read_text().splitlines()]
    assert [Path(c["input"]).name for c in logged] == ["colon_001.nii.gz", "colon_002.nii.gz"]
    assert all(c["ml"] is True and c["task"] == "total" and c["v1_order"] is False and c["device"] == "cpu"
               for c in logged)
    # run_totalsegmentator writes the map atomically where asked
    out = agcrc_infer.run_totalsegmentator(images / "colon_001.nii.gz", tmp_path / "maps" / "ts.nii.gz",
                                           device="cpu")
    assert out == tmp_path / "maps" / "ts.nii.gz"
    assert read_image(out).same_geometry(read_image(images / "colon_001.nii.gz"))
    assert sorted(p.name for p in out.parent.iterdir()) == ["ts.nii.gz"]
