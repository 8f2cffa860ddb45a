"""``procto cv cosam`` and the whole-volume protocol (procto.train.cosam_eval.evaluate_cosam_volumes): the paper's
Tables 2–4 and procto's whole-volume table printed from a (briefly trained, small) model on a Meply folder with 3D
volumes; bad input is one line, exit 2, nothing written.  (Training quality is the end-to-end test's.)"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

SIZE = 64
MODEL_KWARGS = {"detector_kwargs": {"min_size": SIZE, "max_size": SIZE, "anchor_sizes": [8, 16, 32, 64, 128],
                                    "rpn_pre_nms_top_n_test": 100, "rpn_post_nms_top_n_test": 50}}


@pytest.fixture(scope="module")
def setup(tmp_path_factory) -> tuple[Path, Path]:
    from procto.phantom import write_meply
    from procto.train.cosam import CoSAMTrainConfig, train_cosam

    root = tmp_path_factory.mktemp("meply_cv")
    write_meply(root, 1, seed=3, split="train", n_nodes=3, volumes=True)
    write_meply(root, 2, seed=3, split="test", start=1, n_nodes=2, volumes=True)
    config = CoSAMTrainConfig(window=5, img_size=SIZE, small=True, model_kwargs=MODEL_KWARGS, epochs_detector=1,
                              epochs_segmenter=0, epochs_joint=1, iters_per_epoch=1, seed=1)
    run = train_cosam(root, root.parent / "run", config, device="cpu", threads=2)
    return root, run.checkpoint


def test_cli_prints_tables_2_to_4_and_the_whole_volume_table(setup, tmp_path):
    from typer.testing import CliRunner

    from procto.cli import app

    data, model = setup
    out = tmp_path / "res.json"
    r = CliRunner().invoke(app, ["cv", "cosam", "--data", str(data), "--model", str(model), "--separate", str(model),
                                 "--out", str(out), "--device", "cpu", "--threads", "2"])
    assert r.exit_code == 0, r.output
    for caption in ("Table 2", "Table 3", "Table 4", "FROC sensitivity @ 2 FP/scan", "N-category accuracy"):
        assert caption in r.output, caption
    assert "74.12" in r.output and "0.845" in r.output  # the paper's numbers beside procto's
    res = json.loads(out.read_text())
    window = res["windows"][str(model)]
    assert window["window"] == 5 and window["n_windows"] > 0 and 0 <= window["dice"] <= 1
    vol = next(iter(res["volumes"].values()))
    assert vol["n_cases"] == 2 and 0 <= vol["n_accuracy"] <= 1 and len(vol["froc"]["sensitivities"]) == 7


def test_whole_volume_protocol_scores_a_perfect_predictor_perfectly_and_checks_geometry(setup):
    from procto.errors import InputError
    from procto.infer.cosam import VolumeResult, describe_nodes
    from procto.io import Volume
    from procto.metrics.nodes import n_category
    from procto.preprocess.meply import read_meply_volume, slice_boxes
    from procto.train.cosam_eval import evaluate_cosam_volumes

    data, _ = setup
    cases = [(p.stem, *read_meply_volume(p)[:2]) for p in sorted((data / "npz").glob("*.npz"))]

    class Oracle:  # returns the reference itself: every metric at its best
        def predict_volume(self, ct):
            ref = next(nodes for _, img, nodes in cases if img is ct).array.astype(np.int32)
            dets = [{"slice": z, "boxes": slice_boxes(ref[z])[0], "scores": np.ones(len(slice_boxes(ref[z])[0]))}
                    for z in range(len(ref))]
            nodes = describe_nodes(ref, ct, {i: 1.0 for i in np.unique(ref[ref > 0])}, 0.5)
            return VolumeResult(Volume(ref, ct.spacing), nodes, n_category(len(nodes)), dets)

    res = evaluate_cosam_volumes(Oracle(), cases, margin=0.0)
    assert res["ap50_2d"] == pytest.approx(1.0) and res["ap3d"] == pytest.approx(1.0)
    assert res["dice"] == pytest.approx(1.0) and res["n_accuracy"] == 1.0
    assert res["froc"].sensitivity_at(0.125) == pytest.approx(1.0)
    name, ct, nodes = cases[0]
    shifted = Volume(nodes.array[1:], nodes.spacing)
    with pytest.raises(InputError, match="does not match the CT"):
        evaluate_cosam_volumes(Oracle(), [(name, ct, shifted)])


def test_cli_bad_input_is_one_line_and_writes_nothing(setup, tmp_path):
    from typer.testing import CliRunner

    from procto.cli import app

    data, model = setup
    bad = tmp_path / "corrupt.pt"
    bad.write_bytes(b"not a checkpoint")
    out = tmp_path / "res.json"
    for args in (["cv", "cosam", "--data", str(data), "--model", str(bad), "--out", str(out)],
                 ["cv", "cosam", "--data", str(tmp_path / "none"), "--model", str(model), "--out", str(out)]):
        r = CliRunner().invoke(app, args)
        assert r.exit_code == 2 and r.output.strip().startswith("error:"), r.output
        assert len(r.output.strip().splitlines()) == 1 and not out.exists()
    ct = tmp_path / "ct.nii.gz"
    ct.write_bytes(b"\x1f\x8b broken gzip")
    pred = tmp_path / "nodes.nii.gz"
    r = CliRunner().invoke(app, ["predict", "cosam", "--model", str(model), "--ct", str(ct), "--out", str(pred)])
    assert r.exit_code == 2 and r.output.strip().startswith("error:") and len(r.output.strip().splitlines()) == 1
    assert not pred.exists() and not pred.with_name("nodes.json").exists()
