"""Model bundles (``procto.bundle``, ``procto bundle export|install|list``): export → install → predict gives the
original model's outputs (a tiny staging run; an nnU-Net model folder of the right layout whose network is faked),
``--model`` takes a ``.procto`` file or an installed name in every predict verb, nnU-Net's own model zips install,
and truncated, tampered, foreign or unsafe files are one line ``error: …``, exit 2, with nothing written."""

from __future__ import annotations

import importlib.util
import io
import json
import stat
import zipfile
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from procto.bundle import export_bundle, install_bundle, list_bundles, open_bundle, resolve_model
from procto.cli import app
from procto.errors import InputError
from procto.io import Volume, read_image, write_image

runner = CliRunner()
pytestmark = pytest.mark.usefixtures("single_thread")  # deterministic results (tests/conftest.py)

_spec = importlib.util.spec_from_file_location("_staging_train_tests", Path(__file__).parent / "train" /
                                               "test_staging_train.py")
_train_tests = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_train_tests)
_toy_case, TINY = _train_tests._toy_case, _train_tests.TINY

TRAINER = "nnUNetTrainerRCSegNeXt"


# ------------------------------------------------------------------------------------------------ helpers
@pytest.fixture()
def home(tmp_path, monkeypatch) -> Path:
    """``$PROCTO_HOME`` for the test (never the real home); not created."""
    folder = tmp_path / "procto_home"
    monkeypatch.setenv("PROCTO_HOME", str(folder))
    return folder


def _empty(folder: Path) -> bool:
    return not folder.exists() or not any(folder.rglob("*"))


