"""``procto train|predict|cv rcsegnext``: end-to-end on MRI phantoms (slow, runs in CI), geometry, and bad input."""

from __future__ import annotations

import csv
import os
import time
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from procto.cli import app
from procto.io import Volume, read_image, write_image

runner = CliRunner()

#: The e2e cohort: sagittal T2 phantoms, rectum-centred, small enough to train RCSegNeXt-B on 2 CPU cores in minutes.
SHAPE = (16, 48, 48)
SPACING = (4.0, 1.75, 1.75)
N_TRAIN, N_TEST = 12, 6
#: 250 iterations of batch 1 (the paper: batch 2, 100 x 250): batch 1 learns these phantoms as fast per iteration at half
#: the cost.  Measured on the 2-core VM (shared, load ~4.5): rectum 0.93, tumour 0.88 mean Dice on the 6 held-out cases.
EPOCHS, ITERS, BATCH = 10, 25, 1


def _run(args: list[str]):
    result = runner.invoke(app, args, catch_exceptions=False)
    return result


def _error_line(result) -> str:
    """The one ``error: …`` line a failed command prints (and nothing like a traceback)."""
    assert "Traceback" not in result.output
    lines = [ln for ln in result.output.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1, result.output
    return lines[0]


# ------------------------------------------------------------------------------------------------------ fast
@pytest.mark.parametrize("verb", ["train", "predict", "cv"])
def test_help(verb):
    result = _run([verb, "rcsegnext", "--help"])
    assert result.exit_code == 0
    assert "rcsegnext" in result.output.lower() or "RCSegNeXt" in result.output


def test_nnunet_trainers_prints_ext_trainer_folder():
    from procto.infer.nnunet_env import TRAINER_DIR

    result = _run(["nnunet-trainers", "--path"])
    assert result.exit_code == 0
    assert result.output.strip() == str(TRAINER_DIR)
    result = _run(["nnunet-trainers"])
    assert f'export nnUNet_extTrainer="{TRAINER_DIR}"' in result.output


@pytest.fixture()
def fake_model(tmp_path) -> Path:
    """A model folder that passes the cheap checks (the network is never loaded in these tests)."""
    model = tmp_path / "nnUNetTrainerRCSegNeXt__nnUNetPlans__3d_fullres"
    (model / "fold_0").mkdir(parents=True)
    (model / "plans.json").write_text("{}")
    (model / "dataset.json").write_text('{"channel_names": {"0": "T2"}, "labels": {"background": 0, "rectum": 1, '
                                        '"tumour": 2}}')
    (model / "fold_0" / "checkpoint_final.pth").write_bytes(b"")
    return model


def test_predict_2d_image_is_a_one_line_error(tmp_path, fake_model):
    import SimpleITK as sitk

    img = tmp_path / "slice.nii.gz"
    sitk.WriteImage(sitk.GetImageFromArray(np.zeros((32, 32), np.float32)), str(img))
    result = _run(["predict", "rcsegnext", "--model", str(fake_model), "-i", str(img), "-o", str(tmp_path / "o.nii.gz"),
                   "--device", "cpu"])
    assert result.exit_code == 2
    err = _error_line(result)
    assert "slice.nii.gz" in err and "3D" in err
    assert not (tmp_path / "o.nii.gz").exists()


def test_predict_corrupt_file_is_a_one_line_error(tmp_path, fake_model):
    bad = tmp_path / "corrupt.nii.gz"
    bad.write_bytes(b"\x1f\x8b this is not a NIfTI file at all" * 10)
    result = _run(["predict", "rcsegnext", "--model", str(fake_model), "-i", str(bad), "-o", str(tmp_path / "out"),
                   "--device", "cpu"])
    assert result.exit_code == 2
    assert "corrupt.nii.gz" in _error_line(result)


def test_predict_bad_model_and_options_are_one_line_errors(tmp_path, fake_model):
    vol = tmp_path / "case.nii.gz"
    write_image(Volume(np.zeros((4, 8, 8), np.float32)), vol)
    for args in (["--model", str(tmp_path / "missing")],
                 ["--model", str(tmp_path)],  # holds no trained model... but the fake one below it
                 ["--model", str(fake_model), "--fold", "3"],
                 ["--model", str(fake_model), "--resize-to", "21,512"]):
        if args[1] == str(tmp_path):
            (fake_model / "fold_0" / "checkpoint_final.pth").unlink()
        result = _run(["predict", "rcsegnext", *args, "-i", str(vol), "-o", str(tmp_path / "o.nii.gz"),
                       "--device", "cpu"])
        assert result.exit_code == 2, (args, result.output)
        _error_line(result)
        if args[1] == str(tmp_path):
            (fake_model / "fold_0" / "checkpoint_final.pth").write_bytes(b"")


def test_output_names_follow_nnunet_convention(tmp_path):
    from procto.infer.nnunet import plan_outputs

    nn = tmp_path / "imagesTs"
    plain = tmp_path / "plain"
    for folder, names in ((nn, ["a_0000.nii.gz", "case_0001_0000.nrrd"]), (plain, ["x_0000.nii.gz", "y.mha"])):
        folder.mkdir()
        for name in names:
            write_image(Volume(np.zeros((2, 4, 4), np.float32)), folder / name)
    assert [o.name for _, o in plan_outputs(nn, tmp_path / "o")] == ["a.nii.gz", "case_0001.nrrd"]
    assert [o.name for _, o in plan_outputs(plain, tmp_path / "o")] == ["x_0000.nii.gz", "y.mha"]
    assert plan_outputs(nn / "a_0000.nii.gz", tmp_path / "o")[0][1] == tmp_path / "o" / "a.nii.gz"
    assert plan_outputs(plain / "y.mha", tmp_path / "seg.nrrd")[0][1] == tmp_path / "seg.nrrd"


def test_multichannel_inputs_are_grouped_and_counted(tmp_path):
    """nnU-Net style inputs ``case_0000``, ``case_0001``, … are one case with N channels (in channel order); the count
    is checked against the model's channels with one InputError naming the case."""
    from procto.errors import InputError
    from procto.infer.nnunet import plan_outputs

    folder = tmp_path / "imagesTs"
    folder.mkdir()
    for name in ("b_0001.nii.gz", "b_0000.nii.gz", "a_0000.nii.gz", "a_0002.nii.gz", "a_0001.nii.gz",
                 "b_0002.nii.gz"):
        write_image(Volume(np.zeros((2, 4, 4), np.float32)), folder / name)
    cases = plan_outputs(folder, tmp_path / "o", channels=3)
    assert [[p.name for p in c.inputs] for c in cases] == [["a_0000.nii.gz", "a_0001.nii.gz", "a_0002.nii.gz"],
                                                          ["b_0000.nii.gz", "b_0001.nii.gz", "b_0002.nii.gz"]]
    assert [c.output.name for c in cases] == ["a.nii.gz", "b.nii.gz"]
    # one file of a case brings its other channels along
    [case] = plan_outputs(folder / "a_0001.nii.gz", tmp_path / "seg.nii.gz", channels=3)
    assert [p.name for p in case.inputs] == ["a_0000.nii.gz", "a_0001.nii.gz", "a_0002.nii.gz"]
    (folder / "b_0002.nii.gz").unlink()
    with pytest.raises(InputError, match=r"case 'b' has 2 channel image\(s\).*expects 3"):
        plan_outputs(folder, tmp_path / "o", channels=3)
    assert not (tmp_path / "o").exists()
    # for a one-channel model numbered names are cases, not channels (``pat_0000``, ``pat_0001``: two patients)
    single = plan_outputs(folder, tmp_path / "o", channels=1)
    assert [c.output.name for c in single] == [p.name for p in sorted(folder.iterdir())]
    assert all(len(c.inputs) == 1 for c in single)


def test_predict_refuses_output_it_cannot_write(tmp_path, fake_model):
    """``-o out.png`` is refused (not silently made a folder); an output below a regular file is one line, exit 2;
    nothing is created."""
    vol = tmp_path / "case.nii.gz"
    write_image(Volume(np.zeros((4, 8, 8), np.float32)), vol)
    blocker = tmp_path / "file"
    blocker.write_text("x")
    for out in (tmp_path / "out.png", blocker / "seg.nii.gz", blocker / "folder"):
        before = sorted(tmp_path.rglob("*"))
        result = _run(["predict", "rcsegnext", "--model", str(fake_model), "-i", str(vol), "-o", str(out),
                       "--device", "cpu"])
        assert result.exit_code == 2, result.output
        assert str(out) in _error_line(result)
        assert sorted(tmp_path.rglob("*")) == before


def test_predict_finds_fold_all_without_fold_option(monkeypatch, tmp_path, fake_model):
    """A model trained on fold ``all`` (what the demo trains) predicts without ``--fold all``."""
    from procto.infer.nnunet import NNUNetPredictor

    (fake_model / "fold_0").rename(fake_model / "fold_all")
    assert NNUNetPredictor(fake_model, device="cpu").folds == ["all"]
    monkeypatch.setattr(NNUNetPredictor, "probabilities",
                        lambda self, v: np.stack([np.ones(v.shape), np.zeros(v.shape), np.zeros(v.shape)]))
    vol = tmp_path / "case_0000.nii.gz"
    write_image(Volume(np.zeros((4, 8, 8), np.float32)), vol)
    result = _run(["predict", "rcsegnext", "--model", str(fake_model), "-i", str(vol), "-o", str(tmp_path / "seg"),
                   "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert read_image(tmp_path / "seg" / "case.nii.gz").same_geometry(read_image(vol))


def test_train_rejects_a_folder_that_is_not_an_nnunet_dataset(tmp_path):
    (tmp_path / "Dataset123_X").mkdir()
    for data in (tmp_path / "nope", tmp_path, tmp_path / "Dataset123_X"):
        result = _run(["train", "rcsegnext", "--data", str(data), "--out", str(tmp_path / "o"), "--device", "cpu"])
        assert result.exit_code == 2
        _error_line(result)


def test_resize_to_round_trip_keeps_geometry(monkeypatch, tmp_path, fake_model):
    """``--resize-to``: the image is resized before inference and the class probabilities back to the input grid;
    the output has the input's exact geometry and, for a model that reproduces its input labels, the same labels."""
    from procto.infer.nnunet import RCSegNeXtPredictor

    rng = np.random.default_rng(0)
    labels = np.zeros((21, 64, 64), np.uint8)
    labels[6:15, 16:48, 20:44] = 1
    labels[9:12, 24:36, 26:36] = 2
    image = labels * 100.0 + rng.normal(0, 5, labels.shape)
    direction = np.array([[0, 0, 1], [0, 1, 0], [-1, 0, 0]], float)  # sagittal-like, not the identity
    vol = Volume(image.astype(np.float32), (3.3, 0.234, 0.234), (12.0, -40.5, 7.25), direction)
    seen = {}

    def fake_probabilities(self, v):  # "network": thresholds the image; records the grid it was given
        seen["shape"], seen["spacing"] = v.shape, v.spacing
        a = v.array
        return np.stack([(a < 50), (a >= 50) & (a < 150), (a >= 150)]).astype(np.float32)

    monkeypatch.setattr(RCSegNeXtPredictor, "probabilities", fake_probabilities)
    pred = RCSegNeXtPredictor(fake_model, [0], device="cpu")
    out = pred.predict(vol, resize_to=(21, 32, 32))
    assert seen["shape"] == (21, 32, 32)
    assert np.allclose(seen["spacing"], (3.3, 0.468, 0.468))
    assert out.shape == vol.shape and out.spacing == vol.spacing and out.origin == vol.origin
    assert np.array_equal(out.direction, vol.direction)
    for k in (1, 2):
        inter = np.logical_and(out.array == k, labels == k).sum()
        assert 2 * inter / ((out.array == k).sum() + (labels == k).sum()) > 0.85
    # and through the file API: written file keeps the input's geometry
    write_image(vol, tmp_path / "big.nii.gz")
    from procto.infer.nnunet import predict

    [written] = predict(fake_model, tmp_path / "big.nii.gz", tmp_path / "seg", folds=[0], resize_to=(21, 32, 32),
                        device="cpu")
    assert written == tmp_path / "seg" / "big.nii.gz"
    back = read_image(written)
    assert back.same_geometry(read_image(tmp_path / "big.nii.gz"))


# ------------------------------------------------------------------------------------------------------ e2e
@pytest.mark.slow
@pytest.mark.timeout(1500)
def test_train_predict_cv_end_to_end_on_mri_phantoms(tmp_path):
    """Train RCSegNeXt-B with ``procto train rcsegnext`` on MRI phantoms (CPU, a few minutes), predict held-out
    phantoms with ``procto predict rcsegnext``: rectum Dice >= 0.80, tumour Dice >= 0.70, outputs in the input's
    geometry; then ``procto cv rcsegnext`` reuses the trained fold and writes the per-fold table."""
    from procto.metrics import dice
    from procto.phantom import write_cohort

    t0 = time.perf_counter()
    data = write_cohort(tmp_path / "raw", N_TRAIN, "mri", seed=0, n_test=N_TEST, dataset_id=992, name="E2E",
                        shape=SHAPE, spacing=SPACING, center="rectum")
    out = tmp_path / "runs"
    os.environ.setdefault("nnUNet_def_n_proc", "2")
    result = runner.invoke(app, ["train", "rcsegnext", "--data", str(data), "--fold", "0", "--epochs", str(EPOCHS),
                                 "--iters", str(ITERS), "--val-iters", "1", "--patch", "16,48,48", "--batch-size",
                                 str(BATCH), "--device", "cpu", "--out", str(out), "--workers", "1", "--threads", "1",
                                 "--no-validation"])
    assert result.exit_code == 0, result.output
    t_train = time.perf_counter() - t0
    model_dir = out / "nnUNet_results" / data.name / "nnUNetTrainerRCSegNeXt__nnUNetPlans__3d_fullres"
    assert (model_dir / "fold_0" / "checkpoint_final.pth").is_file()

    pred_dir = tmp_path / "pred"
    result = runner.invoke(app, ["predict", "rcsegnext", "--model", str(out), "-i", str(data / "imagesTs"),
                                 "-o", str(pred_dir), "--fold", "0", "--device", "cpu", "--threads", "1"])
    assert result.exit_code == 0, result.output
    for chatter in ("not found in nnunetv2", "perform_everything_on_device", "Searching in"):
        assert chatter not in result.output  # nnU-Net's own messages stay out of the terminal
    t_pred = time.perf_counter() - t0 - t_train

    scores = []
    for img_path in sorted((data / "imagesTs").glob("*_0000.nii.gz")):
        case = img_path.name[: -len("_0000.nii.gz")]
        image, pred = read_image(img_path), read_image(pred_dir / f"{case}.nii.gz")
        ref = read_image(data / "labelsTs" / f"{case}.nii.gz")
        assert pred.shape == image.shape and pred.spacing == image.spacing and pred.origin == image.origin
        assert np.array_equal(pred.direction, image.direction)
        assert set(np.unique(pred.array)) <= {0, 1, 2}
        scores.append([dice(pred.array == k, ref.array == k) for k in (1, 2)])
    rect, tum = np.mean(scores, axis=0)
    print(f"\nheld-out Dice over {len(scores)} cases: rectum {rect:.3f}, tumour {tum:.3f} "
          f"(per case {np.round(scores, 3).tolist()}); train {t_train:.0f} s, predict {t_pred:.0f} s")
    assert rect >= 0.80 and tum >= 0.70

    # --resize-to on a real model: output in the input's geometry
    one = sorted((data / "imagesTs").glob("*_0000.nii.gz"))[0]
    result = runner.invoke(app, ["predict", "rcsegnext", "--model", str(model_dir), "-i", str(one),
                                 "-o", str(tmp_path / "resized.nii.gz"), "--resize-to", "16,32,32", "--no-mirror",
                                 "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert read_image(tmp_path / "resized.nii.gz").same_geometry(read_image(one))

    # bad input with a real model: one line, exit status 2
    bad = tmp_path / "bad.nii.gz"
    bad.write_bytes(b"not an image")
    result = runner.invoke(app, ["predict", "rcsegnext", "--model", str(model_dir), "-i", str(bad), "-o",
                                 str(tmp_path / "x.nii.gz"), "--device", "cpu"])
    assert result.exit_code == 2
    _error_line(result)

    # cross-validation table, reusing the trained fold 0 (only nnU-Net's validation of its 2-3 cases runs)
    csv_path = tmp_path / "cv.csv"
    result = runner.invoke(app, ["cv", "rcsegnext", "--data", str(data), "--folds", "0", "--epochs", str(EPOCHS),
                                 "--iters", str(ITERS), "--patch", "16,48,48", "--batch-size", str(BATCH), "--device",
                                 "cpu", "--out", str(out), "--csv", str(csv_path), "--workers", "1", "--threads", "1"])
    assert result.exit_code == 0, result.output
    assert "Fold0 Rect" in result.output and "Avg Rectum" in result.output and "HD95" in result.output
    rows = list(csv.DictReader(csv_path.open()))
    assert [r["fold"] for r in rows] == ["0", "mean", "sd"]
    assert {"rectum_dice", "tumour_dice", "rectum_hd95", "tumour_asd"} <= set(rows[0])
    assert 0.0 <= float(rows[0]["rectum_dice"]) <= 1.0
    assert (tmp_path / "cv_cases.csv").is_file()
    print(f"end-to-end wall time {time.perf_counter() - t0:.0f} s")
