"""The base of procto's nnU-Net trainers: a procto network written into nnU-Net's plans, and the trainer class that
trains it with the paper's settings (see :mod:`procto.train.nnunet.trainers` for how nnU-Net finds the generated
classes and which options they read).

What the trainer changes in the plans
-------------------------------------
The trainer rewrites the configuration it trains (normally ``3d_fullres`` of nnU-Net's default ``nnUNetPlans``) before
nnU-Net reads it (:func:`procto_configuration`): the architecture becomes the procto network of the configuration's
spacing, the patch size the model's default (:func:`procto.train.nnunet.options.model_defaults`) and the batch size 2.
For RCSegNeXt the pooling strides and kernels are those of :func:`procto.nets.plan.plan_kernels_strides`, so nnU-Net's
``pool_op_kernel_sizes`` (and hence its deep-supervision target scales) are exactly the network's strides, and the patch
is the paper's ``[16, 320, 320]`` capped per axis by the patch nnU-Net planned for the data set, rounded to a multiple of
the network's total stride.  For AG-CRC (``agcrc_unet``) the network is nnU-Net's own planned U-Net: the plans' patch
is kept and the topology is nnU-Net's for that patch and spacing.  Preprocessing (spacing, normalisation) is untouched,
so nnU-Net's preprocessed data are reused as they are.  The rewritten plans are what nnU-Net saves next to the
checkpoints (``plans.json``), with ``procto_model`` (the registry name) and ``procto_model_kwargs``, so
:class:`procto.infer.nnunet.NNUNetPredictor` rebuilds the same network without importing :mod:`procto.train`.
"""

from __future__ import annotations

from copy import deepcopy
from typing import Callable, Sequence

import torch
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
from nnunetv2.utilities.plans_handling.plans_handler import ConfigurationManager, PlansManager

from procto.errors import InputError
from procto.nets import create_model
from procto.nets.plan import total_stride
from procto.train.nnunet.options import ENV_SKIP_VALIDATION, PAPER_BATCH_SIZE, model_defaults, skip_validation, \
    trainer_settings

#: nnU-Net's ``_kw_requires_import`` of its own PlainConvUNet plans.
PLAIN_UNET_IMPORTS = ["conv_op", "norm_op", "dropout_op", "nonlin"]


# ----------------------------------------------------------------------------------------------------- networks
def _check_model(model: str) -> None:
    from procto.nets import list_models

    if model not in list_models():
        raise InputError(f"unknown network {model!r}; known: {', '.join(list_models())}")


def build_network(model: str, spacing: Sequence[float], input_channels: int = 1, num_classes: int = 3,
                  deep_supervision: bool = False, patch_size: Sequence[int] | None = None) -> torch.nn.Module:
    """``model``'s network for a configuration's ``spacing`` (and ``patch_size`` for networks whose topology depends
    on it, see :class:`procto.train.nnunet.options.ModelDefaults`), from the ``procto.nets`` registry."""
    _check_model(model)
    extra = {}
    if model_defaults(model).patch_sized:
        if patch_size is None:
            raise InputError(f"{model} needs a patch size (its topology is nnU-Net's for the patch)")
        extra["patch_size"] = [int(p) for p in patch_size]
    return create_model(model, input_channels=int(input_channels), num_classes=int(num_classes),
                        spacing=[float(s) for s in spacing], deep_supervision=bool(deep_supervision), **extra)


def network_architecture(net: torch.nn.Module) -> dict:
    """The plans' ``architecture`` entry of a procto network: its class (or the nnU-Net class it stands for,
    ``net.nnunet_network_class_name()``) and ``net.nnunet_arch_kwargs()`` (which carry nnU-Net's ``strides``, read as
    ``pool_op_kernel_sizes``)."""
    cls = type(net)
    if hasattr(net, "nnunet_network_class_name"):
        return {"network_class_name": net.nnunet_network_class_name(), "arch_kwargs": net.nnunet_arch_kwargs(),
                "_kw_requires_import": list(PLAIN_UNET_IMPORTS)}
    return {"network_class_name": f"{cls.__module__}.{cls.__qualname__}", "arch_kwargs": net.nnunet_arch_kwargs(),
            "_kw_requires_import": []}


def arch_kwargs_for(spacing: Sequence[float], model: str = "rcsegnext_b",
                    patch_size: Sequence[int] | None = None) -> dict:
    """nnU-Net-style ``arch_kwargs`` of ``model`` at ``spacing`` (strides with nnU-Net's leading ones, kernels, ...)."""
    return build_network(model, spacing, patch_size=patch_size).nnunet_arch_kwargs()


def _planned_patch(spacing: Sequence[float], planned_patch: Sequence[int] | None, patch_size: Sequence[int] | None,
                   model: str) -> list[int]:
    """The patch of a patch-sized network: ``patch_size`` or nnU-Net's plan, as nnU-Net's topology pads it."""
    from procto.nets.agcrc import nnunet_topology

    base = patch_size if patch_size is not None else planned_patch
    if base is None:
        raise InputError(f"{model}: the plans have no patch size; give one")
    base = [int(p) for p in base]
    if len(base) != len(spacing):
        raise InputError(f"patch size {tuple(base)} does not match the {len(spacing)}-D spacing {tuple(spacing)}")
    return nnunet_topology(spacing, base)["patch_size"]