def _error_line(result, where: Path | str) -> str:
    """The one line ``error: <where>: …`` of a failed command (exit 2, no traceback)."""
    assert result.exit_code == 2, result.output
    lines = [ln for ln in result.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and str(where) in lines[0], result.output
    assert "Traceback" not in result.output
    return lines[0]


@pytest.fixture(scope="module")
def staging_run(tmp_path_factory) -> Path:
    """A finished staging run (``model.pt``, ``last.pt``, ``config.json``, ``log.csv``): 1 volume-level epoch of the
    tiny configuration of the staging tests, plus a T2 volume and mask to predict."""
    from procto.train.staging import StagingConfig, prepare_sample, train_staging
    from procto.util import torch_threads

    root = tmp_path_factory.mktemp("staging")
    config = StagingConfig(**{**TINY, "slice_epochs": 0, "epochs": 1})
    samples = [prepare_sample(f"c{i}", *_toy_case(i, ("T2", "T3")[i % 2]), ("T2", "T3")[i % 2], config)
               for i in range(4)]
    with torch_threads(1):
        train_staging(samples, config, root / "run")
    image, label = _toy_case(15, "T3")
    write_image(image, root / "t2.nii.gz")
    write_image(label, root / "mask.nii.gz")
    return root


def _fake_engine_run(folder: Path, task: str = "staging", extra: dict | None = None) -> Path:
    """A run folder whose ``model.pt`` is a procto checkpoint record with a tiny state dict (never built)."""
    folder.mkdir(parents=True)
    record = {"format": "procto-checkpoint", "version": 1, "task": task, "model": "staging_f_rmc5",
              "model_kwargs": {"aggregation": "bilinear"}, "config": {"depth": 4}, "extra": {},
              "state_dict": {"w": torch.arange(4.0)}, "epoch": 2, "iteration": 8,
              "history": [{"epoch": 1, "loss": 0.5, "val_acc": 0.75}, {"epoch": 2, "loss": 0.4, "val_acc": 0.8}],
              **(extra or {})}
    torch.save(record, folder / "model.pt")
    (folder / "config.json").write_text('{"depth": 4}\n')
    return folder


def _nnunet_run(root: Path, trainer: str = TRAINER) -> Path:
    """An nnU-Net ``--out`` folder of the layout ``procto train rcsegnext`` writes; its fold 0 checkpoint is what
    nnU-Net saves (weights, optimizer, a log with numpy scalars, init args with a torch.device), tiny."""
    model = root / "nnUNet_results" / "Dataset501_X" / f"{trainer}__nnUNetPlans__3d_fullres"
    (model / "fold_0" / "validation").mkdir(parents=True)
    stats = {"0": {"mean": 0.4, "median": 0.38, "std": 0.2, "min": 0.0, "max": 1.0, "percentile_00_5": 0.01,
                   "percentile_99_5": 0.97}}
    plans = {"dataset_name": "Dataset501_X", "plans_name": "nnUNetPlans",
             "configurations": {"3d_fullres": {"spacing": [4.0, 1.75, 1.75], "patch_size": [16, 48, 48],
                                               "normalization_schemes": ["ZScoreNormalization"]}},
             "foreground_intensity_properties_per_channel": stats}
    if trainer.startswith(TRAINER):  # procto's trainers write their network's registry name into the plans
        plans["configurations"]["3d_fullres"]["procto_model"] = "rcsegnext_b"
    (model / "plans.json").write_text(json.dumps(plans))
    (model / "dataset.json").write_text(json.dumps({"channel_names": {"0": "T2"}, "numTraining": 3,
                                                    "labels": {"background": 0, "rectum": 1, "tumour": 2},
                                                    "file_ending": ".nii.gz"}))
    (model / "dataset_fingerprint.json").write_text(json.dumps({
        "spacings": [[4.0, 1.75, 1.75], [4.0, 1.5, 1.5], [3.0, 1.75, 1.75]],
        "shapes_after_crop": [[16, 48, 48]] * 3, "foreground_intensity_properties_per_channel": stats}))
    (model / "fold_0" / "validation" / "summary.json").write_text(json.dumps(
        {"foreground_mean": {"Dice": 0.8}, "mean": {"1": {"Dice": 0.9}, "2": {"Dice": float("nan")}},
         "metric_per_case": []}))
    torch.save({"network_weights": OrderedDict(w=torch.arange(6.0).reshape(2, 3)),
                "optimizer_state": {"state": {}, "param_groups": [{"lr": 0.01}]},
                "logging": {"ema_fg_dice": [np.float64(0.5)]}, "_best_ema": np.float64(0.5),
                "init_args": {"configuration": "3d_fullres", "fold": 0, "device": torch.device("cpu")},
                "trainer_name": trainer, "inference_allowed_mirroring_axes": (0, 1, 2), "current_epoch": 3},
               model / "fold_0" / "checkpoint_final.pth")
    return model


class _Evil:
    """An object whose unpickling would write a marker file (what ``weights_only`` must never run)."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (_touch, (self.marker,))


def _touch(path: str) -> None:
    Path(path).write_text("code from the bundle ran")


def _members(bundle: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(bundle) as zf:
        return {i.filename: zf.read(i) for i in zf.infolist()}


def _write_zip(path: Path, members: dict[str, bytes], infos: list[tuple[zipfile.ZipInfo, bytes]] = ()) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
        for info, data in infos:
            zf.writestr(info, data)
    return path


def _with_manifest(members: dict[str, bytes], edit=None) -> dict[str, bytes]:
    """``members`` with a manifest whose files list matches them (after ``edit(manifest)``)."""
    import hashlib

    members = {k: v for k, v in members.items() if k != "manifest.json"}
    manifest = json.loads(_BASE_MANIFEST)
    manifest["files"] = {n: {"sha256": hashlib.sha256(d).hexdigest(), "size": len(d)} for n, d in members.items()}
    if edit is not None:
        edit(manifest)
    return {**members, "manifest.json": json.dumps(manifest).encode()}


_BASE_MANIFEST = json.dumps({"format": "procto-bundle", "format_version": 1, "name": "bad", "task": "staging",
                             "architecture": "staging_f_rmc5", "framework": "procto", "model_path": "model/model.pt"})


# ------------------------------------------------------------------------------------------------ engine models
def test_staging_round_trip_api(staging_run: Path, home: Path) -> None:
    """export → install → open: the manifest says what the run recorded, and the installed model predicts exactly
    what the run's model.pt predicts."""
    from procto.bundle.manifest import sha256_file
    from procto.infer.staging import predict_stage

    bundle = export_bundle(staging_run / "run", staging_run / "stg.procto")
    with zipfile.ZipFile(bundle) as zf:
        manifest = json.loads(zf.read("manifest.json"))
        assert sorted(zf.namelist()) == ["manifest.json", "model/config.json", "model/log.csv", "model/model.pt"]
    assert manifest["format_version"] == 1 and manifest["name"] == "stg"
    assert (manifest["task"], manifest["architecture"], manifest["modality"]) == ("staging", "staging_f_rmc5", "MR")
    assert manifest["labels"] == {"0": "T2", "1": "T3"} and manifest["config"]["depth"] == TINY["depth"]
    assert manifest["training_data"] == {"epochs": 1, "iterations": 1}
    assert manifest["files"]["model/model.pt"]["sha256"] == sha256_file(staging_run / "run" / "model.pt")

    installed = install_bundle(bundle)
    assert installed == home / "bundles" / "stg"
    assert [(b["name"], b["task"], b["modality"]) for b in list_bundles()] == [("stg", "staging", "MR")]
    opened = open_bundle("stg", task="staging")
    assert opened.task == "staging" and opened.model_path == installed / "model" / "model.pt"
    image, label = read_image(staging_run / "t2.nii.gz"), read_image(staging_run / "mask.nii.gz")
    original = predict_stage(staging_run / "run" / "model.pt", image, label)
    assert predict_stage(opened.model_path, image, label) == original
    from_file = resolve_model(bundle, "staging")  # a bundle file: extracted once into $PROCTO_HOME/cache
    assert from_file.parent.parent.parent == home / "cache"
    assert predict_stage(from_file, image, label) == original
    with pytest.raises(InputError, match="is a staging .*bundle, not usam"):
        resolve_model("stg", "usam")


def test_cli_predict_with_bundle_file_and_installed_name(staging_run: Path, home: Path, tmp_path: Path) -> None:
    """`procto bundle export|install|list` and `procto predict staging --model` with the run's model.pt, the .procto
    file and the installed name write the same file."""
    bundle = tmp_path / "clinic.procto"
    result = runner.invoke(app, ["bundle", "export", "--model", str(staging_run / "run"), "-o", str(bundle)])
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["bundle", "install", str(bundle), "--name", "stg_cli"])
    assert result.exit_code == 0, result.output
    assert (home / "bundles" / "stg_cli" / "manifest.json").is_file()
    outputs = []
    for model in (staging_run / "run" / "model.pt", bundle, "stg_cli"):
        out = tmp_path / f"stage_{len(outputs)}.json"
        result = runner.invoke(app, ["predict", "staging", "--model", str(model), "-i", str(staging_run / "t2.nii.gz"),
                                     "--mask", str(staging_run / "mask.nii.gz"), "-o", str(out)])
        assert result.exit_code == 0, result.output
        outputs.append(out.read_bytes())
    assert outputs[0] == outputs[1] == outputs[2]
    result = runner.invoke(app, ["bundle", "list"])
    assert result.exit_code == 0 and "stg_cli" in result.output and "staging" in result.output, result.output
    # installing the same name again needs --force
    err = _error_line(runner.invoke(app, ["bundle", "install", str(bundle), "--name", "stg_cli"]), bundle)
    assert "already installed" in err
    assert runner.invoke(app, ["bundle", "install", str(bundle), "--name", "stg_cli", "--force"]).exit_code == 0


