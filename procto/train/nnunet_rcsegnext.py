"""RCSegNeXt inside nnU-Net v2: trainer classes that nnU-Net finds by name.

``nnUNetv2_train DATASET 3d_fullres FOLD -tr nnUNetTrainerRCSegNeXt`` trains RCSegNeXt-B with the paper's settings on
top of nnU-Net's pipeline (preprocessing, default data augmentation, CE + Dice loss with deep supervision, SGD with
Nesterov momentum 0.99, initial learning rate 0.01 with 'poly' decay, sliding-window inference with Gaussian weighting
and mirroring).

How nnU-Net finds these classes
-------------------------------
nnU-Net 2.8.1 looks a trainer up by class name (``nnunetv2.utilities.find_objects.recursive_find_trainer_class_by_name``):
first in its own package ``nnunetv2.training.nnUNetTrainer``, then in every folder listed in the environment variable
``nnUNet_extTrainer`` (``os.pathsep``-separated).  procto ships such a folder, :data:`TRAINER_DIR`
(``procto/train/nnunet_ext``), whose one module re-exports the classes below.  procto's own commands add it to
``nnUNet_extTrainer`` by themselves (:func:`register_trainer_path`); for nnU-Net's console scripts set it once::

    export nnUNet_extTrainer="$(procto nnunet-trainers --path)"
    nnUNetv2_train 501 3d_fullres 0 -tr nnUNetTrainerRCSegNeXt -device cpu

Nothing is copied into site-packages (``procto nnunet-trainers --install`` can write a one-line shim there for setups
that cannot set environment variables).

What the trainer changes in the plans
-------------------------------------
The trainer rewrites the configuration it trains (normally ``3d_fullres`` of nnU-Net's default ``nnUNetPlans``) before
nnU-Net reads it (:func:`rcsegnext_configuration`): the architecture becomes RCSegNeXt with the pooling strides and
kernels of :func:`procto.plan.plan_kernels_strides` for the configuration's spacing (so nnU-Net's
``pool_op_kernel_sizes`` — and hence its deep-supervision target scales — are exactly the network's strides), the patch
size becomes the paper's ``[16, 320, 320]`` (capped per axis by the patch nnU-Net planned for the data set, rounded to
a multiple of the network's total stride) and the batch size 2.  Preprocessing (spacing, normalisation) is untouched,
so nnU-Net's preprocessed data are reused as they are.  The rewritten plans are what nnU-Net saves next to the
checkpoints (``plans.json``), so ``nnUNetv2_predict``/``nnUNetPredictor`` rebuild the same network and use the same
patch.

Options (environment variables, read when a trainer is created; unset = the paper's value):

* ``PROCTO_NUM_EPOCHS`` (100, the paper), ``PROCTO_ITERS_PER_EPOCH`` (250, nnU-Net's default),
  ``PROCTO_VAL_ITERS_PER_EPOCH`` (50, nnU-Net's default), ``PROCTO_BATCH_SIZE`` (2),
  ``PROCTO_PATCH_SIZE`` (``z,y,x``; default as above), ``PROCTO_INITIAL_LR`` (0.01),
  ``PROCTO_SAVE_EVERY`` (10 epochs between ``checkpoint_latest.pth`` writes),
  ``PROCTO_SKIP_FINAL_VALIDATION`` (``1`` skips nnU-Net's prediction of the fold's validation cases after training).
"""

from __future__ import annotations

import os
from copy import deepcopy
from pathlib import Path
from typing import Callable, Sequence

import torch

# nnU-Net spawns this many processes for exports/validation (default 8); read when nnunetv2 is first imported.
os.environ.setdefault("nnUNet_def_n_proc", str(max(1, min(8, os.cpu_count() or 1))))

from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer  # noqa: E402
from nnunetv2.utilities.plans_handling.plans_handler import ConfigurationManager, PlansManager  # noqa: E402

from procto.errors import InputError  # noqa: E402
from procto.plan import plan_rcsegnext, total_stride  # noqa: E402

