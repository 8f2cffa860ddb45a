"""Training one fold of a procto model through nnU-Net v2 from Python, in named steps: check the arguments, set the
trainer options, plan and preprocess, create (or resume) nnU-Net's trainer, attach the caller's epoch callback, run.

>>> from procto.train.nnunet import train                   # doctest: +SKIP
>>> run = train("raw/Dataset501_ProctoPhantomMRI", fold=0, out="runs", epochs=5, iters=50, device="cpu")
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from procto.errors import InputError
from procto.infer.nnunet_env import nnunet_environment
from procto.train.nnunet import options as opts
from procto.train.nnunet.dataset import check_target_spacing, dataset_id_and_name, plan_and_preprocess, \
    resolve_folders
from procto.train.nnunet.models import CONFIGURATION, PLANS, model_dir_for, trainer_name_for

#: Per-epoch values passed to ``on_epoch`` (nnU-Net logger keys).
EPOCH_VALUES = ("train_losses", "val_losses", "ema_fg_dice", "dice_per_class_or_region")


@dataclass
class TrainResult:
    model_dir: Path  # the trainer's results folder: plans.json, dataset.json, fold_X/
    fold_dir: Path
    checkpoint: Path
    trainer: str
    epochs: int
    resumed: bool


def check_fold(fold: int | str) -> int | str:
    """A cross-validation fold: a non-negative integer or ``"all"``."""
    if str(fold) == "all":
        return "all"
    try:
        value = int(fold)
    except (TypeError, ValueError):
        raise InputError(f"fold must be an integer or 'all', got {fold!r}") from None
    if value < 0:
        raise InputError(f"fold must be >= 0, got {value}")
    return value


def _plan(dataset_id: int, dataset_name: str, folders, processes: int | None, check_integrity: bool,
          target_spacing=None) -> None:
    # nnU-Net's planner sets torch's thread count to nnUNet_n_proc_DA while it sizes the network, which fails
    # for 0 (augmentation in the main process): plan with at least 1
    with nnunet_environment(nnUNet_n_proc_DA=max(1, int(os.environ.get("nnUNet_n_proc_DA") or 1))):
        plan_and_preprocess(dataset_id, dataset_name, folders, processes, check_integrity=check_integrity,
                            target_spacing=target_spacing)


def _trainer(dataset_name: str, fold: int | str, trainer_name: str, fold_dir: Path, resume: bool, device,
             pretrained: Path | None = None):
    """nnU-Net's trainer object (resumed from the fold's last checkpoint when ``resume`` and one exists, else
    initialised from ``pretrained`` weights when given); returns the trainer, whether it resumed and whether its
    training is already finished."""
    from nnunetv2.run.run_training import get_trainer_from_args, maybe_load_checkpoint

    has_checkpoint = any((fold_dir / c).is_file() for c in
                         ("checkpoint_final.pth", "checkpoint_latest.pth", "checkpoint_best.pth"))
    resumed = bool(resume and has_checkpoint)
    trainer = get_trainer_from_args(dataset_name, CONFIGURATION, fold, trainer_name, PLANS, resumed, device=device)
    if resumed:
        maybe_load_checkpoint(trainer, True, False, None)
    elif pretrained is not None:
        maybe_load_checkpoint(trainer, False, False, str(pretrained))
    done = (fold_dir / "checkpoint_final.pth").is_file() and resumed and trainer.current_epoch >= trainer.num_epochs
    return trainer, resumed, done


def check_seed(seed) -> int | None:
    """A seed: None or a non-negative integer."""
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0):
        raise InputError(f"seed must be a non-negative integer, got {seed!r}")
    return seed


def _seed_everything(seed: int) -> None:
    import random

    import torch

    random.seed(int(seed))
    np.random.seed(int(seed) % 2 ** 32)
    torch.manual_seed(int(seed))


def epoch_callback(on_epoch: Callable[[int, int, dict], None]) -> Callable:
    """A trainer ``epoch_callback`` that calls ``on_epoch(epoch, num_epochs, values)`` with nnU-Net's logged
    per-epoch values (:data:`EPOCH_VALUES`, those that exist)."""

    def callback(trainer) -> None:
        values = {}
        for key in EPOCH_VALUES:
            try:
                values[key] = np.asarray(trainer.logger.get_value(key, step=-1), dtype=float).tolist()
            except (KeyError, IndexError, TypeError, ValueError):
                pass
        on_epoch(trainer.current_epoch, trainer.num_epochs, values)

    return callback


def _run(trainer, done: bool, validate: bool, fold_dir: Path, device) -> None:
    """Train unless finished; run nnU-Net's final validation when asked and not yet done."""
    if not done:
        if device.type == "cuda":
            import torch

            torch.backends.cudnn.benchmark = True
        trainer.run_training()
    validation_done = (fold_dir / "validation" / "summary.json").is_file()
    if validate and (not done or not validation_done):
        trainer.perform_actual_validation(False)


