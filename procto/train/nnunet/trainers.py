"""procto's models inside nnU-Net v2: trainer classes that nnU-Net finds by name, generated from one table.

``nnUNetv2_train DATASET 3d_fullres FOLD -tr nnUNetTrainerRCSegNeXt`` trains RCSegNeXt-B with the paper's settings on
top of nnU-Net's pipeline (preprocessing, default data augmentation, CE + Dice loss with deep supervision, SGD with
Nesterov momentum 0.99, initial learning rate 0.01 with 'poly' decay, sliding-window inference with Gaussian weighting
and mirroring).  Every entry of :data:`procto.train.nnunet.models.TRAINER_TABLE` (model name → class name) becomes a
module-level subclass of :class:`ProctoNNUNetTrainer` with that class name; the class builds its network with
``procto.nets.create_model(model_name, input_channels=..., num_classes=..., spacing=..., deep_supervision=...)``, with
as many input channels as the data set's ``dataset.json`` lists.

How nnU-Net finds these classes
-------------------------------
nnU-Net 2.8.1 looks a trainer up by class name
(``nnunetv2.utilities.find_objects.recursive_find_trainer_class_by_name``): first in its own package
``nnunetv2.training.nnUNetTrainer``, then in every folder listed in the environment variable ``nnUNet_extTrainer``
(``os.pathsep``-separated).  procto ships such a folder, :data:`TRAINER_DIR` (``procto/train/nnunet_ext``), whose one
module re-exports the classes below.  procto's own commands add it to ``nnUNet_extTrainer`` by themselves
(:func:`procto.infer.nnunet_env.register_trainer_path`); for nnU-Net's console scripts set it once::

    export nnUNet_extTrainer="$(procto nnunet-trainers --path)"
    nnUNetv2_train 501 3d_fullres 0 -tr nnUNetTrainerRCSegNeXt -device cpu

Nothing is copied into site-packages (``procto nnunet-trainers --install`` can write a one-line shim there for setups
that cannot set environment variables).

What the trainer changes in the plans
-------------------------------------
The trainer rewrites the configuration it trains (normally ``3d_fullres`` of nnU-Net's default ``nnUNetPlans``) before
nnU-Net reads it (:func:`procto_configuration`): the architecture becomes the procto network of the configuration's
spacing (for RCSegNeXt the pooling strides and kernels of :func:`procto.nets.plan.plan_kernels_strides`, so nnU-Net's
``pool_op_kernel_sizes`` — and hence its deep-supervision target scales — are exactly the network's strides), the patch
size becomes the paper's ``[16, 320, 320]`` (capped per axis by the patch nnU-Net planned for the data set, rounded to a
multiple of the network's total stride) and the batch size 2.  Preprocessing (spacing, normalisation) is untouched, so
nnU-Net's preprocessed data are reused as they are.  The rewritten plans are what nnU-Net saves next to the checkpoints
(``plans.json``), so ``nnUNetv2_predict``/``nnUNetPredictor`` rebuild the same network and use the same patch.

Options (environment variables, read when a trainer is created; unset = the paper's value):

* ``PROCTO_NUM_EPOCHS`` (100, the paper), ``PROCTO_ITERS_PER_EPOCH`` (250, nnU-Net's default),
  ``PROCTO_VAL_ITERS_PER_EPOCH`` (50, nnU-Net's default), ``PROCTO_BATCH_SIZE`` (2),
  ``PROCTO_PATCH_SIZE`` (``z,y,x``; default as above), ``PROCTO_INITIAL_LR`` (0.01),
  ``PROCTO_SAVE_EVERY`` (10 epochs between ``checkpoint_latest.pth`` writes),
  ``PROCTO_SKIP_FINAL_VALIDATION`` (``1`` skips nnU-Net's prediction of the fold's validation cases after training).

A trainer object's ``epoch_callback`` (None unless set, e.g. by :func:`procto.train.nnunet.train`) is called as
``callback(trainer)`` at the end of every epoch.
"""

from __future__ import annotations

