"""The bundle manifest (``manifest.json``): its format, how it is read and checked, and how it is made for the two kinds
of trained models — procto's engine checkpoints (U-SAM, staging, CoSAM) and nnU-Net model folders (RCSegNeXt,
AG-CRC) — from what their runs recorded (nothing is invented: a value the run does not hold is ``null``).

Fields::

    format "procto-bundle", format_version 1, name, task, architecture, framework ("procto" | "nnunetv2"),
    procto_version, created (UTC), modality ("CT" | "MR" | null), spacing ([z, y, x] mm the model expects, or null),
    orientation (or null), labels ({value: name}), training_data, validation (or null), config (engine models:
    the training settings), model_kwargs (engine models), nnunet (trainer, plans, configuration, folds, checkpoint),
    model_path (relative: the file or folder a predictor's ``--model`` takes), files ({member: {sha256, size}})
"""

from __future__ import annotations

import datetime
import hashlib
import json
import math
import re
from pathlib import Path, PurePosixPath
from typing import Any, Mapping

from procto import __version__
from procto.errors import InputError

__all__ = ["FORMAT", "FORMAT_VERSION", "MANIFEST", "SUFFIX", "TASKS", "ENGINE_TASKS", "NNUNET_TASKS", "valid_name",
           "check_name", "default_name", "sha256_file", "sha256_bytes", "check_member_name", "check_manifest",
           "base_manifest", "engine_manifest", "nnunet_manifest", "task_from_trainer", "plain", "load_weights",
           "check_weights"]

FORMAT = "procto-bundle"
#: The newest manifest format this procto reads and the one it writes.
FORMAT_VERSION = 1
#: The manifest's member name (the only member a manifest does not list).
MANIFEST = "manifest.json"
ENGINE_TASKS = ("usam", "staging", "cosam")
NNUNET_TASKS = ("rcsegnext", "agcrc")
TASKS = NNUNET_TASKS + ENGINE_TASKS
#: What each engine task's model takes and gives (from its predictor; staging's orientation is not recorded).
_ENGINE_IO = {
    "usam": ("CT", "axial slices along the volume's z axis",
             {"0": "background", "1": "normal rectum", "2": "tumour"}),
    "staging": ("MR", None, {"0": "T2", "1": "T3"}),
    "cosam": ("CT", "axial slices along the volume's z axis (2.5D windows)",
              {"0": "background", "1..n": "lymph node instance"}),
}
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
#: A bundle file's ending.
SUFFIX = ".procto"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,99}$")


# ------------------------------------------------------------------------------------------------------ names
def valid_name(name: Any) -> bool:
    """Whether ``name`` is a bundle name: letters, digits, ``._+-`` (starting with a letter or digit), at most 100
    characters, not ending in ``.procto``/``.zip`` (so that it never reads as a file name)."""
    return isinstance(name, str) and bool(_NAME.match(name)) and not name.lower().endswith((SUFFIX, ".zip"))


def check_name(name: str, where: str | Path | None = None) -> str:
    """``name`` if it is a :func:`valid_name`, else one :class:`InputError`."""
    if not valid_name(name):
        raise InputError(f"bad bundle name {name!r}: use letters, digits and ._+- (e.g. staging_v2)", where)
    return name


def default_name(path: Path) -> str:
    """A bundle name from a file name: ``runs/staging_v2.procto`` → ``staging_v2`` (odd characters → ``_``)."""
    stem = path.name[: -len(SUFFIX)] if path.name.lower().endswith(SUFFIX) else path.stem
    name = re.sub(r"[^A-Za-z0-9._+-]", "_", stem).lstrip("._+-")[:100].removesuffix(".zip")
    return name if valid_name(name) else "bundle"


# ------------------------------------------------------------------------------------------------------ hashing
def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a file, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# ------------------------------------------------------------------------------------------------------ weights
def _numpy_safe_globals() -> list:
    """numpy's scalar/array/dtype constructors: plain data that nnU-Net's checkpoints hold (its log), allowed on top
    of torch's ``weights_only`` set.  They build numbers and arrays only; no code from the file runs."""
    import numpy as np

    core = getattr(np, "_core", None) or np.core
    dtypes = {type(np.dtype(c)) for c in "?bBhHiIlLqQefdgFDG"}
    return [core.multiarray.scalar, core.multiarray._reconstruct, np.ndarray, np.dtype, *dtypes]