#: Folder to list in ``nnUNet_extTrainer`` so that nnU-Net finds procto's trainers.
TRAINER_DIR = Path(__file__).resolve().parent / "nnunet_ext"

#: The paper's training settings (Section 4.1).
PAPER_PATCH_SIZE = (16, 320, 320)
PAPER_SPACING = (4.0, 0.875, 0.875)
PAPER_NUM_EPOCHS = 100
PAPER_BATCH_SIZE = 2
PAPER_INITIAL_LR = 1e-2
#: Not given by the paper: nnU-Net's defaults.
DEFAULT_ITERS_PER_EPOCH = 250
DEFAULT_VAL_ITERS_PER_EPOCH = 50
DEFAULT_SAVE_EVERY = 10

ENV_EPOCHS = "PROCTO_NUM_EPOCHS"
ENV_ITERS = "PROCTO_ITERS_PER_EPOCH"
ENV_VAL_ITERS = "PROCTO_VAL_ITERS_PER_EPOCH"
ENV_BATCH = "PROCTO_BATCH_SIZE"
ENV_PATCH = "PROCTO_PATCH_SIZE"
ENV_LR = "PROCTO_INITIAL_LR"
ENV_SAVE_EVERY = "PROCTO_SAVE_EVERY"
ENV_SKIP_VALIDATION = "PROCTO_SKIP_FINAL_VALIDATION"

#: Fully qualified class name written into the plans (nnU-Net's ``get_network_from_plans`` could build it too).
NETWORK_CLASS_NAME = "procto.nets.rcsegnext.RCSegNeXt"

#: Model name (``procto.nets`` registry) → (base width, encoder blocks, anisotropic-stage block, isotropic-stage block).
MODEL_SPECS: dict[str, tuple[int, tuple[int, ...], str, str]] = {
    "rcsegnext_b": (32, (2, 2, 2, 2, 2), "aninext", "isonext"),
    "rcsegnext_l": (48, (2, 2, 2, 8, 4), "aninext", "isonext"),
    "rcsegnext_b_plain": (32, (2, 2, 2, 2, 2), "conv", "conv"),
    "rcsegnext_b_conv": (32, (2, 2, 2, 2, 2), "aninext", "conv"),
    "rcsegnext_b_convnext": (32, (2, 2, 2, 2, 2), "aninext", "convnext"),
    "rcsegnext_b_res2net": (32, (2, 2, 2, 2, 2), "aninext", "res2net"),
    "rcsegnext_b_res2next": (32, (2, 2, 2, 2, 2), "aninext", "res2next"),
    "rcsegnext_b_grouped": (32, (2, 2, 2, 2, 2), "aninext", "isonext_grouped"),
}

#: Model name → nnU-Net trainer class name (``-tr``).
TRAINER_NAMES: dict[str, str] = {
    "rcsegnext_b": "nnUNetTrainerRCSegNeXt",
    "rcsegnext_l": "nnUNetTrainerRCSegNeXtL",
    "rcsegnext_b_plain": "nnUNetTrainerRCSegNeXt_Plain",
    "rcsegnext_b_conv": "nnUNetTrainerRCSegNeXt_Conv",
    "rcsegnext_b_convnext": "nnUNetTrainerRCSegNeXt_ConvNeXt",
    "rcsegnext_b_res2net": "nnUNetTrainerRCSegNeXt_Res2Net",
    "rcsegnext_b_res2next": "nnUNetTrainerRCSegNeXt_Res2NeXt",
    "rcsegnext_b_grouped": "nnUNetTrainerRCSegNeXt_Grouped",
}


# ----------------------------------------------------------------------------------------------------- helpers
def register_trainer_path(environ: dict | None = None) -> str:
    """Add :data:`TRAINER_DIR` to ``nnUNet_extTrainer`` (kept if already there); returns the new value."""
    env = os.environ if environ is None else environ
    path = str(TRAINER_DIR)
    current = [p for p in env.get("nnUNet_extTrainer", "").split(os.pathsep) if p.strip()]
    if path not in current:
        current.append(path)
    env["nnUNet_extTrainer"] = os.pathsep.join(current)
    return env["nnUNet_extTrainer"]


