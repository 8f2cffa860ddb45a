"""procto's nnU-Net v2 trainers (RCSegNeXt and its variants): generated from one table, lookup by name, plans
rewriting, network building through the registry, per-trainer epoch callback, and a tiny real
``nnUNetv2_train ... -tr nnUNetTrainerRCSegNeXt -device cpu`` run."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from procto.infer.nnunet_env import TRAINER_DIR, nnunet_environment, register_trainer_path
from procto.nets.plan import plan_kernels_strides
from procto.train.nnunet.models import TRAINER_NAMES, TRAINER_TABLE
from procto.train.nnunet.options import (
    ENV_BATCH,
    ENV_EPOCHS,
    ENV_ITERS,
    ENV_LR,
    ENV_PATCH,
    ENV_SKIP_VALIDATION,
    ENV_VAL_ITERS,
)

SPACING = [4.0, 0.875, 0.875]


def _configuration(spacing=SPACING, patch=(20, 320, 256)) -> dict:
    """A 3d_fullres configuration as nnU-Net's default planner writes it (PlainConvUNet, 6 stages)."""
    return {
        "data_identifier": "nnUNetPlans_3d_fullres", "preprocessor_name": "DefaultPreprocessor", "batch_size": 2,
        "patch_size": list(patch), "median_image_size_in_voxels": [22, 400, 400], "spacing": list(spacing),
        "normalization_schemes": ["ZScoreNormalization"], "use_mask_for_norm": [False],
        "resampling_fn_data": "resample_data_or_seg_to_shape", "resampling_fn_seg": "resample_data_or_seg_to_shape",
        "resampling_fn_data_kwargs": {}, "resampling_fn_seg_kwargs": {},
        "resampling_fn_probabilities": "resample_data_or_seg_to_shape", "resampling_fn_probabilities_kwargs": {},
        "batch_dice": False,
        "architecture": {
            "network_class_name": "dynamic_network_architectures.architectures.unet.PlainConvUNet",
            "arch_kwargs": {"n_stages": 6, "features_per_stage": [32, 64, 128, 256, 320, 320],
                            "kernel_sizes": [[1, 3, 3]] * 2 + [[3, 3, 3]] * 4,
                            "strides": [[1, 1, 1], [1, 2, 2], [1, 2, 2], [2, 2, 2], [2, 2, 2], [1, 2, 2]]},
            "_kw_requires_import": [],
        },
    }


def _plans(cfg: dict) -> dict:
    return {"dataset_name": "Dataset990_Unit", "plans_name": "nnUNetPlans",
            "original_median_spacing_after_transp": cfg["spacing"],
            "original_median_shape_after_transp": [22, 400, 400],
            "image_reader_writer": "SimpleITKIO", "transpose_forward": [0, 1, 2], "transpose_backward": [0, 1, 2],
            "configurations": {"3d_fullres": cfg}, "experiment_planner_used": "ExperimentPlanner",
            "label_manager": "LabelManager", "foreground_intensity_properties_per_channel": {}}


DATASET_JSON = {"channel_names": {"0": "T2"}, "labels": {"background": 0, "rectum": 1, "tumour": 2},
                "numTraining": 4, "file_ending": ".nii.gz"}


@pytest.fixture(scope="module")
def tr():
    """The trainers module, imported (with nnU-Net) inside procto's nnU-Net environment as procto itself does."""
    with nnunet_environment():
        from procto.train.nnunet import trainers
    return trainers


# ------------------------------------------------------------------------------------------------------ lookup
@pytest.mark.parametrize("name", sorted(TRAINER_NAMES.values()))
def test_nnunet_finds_every_trainer_through_ext_trainer_path(name, tr, monkeypatch):
    from nnunetv2.utilities.find_objects import recursive_find_trainer_class_by_name

    monkeypatch.delenv("nnUNet_extTrainer", raising=False)
    register_trainer_path()
    cls = recursive_find_trainer_class_by_name(name)
    assert cls is getattr(tr, name)  # the very class procto defines, not a copy imported under another name
    key = next(k for k, spec in TRAINER_TABLE.items() if spec.class_name == name)
    assert cls is tr.TRAINERS[key] and cls.model_name == TRAINER_TABLE[key].model and cls.trainer_key == key
    assert cls.__module__ == tr.__name__ and cls.__qualname__ == name  # pickles by reference


