"""CoSAM training mechanics on the engine (procto.train.cosam): the three phases in order, each training only its
losses, checkpoints that CoSAMPredictor loads, exact resume, and the CLI's wiring.  (Training quality on phantoms is
the end-to-end test's; this one runs a few steps of a small model.)"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch

SIZE = 64
MODEL_KWARGS = {"detector_kwargs": {"min_size": SIZE, "max_size": SIZE, "anchor_sizes": [8, 16, 32, 64, 128],
                                    "rpn_pre_nms_top_n_test": 100, "rpn_post_nms_top_n_test": 50}}


@pytest.fixture(scope="module")
def meply(tmp_path_factory) -> Path:
    from procto.phantom import write_meply

    root = tmp_path_factory.mktemp("meply")
    write_meply(root, 2, seed=3, split="train", n_nodes=3)
    return root


def _config(**kw):
    from procto.train.cosam import CoSAMTrainConfig

    base = dict(window=5, img_size=SIZE, small=True, model_kwargs=MODEL_KWARGS, epochs_detector=1,
                epochs_segmenter=1, epochs_joint=1, iters_per_epoch=2, seed=1)
    return CoSAMTrainConfig(**{**base, **kw})


def test_phases_run_in_order_and_train_only_their_losses(meply, tmp_path):
    from procto.train.cosam import train_cosam

    res = train_cosam(meply, tmp_path / "run", _config(), device="cpu")
    assert res.finished and (tmp_path / "run" / "model.pt").is_file()
    rows = list(csv.DictReader(open(tmp_path / "run" / "log.csv")))
    assert [r["phase"] for r in rows] == ["detector", "segmenter", "joint"]
    assert rows[0]["loss_sam"] in ("", None) and rows[1]["loss_classifier"] in ("", None)
    assert float(rows[2]["loss_ccm"]) > 0 and float(rows[2]["loss_sam"]) > 0


def test_resume_gives_the_uninterrupted_weights(meply, tmp_path):
    from procto.train.cosam import train_cosam

    full = train_cosam(meply, tmp_path / "full", _config(), device="cpu", threads=1)
    from procto.train.cosam import CoSAMTask
    from procto.train.engine import Engine, LoopConfig

    task = CoSAMTask(meply, _config(), "all")
    Engine(task, LoopConfig(epochs=3, seed=1, device="cpu", clip_max_norm=0.1, stop_after=2, threads=1),
           tmp_path / "part").run()
    resumed = train_cosam(meply, tmp_path / "part", _config(), device="cpu", threads=1, resume=True)
    a, b = full.model.state_dict(), resumed.model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_a_stage_starts_from_an_earlier_stage_and_refuses_other_settings(meply, tmp_path):
    from procto.errors import InputError
    from procto.nets.checkpoint import read_checkpoint
    from procto.train.cosam import train_cosam

    det = train_cosam(meply, tmp_path / "det", _config(), "detector", device="cpu", threads=1)
    seg = train_cosam(meply, tmp_path / "seg", _config(), "segmenter", init=det.checkpoint, device="cpu", threads=1)
    a, b = read_checkpoint(det.checkpoint)["state_dict"], read_checkpoint(seg.checkpoint)["state_dict"]
    detector_keys = [k for k in a if k.startswith("detector.") and a[k].is_floating_point()]
    assert detector_keys and all(torch.equal(a[k], b[k]) for k in detector_keys)  # segmenter phase: detector kept
    assert any(not torch.equal(a[k], b[k]) for k in a if k.startswith("segmenter.") and a[k].is_floating_point())
    scratch = train_cosam(meply, tmp_path / "scratch", _config(seed=2), "segmenter", device="cpu", threads=1)
    c = read_checkpoint(scratch.checkpoint)["state_dict"]
    assert any(not torch.equal(a[k], c[k]) for k in detector_keys)
    with pytest.raises(InputError, match="not"):
        train_cosam(meply, tmp_path / "bad", _config(window=7), "joint", init=det.checkpoint, device="cpu")
    assert not (tmp_path / "bad").exists()


def test_predictor_loads_the_checkpoint_and_keeps_the_ct_geometry(meply, tmp_path):
    from procto.infer.cosam import CoSAMPredictor
    from procto.io import Volume
    from procto.phantom import make_case
    from procto.train.cosam import train_cosam

    train_cosam(meply, tmp_path / "run", _config(epochs_segmenter=0, epochs_joint=0, iters_per_epoch=1), "all",
                device="cpu")
    case = make_case(5, "ct", shape=(8, 64, 64), spacing=(1.25, 0.7, 0.7), center="tumour")
    ct = Volume(case.image.array, case.image.spacing, (1.0, 2.0, 3.0), np.diag([1.0, -1.0, 1.0]))
    result = CoSAMPredictor(tmp_path / "run" / "model.pt", device="cpu").predict_volume(ct)
    assert result.instances.same_geometry(ct) and np.allclose(result.instances.direction, ct.direction)
    assert result.n_category in ("N0", "N1", "N2") and len(result.detections) == 8


def test_cli_trains_a_stage(meply, tmp_path):
    from typer.testing import CliRunner

    from procto.cli import app

    out = tmp_path / "cli"
    r = CliRunner().invoke(app, ["train", "cosam", "--data", str(meply), "--out", str(out), "--stage", "detector",
                                 "--window", "5", "--small", "--epochs-detector", "1", "--iters", "1",
                                 "--device", "cpu"])
    assert r.exit_code == 0, r.output
    assert (out / "model.pt").is_file()
    r = CliRunner().invoke(app, ["train", "cosam", "--data", str(tmp_path / "nothing"), "--out", str(tmp_path / "x")])
    assert r.exit_code == 2 and r.output.strip().startswith("error:") and len(r.output.strip().splitlines()) == 1
    assert not (tmp_path / "x").exists()
