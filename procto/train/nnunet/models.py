"""The table of procto models that train through nnU-Net v2: model name → nnU-Net trainer class name.

:mod:`procto.train.nnunet.trainers` generates one trainer class per entry (nnU-Net finds it by that class name:
``nnUNetv2_train ... -tr nnUNetTrainerRCSegNeXt``); each builds its network with
``procto.nets.create_model(<model name>, input_channels=..., num_classes=..., spacing=..., deep_supervision=...)``.
Adding a model or a variant is one entry here, given a ``procto.nets`` registry builder that takes those arguments and
returns a network with a ``nnunet_arch_kwargs()`` method (see :class:`procto.nets.rcsegnext.RCSegNeXt`).

This module imports nothing heavy, so the names are known without importing nnU-Net.
"""

from __future__ import annotations

from pathlib import Path

from procto.errors import InputError

#: nnU-Net configuration and plans procto trains.
CONFIGURATION = "3d_fullres"
PLANS = "nnUNetPlans"

#: Model name (``procto.nets`` registry) → (nnU-Net trainer class name, what the trainer trains).
TRAINER_TABLE: dict[str, tuple[str, str]] = {
    "rcsegnext_b": ("nnUNetTrainerRCSegNeXt", "RCSegNeXt-B (2.76 M parameters)"),
    "rcsegnext_l": ("nnUNetTrainerRCSegNeXtL", "RCSegNeXt-L (10.77 M parameters)"),
    "rcsegnext_b_plain": ("nnUNetTrainerRCSegNeXt_Plain",
                          "Table 4 baseline: plain convolution blocks everywhere (3D U-Net with anisotropic kernels "
                          "and IN)"),
    "rcsegnext_b_conv": ("nnUNetTrainerRCSegNeXt_Conv",
                         "Table 4: AniNeXt in anisotropic stages, plain convolutions in isotropic ones"),
    "rcsegnext_b_convnext": ("nnUNetTrainerRCSegNeXt_ConvNeXt", "Table 4: AniNeXt + ConvNeXt blocks"),
    "rcsegnext_b_res2net": ("nnUNetTrainerRCSegNeXt_Res2Net", "Table 4: AniNeXt + Res2Net blocks"),
    "rcsegnext_b_res2next": ("nnUNetTrainerRCSegNeXt_Res2NeXt", "Table 4: AniNeXt + Res2NeXt blocks"),
    "rcsegnext_b_grouped": ("nnUNetTrainerRCSegNeXt_Grouped",
                            "not in Table 4: IsoNeXt with SAIM's grouped convolutions but no channel regrouping"),
}

#: Model name → nnU-Net trainer class name (``-tr``).
TRAINER_NAMES: dict[str, str] = {model: name for model, (name, _) in TRAINER_TABLE.items()}


def trainer_name_for(model: str) -> str:
    """The nnU-Net trainer class name of procto model ``model``."""
    if model not in TRAINER_NAMES:
        raise InputError(f"no nnU-Net trainer for model {model!r}; known: {', '.join(TRAINER_NAMES)}")
    return TRAINER_NAMES[model]


def model_dir_for(results, dataset_name: str, model: str = "rcsegnext_b") -> Path:
    """nnU-Net's results folder of ``model`` trained on ``dataset_name`` (``plans.json``, ``dataset.json``, folds);
    ``results``: nnU-Net's results folder, or a :class:`procto.infer.nnunet_env.NNUNetFolders`."""
    folder = f"{trainer_name_for(model)}__{PLANS}__{CONFIGURATION}"
    return Path(getattr(results, "results", results)) / dataset_name / folder


__all__ = ["CONFIGURATION", "PLANS", "TRAINER_TABLE", "TRAINER_NAMES", "trainer_name_for", "model_dir_for"]