def choose_patch_size(spacing: Sequence[float], planned_patch: Sequence[int] | None,
                      patch_size: Sequence[int] | None = None, model: str = "rcsegnext_b") -> list[int]:
    """The training/inference patch.

    An explicit ``patch_size`` is only rounded down to a multiple of the network's total stride (for a patch-sized
    network: padded as nnU-Net's planner does).  Otherwise the model's default patch (RCSegNeXt: the paper's
    ``[16, 320, 320]``) is capped per axis by ``planned_patch`` (nnU-Net's plan for the data set, which never exceeds
    what the images need) and rounded the same way; a model without a default patch takes ``planned_patch``.
    """
    defaults = model_defaults(model)
    if defaults.patch_sized:
        return _planned_patch(spacing, planned_patch, patch_size, model)
    div = total_stride(arch_kwargs_for(spacing, model)["strides"])
    if patch_size is None:
        base = list(defaults.patch)
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
                         batch_size: int | None = None, extras: dict | None = None) -> dict:
    """A copy of an nnU-Net configuration dict (inheritance resolved) set up for procto ``model``.

    Only the architecture, patch size and batch size change (plus ``procto_model``, ``procto_model_kwargs`` and the
    caller's ``extras`` as records); everything that decides preprocessing stays.
    """
    cfg = deepcopy(configuration)
    cfg.pop("inherits_from", None)
    spacing = [float(s) for s in cfg["spacing"]]
    if len(spacing) != 3:
        raise InputError(f"{model} is a 3-D network; configuration spacing {spacing} is not 3-D")
    cfg["patch_size"] = choose_patch_size(spacing, cfg.get("patch_size"), patch_size, model)
    cfg["batch_size"] = int(batch_size) if batch_size is not None else PAPER_BATCH_SIZE
    model_kwargs = {"patch_size": list(cfg["patch_size"])} if model_defaults(model).patch_sized else {}
    cfg["architecture"] = network_architecture(build_network(model, spacing, **model_kwargs))
    cfg["procto_model"] = model
    cfg["procto_model_kwargs"] = model_kwargs
    cfg.update(extras or {})
    return cfg


def procto_plans(plans: dict, configuration: str, model: str = "rcsegnext_b", patch_size: Sequence[int] | None = None,
                 batch_size: int | None = None, extras: dict | None = None) -> dict:
    """A copy of nnU-Net ``plans`` whose ``configuration`` is rewritten by :func:`procto_configuration`."""
    new = deepcopy(plans)
    resolved = PlansManager(new).get_configuration(configuration).configuration  # resolves 'inherits_from'
    new["configurations"][configuration] = procto_configuration(resolved, model, patch_size, batch_size, extras)
    return new


def build_for_configuration(configuration_manager: ConfigurationManager, num_input_channels: int,
                            num_output_channels: int, model: str = "rcsegnext_b",
                            deep_supervision: bool = True) -> torch.nn.Module:
    """``model``'s network for a configuration, always from the registry at the configuration's spacing (a
    configuration that already carries this network class must agree with its strides and kernels)."""
    spacing = configuration_manager.spacing
    kwargs = configuration_manager.configuration.get("procto_model_kwargs") or {}
    if model_defaults(model).patch_sized and "patch_size" not in kwargs:
        kwargs = {"patch_size": configuration_manager.patch_size}
    net = build_network(model, spacing, num_input_channels, num_output_channels, deep_supervision, **kwargs)
    built = network_architecture(net)
    arch = configuration_manager.configuration.get("architecture", {})
    if arch.get("network_class_name") == built["network_class_name"]:
        for key in ("strides", "kernel_sizes"):
            planned = [list(map(int, v)) for v in arch["arch_kwargs"][key]]
            if planned != built["arch_kwargs"][key]:
                raise RuntimeError(f"plans' {model} {key} {planned} disagree with what create_model({model!r}, "
                                   f"spacing={list(spacing)}) builds: {built['arch_kwargs'][key]}")
    return net


# ----------------------------------------------------------------------------------------------------- trainer
class ProctoNNUNetTrainer(nnUNetTrainer):
    """nnU-Net trainer of a procto model (``model_name``, set by each generated subclass) with the paper's training
    settings (see :mod:`procto.train.nnunet.trainers`)."""

    #: ``procto.nets`` name of the network this trainer builds.
    model_name: str = ""

    def plans_extras(self) -> dict:
        """Extra records written into the trained configuration of the plans (subclasses add theirs)."""
        return {}

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda")):
        if not self.model_name:
            raise TypeError("ProctoNNUNetTrainer is a base class; use one of procto.train.nnunet.trainers.TRAINERS")
        settings = trainer_settings(model_defaults(self.model_name))
        continue_training = plans.get("continue_training", False)
        plans = procto_plans({k: v for k, v in plans.items() if k != "continue_training"}, configuration,
                             self.model_name, settings["patch"], settings["batch_size"], self.plans_extras())
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


__all__ = ["ProctoNNUNetTrainer", "build_network", "network_architecture", "arch_kwargs_for", "choose_patch_size",
           "procto_configuration", "procto_plans", "build_for_configuration", "PLAIN_UNET_IMPORTS"]