from copy import deepcopy
from pathlib import Path
from typing import Callable, Sequence

import torch
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
from nnunetv2.utilities.plans_handling.plans_handler import ConfigurationManager, PlansManager

from procto.errors import InputError
from procto.infer.nnunet_env import TRAINER_DIR, register_trainer_path
from procto.nets import create_model
from procto.nets.plan import total_stride
from procto.train.nnunet.models import TRAINER_NAMES, TRAINER_TABLE
from procto.train.nnunet.options import (  # noqa: F401  (re-exported: the trainers' settings live there)
    DEFAULT_ITERS_PER_EPOCH,
    DEFAULT_SAVE_EVERY,
    DEFAULT_VAL_ITERS_PER_EPOCH,
    ENV_BATCH,
    ENV_EPOCHS,
    ENV_ITERS,
    ENV_LR,
    ENV_PATCH,
    ENV_SAVE_EVERY,
    ENV_SKIP_VALIDATION,
    ENV_VAL_ITERS,
    PAPER_BATCH_SIZE,
    PAPER_INITIAL_LR,
    PAPER_NUM_EPOCHS,
    PAPER_PATCH_SIZE,
    PAPER_SPACING,
    parse_patch,
    skip_validation,
    trainer_settings,
)

# ----------------------------------------------------------------------------------------------------- shim
SHIM_NAME = "procto_trainers.py"
#: The shim's name before the trainers were generic (still removed by ``--uninstall``).
LEGACY_SHIM_NAME = "procto_rcsegnext_trainers.py"


def _shim_path() -> Path:
    import nnunetv2

    return Path(nnunetv2.__path__[0]) / "training" / "nnUNetTrainer" / SHIM_NAME


def install_shim() -> Path:
    """Alternative to ``nnUNet_extTrainer``: write a one-line module into nnU-Net's own trainer package that re-exports
    procto's trainers (for setups that cannot set environment variables).  Returns its path."""
    target = _shim_path()
    target.write_text('"""Written by `procto nnunet-trainers --install`; remove with --uninstall."""\n'
                      f"from {__name__} import *  # noqa: F401,F403\n")
    return target


def uninstall_shim() -> Path:
    """Remove the shim written by :func:`install_shim` (and one of an older procto); returns its path."""
    target = _shim_path()
    for path in (target, target.with_name(LEGACY_SHIM_NAME)):
        if path.exists():
            path.unlink()
    return target


# ----------------------------------------------------------------------------------------------------- networks
def _check_model(model: str) -> None:
    if model not in TRAINER_TABLE:
        raise InputError(f"no nnU-Net trainer for model {model!r}; known: {', '.join(TRAINER_TABLE)}")


def build_network(model: str, spacing: Sequence[float], input_channels: int = 1, num_classes: int = 3,
                  deep_supervision: bool = False) -> torch.nn.Module:
    """``model``'s network for a configuration's ``spacing``, from the ``procto.nets`` registry."""
    _check_model(model)
    return create_model(model, input_channels=int(input_channels), num_classes=int(num_classes),
                        spacing=[float(s) for s in spacing], deep_supervision=bool(deep_supervision))


def network_architecture(net: torch.nn.Module) -> dict:
    """The plans' ``architecture`` entry of a procto network: its class and ``net.nnunet_arch_kwargs()`` (which carry
    nnU-Net's ``strides``, read as ``pool_op_kernel_sizes``)."""
    cls = type(net)
    return {"network_class_name": f"{cls.__module__}.{cls.__qualname__}", "arch_kwargs": net.nnunet_arch_kwargs(),
            "_kw_requires_import": []}


def arch_kwargs_for(spacing: Sequence[float], model: str = "rcsegnext_b") -> dict:
    """nnU-Net-style ``arch_kwargs`` of ``model`` at ``spacing`` (strides with nnU-Net's leading ones, kernels, ...)."""
    return build_network(model, spacing).nnunet_arch_kwargs()


