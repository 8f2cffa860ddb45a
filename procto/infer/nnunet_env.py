"""nnU-Net v2's environment for procto: its three folders, procto's trainer search path, its process count, and a
quiet mode for its chatter.  Used by inference (:mod:`procto.infer.nnunet`) and training (:mod:`procto.train.nnunet`).

nnU-Net reads its settings from environment variables; procto sets them for the duration of a call only
(:func:`nnunet_environment`) and restores the previous environment afterwards, so importing procto changes nothing.

* ``nnUNet_raw`` / ``nnUNet_preprocessed`` / ``nnUNet_results``: the folders of :class:`NNUNetFolders`;
* ``nnUNet_extTrainer``: :data:`TRAINER_DIR` is added, the folder in which nnU-Net finds procto's trainer classes by
  name (``nnUNetTrainerRCSegNeXt``, ...; see :mod:`procto.train.nnunet.trainers`).  It is a path computed from this
  file's location: nnU-Net's own training scripts import the trainers from there; procto's predictor builds procto's
  networks through the registry and never imports them;
* ``nnUNet_def_n_proc``: nnU-Net's process count for exports and validation, unless already set (nnU-Net's default is
  8).  nnU-Net reads it once, when ``nnunetv2.configuration`` is first imported, so procto imports nnU-Net inside
  this environment.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

#: Folder to list in ``nnUNet_extTrainer`` so that nnU-Net finds procto's trainers (``procto/train/nnunet_ext``).
TRAINER_DIR = Path(__file__).resolve().parents[1] / "train" / "nnunet_ext"


@dataclass
class NNUNetFolders:
    """nnU-Net's three folders: the parent of the raw data set folder, preprocessed data, results (trained models)."""

    raw: Path
    preprocessed: Path
    results: Path


def default_processes(cap: int = 8) -> int:
    """Processes for nnU-Net's parallel steps: the CPU count, at least 1 and at most ``cap``."""
    return max(1, min(cap, os.cpu_count() or 1))


def register_trainer_path(environ: dict | None = None) -> str:
    """Add :data:`TRAINER_DIR` to ``nnUNet_extTrainer`` in ``environ`` (default ``os.environ``; kept if already
    there); returns the new value."""
    env = os.environ if environ is None else environ
    path = str(TRAINER_DIR)
    current = [p for p in env.get("nnUNet_extTrainer", "").split(os.pathsep) if p.strip()]
    if path not in current:
        current.append(path)
    env["nnUNet_extTrainer"] = os.pathsep.join(current)
    return env["nnUNet_extTrainer"]


@contextlib.contextmanager
def nnunet_environment(folders: NNUNetFolders | None = None, **extra: str | int | float | None) -> Iterator[None]:
    """Set nnU-Net's folder variables (creating the folders), procto's trainer search path, nnU-Net's process count
    (unless set) and ``extra`` variables (None = unset) for the duration of the block; restore the previous
    environment afterwards."""
    updates: dict[str, str | None] = {}
    if folders is not None:
        for key, value in (("nnUNet_raw", folders.raw), ("nnUNet_preprocessed", folders.preprocessed),
                           ("nnUNet_results", folders.results)):
            Path(value).mkdir(parents=True, exist_ok=True)
            updates[key] = str(value)
    if not os.environ.get("nnUNet_def_n_proc"):
        updates["nnUNet_def_n_proc"] = str(default_processes())
    for key, value in extra.items():
        updates[key] = None if value is None else str(value)
    tmp_env = dict(os.environ)
    register_trainer_path(tmp_env)
    updates["nnUNet_extTrainer"] = tmp_env["nnUNet_extTrainer"]
    saved = {k: os.environ.get(k) for k in updates}
    try:
        _set_environ(updates)
        yield
    finally:
        _set_environ(saved)


def _set_environ(values: dict[str, str | None]) -> None:
    """Set each variable to its value; None unsets it."""
    for k, v in values.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@contextlib.contextmanager
def quiet_stdout(log: str | Path | None = None) -> Iterator[None]:
    """Send what nnU-Net prints on stdout (trainer search, device notes, per-epoch lines) to ``log`` (appended) or
    nowhere; errors still raise, and stderr is untouched."""
    if log is None:
        with open(os.devnull, "w") as fh, contextlib.redirect_stdout(fh):
            yield
        return
    log = Path(log)
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("a") as fh, contextlib.redirect_stdout(fh):
        yield


__all__ = ["TRAINER_DIR", "NNUNetFolders", "default_processes", "register_trainer_path", "nnunet_environment",
           "quiet_stdout"]