def load_weights(path: str | Path) -> Any:
    """``torch.load(path, weights_only=True)`` on the CPU (numpy scalars/arrays allowed): tensors and plain data
    only, never code from the file.  Anything else is one :class:`InputError`."""
    import torch

    try:
        with torch.serialization.safe_globals(_numpy_safe_globals()):
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 — any unpickling problem means: not plain weights
        text = str(exc).strip()
        match = re.search(r"Unsupported global: GLOBAL ([\w.]+)", text)
        why = f"it needs {match.group(1)}" if match else (text.splitlines()[0][:160] if text else type(exc).__name__)
        raise InputError(f"not loadable as plain weights (torch.load weights_only=True: {why})", path) from None


def check_weights(path: Path, framework: str, task: str, member: str | None = None) -> None:
    """``path`` loads with ``weights_only`` and is what the manifest says: a procto checkpoint of ``task`` (engine
    models) or an nnU-Net checkpoint (``network_weights``)."""
    where = member or path
    try:
        record = load_weights(path)
    except InputError as exc:
        raise InputError(exc.problem, where) from None
    if framework == "nnunetv2":
        if not isinstance(record, dict) or "network_weights" not in record:
            raise InputError("not an nnU-Net checkpoint (no network_weights)", where)
        return
    from procto.nets.checkpoint import FORMAT as CHECKPOINT

    if not isinstance(record, dict) or record.get("format") != CHECKPOINT:
        raise InputError("not a procto checkpoint", where)
    if record.get("task") != task:
        raise InputError(f"holds a {record.get('task')} model, the manifest says {task}", where)


def plain(obj: Any) -> Any:
    """``obj`` with numpy values, devices and paths made plain Python (tuples stay tuples, tensors stay tensors)."""
    import numpy as np

    if isinstance(obj, Mapping):
        return {k: plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(plain(v) for v in obj) if type(obj) in (list, tuple) else [plain(v) for v in obj]
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path) or (type(obj).__module__ == "torch" and type(obj).__name__ == "device"):
        return str(obj)
    return obj


def _json_safe(obj: Any) -> Any:
    """``plain(obj)`` with NaN/inf as null (strict JSON)."""
    obj = plain(obj)
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {str(k): _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    return obj


# ------------------------------------------------------------------------------------------------------ checking
def check_member_name(name: str, where: str | Path) -> str:
    """``name`` as a safe relative POSIX path (no absolute path, drive, backslash or ``..``)."""
    parts = PurePosixPath(name).parts
    if (not name or name.startswith("/") or "\\" in name or re.match(r"^[A-Za-z]:", name) or ".." in parts
            or any(p in ("", ".") for p in name.rstrip("/").split("/"))):
        raise InputError(f"refused: unsafe member path {name!r}", where)
    return name


def check_manifest(manifest: Any, where: str | Path) -> dict:
    """The manifest if it is one this procto reads; one :class:`InputError` otherwise."""
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise InputError(f"not a procto bundle ({MANIFEST} is not a {FORMAT} manifest)", where)
    version = manifest.get("format_version")
    if isinstance(version, bool) or not isinstance(version, int) or not 1 <= version <= FORMAT_VERSION:
        raise InputError(f"unknown bundle format version {version!r} (this procto reads versions up to "
                         f"{FORMAT_VERSION})", where)
    if manifest.get("task") not in TASKS:
        raise InputError(f"unknown task {manifest.get('task')!r} in {MANIFEST} (known: {', '.join(TASKS)})", where)
    if manifest.get("framework") not in ("procto", "nnunetv2"):
        raise InputError(f"unknown framework {manifest.get('framework')!r} in {MANIFEST}", where)
    files = manifest.get("files")
    if not isinstance(files, dict) or not files:
        raise InputError(f"{MANIFEST} lists no files", where)
    for name, entry in files.items():
        check_member_name(name, where)
        if name == MANIFEST or not isinstance(entry, dict) or not _HEX64.match(str(entry.get("sha256", ""))) \
                or isinstance(entry.get("size"), bool) or not isinstance(entry.get("size"), int) or entry["size"] < 0:
            raise InputError(f"{MANIFEST}: bad entry for {name!r} (needs sha256 and size)", where)
    model_path = manifest.get("model_path")
    if not isinstance(model_path, str) or not any(n == model_path or n.startswith(model_path.rstrip("/") + "/")
                                                  for n in files):
        raise InputError(f"{MANIFEST}: model_path {model_path!r} names no listed file or folder", where)
    check_member_name(model_path, where)
    return manifest


# ------------------------------------------------------------------------------------------------------ making
def base_manifest(name: str, task: str, architecture: str | None, framework: str) -> dict:
    """The fields every manifest has, in the order they are written."""
    now = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0).isoformat()
    return {"format": FORMAT, "format_version": FORMAT_VERSION, "name": name, "task": task,
            "architecture": architecture, "framework": framework, "procto_version": __version__, "created": now,
            "modality": None, "spacing": None, "orientation": None, "labels": {}, "training_data": {},
            "validation": None}


