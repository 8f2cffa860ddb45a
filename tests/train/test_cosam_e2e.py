"""CoSAM end to end on CT phantoms (issue 11's Done-when): the paper's schedule — the sequence detector trained alone,
then U-SAM alone and the whole model jointly (CCM included) from the detector's weights — on 12 Meply phantoms, then
evaluated on 4 held-out phantoms that also carry benign nodes (hard negatives: in the image, not in the label).

Held-out protocol: whole slices (fully automatic, no reference-centred crop) at the phantoms' own 128 px (the
detector's anchors and the paper's 16-px box margin scaled from 224 px by 128/224, as the demo does), AP50 per window
centre slice (pycocotools' definition).  Three models on the same windows:

* the untrained CoSAM (same settings and seed);
* the **detector-only baseline**: the separately trained detector (Table 4's E2E ✗ / CCM ✗ row) — its own scores for
  AP50, its kept boxes filled as masks for Dice;
* CoSAM after the joint phase: CCM scores for AP50, U-SAM's box-prompted masks for Dice.

Measured (seed 0, 2 cores, 2026-12-02): AP50 untrained 0.00 / detector-only 0.60 / CoSAM 0.76 (0.77 with the
detector's own scores); Dice 0.00 / 0.07 (filled boxes) / 0.80, reference-box prompts 0.88.  At 224 px (resized, an
earlier run) it measured 0.64 / 0.78 AP50 and Dice 0.62 in twice the time; on CI's machine the CCM's gain in AP was
not reliable at this length (detector-only 0.77 / CoSAM 0.77).

Small encoders (ResNet-18-FPN detector, a 1-block ViT), window 5, CPU, seeded.  Idle run time ≈ 5.5 min on 2 cores.
"""

from __future__ import annotations

import numpy as np
import pytest

from procto.nets.cosam import SMALL_DETECTOR

WINDOW, SIZE, ITERS = 5, 128, 50
DETECTOR = {"min_size": SIZE, "max_size": SIZE,  # no resizing; anchors 16…256 at 224 px scaled to this side
            "anchor_sizes": [max(4, round(a * SIZE / 224)) for a in SMALL_DETECTOR["anchor_sizes"]]}
MODEL = {"max_train_prompts": 6, "detector_kwargs": DETECTOR}
CONFIG = dict(window=WINDOW, img_size=SIZE, small=True, iters_per_epoch=ITERS, lr_detector=1e-3, model_kwargs=MODEL,
              seed=0)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    from procto.phantom.writers import write_meply
    from procto.train.cosam import CoSAMTrainConfig, train_cosam

    root = tmp_path_factory.mktemp("cosam_e2e")
    data = write_meply(root / "meply", 12, seed=0, split="train", benign_nodes=(0, 2))
    write_meply(data, 4, seed=0, split="test", start=12, benign_nodes=(2, 4))
    detector = train_cosam(data, root / "detector", CoSAMTrainConfig(
        epochs_detector=6, epochs_segmenter=0, epochs_joint=0, **CONFIG), "detector", device="cpu", threads=2)
    # U-SAM alone, then jointly, from the trained detector at the paper's detector learning rate (1e-4; the
    # from-scratch detector above takes 1e-3 to learn in 300 CPU steps)
    full = train_cosam(data, root / "cosam", CoSAMTrainConfig(
        epochs_detector=0, epochs_segmenter=4, epochs_joint=2, **{**CONFIG, "lr_detector": 1e-4}), "all",
        init=detector.checkpoint, device="cpu", threads=2)
    return data, detector.checkpoint, full.checkpoint


@pytest.fixture(scope="module")
def results(runs):
    import torch

    from procto.nets import create_model
    from procto.nets.checkpoint import load_checkpoint
    from procto.preprocess.meply import MeplyDataset
    from procto.train.cosam_eval import evaluate_cosam
    from procto.util import torch_threads

    data, detector_ckpt, cosam_ckpt = runs
    test = MeplyDataset(data, "test", window=WINDOW, size=SIZE, protocol="whole", margin=16.0 * SIZE / 224)
    torch.manual_seed(0)
    untrained = create_model("cosam", window=WINDOW, img_size=SIZE, small=True, **MODEL)
    with torch_threads(2):
        return {name: evaluate_cosam(model, test) for name, model in (
            ("untrained", untrained), ("detector", load_checkpoint(detector_ckpt, "cosam")[0]),
            ("cosam", load_checkpoint(cosam_ckpt, "cosam")[0]))}


@pytest.mark.slow
@pytest.mark.timeout(2400)
def test_trained_cosam_beats_the_untrained_model_and_the_detector_only_baseline(results):
    print({k: {m: v[m] for m in ("ap50", "ap50_det", "dice", "dice_gt_prompt", "dice_detector_only")}
           for k, v in results.items()})
    cosam, detector, untrained = results["cosam"], results["detector"], results["untrained"]
    assert cosam["n_windows"] >= 40
    assert cosam["ap50"] > untrained["ap50"] + 0.3 and cosam["dice"] > untrained["dice"] + 0.3
    # the joint phase keeps the detector's detection (CCM ranking within 0.05 AP50 of the detector-only model: on
    # 2-core machines it measured 0.78 vs 0.64 and 0.77 vs 0.77 — thread counts change the short run's outcome)
    assert cosam["ap50"] >= detector["ap50_det"] - 0.05
    assert cosam["dice"] > detector["dice_detector_only"] + 0.15
    assert cosam["ap50"] >= 0.6 and cosam["dice"] >= 0.45


@pytest.mark.slow
@pytest.mark.timeout(2400)
def test_reference_box_prompts_segment_at_least_as_well_as_detected_boxes(results):
    cosam = results["cosam"]
    assert cosam["dice_gt_prompt"] >= cosam["dice"] - 1e-9
    assert np.isfinite(cosam["dice_per_case"][0])