def train(
    data: str | Path,
    fold: int | str = 0,
    *,
    model: str = "rcsegnext_b",
    out: str | Path | None = None,
    epochs: int | None = None,
    iters: int | None = None,
    val_iters: int | None = None,
    patch: str | Sequence[int] | None = None,
    batch_size: int | None = None,
    device: str | None = "auto",
    workers: int | None = None,
    preprocess_processes: int | None = None,
    check_integrity: bool = True,
    resume: bool = True,
    validate: bool = True,
    save_every: int | None = None,
    on_epoch: Callable[[int, int, dict], None] | None = None,
    target_spacing: Sequence[float] | None = None,
    pretrained: str | Path | None = None,
    seed: int | None = None,
) -> TrainResult:
    """Plan and preprocess ``data`` (an nnU-Net raw data set folder, any number of input channels) if needed, then
    train ``model`` on ``fold`` with procto's nnU-Net trainer for it (paper settings unless overridden; see
    :mod:`procto.train.nnunet.trainers`).

    ``resume`` continues from the fold's last checkpoint (nnU-Net's ``--c``); a finished fold is not retrained.
    ``workers`` is nnU-Net's number of data augmentation processes (``nnUNet_n_proc_DA``; 0 = in the main process).
    ``check_integrity=False`` skips nnU-Net's data set integrity check (for data sets procto wrote itself).
    ``validate`` runs nnU-Net's final prediction of the fold's validation cases (``fold_X/validation``).
    ``on_epoch(epoch, num_epochs, values)`` is called after every epoch (values: train/val loss, pseudo Dice).
    ``target_spacing`` (z, y, x): nnU-Net's 3d_fullres target spacing (planning's ``-overwrite_target_spacing``).
    ``pretrained``: an nnU-Net checkpoint whose weights (all but ``.seg_layers.``) start a new training (nnU-Net's
    ``-pretrained_weights``; ignored when the fold resumes).
    ``seed`` seeds Python's, numpy's and torch's generators before the trainer is created (nnU-Net itself seeds
    nothing): with ``workers=0`` on a CPU a run is then repeatable.
    """
    from procto.util import resolve_device

    dataset_id, dataset_name = dataset_id_and_name(data)
    folders = resolve_folders(data, out)
    trainer_name = trainer_name_for(model)
    fold = check_fold(fold)
    dev = resolve_device(device)
    target_spacing = check_target_spacing(target_spacing)
    check_seed(seed)
    if pretrained is not None and not Path(pretrained).is_file():
        raise InputError("no such checkpoint (pretrained weights)", pretrained)
    env = opts.training_env(epochs=epochs, iters=iters, val_iters=val_iters, patch=patch, batch_size=batch_size,
                            workers=workers, validate=validate, save_every=save_every)
    model_dir = model_dir_for(folders, dataset_name, model)
    fold_dir = model_dir / f"fold_{fold}"
    with nnunet_environment(folders, **env):
        _plan(dataset_id, dataset_name, folders, preprocess_processes, check_integrity, target_spacing)
        if seed is not None:
            _seed_everything(seed)
        trainer, resumed, done = _trainer(dataset_name, fold, trainer_name, fold_dir, resume, dev,
                                          Path(pretrained) if pretrained is not None else None)
        if on_epoch is not None:
            trainer.epoch_callback = epoch_callback(on_epoch)
        _run(trainer, done, validate, fold_dir, dev)
        epochs_run = int(trainer.num_epochs)
    return TrainResult(model_dir, fold_dir, fold_dir / "checkpoint_final.pth", trainer_name, epochs_run, resumed)


__all__ = ["TrainResult", "EPOCH_VALUES", "check_fold", "epoch_callback", "train"]
