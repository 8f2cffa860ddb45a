"""`procto demo` runs the main job end to end on the embedded default: trains RCSegNeXt-B briefly on MRI phantoms,
segments held-out phantoms and prints the Dice table.  (No wall-time assertion: speed belongs in benchmarks/.)"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from procto.cli import app


@pytest.mark.slow
@pytest.mark.timeout(400)
def test_demo_trains_rcsegnext_and_prints_dice_table(tmp_path: Path) -> None:
    from procto.io import read_image, read_label
    from procto.metrics import dice

    out = tmp_path / "demo"
    start = time.perf_counter()
    result = CliRunner().invoke(app, ["demo", "--out", str(out)])  # the default schedule, as a user runs it
    elapsed = time.perf_counter() - start
    assert result.exit_code == 0, result.output
    assert "RCSegNeXt-B" in result.output
    assert "rectum" in result.output and "tumour" in result.output and "Dice" in result.output
    assert "Epoch" not in result.output  # nnU-Net's per-epoch chatter goes to the log file
    assert "not found in nnunetv2" not in result.output  # and so does its trainer search while predicting
    assert "Epoch 0" in (out / "nnunet.log").read_text()

    data = out / "nnUNet_raw" / "Dataset990_ProctoDemo"
    preds = sorted((out / "predictions").glob("*.nii.gz"))
    assert [p.name for p in preds] == sorted(p.name for p in (data / "labelsTs").glob("*.nii.gz"))
    assert len(preds) == 2
    scores = []
    for pred_path in preds:
        image = read_image(data / "imagesTs" / pred_path.name.replace(".nii.gz", "_0000.nii.gz"))
        pred, ref = read_label(pred_path), read_label(data / "labelsTs" / pred_path.name)
        assert pred.same_geometry(image)
        scores.append([dice(pred.array == k, ref.array == k) for k in (1, 2)])
    rect, tum = np.mean(scores, axis=0)
    print(f"\ndemo: held-out Dice rectum {rect:.3f}, tumour {tum:.3f}; {elapsed:.0f} s")
    # a brief schedule: the model has clearly learned both classes (an untrained net scores ~0)
    assert rect > 0.6 and tum > 0.4

    # the model folder the demo prints predicts as it is (its fold is "all": found without --fold)
    model_dir = out / "nnUNet_results" / data.name / "nnUNetTrainerRCSegNeXt__nnUNetPlans__3d_fullres"
    one = sorted((data / "imagesTs").glob("*_0000.nii.gz"))[0]
    again = CliRunner().invoke(app, ["predict", "rcsegnext", "--model", str(model_dir), "-i", str(one), "-o",
                                     str(tmp_path / "again.nii.gz"), "--no-mirror", "--device", "cpu"])
    assert again.exit_code == 0, again.output
    assert "not found in nnunetv2" not in again.output and "perform_everything_on_device" not in again.output
    assert read_label(tmp_path / "again.nii.gz").same_geometry(read_image(one))


def test_demo_help_names_the_schedule() -> None:
    result = CliRunner().invoke(app, ["demo", "--help"])
    assert result.exit_code == 0
    assert "--epochs" in result.output and "--iters" in result.output
