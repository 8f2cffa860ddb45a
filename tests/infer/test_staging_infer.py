"""T2/T3 staging inference (``predict_stage``) and the staging CLI verbs (train, predict, help)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from procto.cli import app
from procto.errors import InputError
from procto.infer.staging import predict_stage
from procto.io import write_image
from procto.train.staging import StagingConfig, build_staging_model, prepare_sample, train_staging
from procto.util import torch_threads

# the toy cases and folder writer of the training tests (same folder layout as procto phantom writes)
_spec = importlib.util.spec_from_file_location("_staging_train_tests", Path(__file__).parents[1] / "train" /
                                               "test_staging_train.py")
_train_tests = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_train_tests)
_toy_case, _write_folder, TINY = _train_tests._toy_case, _train_tests._write_folder, _train_tests.TINY

runner = CliRunner()


pytestmark = pytest.mark.usefixtures("single_thread")  # deterministic results (tests/conftest.py)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("staging_model")
    config = StagingConfig(**{**TINY, "slice_epochs": 0, "epochs": 1})
    samples = [prepare_sample(f"c{i}", *_toy_case(i, ("T2", "T3")[i % 2]), ("T2", "T3")[i % 2], config)
               for i in range(4)]
    with torch_threads(1):  # a module fixture: the function-scoped single_thread does not reach it
        result = train_staging(samples, config, out)
    return result.checkpoint


def test_predict_stage_from_checkpoint_and_model(checkpoint: Path) -> None:
    image, label = _toy_case(11, "T3")
    result = predict_stage(checkpoint, image, label)
    assert set(result) == {"t3_probability", "label"}
    assert 0.0 <= result["t3_probability"] <= 1.0
    assert result["label"] == ("T3" if result["t3_probability"] >= 0.5 else "T2")
    # the same model object with its config gives the same answer; the mask may be a plain array
    from procto.infer.staging import StagingModelConfig, load_staging_model

    model, config = load_staging_model(checkpoint)
    assert isinstance(config, StagingModelConfig) and config.size == TINY["size"] and config.depth == TINY["depth"]
    again = predict_stage(model, image, label.array, config=config)
    assert again["t3_probability"] == pytest.approx(result["t3_probability"], abs=1e-6)
    # the training side loads the same model; its training config works as the model's config too
    from procto.train.staging import load_checkpoint

    trained, train_config, _ = load_checkpoint(checkpoint)
    for a, b in zip(model.state_dict().values(), trained.state_dict().values()):
        assert torch.equal(a, b)
    assert predict_stage(trained, image, label, config=train_config)["t3_probability"] == pytest.approx(
        result["t3_probability"], abs=1e-6)
    # threshold and TTA switches
    assert predict_stage(checkpoint, image, label, threshold=0.0)["label"] == "T3"
    assert predict_stage(checkpoint, image, label, threshold=1.01)["label"] == "T2"
    no_tta = predict_stage(checkpoint, image, label, tta=False)["t3_probability"]
    assert 0.0 <= no_tta <= 1.0


def test_predict_stage_without_mask_warns(checkpoint: Path) -> None:
    image, _ = _toy_case(12, "T2")
    with pytest.warns(UserWarning, match="whole field of view"):
        result = predict_stage(checkpoint, image)
    assert 0.0 <= result["t3_probability"] <= 1.0


def test_predict_stage_default_config_model() -> None:
    model = build_staging_model(StagingConfig(**TINY))  # a bare StagingNet: the default preprocessing
    image, label = _toy_case(13, "T2", shape=(8, 64, 64))
    with pytest.warns(UserWarning, match="default preprocessing"):  # no config given: said, not silent
        result = predict_stage(model, image, label)
    assert result["label"] in ("T2", "T3")


def test_predict_stage_bad_input(checkpoint: Path, tmp_path: Path) -> None:
    image, label = _toy_case(14, "T2")
    with pytest.raises(InputError, match="mask shape"):
        predict_stage(checkpoint, image, label.array[:, :10])
    with pytest.raises(InputError, match="empty"):
        predict_stage(checkpoint, image, np.zeros(image.shape, np.uint8))
    with pytest.raises(InputError):
        predict_stage(checkpoint, image.array, label)
    with pytest.raises(InputError):
        predict_stage(tmp_path / "missing.pt", image, label)
    with pytest.raises(InputError):
        predict_stage(torch.nn.Linear(2, 1), image, label)


# ------------------------------------------------------------------------------------------------ CLI
@pytest.mark.parametrize("verb", ["train", "predict", "cv"])
def test_staging_help(verb: str) -> None:
    result = runner.invoke(app, [verb, "staging", "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage" in result.output


def test_cli_predict_writes_json(checkpoint: Path, tmp_path: Path) -> None:
    image, label = _toy_case(15, "T3")
    write_image(image, tmp_path / "t2.nii.gz")
    write_image(label, tmp_path / "mask.nii.gz")
    out = tmp_path / "res" / "stage.json"
    result = runner.invoke(app, ["predict", "staging", "--model", str(checkpoint), "-i", str(tmp_path / "t2.nii.gz"),
                                 "--mask", str(tmp_path / "mask.nii.gz"), "-o", str(out)])
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())
    assert data["label"] in ("T2", "T3") and 0.0 <= data["t3_probability"] <= 1.0
    assert json.loads(result.output)["t3_probability"] == data["t3_probability"]
    assert not list(out.parent.glob(".*tmp*"))  # atomic write leaves no temporary file


def test_cli_predict_errors_are_one_line(checkpoint: Path, tmp_path: Path) -> None:
    image, label = _toy_case(16, "T3")
    write_image(image, tmp_path / "t2.nii.gz")
    result = runner.invoke(app, ["predict", "staging", "--model", str(tmp_path / "nope.pt"), "-i",
                                 str(tmp_path / "t2.nii.gz")])
    assert result.exit_code == 2
    assert "error" in result.output and "nope.pt" in result.output
    other = label.with_array(label.array)
    other.origin = (5.0, 0.0, 0.0)
    write_image(other, tmp_path / "shifted.nii.gz")
    result = runner.invoke(app, ["predict", "staging", "--model", str(checkpoint), "-i", str(tmp_path / "t2.nii.gz"),
                                 "--mask", str(tmp_path / "shifted.nii.gz")])
    assert result.exit_code == 2 and "origin" in result.output


def test_cli_train_and_resume(tmp_path: Path) -> None:
    data = _write_folder(tmp_path / "data", 4, "nifti")
    out = tmp_path / "run"
    args = ["train", "staging", "--data", str(data), "--out", str(out), "--size", "32", "--depth", "4",
            "--margin", "4", "--no-n4", "--slice-epochs", "1", "--epochs", "1", "--batch-size", "2", "--threads", "1"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert (out / "model.pt").is_file() and (out / "last.pt").is_file()
    assert len((out / "log.csv").read_text().strip().splitlines()) == 3  # header + 2 epochs
    result = runner.invoke(app, args + ["--resume"])  # already finished: nothing left to train
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["train", "staging", "--data", str(tmp_path / "none"), "--out", str(out)])
    assert result.exit_code == 2 and "error" in result.output