SHIM_NAME = "procto_rcsegnext_trainers.py"


def _shim_path() -> Path:
    import nnunetv2

    return Path(nnunetv2.__path__[0]) / "training" / "nnUNetTrainer" / SHIM_NAME


def install_shim() -> Path:
    """Alternative to ``nnUNet_extTrainer``: write a one-line module into nnU-Net's own trainer package that re-exports
    procto's trainers (for setups that cannot set environment variables).  Returns its path."""
    target = _shim_path()
    target.write_text('"""Written by `procto nnunet-trainers --install`; remove with --uninstall."""\n'
                      "from procto.train.nnunet_rcsegnext import *  # noqa: F401,F403\n")
    return target


def uninstall_shim() -> Path:
    target = _shim_path()
    if target.exists():
        target.unlink()
    return target


def _env_int(name: str, default: int, minimum: int = 1) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise InputError(f"environment variable {name} must be an integer, got {raw!r}") from None
    if value < minimum:
        raise InputError(f"environment variable {name} must be at least {minimum}, got {value}")
    return value


def _env_float(name: str, default: float) -> float:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise InputError(f"environment variable {name} must be a number, got {raw!r}") from None
    if not value > 0:
        raise InputError(f"environment variable {name} must be positive, got {value}")
    return value


def parse_patch(text: str | Sequence[int] | None) -> tuple[int, ...] | None:
    """``"16,96,96"`` (or ``16x96x96``, or a sequence) → ``(16, 96, 96)``; None/empty → None."""
    if text is None:
        return None
    if isinstance(text, str):
        if not text.strip():
            return None
        try:
            values = tuple(int(v) for v in text.replace("x", ",").split(","))
        except ValueError:
            raise InputError(f"patch size must look like 16,320,320, got {text!r}") from None
    else:
        values = tuple(int(v) for v in text)
    if len(values) != 3 or min(values) < 1:
        raise InputError(f"patch size must be three positive integers (z, y, x), got {text!r}")
    return values


def rcsegnext_plan_for(spacing: Sequence[float], model: str = "rcsegnext_b", patch_size: Sequence[int] | None = None):
    """:class:`procto.plan.RCSegNeXtPlan` of ``model`` for a configuration's ``spacing``."""
    if model not in MODEL_SPECS:
        raise InputError(f"unknown RCSegNeXt model {model!r}; known: {', '.join(MODEL_SPECS)}")
    base_width, blocks, _, _ = MODEL_SPECS[model]
    return plan_rcsegnext(spacing, patch_size, base_width=base_width, blocks=blocks)


def rcsegnext_arch_kwargs(spacing: Sequence[float], model: str = "rcsegnext_b") -> dict:
    """nnU-Net-style ``arch_kwargs`` of ``model`` (strides with nnU-Net's leading ones, kernels, widths, blocks)."""
    plan = rcsegnext_plan_for(spacing, model)
    _, _, aniso, iso = MODEL_SPECS[model]
    kwargs = plan.to_nnunet_arch_kwargs()
    kwargs["aniso_block"] = aniso
    kwargs["iso_block"] = iso
    return kwargs


def choose_patch_size(spacing: Sequence[float], planned_patch: Sequence[int] | None,
                      patch_size: Sequence[int] | None = None, model: str = "rcsegnext_b") -> list[int]:
    """The training/inference patch.

    An explicit ``patch_size`` is only rounded down to a multiple of the network's total stride.  Otherwise the paper's
    ``[16, 320, 320]`` is capped per axis by ``planned_patch`` (nnU-Net's plan for the data set, which never exceeds
    what the images need) and rounded the same way.
    """
    div = total_stride(rcsegnext_plan_for(spacing, model).strides)
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