def test_every_predict_verb_resolves_bundles_and_checks_their_task(home: Path, tmp_path: Path) -> None:
    """Each predict verb sends --model through resolve_model: a bundle of another task is one line, exit 2."""
    bundle = export_bundle(_fake_engine_run(tmp_path / "run"), tmp_path / "stg.procto")
    write_image(Volume(np.zeros((4, 8, 8), np.float32)), tmp_path / "ct.nii.gz")
    ct = str(tmp_path / "ct.nii.gz")
    for verb, args in (("usam", ["-i", ct, "-o", str(tmp_path / "o.nii.gz")]),
                       ("cosam", ["--ct", ct, "--out", str(tmp_path / "o.nii.gz")]),
                       ("rcsegnext", ["-i", ct, "-o", str(tmp_path / "o.nii.gz"), "--device", "cpu"]),
                       ("agcrc", ["--ct", ct, "--ts", ct, "--out", str(tmp_path / "o.nii.gz"), "--device", "cpu"])):
        result = runner.invoke(app, ["predict", verb, "--model", str(bundle), *args])
        assert f"is a staging (staging_f_rmc5) bundle, not {verb}" in _error_line(result, bundle), verb
    assert not (tmp_path / "o.nii.gz").exists()


def test_export_details_and_resolve_model_leaves_plain_paths(home: Path, tmp_path: Path, monkeypatch) -> None:
    """A resumable checkpoint is exported without its optimizer state; validation values the run logged are kept;
    plain paths pass resolve_model unchanged (an existing path wins over an installed name); a damaged cache entry
    is extracted again."""
    run = _fake_engine_run(tmp_path / "run", extra={"training": {"optimizer": {"state": {}}}})
    bundle = export_bundle(run / "model.pt", tmp_path / "b.procto", name="fake")
    manifest = json.loads(_members(bundle)["manifest.json"])
    assert manifest["validation"] == {"last_epoch": {"epoch": 2, "val_acc": 0.8}}
    assert manifest["name"] == "fake" and manifest["model_kwargs"] == {"aggregation": "bilinear"}
    record = torch.load(io.BytesIO(_members(bundle)["model/model.pt"]), weights_only=True)
    assert "training" not in record and torch.equal(record["state_dict"]["w"], torch.arange(4.0))

    assert resolve_model(run / "model.pt", "staging") == run / "model.pt"
    assert resolve_model("no_such_model", "staging") == Path("no_such_model")
    install_bundle(bundle)
    assert resolve_model("fake", "staging") == home / "bundles" / "fake" / "model" / "model.pt"
    (tmp_path / "fake").mkdir()
    monkeypatch.chdir(tmp_path)
    assert resolve_model("fake", "staging") == Path("fake")
    cached = resolve_model(bundle, "staging")
    cached.write_bytes(b"damaged")
    assert resolve_model(bundle, "staging") == cached and torch.load(cached, weights_only=True)["task"] == "staging"

    with pytest.raises(InputError, match="no model.pt"):
        (run / "model.pt").rename(run / "last.pt")
        export_bundle(run, tmp_path / "c.procto")
    result = runner.invoke(app, ["bundle", "export", "--model", str(run / "last.pt"), "-o", str(tmp_path / "c.zip")])
    _error_line(result, tmp_path / "c.zip")
    assert not (tmp_path / "c.zip").exists() and not (tmp_path / "c.procto").exists()


