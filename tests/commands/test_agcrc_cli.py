"""``procto prepare|pretrain|train|predict|cv agcrc``: help, bad input as one line for ``prepare agcrc`` and
``predict agcrc`` (organ map of another geometry, ids outside the scheme, CT with NaN, 2D file), the data set written
from an MSD-Colon layout and from phantoms, and how the training verbs call :mod:`procto.train.agcrc` (with the
training functions replaced; the real pipeline runs in the end-to-end tests)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from procto.cli import app
from procto.io import Volume, read_image, write_image

runner = CliRunner()

SHAPE = (6, 20, 20)
SPACING = (5.0, 1.5, 1.5)


def _run(args: list[str]):
    return runner.invoke(app, [str(a) for a in args], catch_exceptions=False)


def _one_error_line(result, *names: str) -> str:
    """Exit status 2 and exactly one (non-empty) line, ``error: <file>: <problem>``, naming each of ``names``."""
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    lines = [ln for ln in result.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), result.output
    for name in names:
        assert name in lines[0], lines[0]
    return lines[0]


def _tree(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


# ------------------------------------------------------------------------------------------------------ fixtures
def _ct(shape=SHAPE, spacing=SPACING) -> Volume:
    ct = np.full(shape, -40.0, np.float32)
    ct[2:4, 8:12, 8:12] = 150.0
    return Volume(ct, spacing)


def _organs(shape=SHAPE, spacing=SPACING) -> Volume:
    organs = np.zeros(shape, np.uint8)
    organs[1:5, 5:15, 5:15] = 20  # colon
    organs[1:5, 0:3, 0:3] = 18  # small bowel
    return Volume(organs, spacing)


def _tumour() -> Volume:
    label = np.zeros(SHAPE, np.uint8)
    label[2:4, 8:12, 8:12] = 1
    return Volume(label, SPACING)


@pytest.fixture()
def msd(tmp_path) -> tuple[Path, Path]:
    """A two-case MSD Task10_Colon layout and its TotalSegmentator maps (``ts/<case>.nii.gz``)."""
    task, ts = tmp_path / "Task10_Colon", tmp_path / "ts"
    training = []
    for case in ("colon_001", "colon_002"):
        write_image(_ct(), task / "imagesTr" / f"{case}.nii.gz")
        write_image(_tumour(), task / "labelsTr" / f"{case}.nii.gz")
        write_image(_organs(), ts / f"{case}.nii.gz")
        training.append({"image": f"./imagesTr/{case}.nii.gz", "label": f"./labelsTr/{case}.nii.gz"})
    (task / "dataset.json").write_text(json.dumps({"name": "Colon", "modality": {"0": "CT"},
                                                   "labels": {"0": "background", "1": "colon cancer primaries"},
                                                   "training": training}))
    return task, ts


def _write_2d(path: Path) -> None:
    import SimpleITK as sitk

    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(sitk.GetImageFromArray(np.zeros((20, 20), np.float32)), str(path))


def _write_nan_ct(path: Path) -> None:
    """A NIfTI CT with NaN voxels (procto's writer refuses nothing, but write it through SimpleITK directly)."""
    import SimpleITK as sitk

    arr = _ct().array.copy()
    arr[1, 2, 3] = np.nan
    img = sitk.GetImageFromArray(arr)
    img.SetSpacing(SPACING[::-1])
    sitk.WriteImage(img, str(path))


#: The four bad inputs of the Done-when list: (what is broken, which file, how it is broken).
BAD_INPUTS = {
    "organ map of another geometry": ("ts", lambda p: write_image(_organs(spacing=(5.0, 1.5, 1.6)), p)),
    "ids outside the scheme": ("ts", lambda p: write_image(_organs().with_array(
        np.where(_organs().array == 18, 130, _organs().array).astype(np.uint8)), p)),
    "CT with NaN": ("ct", _write_nan_ct),
    "2D file": ("ct", _write_2d),
}
EXPECTED = {"organ map of another geometry": "spacing", "ids outside the scheme": "130",
            "CT with NaN": "NaN", "2D file": "3D"}


# ------------------------------------------------------------------------------------------------------ help, enums
@pytest.mark.parametrize("verb", ["prepare", "pretrain", "train", "predict", "cv"])
def test_help(verb):
    result = _run([verb, "agcrc", "--help"])
    assert result.exit_code == 0 and ("AG-CRC" in result.output or "AG-SSL" in result.output)


def test_cli_choices_are_the_training_modules():
    agcrc_train = pytest.importorskip("procto.train.agcrc")
    from procto.cli.agcrc import Config, Sampling

    assert tuple(c.value for c in Config) == tuple(agcrc_train.AGCRC_CONFIGS)
    assert tuple(s.value for s in Sampling) == tuple(agcrc_train.SAMPLINGS)
    assert agcrc_train.PAPER_TARGET_SPACING == (5.0, 0.78, 0.78)


# ------------------------------------------------------------------------------------------------------ prepare
def test_prepare_from_msd_writes_the_dataset(tmp_path, msd):
    task, ts = msd
    out = tmp_path / "raw"
    result = _run(["prepare", "agcrc", "--msd", task, "--ts", ts, "--out", out, "--id", 42, "--dilation", 1])
    assert result.exit_code == 0, result.output
    root = out / "Dataset042_AGCRC"
    meta = json.loads((root / "dataset.json").read_text())
    assert meta["channel_names"] == {"0": "CT", "1": "noNorm", "2": "noNorm"}
    assert meta["procto_agcrc"]["dilation"] == 1 and meta["procto_agcrc"]["mos_scheme"] == "ts_v2"
    assert _tree(root / "imagesTr") == [f"colon_00{i}_000{c}.nii.gz" for i in (1, 2) for c in (0, 1, 2)]
    label = read_image(root / "labelsTr" / "colon_001.nii.gz")
    assert np.array_equal(label.array, _tumour().array)
    assert "procto train agcrc" in result.output
    # the same folder again: one line, nothing changed
    before = _tree(out)
    _one_error_line(_run(["prepare", "agcrc", "--msd", task, "--ts", ts, "--out", out, "--id", 42]), str(root))
    assert _tree(out) == before
    # the AG-SSL data set: bowel walls as labels, default id 511
    result = _run(["prepare", "agcrc", "--msd", task, "--ts", ts, "--out", out, "--wall"])
    assert result.exit_code == 0, result.output
    wall = json.loads((out / "Dataset511_AGCRCWall" / "dataset.json").read_text())
    assert wall["labels"] == {"background": 0, "bowel_wall": 1} and "procto pretrain agcrc" in result.output


def test_prepare_from_phantoms(tmp_path):
    out = tmp_path / "raw"
    result = _run(["prepare", "agcrc", "--phantoms", 2, "--seed", 0, "--shape", "16,64,64", "--spacing", "5,3,3",
                   "--phantom-word", "--mos-errors", "delete_tumour", "--out", out])
    assert result.exit_code == 0, result.output
    root = out / "Dataset510_AGCRC"
    meta = json.loads((root / "dataset.json").read_text())
    assert meta["numTraining"] == 2 and meta["procto_agcrc"]["word_maps"] == 2
    # phantom label 2 (tumour) became label 1; the rectum wall (1) is background
    from procto.phantom import make_case

    case = make_case(0, "ct", shape=(16, 64, 64), spacing=(5.0, 3.0, 3.0))
    label = read_image(root / "labelsTr" / "phantom_ct_0.nii.gz")
    assert np.array_equal(label.array, (case.label.array == 2).astype(np.uint8)) and label.array.sum() > 0
    result = _run(["prepare", "agcrc", "--phantoms", 1, "--mos-errors", "bogus", "--out", tmp_path / "raw2"])
    _one_error_line(result, "bogus")
    assert not (tmp_path / "raw2").exists()


def test_prepare_needs_one_source(tmp_path, msd):
    task, ts = msd
    out = tmp_path / "raw"
    for args in ([], ["--msd", task], ["--msd", task, "--ts", ts, "--phantoms", 1],
                 ["--msd", task, "--ts", tmp_path / "nope"], ["--phantoms", 1, "--ts", ts],
                 ["--msd", task, "--ts", ts, "--shape", "8,32,32"]):
        _one_error_line(_run(["prepare", "agcrc", *args, "--out", out]))
    assert not out.exists()


@pytest.mark.parametrize("bad", sorted(BAD_INPUTS))
def test_prepare_bad_input_is_one_line_and_writes_nothing(tmp_path, msd, bad):
    task, ts = msd
    which, write = BAD_INPUTS[bad]
    path = (ts if which == "ts" else task / "imagesTr") / "colon_002.nii.gz"  # the second case: the first is fine
    path.unlink()
    write(path)
    out = tmp_path / "raw"
    out.mkdir()
    line = _one_error_line(_run(["prepare", "agcrc", "--msd", task, "--ts", ts, "--out", out]), str(path))
    assert EXPECTED[bad] in line
    assert _tree(out) == []  # no data set, no staging folder


# ------------------------------------------------------------------------------------------------------ predict
@pytest.fixture()
def fake_model(tmp_path) -> Path:
    """An AF-trained AG-CRC model folder that passes the cheap checks (the network is never loaded here)."""
    from procto.preprocess.agcrc import agcrc_dataset_json

    model = tmp_path / "nnUNetTrainerAGCRC__nnUNetPlans__3d_fullres"
    (model / "fold_0").mkdir(parents=True)
    (model / "plans.json").write_text(json.dumps(
        {"configurations": {"3d_fullres": {"procto_agcrc": {"config": "MPSF", "af_loss": True}}}}))
    (model / "dataset.json").write_text(json.dumps(agcrc_dataset_json("AGCRC", 2)))
    (model / "fold_0" / "checkpoint_final.pth").write_bytes(b"")
    return model


@pytest.fixture()
def threshold_network(monkeypatch):
    """nnU-Net's probabilities replaced by "tumour where CT > 100 HU"."""
    from procto.infer.nnunet import NNUNetPredictor

    def probabilities(self, image):
        fg = (np.asarray(self.channels(image)[0].array) > 100).astype(np.float32)
        return np.stack([1 - fg, fg])

    monkeypatch.setattr(NNUNetPredictor, "probabilities", probabilities)


def test_predict_writes_tumour_maps_in_the_ct_geometry(tmp_path, msd, fake_model, threshold_network):
    task, ts = msd
    images = task / "imagesTr"
    out = tmp_path / "pred"
    result = _run(["predict", "agcrc", "--model", fake_model, "--ct", images, "--ts", ts, "--out", out,
                   "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert _tree(out) == ["colon_001.nii.gz", "colon_002.nii.gz"]
    for name in ("colon_001.nii.gz", "colon_002.nii.gz"):
        seg, ct = read_image(out / name), read_image(images / name)
        assert seg.same_geometry(ct) and np.array_equal(seg.array, _tumour().array)
    # one CT to one file, with a WORD map
    word = tmp_path / "word.nii.gz"
    write_image(_organs().with_array(np.zeros(SHAPE, np.uint8)), word)
    result = _run(["predict", "agcrc", "-m", fake_model, "-i", images / "colon_001.nii.gz", "--ts",
                   ts / "colon_001.nii.gz", "--word", word, "-o", tmp_path / "one.nii.gz", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert read_image(tmp_path / "one.nii.gz").same_geometry(read_image(images / "colon_001.nii.gz"))


@pytest.mark.parametrize("bad", sorted(BAD_INPUTS))
def test_predict_bad_input_is_one_line_and_writes_nothing(tmp_path, msd, fake_model, bad):
    task, ts = msd
    which, write = BAD_INPUTS[bad]
    path = (ts if which == "ts" else task / "imagesTr") / "colon_002.nii.gz"
    path.unlink()
    write(path)
    out = tmp_path / "pred"
    for ct, maps, dst in ((task / "imagesTr", ts, out),  # the second of two cases is bad
                          (task / "imagesTr" / "colon_002.nii.gz", ts / "colon_002.nii.gz", out / "seg.nii.gz")):
        result = _run(["predict", "agcrc", "--model", fake_model, "--ct", ct, "--ts", maps, "--out", dst,
                       "--device", "cpu"])
        assert EXPECTED[bad] in _one_error_line(result, str(path))
        assert not out.exists()


def test_predict_organ_map_options(tmp_path, msd, fake_model, monkeypatch):
    import importlib.util

    task, ts = msd
    ct = task / "imagesTr" / "colon_001.nii.gz"
    out = tmp_path / "seg.nii.gz"
    base = ["predict", "agcrc", "--model", fake_model, "--ct", ct, "--out", out, "--device", "cpu"]
    line = _one_error_line(_run(base))  # neither --ts nor --mos
    assert "--ts" in line and "--mos auto" in line and "TotalSegmentator -i" in line
    _one_error_line(_run([*base, "--ts", ts / "colon_001.nii.gz", "--mos", "auto"]))  # both
    _one_error_line(_run([*base, "--mos", "manual"]), "auto")
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "totalsegmentator"
                        else real(name, *a))
    line = _one_error_line(_run([*base, "--mos", "auto"]))
    assert "pip install TotalSegmentator" in line and "--ts <map>" in line
    assert not out.exists()


def test_predict_refuses_a_model_that_is_not_agcrc(tmp_path, msd, fake_model):
    task, ts = msd
    meta = json.loads((fake_model / "dataset.json").read_text())
    del meta["procto_agcrc"]
    (fake_model / "dataset.json").write_text(json.dumps(meta))
    result = _run(["predict", "agcrc", "--model", fake_model, "--ct", task / "imagesTr", "--ts", ts, "--out",
                   tmp_path / "pred", "--device", "cpu"])
    _one_error_line(result, "dataset.json", "not an AG-CRC model")


# ------------------------------------------------------------------------------------------------------ training
class _Result:
    def __init__(self, root: Path):
        self.model_dir = root / "model"
        self.fold_dir = self.model_dir / "fold_0"
        self.checkpoint = self.fold_dir / "checkpoint_final.pth"
        self.trainer, self.epochs, self.resumed = "nnUNetTrainerAGCRC", 3, False


@pytest.fixture()
def recorded(monkeypatch, tmp_path):
    """procto.train.agcrc's entry points replaced by recorders (the real ones are the lead's end-to-end test's)."""
    agcrc_train = pytest.importorskip("procto.train.agcrc")
    calls: list = []

    def fake(name):
        def run(data, fold=0, **kw):
            calls.append((name, Path(data), fold, kw))
            if kw.get("on_epoch"):
                kw["on_epoch"](1, 3, {"train_losses": 0.5, "dice_per_class_or_region": [0.4]})
            return _Result(tmp_path)
        return run

    monkeypatch.setattr(agcrc_train, "train_agcrc", fake("train"))
    monkeypatch.setattr(agcrc_train, "pretrain_agcrc", fake("pretrain"))
    return calls


def test_train_and_pretrain_pass_the_options(tmp_path, recorded):
    data = tmp_path / "Dataset510_AGCRC"
    result = _run(["train", "agcrc", "--data", data, "--config", "mpsf", "--pretrained", tmp_path / "ssl.pth",
                   "--epochs", 2, "--iters", 3, "--patch", "8,32,32", "--target-spacing", "native", "--fold", 1,
                   "--device", "cpu", "--out", tmp_path / "runs", "--no-validation"])
    assert result.exit_code == 0, result.output
    name, path, fold, kw = recorded[-1]
    assert (name, path, fold) == ("train", data, 1)
    assert kw["config"] == "MPSF" and kw["pretrained"] == tmp_path / "ssl.pth" and kw["sampling"] is None
    assert kw["target_spacing"] is None and kw["patch"] == (8, 32, 32) and kw["epochs"] == 2 and kw["iters"] == 3
    assert kw["device"] == "cpu" and kw["out"] == tmp_path / "runs" and kw["validate"] is False
    assert "M+P+S+F" in result.output and str(tmp_path / "model") in result.output
    result = _run(["train", "agcrc", "--data", data, "--config", "M", "--sampling", "uniform_ooi"])
    assert result.exit_code == 0, result.output
    kw = recorded[-1][3]
    assert kw["sampling"] == "uniform_ooi" and kw["target_spacing"] == (5.0, 0.78, 0.78)
    _one_error_line(_run(["train", "agcrc", "--data", data, "--target-spacing", "5,0.78"]), "--target-spacing")
    result = _run(["pretrain", "agcrc", "--data", tmp_path / "Dataset511_AGCRCWall", "--epochs", 1])
    assert result.exit_code == 0, result.output
    name, _, fold, kw = recorded[-1]
    assert name == "pretrain" and fold == "all" and kw["target_spacing"] == (5.0, 0.78, 0.78)
    assert "procto train agcrc --pretrained" in result.output


def test_train_errors_of_the_training_module_are_one_line(tmp_path):
    """The real procto.train.agcrc refuses a folder that is not an AG-CRC data set before any work."""
    pytest.importorskip("procto.train.agcrc")
    (tmp_path / "Dataset123_X").mkdir()
    for verb in ("train", "pretrain", "cv"):
        for data in (tmp_path / "nope", tmp_path / "Dataset123_X"):
            _one_error_line(_run([verb, "agcrc", "--data", data, "--out", tmp_path / "o", "--device", "cpu",
                                  "--config" if verb != "pretrain" else "--epochs",
                                  "MP" if verb != "pretrain" else 1]))
    assert not (tmp_path / "o").exists()


def test_cv_prints_the_papers_table_and_writes_the_csvs(tmp_path, monkeypatch):
    agcrc_train = pytest.importorskip("procto.train.agcrc")
    from procto.metrics import fold_table

    metrics = ("dice", "precision", "recall", "nsd", "hd95")
    rows = [{"fold": f, "case": f"c{f}{i}", "dice": d, "precision": d + 0.1, "recall": d - 0.1, "nsd": d + 0.05,
             "hd95": h} for f, (d, h) in enumerate([(0.5, 20.0), (0.7, 40.0)]) for i in range(2)]
    seen = {}

    def fake_cv(data, folds, **kw):
        seen.update(kw, folds=list(folds))
        for f in folds:
            kw["on_fold"](f, "train")
            kw["on_fold"](f, "evaluate")
        return agcrc_train.AGCRCCVResult(rows, fold_table(rows, list(metrics)), list(folds), tmp_path / "model")

    monkeypatch.setattr(agcrc_train, "cross_validate_agcrc", fake_cv)
    csv_path = tmp_path / "cv.csv"
    result = _run(["cv", "agcrc", "--data", tmp_path / "Dataset510_AGCRC", "--folds", "0,1", "--config", "MPF",
                   "--csv", csv_path])
    assert result.exit_code == 0, result.output
    assert seen["folds"] == [0, 1] and seen["config"] == "MPF" and seen["target_spacing"] == (5.0, 0.78, 0.78)
    for column in ("Dice", "PR", "RE", "NSD", "HD95", "Fold 0", "Fold 1", "AG-CRC (M+P+F)", "(paper, MSD)"):
        assert column in result.output
    table = {ln.split("│")[1].strip(): [c.strip() for c in ln.split("│")[2:-1]]
             for ln in result.output.splitlines() if ln.count("│") == 7}
    assert table["AG-CRC (M+P+F)"] == ["0.6000", "0.7000", "0.5000", "0.6500", "30.00"]  # means over the folds
    assert table["± sd"] == ["0.1414", "0.1414", "0.1414", "0.1414", "14.14"]
    assert table["Fold 1"] == ["0.7000", "0.8000", "0.6000", "0.7500", "40.00"]
    assert "0.5086" in result.output  # Table III's AG-CRC row
    summary = list(csv.DictReader(csv_path.open()))
    assert [r["fold"] for r in summary] == ["0", "1", "mean", "sd"]
    assert abs(float(summary[2]["dice"]) - 0.6) < 1e-9
    assert len(list(csv.DictReader((tmp_path / "cv_cases.csv").open()))) == 4
    result = _run(["cv", "agcrc", "--data", tmp_path / "Dataset510_AGCRC", "--folds", "0,1", "--paper", "none",
                   "--csv", csv_path])
    assert result.exit_code == 0 and "(paper)" not in result.output


# ------------------------------------------------------------------------------------------------------ real model
@pytest.mark.slow
@pytest.mark.timeout(900)
def test_prepare_train_predict_with_a_real_model(tmp_path, monkeypatch):
    """The verbs on a real (barely trained) M+P+F model, CPU, about a minute: ``prepare agcrc --phantoms`` →
    ``train agcrc`` (1 epoch of 2 iterations) → ``predict agcrc`` on held-out phantoms: tumour label maps in each CT's
    geometry, every tumour voxel inside the OOI (AF model), equal to the unmasked prediction restricted to the OOI;
    inference loads no procto.train module.  The Dice bar is the lead's end-to-end test's."""
    import subprocess
    import sys

    pytest.importorskip("procto.train.agcrc")
    from procto.infer.agcrc import AGCRCPredictor
    from procto.phantom import agcrc_cases

    monkeypatch.setenv("nnUNet_def_n_proc", "1")
    raw, runs = tmp_path / "raw", tmp_path / "runs"
    result = _run(["prepare", "agcrc", "--phantoms", 6, "--shape", "16,64,64", "--spacing", "5,3,3", "--out", raw])
    assert result.exit_code == 0, result.output
    result = _run(["train", "agcrc", "--data", raw / "Dataset510_AGCRC", "--config", "MPF", "--epochs", 1, "--iters", 2,
                   "--val-iters", 1, "--patch", "16,64,64", "--batch-size", 1, "--device", "cpu", "--workers", 0,
                   "--threads", 1, "--target-spacing", "native", "--out", runs, "--no-validation"])
    assert result.exit_code == 0, result.output
    for case in agcrc_cases([10, 11], shape=(16, 64, 64), spacing=(5.0, 3.0, 3.0)):
        write_image(case.ct, tmp_path / "ct" / f"{case.case_id}.nii.gz")
        write_image(case.mos_ts, tmp_path / "ts" / f"{case.case_id}.nii.gz")
    result = _run(["predict", "agcrc", "--model", runs, "--ct", tmp_path / "ct", "--ts", tmp_path / "ts", "--out",
                   tmp_path / "pred", "--device", "cpu", "--threads", 1, "--no-mirror"])
    assert result.exit_code == 0, result.output
    masked = AGCRCPredictor(runs, device="cpu", mirror=False)
    unmasked = AGCRCPredictor(runs, device="cpu", mirror=False, mask_ooi=False)
    assert masked.mask_ooi and masked.af_loss
    for name in ("phantom_ct_10.nii.gz", "phantom_ct_11.nii.gz"):
        seg, ct = read_image(tmp_path / "pred" / name), read_image(tmp_path / "ct" / name)
        assert seg.same_geometry(ct) and set(np.unique(seg.array)) <= {0, 1}
        ooi = masked.inputs(ct, tmp_path / "ts" / name)[2].array > 0
        assert not np.any(seg.array[~ooi])
        free = unmasked.predict(ct, tmp_path / "ts" / name).array
        assert np.array_equal(seg.array, (free > 0) & ooi)
    script = ("import sys; from procto.infer.agcrc import predict_agcrc; "
              f"predict_agcrc({str(runs)!r}, {str(tmp_path / 'ct')!r}, {str(tmp_path / 'ts')!r}, "
              f"{str(tmp_path / 'pred2')!r}, device='cpu', mirror=False); "
              "print(sorted(m for m in sys.modules if m.startswith('procto.train')))")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "[]"
    assert np.array_equal(read_image(tmp_path / "pred2" / "phantom_ct_10.nii.gz").array,
                          read_image(tmp_path / "pred" / "phantom_ct_10.nii.gz").array)
