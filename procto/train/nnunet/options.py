"""Options of procto's nnU-Net trainers: the paper's settings and the environment variables that override them.

nnU-Net creates trainer objects itself (``nnUNetv2_train``, ``get_trainer_from_args``) with a fixed signature, so
procto passes its options as environment variables, read when a trainer is created (:func:`trainer_settings`);
:func:`procto.train.nnunet.train` sets them for the duration of a call (:func:`training_env`).  Unset = the paper's
value (see :mod:`procto.train.nnunet.trainers`).  This module imports nothing heavy.
"""

from __future__ import annotations

import os
from typing import NamedTuple, Sequence

from procto.errors import InputError
from procto.util import parse_list

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


def parse_patch(text: str | Sequence[int] | None) -> tuple[int, ...] | None:
    """``"16,96,96"`` (or ``16x96x96``, or a sequence) → ``(16, 96, 96)``; None/empty → None."""
    return parse_list(text, int, n=3, what="patch size (z, y, x)", example="16,320,320", minimum=1)


def env_int(name: str, default: int, minimum: int = 1) -> int:
    """Integer environment variable ``name`` (unset or empty: ``default``); bad values are one InputError."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    return parse_list(raw, int, n=1, what=f"environment variable {name}", example=str(default), minimum=minimum)[0]


def env_float(name: str, default: float) -> float:
    """Positive number from environment variable ``name`` (unset or empty: ``default``)."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    value = parse_list(raw, float, n=1, what=f"environment variable {name}", example=str(default))[0]
    if not value > 0:
        raise InputError(f"environment variable {name} must be positive, got {value}")
    return value


def skip_validation() -> bool:
    """Whether ``PROCTO_SKIP_FINAL_VALIDATION`` asks to skip nnU-Net's final validation."""
    return os.environ.get(ENV_SKIP_VALIDATION, "").strip().lower() in ("1", "true", "yes")


class ModelDefaults(NamedTuple):
    """A model's paper settings where they differ between procto's nnU-Net models."""

    #: Training epochs.
    epochs: int
    #: Training patch (z, y, x), capped by nnU-Net's planned patch; None: nnU-Net's planned patch itself.
    patch: tuple[int, int, int] | None
    #: Whether the network's topology depends on the patch (``create_model(..., patch_size=...)``, as nnU-Net's own
    #: planned U-Net) rather than on the spacing only (RCSegNeXt's Algorithm 1).
    patch_sized: bool


#: RCSegNeXt (paper 004 §4.1): 100 epochs, patch 16×320×320.
RCSEGNEXT_DEFAULTS = ModelDefaults(PAPER_NUM_EPOCHS, PAPER_PATCH_SIZE, False)
#: AG-CRC (paper 001 §IV-C): 1000 epochs, nnU-Net's planned patch and network.
AGCRC_DEFAULTS = ModelDefaults(1000, None, True)
#: Model name (``procto.nets`` registry) → its defaults; models not listed use RCSegNeXt's.
MODEL_DEFAULTS: dict[str, ModelDefaults] = {"agcrc_unet": AGCRC_DEFAULTS}


def model_defaults(model: str) -> ModelDefaults:
    """The paper settings of ``model`` (see :data:`MODEL_DEFAULTS`)."""
    return MODEL_DEFAULTS.get(model, RCSEGNEXT_DEFAULTS)


def trainer_settings(defaults: ModelDefaults = RCSEGNEXT_DEFAULTS) -> dict:
    """The trainer's settings from the environment (unset: ``defaults``/the paper's): ``patch``, ``batch_size``,
    ``num_epochs``, ``iters``, ``val_iters``, ``initial_lr``, ``save_every``."""
    return {
        "patch": parse_patch(os.environ.get(ENV_PATCH)),
        "batch_size": env_int(ENV_BATCH, PAPER_BATCH_SIZE),
        "num_epochs": env_int(ENV_EPOCHS, defaults.epochs),
        "iters": env_int(ENV_ITERS, DEFAULT_ITERS_PER_EPOCH),
        "val_iters": env_int(ENV_VAL_ITERS, DEFAULT_VAL_ITERS_PER_EPOCH),
        "initial_lr": env_float(ENV_LR, PAPER_INITIAL_LR),
        "save_every": env_int(ENV_SAVE_EVERY, DEFAULT_SAVE_EVERY),
    }


def training_env(*, epochs: int | None = None, iters: int | None = None, val_iters: int | None = None,
                 patch: str | Sequence[int] | None = None, batch_size: int | None = None, workers: int | None = None,
                 validate: bool = True, save_every: int | None = None) -> dict[str, str | None]:
    """The environment variables that pass these options to the trainer (None = unset), checked."""
    env: dict[str, str | None] = {}
    for key, what, value in ((ENV_EPOCHS, "epochs", epochs), (ENV_ITERS, "iters", iters),
                             (ENV_VAL_ITERS, "val_iters", val_iters), (ENV_BATCH, "batch_size", batch_size),
                             (ENV_SAVE_EVERY, "save_every", save_every)):
        if value is not None:
            if int(value) < 1:
                raise InputError(f"{what} must be at least 1, got {value}")
            env[key] = str(int(value))
    p = parse_patch(patch) if patch is not None else None
    if p is not None:
        env[ENV_PATCH] = ",".join(map(str, p))
    if workers is not None:
        if int(workers) < 0:
            raise InputError(f"workers must be >= 0, got {workers}")
        env["nnUNet_n_proc_DA"] = str(int(workers))
    env[ENV_SKIP_VALIDATION] = None if validate else "1"
    return env


__all__ = [
    "PAPER_PATCH_SIZE", "PAPER_SPACING", "PAPER_NUM_EPOCHS", "PAPER_BATCH_SIZE", "PAPER_INITIAL_LR",
    "DEFAULT_ITERS_PER_EPOCH", "DEFAULT_VAL_ITERS_PER_EPOCH", "DEFAULT_SAVE_EVERY",
    "ENV_EPOCHS", "ENV_ITERS", "ENV_VAL_ITERS", "ENV_BATCH", "ENV_PATCH", "ENV_LR", "ENV_SAVE_EVERY",
    "ENV_SKIP_VALIDATION", "ModelDefaults", "RCSEGNEXT_DEFAULTS", "AGCRC_DEFAULTS", "MODEL_DEFAULTS", "model_defaults",
    "parse_patch", "env_int", "env_float", "skip_validation", "trainer_settings",
    "training_env",
]
