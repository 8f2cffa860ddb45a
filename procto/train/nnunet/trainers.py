"""procto's models inside nnU-Net v2: trainer classes that nnU-Net finds by name, generated from one table.

``nnUNetv2_train DATASET 3d_fullres FOLD -tr nnUNetTrainerRCSegNeXt`` trains RCSegNeXt-B with the paper's settings on
top of nnU-Net's pipeline (preprocessing, default data augmentation, CE + Dice loss with deep supervision, SGD with
Nesterov momentum 0.99, initial learning rate 0.01 with 'poly' decay, sliding-window inference with Gaussian weighting
and mirroring).  Every entry of :data:`procto.train.nnunet.models.TRAINER_TABLE` (trainer key → class name, network,
family, options) becomes a module-level subclass, with that class name, of its family's base class
(:class:`ProctoNNUNetTrainer`, or :class:`procto.train.nnunet.agcrc_trainer.AGCRCTrainer` for AG-CRC's sampling, loss
and pre-training variants); the class builds its network with ``procto.nets.create_model(model_name,
input_channels=..., num_classes=..., spacing=..., deep_supervision=...)``, with as many input channels as the data
set's ``dataset.json`` lists.

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

What the trainer writes into the plans: :mod:`procto.train.nnunet.base`.

Options (environment variables, read when a trainer is created; unset = the paper's value):

* ``PROCTO_NUM_EPOCHS`` (the paper's: RCSegNeXt 100, AG-CRC 1000), ``PROCTO_ITERS_PER_EPOCH`` (250, nnU-Net's default),
  ``PROCTO_VAL_ITERS_PER_EPOCH`` (50, nnU-Net's default), ``PROCTO_BATCH_SIZE`` (2),
  ``PROCTO_PATCH_SIZE`` (``z,y,x``; default: RCSegNeXt's paper patch capped by nnU-Net's plan, AG-CRC nnU-Net's
  plan), ``PROCTO_INITIAL_LR`` (0.01),
  ``PROCTO_SAVE_EVERY`` (10 epochs between ``checkpoint_latest.pth`` writes),
  ``PROCTO_SKIP_FINAL_VALIDATION`` (``1`` skips nnU-Net's prediction of the fold's validation cases after training).

A trainer object's ``epoch_callback`` (None unless set, e.g. by :func:`procto.train.nnunet.train`) is called as
``callback(trainer)`` at the end of every epoch.
"""

from __future__ import annotations

from pathlib import Path

from procto.infer.nnunet_env import TRAINER_DIR, register_trainer_path
from procto.train.nnunet.agcrc_trainer import AGCRCTrainer
from procto.train.nnunet.base import (  # noqa: F401  (re-exported: the trainers' network helpers live there)
    ProctoNNUNetTrainer,
    arch_kwargs_for,
    build_for_configuration,
    build_network,
    choose_patch_size,
    network_architecture,
    procto_configuration,
    procto_plans,
)
from procto.train.nnunet.models import TRAINER_NAMES, TRAINER_TABLE, TrainerSpec
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


#: The functions' names from when RCSegNeXt was the only model (the benchmark and older scripts use them).
rcsegnext_configuration = procto_configuration
rcsegnext_plans = procto_plans
rcsegnext_arch_kwargs = arch_kwargs_for
build_rcsegnext = build_for_configuration

#: Trainer family (:attr:`procto.train.nnunet.models.TrainerSpec.family`) → base class.
FAMILIES: dict[str, type[ProctoNNUNetTrainer]] = {"procto": ProctoNNUNetTrainer, "agcrc": AGCRCTrainer}


# ----------------------------------------------------------------------------------------------------- trainers
def _trainer_class(key: str, spec: TrainerSpec) -> type[ProctoNNUNetTrainer]:
    """A module-level trainer class named ``spec.class_name`` (what nnU-Net looks up and pickles by)."""
    description = spec.description
    doc = f"{description[0].upper()}{description[1:]} in nnU-Net v2 with the paper's training settings (trainer " \
          f"``{key}``, network ``{spec.model}``)."
    attrs = {"model_name": spec.model, "trainer_key": key, **dict(spec.options), "__doc__": doc,
             "__module__": __name__}
    cls = type(spec.class_name, (FAMILIES[spec.family],), attrs)
    cls.__qualname__ = spec.class_name
    return cls


#: Trainer key → generated trainer class (also a module attribute under its class name).
TRAINERS: dict[str, type[ProctoNNUNetTrainer]] = {key: _trainer_class(key, spec) for key, spec in TRAINER_TABLE.items()}
globals().update({cls.__name__: cls for cls in TRAINERS.values()})

__all__ = [
    "TRAINER_DIR",
    "TRAINERS",
    "TRAINER_NAMES",
    "TRAINER_TABLE",
    "FAMILIES",
    "PAPER_PATCH_SIZE",
    "PAPER_NUM_EPOCHS",
    "PAPER_BATCH_SIZE",
    "ProctoNNUNetTrainer",
    "AGCRCTrainer",
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