def _engine_validation(record: Mapping, best: Mapping | None) -> dict | None:
    """Validation values the run recorded: ``val_*`` of the last log row, ``val_*``/``best_*`` of the checkpoint's
    extra and of the run's ``best.pt``."""
    def numbers(row: Mapping, keep) -> dict:
        return {k: v for k, v in row.items() if keep(k) and isinstance(v, (int, float)) and not isinstance(v, bool)}

    out: dict = {}
    history = [r for r in record.get("history") or [] if isinstance(r, Mapping)]
    if history:
        last = numbers(history[-1], lambda k: str(k).startswith("val_"))
        if last:
            out["last_epoch"] = {"epoch": history[-1].get("epoch"), **last}
    for key, source in (("checkpoint", record.get("extra") or {}), ("best_checkpoint", (best or {}).get("extra"))):
        values = numbers(source or {}, lambda k: str(k).startswith(("val_", "best_")))
        if values:
            out[key] = values
    return _json_safe(out) or None


def engine_manifest(name: str, record: Mapping, best: Mapping | None = None) -> dict:
    """The manifest (without ``files``/``model_path``) of a procto checkpoint ``record`` (U-SAM, staging, CoSAM);
    ``best``: the run's ``best.pt`` record, for its validation values."""
    task = str(record.get("task"))
    manifest = base_manifest(name, task, str(record.get("model")), "procto")
    modality, orientation, labels = _ENGINE_IO[task]
    extra = record.get("extra") or {}
    data = extra.get("data") if isinstance(extra.get("data"), Mapping) else {}
    manifest.update(modality=modality, orientation=orientation, labels=labels,
                    training_data=_json_safe({**data, "epochs": record.get("epoch"),
                                              "iterations": record.get("iteration")}),
                    validation=_engine_validation(record, best), config=_json_safe(record.get("config") or {}),
                    model_kwargs=_json_safe(record.get("model_kwargs") or {}))
    return manifest


def task_from_trainer(trainer: str, procto_model: str | None = None) -> str | None:
    """The task of an nnU-Net trainer class name (procto's ``nnUNetTrainerRCSegNeXt…``/``nnUNetTrainerAGCRC…``) or
    of the network name procto's trainers write into the plans; None for other trainers."""
    for task, prefix in (("rcsegnext", "nnUNetTrainerRCSegNeXt"), ("agcrc", "nnUNetTrainerAGCRC")):
        if trainer.startswith(prefix) or (procto_model or "").startswith(task):
            return task
    return None


def _configuration(plans: Mapping, name: str) -> dict:
    """A plans configuration with ``inherits_from`` resolved."""
    configs = plans.get("configurations") if isinstance(plans.get("configurations"), Mapping) else {}
    chain, seen = [], set()
    while isinstance(name, str) and isinstance(configs.get(name), Mapping) and name not in seen:
        seen.add(name)
        chain.append(configs[name])
        name = configs[name].get("inherits_from")
    merged: dict = {}
    for c in reversed(chain):
        merged.update(c)
    return merged