def rcsegnext_configuration(configuration: dict, model: str = "rcsegnext_b", patch_size: Sequence[int] | None = None,
                            batch_size: int | None = None) -> dict:
    """A copy of an nnU-Net configuration dict (inheritance resolved) set up for RCSegNeXt ``model``.

    Only the architecture, patch size and batch size change; everything that decides preprocessing stays.
    """
    cfg = deepcopy(configuration)
    cfg.pop("inherits_from", None)
    spacing = [float(s) for s in cfg["spacing"]]
    if len(spacing) != 3:
        raise InputError(f"RCSegNeXt is a 3-D network; configuration spacing {spacing} is not 3-D")
    cfg["patch_size"] = choose_patch_size(spacing, cfg.get("patch_size"), patch_size, model)
    cfg["batch_size"] = int(batch_size) if batch_size is not None else PAPER_BATCH_SIZE
    cfg["architecture"] = {
        "network_class_name": NETWORK_CLASS_NAME,
        "arch_kwargs": rcsegnext_arch_kwargs(spacing, model),
        "_kw_requires_import": [],
    }
    cfg["procto_model"] = model
    return cfg


def rcsegnext_plans(plans: dict, configuration: str, model: str = "rcsegnext_b",
                    patch_size: Sequence[int] | None = None, batch_size: int | None = None) -> dict:
    """A copy of nnU-Net ``plans`` whose ``configuration`` is rewritten by :func:`rcsegnext_configuration`."""
    new = deepcopy(plans)
    resolved = PlansManager(new).get_configuration(configuration).configuration  # resolves 'inherits_from'
    new["configurations"][configuration] = rcsegnext_configuration(resolved, model, patch_size, batch_size)
    return new


def build_rcsegnext(configuration_manager: ConfigurationManager, num_input_channels: int, num_output_channels: int,
                    model: str = "rcsegnext_b", deep_supervision: bool = True) -> torch.nn.Module:
    """RCSegNeXt ``model`` for a configuration: strides and kernels always from ``plan_kernels_strides`` of the
    configuration's spacing (a configuration that already carries RCSegNeXt arch kwargs must agree with them)."""
    from procto.nets.rcsegnext import RCSegNeXt

    spacing = configuration_manager.spacing
    expected = rcsegnext_arch_kwargs(spacing, model)
    arch = configuration_manager.configuration.get("architecture", {})
    if arch.get("network_class_name") == NETWORK_CLASS_NAME:
        planned = arch["arch_kwargs"]
        for key in ("strides", "kernel_sizes"):
            if [list(map(int, v)) for v in planned[key]] != expected[key]:
                raise RuntimeError(
                    f"plans' RCSegNeXt {key} {planned[key]} disagree with plan_kernels_strides({list(spacing)}) = "
                    f"{expected[key]}")
    return RCSegNeXt(num_input_channels, num_output_channels, deep_supervision, **expected)


#: Called as ``callback(trainer)`` at the end of every epoch when set (procto's CLI shows a progress bar with it).
EPOCH_CALLBACK: Callable | None = None