def test_trainer_classes_come_from_the_table_only(tr):
    """One table entry per trainer: every generated class is a subclass of its family's base class whose only own
    attributes are its model name, trainer key, the family's options, docstring and module (nothing written by hand
    per model); the old module path still gives them."""
    import pickle

    import procto.train.nnunet_rcsegnext as old_path

    assert set(tr.TRAINERS) == set(TRAINER_TABLE)
    for key, cls in tr.TRAINERS.items():
        spec = TRAINER_TABLE[key]
        assert cls.__bases__ == (tr.FAMILIES[spec.family],)
        assert issubclass(cls, tr.ProctoNNUNetTrainer)
        options = {name for name, _ in spec.options}
        assert set(vars(cls)) <= {"model_name", "trainer_key", "__doc__", "__module__", "__qualname__"} | options
        assert pickle.loads(pickle.dumps(cls)) is cls
        assert getattr(old_path, cls.__name__) is cls


def test_register_trainer_path_keeps_other_entries():
    env = {"nnUNet_extTrainer": "/somewhere/else"}
    value = register_trainer_path(env)
    assert value.split(os.pathsep) == ["/somewhere/else", str(TRAINER_DIR)]
    assert register_trainer_path(env) == value  # idempotent


def test_trainer_folder_holds_only_the_reexport_module():
    import pkgutil

    import procto.train.nnunet_ext

    assert TRAINER_DIR == Path(procto.train.nnunet_ext.__file__).resolve().parent
    modules = [m.name for m in pkgutil.iter_modules([str(TRAINER_DIR)])]
    assert modules == ["procto_trainers"]


def test_nnunet_environment_sets_and_restores_process_count(monkeypatch):
    """nnU-Net's process count is set inside procto's nnU-Net environment only (never at import), unless the user set
    it; the environment is restored afterwards."""
    monkeypatch.delenv("nnUNet_def_n_proc", raising=False)
    with nnunet_environment():
        assert 1 <= int(os.environ["nnUNet_def_n_proc"]) <= 8
        assert str(TRAINER_DIR) in os.environ["nnUNet_extTrainer"].split(os.pathsep)
    assert "nnUNet_def_n_proc" not in os.environ
    monkeypatch.setenv("nnUNet_def_n_proc", "3")
    with nnunet_environment():
        assert os.environ["nnUNet_def_n_proc"] == "3"


def test_install_shim_writes_an_importable_reexport(tr, tmp_path, monkeypatch):
    """``procto nnunet-trainers --install`` (for setups without environment variables): a one-line module that
    re-exports the trainers (written here to a temporary folder, not into site-packages)."""
    import importlib.util

    target = tmp_path / tr.SHIM_NAME
    monkeypatch.setattr(tr, "_shim_path", lambda: target)
    assert tr.install_shim() == target
    spec = importlib.util.spec_from_file_location("procto_shim_under_test", target)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert mod.nnUNetTrainerRCSegNeXt is tr.nnUNetTrainerRCSegNeXt
    assert len(target.read_text().splitlines()) == 2
    tr.uninstall_shim()
    assert not target.exists()


# ------------------------------------------------------------------------------------------------------ plans
def test_configuration_uses_algorithm1_strides_and_paper_patch(tr):
    cfg = tr.rcsegnext_configuration(_configuration(), "rcsegnext_b")
    strides, kernels = plan_kernels_strides(SPACING)
    arch = cfg["architecture"]
    assert arch["network_class_name"] == "procto.nets.rcsegnext.RCSegNeXt"
    assert arch["arch_kwargs"]["strides"] == [[1, 1, 1]] + strides
    assert arch["arch_kwargs"]["kernel_sizes"] == kernels
    assert cfg["patch_size"] == [16, 320, 256]  # paper's [16, 320, 320] capped by nnU-Net's planned x extent
    assert cfg["batch_size"] == 2
    assert cfg["spacing"] == SPACING and cfg["data_identifier"] == "nnUNetPlans_3d_fullres"  # preprocessing intact


def test_patch_choice_rounds_to_total_stride(tr):
    assert tr.choose_patch_size(SPACING, None) == [16, 320, 320]
    assert tr.choose_patch_size(SPACING, [24, 96, 96]) == [16, 96, 96]
    assert tr.choose_patch_size(SPACING, [24, 90, 90]) == [16, 96, 96]  # planned patch rounded up: one full window
    assert tr.choose_patch_size(SPACING, [24, 96, 96], [18, 100, 50]) == [16, 96, 48]
    assert tr.choose_patch_size([4.0, 1.75, 1.75], None, [16, 48, 48]) == [16, 48, 48]