def _modality(channels: list[str], normalization: Any) -> str | None:
    names = [c.upper() for c in channels]
    if any(n == "CT" or n.startswith("CT") for n in names):
        return "CT"
    if any(t in n for n in names for t in ("T1", "T2", "MR", "ADC", "DWI", "FLAIR")):
        return "MR"
    if isinstance(normalization, list) and "CTNormalization" in normalization:
        return "CT"
    return None


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _training_data(model_dir: Path, dataset: Mapping, plans: Mapping) -> dict:
    """Number of cases and nnU-Net's fingerprint (median spacing/shape, foreground intensity statistics)."""
    import numpy as np

    out: dict = {"dataset": plans.get("dataset_name"), "num_training": dataset.get("numTraining")}
    fingerprint = _read_json(model_dir / "dataset_fingerprint.json")
    if isinstance(fingerprint, Mapping):
        spacings = fingerprint.get("spacings") or []
        shapes = fingerprint.get("shapes_after_crop") or []
        out["cases"] = len(spacings)
        if spacings:
            out["median_spacing"] = np.median(np.asarray(spacings, float), axis=0).tolist()
        if shapes:
            out["median_shape_after_crop"] = np.median(np.asarray(shapes, float), axis=0).tolist()
        out["intensity_statistics"] = fingerprint.get("foreground_intensity_properties_per_channel")
    else:
        out["intensity_statistics"] = plans.get("foreground_intensity_properties_per_channel")
    return _json_safe({k: v for k, v in out.items() if v is not None})


def _nnunet_validation(model_dir: Path, folds: list) -> dict | None:
    out = {}
    for f in folds:
        summary = _read_json(model_dir / f"fold_{f}" / "validation" / "summary.json")
        if isinstance(summary, Mapping):
            out[f"fold_{f}"] = {k: summary[k] for k in ("foreground_mean", "mean") if k in summary}
    return _json_safe(out) or None


def nnunet_manifest(name: str, model_dir: Path, folds: list, checkpoint: str, task: str | None = None) -> dict:
    """The manifest (without ``files``/``model_path``) of an nnU-Net model folder ``model_dir``
    (``Trainer__Plans__Configuration`` with plans.json, dataset.json, fold_X/); ``task`` None: from the trainer."""
    from procto.infer.nnunet import channel_names, read_dataset_json

    plans = _read_json(model_dir / "plans.json")
    if not isinstance(plans, Mapping):
        raise InputError("plans.json is not readable JSON", model_dir / "plans.json")
    dataset = read_dataset_json(model_dir / "dataset.json")
    parts = model_dir.name.split("__")
    trainer, plans_name, configuration = parts if len(parts) == 3 else (model_dir.name, None, "3d_fullres")
    conf = _configuration(plans, configuration)
    procto_model = conf.get("procto_model")
    found = task_from_trainer(trainer, procto_model)
    task = task or found
    if task is None:
        raise InputError(f"cannot tell the task of trainer {trainer}; pass --task {' or '.join(NNUNET_TASKS)}",
                         model_dir)
    if task not in NNUNET_TASKS:
        raise InputError(f"an nnU-Net model is {' or '.join(NNUNET_TASKS)}, not {task}", model_dir)
    arch = procto_model or (conf.get("architecture") or {}).get("network_class_name") or conf.get("UNet_class_name")
    manifest = base_manifest(name, task, arch, "nnunetv2")
    channels = channel_names(dataset)
    labels = dataset.get("labels") if isinstance(dataset.get("labels"), Mapping) else {}
    manifest.update(modality=_modality(channels, conf.get("normalization_schemes")), spacing=conf.get("spacing"),
                    labels={str(v): str(k) for k, v in labels.items()},
                    training_data=_training_data(model_dir, dataset, plans),
                    validation=_nnunet_validation(model_dir, folds))
    manifest["input"] = {"channels": channels, "patch_size": conf.get("patch_size")}
    manifest["nnunet"] = {"trainer": trainer, "plans": plans_name, "configuration": configuration,
                          "folds": [str(f) for f in folds], "checkpoint": checkpoint}
    if isinstance(dataset.get("procto_agcrc"), Mapping):
        manifest["nnunet"]["procto_agcrc"] = dict(dataset["procto_agcrc"])
    return _json_safe(manifest)