def test_bundle_list_when_nothing_is_installed(home: Path) -> None:
    result = runner.invoke(app, ["bundle", "list"])
    assert result.exit_code == 0 and "no bundles installed" in result.output
    assert list_bundles() == [] and _empty(home)


# ------------------------------------------------------------------------------------------------ nnU-Net models
def test_nnunet_model_folder_round_trip(home: Path, tmp_path: Path, monkeypatch) -> None:
    """An nnU-Net run exports plans, dataset.json, fingerprint and a weights-only checkpoint (the optimizer and the
    numpy log stay behind); the installed folder is a model folder the predictor takes, and `procto predict
    rcsegnext` gives the same file with the original folder, the .procto file and the installed name."""
    from procto.infer.nnunet import NNUNetPredictor, find_model_dir

    model_dir = _nnunet_run(tmp_path / "runs")
    bundle = export_bundle(tmp_path / "runs", tmp_path / "rcs.procto")
    manifest = json.loads(_members(bundle)["manifest.json"])
    assert (manifest["task"], manifest["architecture"], manifest["framework"]) == ("rcsegnext", "rcsegnext_b",
                                                                                    "nnunetv2")
    assert manifest["modality"] == "MR" and manifest["spacing"] == [4.0, 1.75, 1.75]
    assert manifest["labels"] == {"0": "background", "1": "rectum", "2": "tumour"}
    data = manifest["training_data"]
    assert data["cases"] == 3 and data["num_training"] == 3 and data["median_spacing"] == [4.0, 1.75, 1.75]
    assert data["intensity_statistics"]["0"]["mean"] == 0.4
    assert manifest["validation"] == {"fold_0": {"foreground_mean": {"Dice": 0.8},
                                                 "mean": {"1": {"Dice": 0.9}, "2": {"Dice": None}}}}
    assert manifest["nnunet"]["trainer"] == TRAINER and manifest["nnunet"]["folds"] == ["0"]
    base = f"model/{model_dir.name}"
    assert sorted(manifest["files"]) == [f"{base}/dataset.json", f"{base}/dataset_fingerprint.json",
                                         f"{base}/fold_0/checkpoint_final.pth", f"{base}/plans.json"]
    checkpoint = torch.load(io.BytesIO(_members(bundle)[f"{base}/fold_0/checkpoint_final.pth"]), weights_only=True)
    assert sorted(checkpoint) == ["current_epoch", "inference_allowed_mirroring_axes", "init_args",
                                  "network_weights", "trainer_name"]
    assert torch.equal(checkpoint["network_weights"]["w"], torch.arange(6.0).reshape(2, 3))
    assert checkpoint["init_args"]["device"] == "cpu" and checkpoint["inference_allowed_mirroring_axes"] == (0, 1, 2)

    installed = install_bundle(bundle, name="rcs")
    opened = open_bundle("rcs", task="rcsegnext")
    assert opened.model_path == installed / "model" / model_dir.name
    assert find_model_dir(opened.model_path) == (opened.model_path, None)

    seen = []

    def fake_probabilities(self, v):  # the network is not loaded: a threshold of the image stands in for it
        seen.append(self.model_dir)
        a = v.array
        return np.stack([a < 0.3, (a >= 0.3) & (a < 0.7), a >= 0.7]).astype(np.float32)

    monkeypatch.setattr(NNUNetPredictor, "probabilities", fake_probabilities)
    write_image(Volume(np.random.default_rng(0).random((4, 8, 8)).astype(np.float32)), tmp_path / "case_0000.nii.gz")
    outputs = []
    for model in (tmp_path / "runs", bundle, "rcs"):
        out = tmp_path / f"seg{len(outputs)}.nii.gz"
        result = runner.invoke(app, ["predict", "rcsegnext", "--model", str(model), "-i",
                                     str(tmp_path / "case_0000.nii.gz"), "-o", str(out), "--device", "cpu"])
        assert result.exit_code == 0, result.output
        outputs.append(read_image(out).array)
    assert np.array_equal(outputs[0], outputs[1]) and np.array_equal(outputs[0], outputs[2])
    assert seen[0] == model_dir and seen[1].parent.parent.parent == home / "cache" and seen[2] == opened.model_path