def choose_patch_size(spacing: Sequence[float], planned_patch: Sequence[int] | None,
                      patch_size: Sequence[int] | None = None, model: str = "rcsegnext_b") -> list[int]:
    """The training/inference patch.

    An explicit ``patch_size`` is only rounded down to a multiple of the network's total stride.  Otherwise the paper's
    ``[16, 320, 320]`` is capped per axis by ``planned_patch`` (nnU-Net's plan for the data set, which never exceeds
    what the images need) and rounded the same way.
    """
    div = total_stride(arch_kwargs_for(spacing, model)["strides"])
    if patch_size is None:
        base = list(PAPER_PATCH_SIZE)
        if planned_patch is not None:
            planned = [int(p) for p in planned_patch]
            # round nnU-Net's planned patch up to the divisor so that a small image still gets one full window
            planned = [max(d, -(-p // d) * d) for p, d in zip(planned, div)]
            base = [min(b, p) for b, p in zip(base, planned)]
    else:
        base = [int(p) for p in patch_size]
    if len(base) != len(div):
        raise InputError(f"patch size {tuple(base)} does not match the {len(div)}-D spacing {tuple(spacing)}")
    return [max(d, (p // d) * d) for p, d in zip(base, div)]


def procto_configuration(configuration: dict, model: str = "rcsegnext_b", patch_size: Sequence[int] | None = None,
                         batch_size: int | None = None) -> dict:
    """A copy of an nnU-Net configuration dict (inheritance resolved) set up for procto ``model``.

    Only the architecture, patch size and batch size change; everything that decides preprocessing stays.
    """
    cfg = deepcopy(configuration)
    cfg.pop("inherits_from", None)
    spacing = [float(s) for s in cfg["spacing"]]
    if len(spacing) != 3:
        raise InputError(f"{model} is a 3-D network; configuration spacing {spacing} is not 3-D")
    cfg["patch_size"] = choose_patch_size(spacing, cfg.get("patch_size"), patch_size, model)
    cfg["batch_size"] = int(batch_size) if batch_size is not None else PAPER_BATCH_SIZE
    cfg["architecture"] = network_architecture(build_network(model, spacing))
    cfg["procto_model"] = model
    return cfg


def procto_plans(plans: dict, configuration: str, model: str = "rcsegnext_b", patch_size: Sequence[int] | None = None,
                 batch_size: int | None = None) -> dict:
    """A copy of nnU-Net ``plans`` whose ``configuration`` is rewritten by :func:`procto_configuration`."""
    new = deepcopy(plans)
    resolved = PlansManager(new).get_configuration(configuration).configuration  # resolves 'inherits_from'
    new["configurations"][configuration] = procto_configuration(resolved, model, patch_size, batch_size)
    return new


def build_for_configuration(configuration_manager: ConfigurationManager, num_input_channels: int,
                            num_output_channels: int, model: str = "rcsegnext_b",
                            deep_supervision: bool = True) -> torch.nn.Module:
    """``model``'s network for a configuration, always from the registry at the configuration's spacing (a
    configuration that already carries this network class must agree with its strides and kernels)."""
    spacing = configuration_manager.spacing
    net = build_network(model, spacing, num_input_channels, num_output_channels, deep_supervision)
    built = network_architecture(net)
    arch = configuration_manager.configuration.get("architecture", {})
    if arch.get("network_class_name") == built["network_class_name"]:
        for key in ("strides", "kernel_sizes"):
            planned = [list(map(int, v)) for v in arch["arch_kwargs"][key]]
            if planned != built["arch_kwargs"][key]:
                raise RuntimeError(f"plans' {model} {key} {planned} disagree with what create_model({model!r}, "
                                   f"spacing={list(spacing)}) builds: {built['arch_kwargs'][key]}")
    return net


#: The functions' names from when RCSegNeXt was the only model (the benchmark and older scripts use them).
rcsegnext_configuration = procto_configuration
rcsegnext_plans = procto_plans
rcsegnext_arch_kwargs = arch_kwargs_for
build_rcsegnext = build_for_configuration


# ----------------------------------------------------------------------------------------------------- trainers
class ProctoNNUNetTrainer(nnUNetTrainer):
    """nnU-Net trainer of a procto model (``model_name``, set by each generated subclass) with the paper's training
    settings (see the module docstring)."""

    #: ``procto.nets`` name of the network this trainer builds.
    model_name: str = ""

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda")):
        if not self.model_name:
            raise TypeError("ProctoNNUNetTrainer is a base class; use one of procto.train.nnunet.trainers.TRAINERS")
        settings = trainer_settings()
        continue_training = plans.get("continue_training", False)
        plans = procto_plans({k: v for k, v in plans.items() if k != "continue_training"}, configuration,
                             self.model_name, settings["patch"], settings["batch_size"])
        plans["continue_training"] = continue_training
        super().__init__(plans, configuration, fold, dataset_json, device)
        #: Called as ``epoch_callback(self)`` at the end of every epoch when set.
        self.epoch_callback: Callable[[nnUNetTrainer], None] | None = None
        self.num_epochs = settings["num_epochs"]
        self.num_iterations_per_epoch = settings["iters"]
        self.num_val_iterations_per_epoch = settings["val_iters"]
        self.initial_lr = settings["initial_lr"]
        self.save_every = settings["save_every"]
        self.print_to_log_file(
            f"procto {self.__class__.__name__}: model {self.model_name}, "
            f"patch {self.configuration_manager.patch_size}, "
            f"batch {self.configuration_manager.batch_size}, epochs {self.num_epochs} x "
            f"{self.num_iterations_per_epoch} iterations, strides "
            f"{self.configuration_manager.pool_op_kernel_sizes}", also_print_to_console=True)

    @classmethod
    def build_network_architecture(cls, plans_manager: PlansManager, configuration_manager: ConfigurationManager,
                                   num_input_channels: int, num_output_channels: int,
                                   enable_deep_supervision: bool = True) -> torch.nn.Module:
        return build_for_configuration(configuration_manager, num_input_channels, num_output_channels,
                                       cls.model_name, enable_deep_supervision)

    def on_epoch_end(self):
        super().on_epoch_end()
        if self.epoch_callback is not None:
            self.epoch_callback(self)

    def perform_actual_validation(self, save_probabilities: bool = False):
        if skip_validation():
            self.print_to_log_file(f"{ENV_SKIP_VALIDATION} is set: final validation skipped")
            return
        super().perform_actual_validation(save_probabilities)


def _trainer_class(model: str, class_name: str, description: str) -> type[ProctoNNUNetTrainer]:
    """A module-level trainer class named ``class_name`` (what nnU-Net looks up and pickles by) for ``model``."""
    doc = f"{description[0].upper()}{description[1:]} in nnU-Net v2 with the paper's training settings (model " \
          f"``{model}``)."
    cls = type(class_name, (ProctoNNUNetTrainer,), {"model_name": model, "__doc__": doc, "__module__": __name__})
    cls.__qualname__ = class_name
    return cls


#: Model name → generated trainer class (also a module attribute under its class name).
TRAINERS: dict[str, type[ProctoNNUNetTrainer]] = {
    model: _trainer_class(model, class_name, description)
    for model, (class_name, description) in TRAINER_TABLE.items()
}
globals().update({cls.__name__: cls for cls in TRAINERS.values()})

__all__ = [
    "TRAINER_DIR",
    "TRAINERS",
    "TRAINER_NAMES",
    "TRAINER_TABLE",
    "PAPER_PATCH_SIZE",
    "PAPER_NUM_EPOCHS",
    "PAPER_BATCH_SIZE",
    "ProctoNNUNetTrainer",
    "register_trainer_path",
    "install_shim",
    "uninstall_shim",
    "build_network",
    "network_architecture",
    "arch_kwargs_for",
    "choose_patch_size",
    "procto_configuration",
    "procto_plans",
    "build_for_configuration",
    "rcsegnext_configuration",
    "rcsegnext_plans",
    "rcsegnext_arch_kwargs",
    "build_rcsegnext",
    *TRAINER_NAMES.values(),
]
