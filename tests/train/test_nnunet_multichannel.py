"""The nnU-Net integration is generic in the number of input channels: a 3-channel phantom data set (T2 plus two
channels derived from it) trains through nnU-Net v2 with procto's trainer and predicts a held-out 3-channel case with
:func:`procto.infer.nnunet.predict`; a 2-channel input is refused with one InputError before anything is written."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from procto.errors import InputError
from procto.io import read_image, read_label, write_image

SHAPE = (16, 32, 32)
SPACING = (4.0, 1.75, 1.75)
CHANNELS = {"0": "T2", "1": "T2 smoothed", "2": "T2 gradient magnitude"}


def _add_derived_channels(data: Path) -> None:
    """Next to every ``case_0000`` image write ``case_0001`` (Gaussian-smoothed T2) and ``case_0002`` (gradient
    magnitude), in the same geometry; list the three channels in ``dataset.json``."""
    from scipy import ndimage

    for image_path in sorted(data.glob("images*/*_0000.nii.gz")):
        t2 = read_image(image_path)
        a = np.asarray(t2.array, dtype=np.float32)
        smooth = ndimage.gaussian_filter(a, sigma=(0.5, 1.0, 1.0))
        grad = ndimage.gaussian_gradient_magnitude(a, sigma=1.0)
        case = image_path.name[: -len("_0000.nii.gz")]
        for idx, array in ((1, smooth), (2, grad)):
            write_image(t2.with_array(array.astype(np.float32)), image_path.parent / f"{case}_{idx:04d}.nii.gz")
    ds = json.loads((data / "dataset.json").read_text())
    ds["channel_names"] = CHANNELS
    (data / "dataset.json").write_text(json.dumps(ds, indent=2))


@pytest.mark.slow
@pytest.mark.timeout(400)
def test_three_channel_dataset_trains_and_predicts(tmp_path: Path) -> None:
    import torch

    from procto.infer.nnunet import NNUNetPredictor, predict
    from procto.phantom import write_cohort
    from procto.train.nnunet import train

    data = write_cohort(tmp_path / "raw", 4, "mri", seed=7, n_test=1, dataset_id=993, name="ThreeChannel",
                        shape=SHAPE, spacing=SPACING, center="rectum")
    _add_derived_channels(data)

    epochs_seen: list[tuple[int, int]] = []
    run = train(data, "all", model="rcsegnext_b", out=tmp_path / "runs", epochs=2, iters=2, val_iters=1,
                patch=SHAPE, batch_size=1, device="cpu", workers=0, preprocess_processes=1, resume=False,
                validate=False, check_integrity=False, on_epoch=lambda e, n, v: epochs_seen.append((e, n)))
    assert epochs_seen == [(1, 2), (2, 2)]  # the callback set on this run's trainer, once per epoch
    assert run.checkpoint.is_file() and run.fold_dir.name == "fold_all"
    weights = torch.load(run.checkpoint, map_location="cpu", weights_only=False)["network_weights"]
    assert weights["encoder.stem.weight"].shape[1] == 3  # the network was built for three input channels
    plans = json.loads((run.model_dir / "plans.json").read_text())
    assert plans["configurations"]["3d_fullres"]["architecture"]["network_class_name"] == \
        "procto.nets.rcsegnext.RCSegNeXt"

    # predict the held-out 3-channel case (folder grouped by case; model folds found: fold_all)
    images_ts = data / "imagesTs"
    [written] = predict(run.model_dir, images_ts, tmp_path / "pred", device="cpu", mirror=False)
    case = written.name[: -len(".nii.gz")]
    assert sorted(p.name for p in images_ts.iterdir()) == [f"{case}_{i:04d}.nii.gz" for i in range(3)]
    image = read_image(images_ts / f"{case}_0000.nii.gz")
    seg = read_image(written)
    assert seg.same_geometry(image) and seg.shape == SHAPE
    assert set(np.unique(seg.array)) <= {0, 1, 2}

    # a 2-channel input is refused, with one InputError, before the network loads or anything is written
    two = tmp_path / "two_channels"
    two.mkdir()
    for i in (0, 1):
        shutil.copy(images_ts / f"{case}_{i:04d}.nii.gz", two)
    with pytest.raises(InputError, match="expects 3") as err:
        predict(run.model_dir, two, tmp_path / "pred2", device="cpu")
    assert case in str(err.value)
    assert not (tmp_path / "pred2").exists()
    # inference builds the network through the registry: loading and predicting never import procto.train
    script = ("import sys; from procto.infer.nnunet import predict; "
              f"predict({str(run.model_dir)!r}, {str(images_ts)!r}, {str(tmp_path / 'pred3')!r}, device='cpu', "
              "mirror=False); print(sorted(m for m in sys.modules if m.startswith('procto.train')))")
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip().splitlines()[-1] == "[]"
    assert np.array_equal(read_label(tmp_path / "pred3" / written.name).array, seg.array)
    predictor = NNUNetPredictor(run.model_dir, device="cpu")
    assert predictor.num_channels == 3 and predictor.folds == ["all"]
    with pytest.raises(InputError, match="expects 3 input channel"):
        predictor.predict([image, image])
    shifted = read_image(images_ts / f"{case}_0001.nii.gz")
    shifted.origin = tuple(o + 5.0 for o in shifted.origin)
    with pytest.raises(InputError, match="geometry mismatch"):
        predictor.predict([image, shifted, image])
