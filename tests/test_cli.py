"""The command line: version, help on every verb, evaluate's outputs and its one-line errors."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from procto import __version__
from procto.cli import app
from procto.io import Volume, write_image

runner = CliRunner()


def test_version() -> None:
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert __version__ in result.output


@pytest.mark.parametrize("verb", ["demo", "phantom", "evaluate"])
def test_help_on_every_verb(verb: str) -> None:
    result = runner.invoke(app, [verb, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage" in result.output


def _label(seed: int, spacing=(4.0, 0.875, 0.875)) -> Volume:
    rng = np.random.default_rng(seed)
    arr = np.zeros((8, 40, 40), np.uint8)
    cz, cy, cx = 4, 20 + rng.integers(-3, 4), 20 + rng.integers(-3, 4)
    zz, yy, xx = np.ogrid[:8, :40, :40]
    arr[((yy - cy) ** 2 + (xx - cx) ** 2 < 100) & (abs(zz - cz) < 3)] = 1
    arr[((yy - cy) ** 2 + (xx - cx - 4) ** 2 < 16) & (abs(zz - cz) < 2)] = 2
    return Volume(arr, spacing, (0.0, -10.0, 5.0))


def _write_pair(tmp_path: Path, n: int = 3):
    ref_dir, pred_dir = tmp_path / "ref", tmp_path / "pred"
    for i in range(n):
        ref = _label(i)
        write_image(ref, ref_dir / f"case_{i:03d}.nii.gz")
        pred = np.roll(ref.array, 1, axis=2) if i else ref.array  # case 0 perfect, others shifted by one voxel
        write_image(ref.with_array(pred), pred_dir / f"case_{i:03d}.nrrd")
    return pred_dir, ref_dir


def test_evaluate_writes_csv_and_table(tmp_path: Path) -> None:
    pred_dir, ref_dir = _write_pair(tmp_path)
    out = tmp_path / "eval.csv"
    result = runner.invoke(app, ["evaluate", "--pred", str(pred_dir), "--ref", str(ref_dir), "--out", str(out)])
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == 3 * 2
    perfect = [r for r in rows if r["case"] == "case_000"]
    assert all(float(r["dice"]) == 1.0 and float(r["hd95"]) == 0.0 for r in perfect)
    shifted = [r for r in rows if r["case"] == "case_001"]
    assert all(0.5 < float(r["dice"]) < 1.0 for r in shifted)
    assert "rectum" in result.output and "tumour" in result.output and "±" in result.output


def _warnings(result) -> list[str]:
    return [ln for ln in result.stderr.splitlines() if ln.startswith("warning:")]


def test_evaluate_is_silent_without_empty_masks(tmp_path: Path) -> None:
    pred_dir, ref_dir = _write_pair(tmp_path)
    result = runner.invoke(app, ["evaluate", "--pred", str(pred_dir), "--ref", str(ref_dir), "--out",
                                 str(tmp_path / "e.csv")])
    assert result.exit_code == 0, result.output
    assert _warnings(result) == []


def test_evaluate_warns_on_empty_prediction_and_reference(tmp_path: Path) -> None:
    pred_dir, ref_dir = _write_pair(tmp_path)
    pred = _label(1)  # case_001: the prediction misses the tumour
    write_image(pred.with_array(np.where(pred.array == 2, 0, pred.array).astype(np.uint8)),
                pred_dir / "case_001.nrrd")
    ref = _label(2)  # case_002: the reference has no tumour
    write_image(ref.with_array(np.where(ref.array == 2, 1, ref.array).astype(np.uint8)), ref_dir / "case_002.nii.gz")
    out = tmp_path / "e.csv"
    result = runner.invoke(app, ["evaluate", "--pred", str(pred_dir), "--ref", str(ref_dir), "--out", str(out)])
    assert result.exit_code == 0, result.output
    rows = {(r["case"], r["label"]): r for r in csv.DictReader(out.open())}
    assert float(rows["case_001", "tumour"]["hd95"]) == 1000.0 and float(rows["case_002", "tumour"]["asd"]) == 1000.0
    lines = _warnings(result)
    assert len(lines) == 2, result.stderr
    pred_line, ref_line = lines
    assert "empty prediction" in pred_line and "case_001 (tumour)" in pred_line and "case_002" not in pred_line
    assert "empty reference" in ref_line and "case_002 (tumour)" in ref_line and "case_001" not in ref_line
    assert all("1000 mm" in ln and "empty_penalty" in ln for ln in lines)
    assert "every prediction" not in result.stderr


def test_evaluate_says_when_every_prediction_is_empty(tmp_path: Path) -> None:
    pred_dir, ref_dir = _write_pair(tmp_path)
    for i in range(3):
        write_image(_label(i).with_array(np.zeros((8, 40, 40), np.uint8)), pred_dir / f"case_{i:03d}.nrrd")
    result = runner.invoke(app, ["evaluate", "--pred", str(pred_dir), "--ref", str(ref_dir), "--out",
                                 str(tmp_path / "e.csv")])
    assert result.exit_code == 0, result.output
    lines = _warnings(result)
    assert len(lines) == 2, result.stderr
    assert "empty prediction" in lines[0] and "(6 case/class pairs)" in lines[0]
    assert all(f"case_{i:03d} (rectum, tumour)" in lines[0] for i in range(3))
    assert "every prediction is empty" in lines[1] and "3 case" in lines[1]
    assert "warning:" not in result.stdout  # warnings go to stderr only


def test_evaluate_missing_case_is_one_line_error(tmp_path: Path) -> None:
    pred_dir, ref_dir = _write_pair(tmp_path)
    (pred_dir / "case_002.nrrd").unlink()
    out = tmp_path / "eval.csv"
    result = runner.invoke(app, ["evaluate", "--pred", str(pred_dir), "--ref", str(ref_dir), "--out", str(out)])
    assert result.exit_code == 2
    lines = [ln for ln in result.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and "case_002" in lines[0] and lines[0].startswith("error:")
    assert not out.exists()


def test_evaluate_geometry_mismatch_is_one_line_error(tmp_path: Path) -> None:
    pred_dir, ref_dir = _write_pair(tmp_path)
    write_image(_label(1, spacing=(3.0, 0.875, 0.875)), pred_dir / "case_001.nrrd")
    out = tmp_path / "eval.csv"
    result = runner.invoke(app, ["evaluate", "--pred", str(pred_dir), "--ref", str(ref_dir), "--out", str(out)])
    assert result.exit_code == 2
    lines = [ln for ln in result.output.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1 and "spacing" in lines[0] and "case_001.nrrd" in lines[0]
    assert not out.exists()


def test_evaluate_corrupt_prediction(tmp_path: Path) -> None:
    pred_dir, ref_dir = _write_pair(tmp_path)
    (pred_dir / "case_001.nrrd").write_bytes(b"NRRD0004\ngarbage")
    result = runner.invoke(app, ["evaluate", "--pred", str(pred_dir), "--ref", str(ref_dir), "--out", str(tmp_path / "e.csv")])
    assert result.exit_code == 2
    lines = [ln for ln in result.output.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1 and "case_001.nrrd" in lines[0]


def test_phantom_writes_nnunet_dataset(tmp_path: Path) -> None:
    import json

    result = runner.invoke(app, ["phantom", "--out", str(tmp_path), "--n", "2", "--n-test", "1", "--modality", "mri",
                                 "--shape", "16,64,64", "--dataset-id", "777", "--name", "Tiny"])
    assert result.exit_code == 0, result.output
    root = tmp_path / "Dataset777_Tiny"
    meta = json.loads((root / "dataset.json").read_text())
    assert meta["numTraining"] == 2 and meta["labels"]["tumour"] == 2
    assert len(list((root / "imagesTr").glob("*_0000.nii.gz"))) == 2
    assert len(list((root / "labelsTr").glob("*.nii.gz"))) == 2
    assert len(list((root / "imagesTs").glob("*_0000.nii.gz"))) == 1
    from procto.io import read_image

    img = read_image(next((root / "imagesTr").glob("*_0000.nii.gz")))
    assert img.shape == (16, 64, 64)


def test_phantom_bad_shape_is_one_line_error(tmp_path: Path) -> None:
    result = runner.invoke(app, ["phantom", "--out", str(tmp_path), "--shape", "16,64"])
    assert result.exit_code == 2
    assert [ln for ln in result.output.splitlines() if ln.startswith("error:")]
    assert not any(tmp_path.iterdir())


def test_python_dash_m_procto_cli_has_the_model_commands() -> None:
    """``python -m procto.cli`` runs the same app as the ``procto`` script, model verbs included."""
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "procto.cli", "train", "--help"], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    for model in ("rcsegnext", "usam", "staging"):
        assert model in out.stdout