def _nnunet_zip(root: Path, trainer: str = TRAINER, checkpoint: bytes | None = None) -> Path:
    """What nnUNetv2_export_model_to_zip writes (members relative to nnUNet_results), plus a pickle that must never
    be read."""
    model_dir = _nnunet_run(root, trainer)
    results = model_dir.parent.parent
    members = {p.relative_to(results).as_posix(): p.read_bytes() for p in model_dir.rglob("*") if p.is_file()}
    prefix = model_dir.relative_to(results).as_posix()
    members[f"{prefix}/fold_0/progress.png"] = b"\x89PNG not really"
    members[f"{prefix}/crossval_results_folds_0/postprocessing.pkl"] = b"\x80\x04not loaded"
    if checkpoint is not None:
        members[f"{prefix}/fold_0/checkpoint_final.pth"] = checkpoint
    return _write_zip(root / "Dataset501_X_rcs.zip", members)


def test_nnunet_export_zip_installs(home: Path, tmp_path: Path) -> None:
    """An nnU-Net model zip installs as a bundle: the task from procto's trainer name (or --task), only what a
    predictor needs is extracted (the checkpoint byte for byte), and procto writes its manifest."""
    from procto.bundle.manifest import sha256_file

    zipped = _nnunet_zip(tmp_path / "a")
    installed = install_bundle(zipped)
    assert installed == home / "bundles" / "Dataset501_X_rcs"
    manifest = json.loads((installed / "manifest.json").read_text())
    assert manifest["task"] == "rcsegnext" and manifest["source"] == {"nnunet_zip": zipped.name}
    folder = f"model/{TRAINER}__nnUNetPlans__3d_fullres"
    assert sorted(manifest["files"]) == [f"{folder}/dataset.json", f"{folder}/dataset_fingerprint.json",
                                         f"{folder}/fold_0/checkpoint_final.pth",
                                         f"{folder}/fold_0/validation/summary.json", f"{folder}/plans.json"]
    original = tmp_path / "a" / "nnUNet_results" / "Dataset501_X" / folder[len("model/"):]
    assert sha256_file(installed / folder / "fold_0" / "checkpoint_final.pth") == \
        sha256_file(original / "fold_0" / "checkpoint_final.pth")
    assert open_bundle("Dataset501_X_rcs", task="rcsegnext").model_path == installed / folder

    plain = _nnunet_zip(tmp_path / "b", trainer="nnUNetTrainer")  # nnU-Net's own trainer: the task must be given
    err = _error_line(runner.invoke(app, ["bundle", "install", str(plain), "--name", "plain"]), plain)
    assert "--task" in err and not (home / "bundles" / "plain").exists()
    result = runner.invoke(app, ["bundle", "install", str(plain), "--name", "plain", "--task", "rcsegnext"])
    assert result.exit_code == 0, result.output
    assert open_bundle("plain").task == "rcsegnext"


