"""Meply layouts from CT phantoms (write_meply, write_cohort(layout="meply"), ``procto phantom --layout meply``): the
files round-trip through procto.preprocess.meply's readers; labels hold metastatic nodes only; bad input and
unwritable outputs are one error and nothing written."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from procto.cli import app
from procto.errors import InputError
from procto.phantom import cohort_plan, make_case, write_cohort, write_meply
from procto.preprocess.meply import MeplyDataset, read_meply_targets, read_meply_volume, read_meply_window

GRID = {"shape": (48, 96, 96), "spacing": (1.25, 0.7, 0.7), "center": "tumour"}
runner = CliRunner()


@pytest.fixture(scope="module")
def meply_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("meply")
    write_meply(root, 2, seed=4, split="train", volumes=True, n_nodes=3, benign_nodes=3, **GRID)
    write_meply(root, 1, seed=4, split="test", start=2, volumes=True, n_nodes=2, **GRID)
    cases = {}
    for start, n, k, benign in ((0, 2, 3, 3), (2, 1, 2, None)):
        for e in cohort_plan(n, "ct", 4, n_nodes=k, start=start):
            cases[e.case_id] = make_case(e.seed, "ct", t_stage=e.t_stage, n_nodes=k, case_id=e.case_id,
                                         benign_nodes=benign, **GRID)
    return root, cases


def test_windows_are_the_case_slices_around_every_node_slice(meply_dir):
    root, cases = meply_dir
    for split, ids in (("train", ["phantom_ct_0000", "phantom_ct_0001"]), ("test", ["phantom_ct_0002"])):
        names = (root / f"caselist_{split}.txt").read_text().split()
        assert sorted(p.stem for p in (root / split).glob("*.npz")) == sorted(names)
        for cid in ids:
            case = cases[cid]
            nodes = case.nodes.array
            expected = [z for z in range(nodes.shape[0]) if nodes[z].any()]  # metastatic or benign
            assert [int(n.rpartition("_")[2]) for n in names if n.rpartition("_")[0] == cid] == expected
            for z in expected[::3]:
                with np.load(root / split / f"{cid}_{z:03d}.npz") as f:
                    assert f["img"].shape == (96, 96, 15) and f["img"].dtype == np.int16
                image, label = read_meply_window(root / split / f"{cid}_{z:03d}.npz")
                for k in range(15):
                    src = min(max(z - 7 + k, 0), nodes.shape[0] - 1)
                    np.testing.assert_array_equal(image[k], case.image.array[src])
                    np.testing.assert_array_equal(label[k], (nodes[src] > 0) & (nodes[src] <= case.n_nodes))
    assert list(root.rglob("*.tmp*")) == []


def test_labels_exclude_benign_nodes(meply_dir):
    root, cases = meply_dir
    seen_benign = 0
    for cid in ("phantom_ct_0000", "phantom_ct_0001"):
        case = cases[cid]
        assert case.n_benign == 3
        for z in np.unique(np.nonzero(case.nodes.array > case.n_nodes)[0]):
            _, label = read_meply_window(root / "train" / f"{cid}_{z:03d}.npz")
            benign = case.nodes.array[z] > case.n_nodes
            assert not label[7][benign].any()
            seen_benign += int(benign.sum())
    assert seen_benign > 0


def test_volumes_targets_and_annotations_round_trip(meply_dir):
    root, cases = meply_dir
    for cid, case in cases.items():
        image, label, targets = read_meply_volume(root / "npz" / f"{cid}.npz", root / "PRLN" / "prln_target.csv")
        np.testing.assert_array_equal(image.array, case.image.array)
        np.testing.assert_array_equal(label.array, case.metastatic_nodes().array)
        assert image.spacing == case.image.spacing
        expected = []
        for i in range(1, case.n_nodes + 1):
            idx = np.argwhere(case.nodes.array == i)
            if len(idx):
                expected.append((i, float(len(idx)), tuple(float(v) for v in [*idx.min(0), *(idx.max(0) + 1)])))
        assert [(t["target_index"], t["volume"], t["box"]) for t in targets] == expected
    assert {t["pid"] for t in read_meply_targets(root / "PRLN" / "prln_target.csv")} <= set(cases)
    ann = json.loads((root / "PRLN" / "annotations.json").read_text())
    assert ann["train_both"] == ["phantom_ct_0000", "phantom_ct_0001"] and ann["test_both"] == ["phantom_ct_0002"]
    with open(root / "stages.csv") as f:
        rows = {r["case_id"]: r for r in csv.DictReader(f)}
    assert set(rows) == set(cases) and rows["phantom_ct_0002"]["split"] == "test"
    assert rows["phantom_ct_0000"]["n_benign_nodes"] == "3"


def test_rewriting_a_split_replaces_its_cases_only(meply_dir, tmp_path):
    root, _ = meply_dir
    before = (root / "caselist_train.txt").read_text().split()
    write_meply(root, 1, seed=4, split="train", volumes=True, n_nodes=3, benign_nodes=3, **GRID)
    assert (root / "caselist_train.txt").read_text().split() == before
    assert len(read_meply_targets(root / "PRLN" / "prln_target.csv", "phantom_ct_0000")) <= 3


def test_datasets_read_the_written_layout(meply_dir):
    root, _ = meply_dir
    whole = MeplyDataset(root, "train", protocol="whole", size=96)
    assert len(whole) == len((root / "caselist_train.txt").read_text().split())
    item = whole[0]
    assert item["image"].shape == (9, 96, 96) and 0 <= item["image"].min() <= item["image"].max() <= 1
    paper = MeplyDataset(root, "train", protocol="paper")
    assert 0 < len(paper) < len(whole)
    assert all(len(paper[i]["boxes"]) >= 1 for i in range(0, len(paper), 5))


def test_write_cohort_meply_layout_defaults_to_ct_facts_grid(tmp_path):
    root = write_cohort(tmp_path, 1, "ct", layout="meply", seed=2, n_test=1, n_nodes=2, shape=(40, 96, 96))
    assert (root / "caselist_train.txt").is_file() and (root / "caselist_test.txt").is_file()
    image, _, _ = read_meply_volume(root / "npz" / "phantom_ct_0000.npz")
    assert image.spacing == (1.25, 0.7, 0.7) and image.shape == (40, 96, 96)
    assert json.loads((root / "phantom.json").read_text())["layout"] == "meply"


@pytest.mark.parametrize("kwargs", [{"window": 8}, {"window": 17}, {"slices": "every"}, {"split": "a/b"},
                                    {"n_cases": -1}, {"benign_nodes": 9}])
def test_write_meply_bad_arguments_write_nothing(tmp_path, kwargs):
    args = {"n_cases": 1, **kwargs}
    with pytest.raises(InputError):
        write_meply(tmp_path / "out", **args)
    assert not (tmp_path / "out").exists()


def test_write_cohort_meply_is_ct_only(tmp_path):
    with pytest.raises(InputError, match="CT only"):
        write_cohort(tmp_path / "out", 1, "mri", layout="meply")
    assert not (tmp_path / "out").exists()


# ------------------------------------------------------------------------------------------------------------- CLI
def test_cli_phantom_meply_layout(tmp_path):
    out = tmp_path / "meply"
    result = runner.invoke(app, ["phantom", "--out", str(out), "--n", "1", "--n-test", "1", "--layout", "meply",
                                 "--shape", "32,64,64", "--benign-nodes", "2", "--seed", "1"])
    assert result.exit_code == 0, result.output
    assert "ct phantom cases (meply layout)" in " ".join(result.output.split())
    assert (out / "caselist_train.txt").is_file() and (out / "PRLN" / "prln_target.csv").is_file()
    with open(out / "stages.csv") as f:
        assert [r["n_benign_nodes"] for r in csv.DictReader(f)] == ["2", "2"]


def _one_line_error(result, *needles: str) -> None:
    assert result.exit_code == 2, result.output
    lines = [ln for ln in result.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), result.output
    assert all(n in " ".join(result.output.split()) for n in needles), result.output


def test_cli_phantom_meply_unwritable_output(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    out = blocker / "run"
    result = runner.invoke(app, ["phantom", "--out", str(out), "--n", "1", "--layout", "meply"])
    _one_line_error(result, str(out))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"] and blocker.read_text() == "x"


@pytest.mark.parametrize("extra, needle", [(["--modality", "mri"], "CT only"), (["--benign-nodes", "9"], "benign"),
                                           (["--benign-nodes", "1,2,3"], "benign")])
def test_cli_phantom_meply_bad_options(tmp_path, extra, needle):
    out = tmp_path / "out"
    result = runner.invoke(app, ["phantom", "--out", str(out), "--n", "1", "--layout", "meply", *extra])
    _one_line_error(result, needle)
    assert not Path(out).exists()