# ----------------------------------------------------------------------------------------------------- trainers
class nnUNetTrainerRCSegNeXt(nnUNetTrainer):
    """RCSegNeXt-B in nnU-Net v2 with the paper's training settings (see the module docstring)."""

    #: ``procto.nets`` name of the network this trainer builds.
    model_name: str = "rcsegnext_b"

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda")):
        patch = parse_patch(os.environ.get(ENV_PATCH))
        batch = _env_int(ENV_BATCH, PAPER_BATCH_SIZE)
        continue_training = plans.get("continue_training", False)
        plans = rcsegnext_plans({k: v for k, v in plans.items() if k != "continue_training"}, configuration,
                                self.model_name, patch, batch)
        plans["continue_training"] = continue_training
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.num_epochs = _env_int(ENV_EPOCHS, PAPER_NUM_EPOCHS)
        self.num_iterations_per_epoch = _env_int(ENV_ITERS, DEFAULT_ITERS_PER_EPOCH)
        self.num_val_iterations_per_epoch = _env_int(ENV_VAL_ITERS, DEFAULT_VAL_ITERS_PER_EPOCH)
        self.initial_lr = _env_float(ENV_LR, PAPER_INITIAL_LR)
        self.save_every = _env_int(ENV_SAVE_EVERY, DEFAULT_SAVE_EVERY)
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
        return build_rcsegnext(configuration_manager, num_input_channels, num_output_channels, cls.model_name,
                               enable_deep_supervision)

    def on_epoch_end(self):
        super().on_epoch_end()
        if EPOCH_CALLBACK is not None:
            EPOCH_CALLBACK(self)

    def perform_actual_validation(self, save_probabilities: bool = False):
        if os.environ.get(ENV_SKIP_VALIDATION, "").strip().lower() in ("1", "true", "yes"):
            self.print_to_log_file(f"{ENV_SKIP_VALIDATION} is set: final validation skipped")
            return
        super().perform_actual_validation(save_probabilities)


class nnUNetTrainerRCSegNeXtL(nnUNetTrainerRCSegNeXt):
    """RCSegNeXt-L (10.77 M parameters)."""

    model_name = "rcsegnext_l"


class nnUNetTrainerRCSegNeXt_Plain(nnUNetTrainerRCSegNeXt):
    """Table 4 baseline: plain convolution blocks everywhere (3D U-Net with anisotropic kernels and IN)."""

    model_name = "rcsegnext_b_plain"


class nnUNetTrainerRCSegNeXt_Conv(nnUNetTrainerRCSegNeXt):
    """Table 4: AniNeXt in anisotropic stages, plain convolutions in isotropic ones."""

    model_name = "rcsegnext_b_conv"


class nnUNetTrainerRCSegNeXt_ConvNeXt(nnUNetTrainerRCSegNeXt):
    """Table 4: AniNeXt + ConvNeXt blocks."""

    model_name = "rcsegnext_b_convnext"


class nnUNetTrainerRCSegNeXt_Res2Net(nnUNetTrainerRCSegNeXt):
    """Table 4: AniNeXt + Res2Net blocks."""

    model_name = "rcsegnext_b_res2net"


class nnUNetTrainerRCSegNeXt_Res2NeXt(nnUNetTrainerRCSegNeXt):
    """Table 4: AniNeXt + Res2NeXt blocks."""

    model_name = "rcsegnext_b_res2next"


class nnUNetTrainerRCSegNeXt_Grouped(nnUNetTrainerRCSegNeXt):
    """Not in Table 4: IsoNeXt with SAIM's grouped convolutions but no channel regrouping."""

    model_name = "rcsegnext_b_grouped"


TRAINERS: dict[str, type[nnUNetTrainerRCSegNeXt]] = {
    cls.model_name: cls
    for cls in (nnUNetTrainerRCSegNeXt, nnUNetTrainerRCSegNeXtL, nnUNetTrainerRCSegNeXt_Plain,
                nnUNetTrainerRCSegNeXt_Conv, nnUNetTrainerRCSegNeXt_ConvNeXt, nnUNetTrainerRCSegNeXt_Res2Net,
                nnUNetTrainerRCSegNeXt_Res2NeXt, nnUNetTrainerRCSegNeXt_Grouped)
}
assert {m: c.__name__ for m, c in TRAINERS.items()} == TRAINER_NAMES

__all__ = [
    "TRAINER_DIR",
    "TRAINERS",
    "TRAINER_NAMES",
    "MODEL_SPECS",
    "PAPER_PATCH_SIZE",
    "PAPER_NUM_EPOCHS",
    "PAPER_BATCH_SIZE",
    "register_trainer_path",
    "install_shim",
    "uninstall_shim",
    "rcsegnext_configuration",
    "rcsegnext_plans",
    "rcsegnext_arch_kwargs",
    "choose_patch_size",
    "build_rcsegnext",
    *TRAINER_NAMES.values(),
]