# ------------------------------------------------------------------------------------------------ refused files
def _bad_bundles(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    """Bad files made from a good (tiny) bundle: name → (file, what the error says)."""
    good = export_bundle(_fake_engine_run(tmp_path / "run"), tmp_path / "good.procto")
    members = _members(good)
    out: dict[str, tuple[Path, str]] = {}

    def add(name: str, data_or_members, says: str) -> None:
        path = tmp_path / f"{name}.procto"
        if isinstance(data_or_members, bytes):
            path.write_bytes(data_or_members)
        else:
            _write_zip(path, *data_or_members)
        out[name] = (path, says)

    raw = good.read_bytes()
    add("truncated", raw[: len(raw) // 2], "not a readable zip file")
    weights = bytearray(members["model/model.pt"])
    weights[-200] ^= 0xFF  # same size, other bytes: the zip's CRC is right, the manifest's sha256 is not
    add("tampered", ({**members, "model/model.pt": bytes(weights)},), "sha256 does not match")
    add("foreign", ({"readme.txt": b"hello"},), "not a procto bundle (no manifest.json)")
    add("dotdot", (_with_manifest({**members, "../evil": b"x"}),), "unsafe member path '../evil'")
    add("absolute", (members, [(zipfile.ZipInfo("/tmp/evil"), b"x")]), "unsafe member path '/tmp/evil'")
    link = zipfile.ZipInfo("model/link")
    link.external_attr = (stat.S_IFLNK | 0o777) << 16
    add("symlink", (members, [(link, b"/etc/passwd")]), "symbolic link")
    add("unlisted", ({**members, "model/extra.bin": b"x"},), "'model/extra.bin' is not listed in manifest.json")
    add("version", (_with_manifest(members, lambda m: m.update(format_version=99)),),
        "unknown bundle format version 99")
    evil = io.BytesIO()
    torch.save({"format": "procto-checkpoint", "task": "staging", "obj": _Evil(tmp_path / "ran.txt")}, evil)
    add("pickle", (_with_manifest({**members, "model/model.pt": evil.getvalue()}),),
        "not loadable as plain weights")
    return out


def test_bad_files_are_one_line_errors_and_write_nothing(home: Path, tmp_path: Path) -> None:
    """Truncated, tampered, foreign, unsafe (`..`, absolute, link, unlisted member), unknown version and a pickle
    that is not weights-only: `bundle install` and `predict --model X.procto` print one line, exit 2, write nothing
    into $PROCTO_HOME and never run code from the file."""
    write_image(Volume(np.zeros((8, 48, 40), np.float32)), tmp_path / "t2.nii.gz")
    for name, (path, says) in _bad_bundles(tmp_path).items():
        err = _error_line(runner.invoke(app, ["bundle", "install", str(path)]), path)
        assert says in err, (name, err)
        assert _empty(home), name
        err = _error_line(runner.invoke(app, ["predict", "staging", "--model", str(path), "-i",
                                              str(tmp_path / "t2.nii.gz")]), path)
        assert says in err, (name, err)
        assert _empty(home), name
        with pytest.raises(InputError):
            open_bundle(path)
    assert not (tmp_path / "ran.txt").exists()
    # an nnU-Net zip whose checkpoint is not weights-only is refused the same way
    evil = io.BytesIO()
    torch.save({"network_weights": {}, "obj": _Evil(tmp_path / "ran.txt")}, evil)
    zipped = _nnunet_zip(tmp_path / "nn", checkpoint=evil.getvalue())
    assert "not loadable as plain weights" in _error_line(runner.invoke(app, ["bundle", "install", str(zipped)]),
                                                          zipped)
    assert _empty(home) and not (tmp_path / "ran.txt").exists()