def test_deep_supervision_scales_match_network_outputs(tr):
    """nnU-Net derives the deep-supervision target scales from pool_op_kernel_sizes: they must be exactly the scales
    of the network's outputs."""
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    spacing = [4.0, 1.75, 1.75]
    plans = tr.rcsegnext_plans(_plans(_configuration(spacing, (16, 48, 48))), "3d_fullres", patch_size=(16, 48, 48))
    pm = PlansManager(plans)
    cm = pm.get_configuration("3d_fullres")
    scales = list(list(i) for i in 1 / np.cumprod(np.vstack(cm.pool_op_kernel_sizes), axis=0))[:-1]
    net = tr.nnUNetTrainerRCSegNeXt.build_network_architecture(pm, cm, 1, 3, True)
    with torch.no_grad():
        outs = net(torch.zeros(1, 1, *cm.patch_size))
    assert len(outs) == len(scales)
    for out, scale in zip(outs, scales):
        assert list(out.shape[2:]) == [round(p * s) for p, s in zip(cm.patch_size, scale)]


@pytest.mark.parametrize("name, params", [("nnUNetTrainerRCSegNeXt", 2_759_363),
                                          ("nnUNetTrainerRCSegNeXtL", 10_767_651)])
def test_build_network_architecture_gives_the_papers_models(tr, name, params):
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    from procto.nets.rcsegnext import RCSegNeXt

    cls = getattr(tr, name)

    pm = PlansManager(_plans(_configuration()))  # even nnU-Net's own (PlainConvUNet) configuration
    net = cls.build_network_architecture(pm, pm.get_configuration("3d_fullres"), 1, 3, False)
    assert isinstance(net, RCSegNeXt)
    assert net.paper_num_parameters() == params
    assert net.strides == plan_kernels_strides(SPACING)[0]
    assert net.decoder.deep_supervision is False


def test_build_refuses_plans_that_disagree_with_algorithm1(tr):
    from nnunetv2.utilities.plans_handling.plans_handler import ConfigurationManager

    cfg = tr.rcsegnext_configuration(_configuration())
    cfg["architecture"]["arch_kwargs"]["strides"][1] = [2, 2, 2]
    with pytest.raises(RuntimeError, match="disagree"):
        tr.build_rcsegnext(ConfigurationManager(cfg), 1, 3)


def test_trainer_settings_paper_defaults_and_env_overrides(tr, tmp_path, monkeypatch):
    monkeypatch.setenv("nnUNet_preprocessed", str(tmp_path / "pre"))
    monkeypatch.setenv("nnUNet_results", str(tmp_path / "res"))
    for var in (ENV_EPOCHS, ENV_ITERS, ENV_PATCH, ENV_BATCH, ENV_VAL_ITERS, ENV_LR):
        monkeypatch.delenv(var, raising=False)
    plans = _plans(_configuration())
    plans["continue_training"] = False
    t = tr.nnUNetTrainerRCSegNeXt(plans, "3d_fullres", 0, DATASET_JSON, torch.device("cpu"))
    assert (t.num_epochs, t.num_iterations_per_epoch, t.initial_lr) == (100, 250, 0.01)
    assert t.configuration_manager.patch_size == [16, 320, 256] and t.configuration_manager.batch_size == 2
    assert t.enable_deep_supervision
    assert t.epoch_callback is None and not hasattr(tr, "EPOCH_CALLBACK")  # per trainer object, no module global
    assert t.output_folder.endswith("nnUNetTrainerRCSegNeXt__nnUNetPlans__3d_fullres/fold_0")

    monkeypatch.setenv(ENV_EPOCHS, "3")
    monkeypatch.setenv(ENV_ITERS, "7")
    monkeypatch.setenv(ENV_PATCH, "16,64,64")
    monkeypatch.setenv(ENV_BATCH, "1")
    plans = _plans(_configuration())
    plans["continue_training"] = False
    t = tr.nnUNetTrainerRCSegNeXtL(plans, "3d_fullres", 1, DATASET_JSON, torch.device("cpu"))
    assert (t.num_epochs, t.num_iterations_per_epoch) == (3, 7)
    assert t.configuration_manager.patch_size == [16, 64, 64] and t.configuration_manager.batch_size == 1
    # the optimiser is nnU-Net's: SGD, Nesterov momentum 0.99, poly decay
    t.network = tr.nnUNetTrainerRCSegNeXtL.build_network_architecture(t.plans_manager, t.configuration_manager, 1, 3)
    opt, sched = t.configure_optimizers()
    assert isinstance(opt, torch.optim.SGD)
    assert opt.defaults["momentum"] == 0.99 and opt.defaults["nesterov"] and opt.defaults["lr"] == 0.01
    assert type(sched).__name__ == "PolyLRScheduler"


