"""``export_bundle``: a trained model as one ``.procto`` file — an engine checkpoint (U-SAM, staging, CoSAM: the run's
``model.pt`` with its ``config.json``/``log.csv``) or an nnU-Net model folder (RCSegNeXt, AG-CRC: plans.json,
dataset.json, dataset_fingerprint.json and one checkpoint per fold, reduced to what inference reads)."""

from __future__ import annotations

import io
from pathlib import Path

from procto.bundle.archive import Source, write_bundle
from procto.bundle.manifest import ENGINE_TASKS, SUFFIX, TASKS, check_name, default_name, engine_manifest, \
    load_weights, nnunet_manifest, plain
from procto.errors import InputError

__all__ = ["INFERENCE_KEYS", "export_bundle", "inference_checkpoint"]

#: What nnU-Net's predictors read from a checkpoint; the rest (optimizer, gradient scaler, log) stays behind.
INFERENCE_KEYS = ("network_weights", "init_args", "trainer_name", "inference_allowed_mirroring_axes",
                  "current_epoch")


def _torch_bytes(obj) -> bytes:
    import torch

    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def inference_checkpoint(path: Path) -> bytes:
    """An nnU-Net checkpoint reduced to :data:`INFERENCE_KEYS` in plain types (loadable with ``weights_only``, no
    numpy), as bytes; the weights are the same tensors."""
    record = load_weights(path)
    if not isinstance(record, dict) or "network_weights" not in record:
        raise InputError("not an nnU-Net checkpoint (no network_weights)", path)
    return _torch_bytes({k: record[k] if k == "network_weights" else plain(record[k])
                         for k in INFERENCE_KEYS if k in record})


def _engine(path: Path, name: str, task: str | None) -> tuple[dict, list[tuple[str, Source]]]:
    from procto.nets.checkpoint import read_checkpoint

    if path.is_dir():
        checkpoint = path / "model.pt"
        if not checkpoint.is_file():
            raise InputError("no model.pt in this run folder (an unfinished run? pass its last.pt to export the "
                             "last epoch)", path)
    else:
        checkpoint = path
    record = read_checkpoint(checkpoint)
    if record.get("task") not in ENGINE_TASKS:
        raise InputError(f"holds a {record.get('task')} model; bundles hold {', '.join(TASKS)}", checkpoint)
    if task is not None and record["task"] != task:
        raise InputError(f"holds a {record['task']} model, not {task}", checkpoint)
    run = checkpoint.parent
    best = None
    if (run / "best.pt").is_file() and (run / "best.pt").resolve() != checkpoint.resolve():
        try:
            best = read_checkpoint(run / "best.pt", record["task"])
        except InputError:
            best = None
    manifest = engine_manifest(name, record, best)
    if "training" in record:  # a resumable checkpoint (last.pt): the optimizer state is not part of a model
        record.pop("training")
        source: Source = _torch_bytes(record)
    else:
        source = checkpoint
    members: list[tuple[str, Source]] = [("model/model.pt", source)]
    members += [(f"model/{n}", run / n) for n in ("config.json", "log.csv") if (run / n).is_file()]
    manifest["model_path"] = "model/model.pt"
    return manifest, members


def _nnunet(path: Path, name: str, task: str | None) -> tuple[dict, list[tuple[str, Source]]]:
    from procto.infer.nnunet import checkpoint_for, find_model_dir, trained_folds

    checkpoint = None
    if path.is_file() and path.parent.name.startswith("fold_"):  # fold_X/checkpoint_final.pth: that fold
        checkpoint, path = path.name, path.parent
    model_dir, folds = find_model_dir(path)
    folds = list(folds) if folds is not None else trained_folds(model_dir)
    checkpoint = checkpoint_for(model_dir, folds, checkpoint)
    manifest = nnunet_manifest(name, model_dir, folds, checkpoint, task)
    base = f"model/{model_dir.name}"
    members: list[tuple[str, Source]] = [(f"{base}/{n}", model_dir / n) for n in
                                         ("plans.json", "dataset.json", "dataset_fingerprint.json")
                                         if (model_dir / n).is_file()]
    members += [(f"{base}/fold_{f}/{checkpoint}", inference_checkpoint(model_dir / f"fold_{f}" / checkpoint))
                for f in folds]
    manifest["model_path"] = base
    return manifest, members


def export_bundle(model: str | Path, out: str | Path, *, task: str | None = None, name: str | None = None,
                  training_source: str | None = None) -> Path:
    """Write trained model ``model`` as the bundle file ``out`` (``.procto``, atomic) and return ``out``.

    ``model``: an engine run folder (``--out`` of ``procto train usam|staging|cosam``: its ``model.pt``) or one of
    its checkpoints; or an nnU-Net model (``--out`` of ``procto train rcsegnext|agcrc``, the trainer's results
    folder, one ``fold_X`` folder or its checkpoint).  ``task``: checked against an engine checkpoint; for nnU-Net
    models trained by nnU-Net's own trainers it names the task (procto's trainers name it themselves).  ``name``:
    the name ``install_bundle`` uses by default (default: from ``out``).  ``training_source``: what the model was
    trained on, recorded as the manifest's ``training_data.source`` (``"phantoms"`` makes ``procto report`` warn
    that the model carries no accuracy claim on real scans).
    """
    from procto.io import check_output

    out = check_output(out, suffixes=(SUFFIX,))
    name = check_name(name, out) if name is not None else default_name(out)
    if task is not None and task not in TASKS:
        raise InputError(f"unknown task {task!r}; known: {', '.join(TASKS)}")
    path = Path(model)
    if not path.exists():
        raise InputError("no such model file or run folder", path)
    engine = (path.is_dir() and any((path / n).is_file() for n in ("model.pt", "last.pt"))) or \
        (path.is_file() and not path.name.endswith(".pth"))
    manifest, members = (_engine if engine else _nnunet)(path, name, task)
    if training_source is not None:
        manifest["training_data"] = {**(manifest.get("training_data") or {}), "source": str(training_source)}
    write_bundle(out, manifest, members)
    return out
