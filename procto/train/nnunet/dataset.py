"""nnU-Net raw data sets for training: the folder check, nnU-Net's three folders, planning and preprocessing.

nnU-Net's folders: ``nnUNet_raw`` is the parent of the raw data set folder; ``nnUNet_preprocessed`` and
``nnUNet_results`` are ``<out>/nnUNet_preprocessed`` and ``<out>/nnUNet_results`` (or, without ``out``, the user's own
environment variables).  They are set for the duration of a call only
(:func:`procto.infer.nnunet_env.nnunet_environment`).
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from procto.errors import InputError
from procto.infer.nnunet import channel_names, read_dataset_json
from procto.infer.nnunet_env import NNUNetFolders, default_processes
from procto.io import image_suffix
from procto.train.nnunet.models import CONFIGURATION, PLANS

DATASET_RE = re.compile(r"^Dataset(\d{3})_[A-Za-z0-9_\-.]+$")


def dataset_id_and_name(data: str | Path) -> tuple[int, str]:
    """Check that ``data`` is an nnU-Net v2 raw data set folder (``DatasetXXX_Name`` with ``dataset.json`` listing
    at least one input channel, ``imagesTr``, ``labelsTr``); return its id and name."""
    data = Path(data)
    if not data.is_dir():
        raise InputError("not a folder (expected an nnU-Net raw data set folder DatasetXXX_Name)", data)
    m = DATASET_RE.match(data.name)
    if not m:
        raise InputError("folder name must look like DatasetXXX_Name (nnU-Net v2 raw data set)", data)
    for part in ("dataset.json", "imagesTr", "labelsTr"):
        if not (data / part).exists():
            raise InputError(f"no {part} in this nnU-Net raw data set", data)
    ds = read_dataset_json(data / "dataset.json")
    if not (ds.get("channel_names") or ds.get("modality")):
        raise InputError("dataset.json lists no input channels (channel_names)", data / "dataset.json")
    channel_names(ds)  # names 0, 1, ... or one InputError
    return int(m.group(1)), data.name


def resolve_folders(data: str | Path, out: str | Path | None) -> NNUNetFolders:
    """nnU-Net's three folders for training on ``data`` (see the module docstring)."""
    data = Path(data).resolve()
    if out is not None:
        out = Path(out).resolve()
        return NNUNetFolders(data.parent, out / "nnUNet_preprocessed", out / "nnUNet_results")
    pre, res = os.environ.get("nnUNet_preprocessed"), os.environ.get("nnUNet_results")
    if not pre or not res:
        raise InputError("give --out, or set the nnUNet_preprocessed and nnUNet_results environment variables")
    return NNUNetFolders(data.parent, Path(pre), Path(res))


def preprocessed_ready(folders: NNUNetFolders, dataset_name: str) -> bool:
    """Whether nnU-Net's plans and 3d_fullres preprocessed data exist for every training case."""
    base = folders.preprocessed / dataset_name
    plans_file = base / f"{PLANS}.json"
    if not plans_file.is_file() or not (base / "dataset_fingerprint.json").is_file():
        return False
    try:
        plans = json.loads(plans_file.read_text())
        ident = plans["configurations"][CONFIGURATION]["data_identifier"]
    except (OSError, ValueError, KeyError):
        return False
    folder = base / ident
    if not folder.is_dir():
        return False
    n_cases = len([p for p in (folders.raw / dataset_name / "labelsTr").iterdir() if image_suffix(p)])
    have = {p.name.split(".")[0] for p in folder.iterdir() if p.name.endswith((".pkl",))}
    return len(have) >= n_cases


def planned_spacing(folders: NNUNetFolders, dataset_name: str) -> list[float] | None:
    """The 3d_fullres target spacing of the data set's existing plans (None without plans)."""
    try:
        plans = json.loads((folders.preprocessed / dataset_name / f"{PLANS}.json").read_text())
        return [float(s) for s in plans["configurations"][CONFIGURATION]["spacing"]]
    except (OSError, ValueError, KeyError):
        return None


def check_target_spacing(target_spacing) -> list[float] | None:
    """A target spacing (z, y, x) of three positive numbers, or None."""
    if target_spacing is None:
        return None
    values = [float(s) for s in target_spacing]
    if len(values) != 3 or not all(v > 0 for v in values):
        raise InputError(f"target spacing must be three positive numbers (z, y, x), got {tuple(target_spacing)}")
    return values


def plan_and_preprocess(dataset_id: int, dataset_name: str, folders: NNUNetFolders, num_processes: int | None = None,
                        verbose: bool = False, check_integrity: bool = True, target_spacing=None) -> None:
    """nnU-Net's fingerprint extraction (with its data set integrity check unless ``check_integrity`` is False),
    experiment planning (3d_fullres at ``target_spacing`` (z, y, x) when given: nnU-Net's
    ``-overwrite_target_spacing``) and 3d_fullres preprocessing, unless already done.  Must run inside
    :func:`procto.infer.nnunet_env.nnunet_environment`."""
    target = check_target_spacing(target_spacing)
    if preprocessed_ready(folders, dataset_name):
        have = planned_spacing(folders, dataset_name)
        if target is not None and have is not None and not all(abs(a - b) < 1e-6 for a, b in zip(have, target)):
            raise InputError(f"{dataset_name} was planned at spacing {tuple(have)}, not the requested "
                             f"{tuple(target)}; use another output folder", folders.preprocessed / dataset_name)
        return
    from nnunetv2.experiment_planning.plan_and_preprocess_api import (
        extract_fingerprints,
        plan_experiments,
        preprocess,
    )

    n = num_processes or default_processes(4)
    try:
        extract_fingerprints([dataset_id], num_processes=n, check_dataset_integrity=check_integrity, clean=True,
                             verbose=verbose, show_progress_bar=False)
    except (AssertionError, FileNotFoundError, RuntimeError) as exc:  # nnU-Net's integrity check: one message each
        first = next((ln for ln in str(exc).splitlines() if ln.strip()), type(exc).__name__)
        raise InputError(f"nnU-Net rejected the data set: {first}", folders.raw / dataset_name) from None
    plan_experiments([dataset_id], overwrite_target_spacing=target)
    preprocess([dataset_id], PLANS, configurations=(CONFIGURATION,), num_processes=(n,), verbose=verbose,
               show_progress_bar=False)


__all__ = ["DATASET_RE", "dataset_id_and_name", "resolve_folders", "preprocessed_ready", "planned_spacing",
           "check_target_spacing", "plan_and_preprocess"]