# ------------------------------------------------------------------------------------------------------ real run
def _console_script(name: str) -> str:
    here = Path(sys.executable).parent / name
    found = str(here) if here.exists() else shutil.which(name)
    if not found:
        pytest.skip(f"{name} console script not installed")
    return found


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_nnunetv2_train_console_script_trains_rcsegnext(tr, tmp_path):
    """``nnUNetv2_train <id> 3d_fullres 0 -tr nnUNetTrainerRCSegNeXt -device cpu`` (the real console script) on a
    phantom data set that procto planned and preprocessed: the checkpoint holds an RCSegNeXt."""
    from procto.phantom import write_cohort
    from procto.infer.nnunet import RCSegNeXtPredictor
    from procto.infer.nnunet_env import NNUNetFolders
    from procto.train.nnunet import plan_and_preprocess

    raw = tmp_path / "raw"
    data = write_cohort(raw, 5, "mri", seed=100, dataset_id=991, name="TrainerScript", shape=(16, 48, 48),
                        spacing=(4.0, 1.75, 1.75), center="rectum")
    folders = NNUNetFolders(raw, tmp_path / "pre", tmp_path / "res")
    with nnunet_environment(folders):
        plan_and_preprocess(991, data.name, folders, num_processes=1)

    import procto

    env = dict(os.environ)
    # the console script's interpreter must import this very procto (the trainer module re-exports from it)
    env["PYTHONPATH"] = os.pathsep.join([str(Path(procto.__file__).resolve().parents[1]), env.get("PYTHONPATH", "")])
    env.update({"nnUNet_raw": str(raw), "nnUNet_preprocessed": str(folders.preprocessed),
                "nnUNet_results": str(folders.results), "nnUNet_extTrainer": str(TRAINER_DIR),
                "nnUNet_n_proc_DA": "0", "nnUNet_def_n_proc": "1", "OMP_NUM_THREADS": "1",
                ENV_EPOCHS: "1", ENV_ITERS: "2", ENV_VAL_ITERS: "1", ENV_PATCH: "16,48,48",
                ENV_SKIP_VALIDATION: "1"})
    proc = subprocess.run([_console_script("nnUNetv2_train"), "991", "3d_fullres", "0", "-tr",
                           "nnUNetTrainerRCSegNeXt", "-device", "cpu"], env=env, capture_output=True, text=True,
                          timeout=540)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "Using trainer 'nnUNetTrainerRCSegNeXt' from" in proc.stdout

    model_dir = folders.results / data.name / "nnUNetTrainerRCSegNeXt__nnUNetPlans__3d_fullres"
    ckpt = model_dir / "fold_0" / "checkpoint_final.pth"
    assert ckpt.is_file()
    checkpoint = torch.load(ckpt, map_location="cpu", weights_only=False)
    assert checkpoint["trainer_name"] == "nnUNetTrainerRCSegNeXt"
    assert checkpoint["current_epoch"] == 1
    plans = json.loads((model_dir / "plans.json").read_text())
    arch = plans["configurations"]["3d_fullres"]["architecture"]
    assert arch["network_class_name"] == "procto.nets.rcsegnext.RCSegNeXt"
    assert arch["arch_kwargs"]["strides"][1:] == plan_kernels_strides([4.0, 1.75, 1.75])[0]

    from procto.nets.rcsegnext import RCSegNeXt

    net = RCSegNeXtPredictor(model_dir, [0], device="cpu").network  # nnU-Net's predictor rebuilds it by trainer name
    assert isinstance(net, RCSegNeXt)
    weights = checkpoint["network_weights"]
    assert set(weights) == set(net.state_dict())
    assert all(torch.equal(weights[k], v) for k, v in net.state_dict().items())
