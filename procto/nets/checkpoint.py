"""The one checkpoint format of the models procto trains itself (U-SAM, staging, …): saved by the training engine,
loaded by training (resume) and inference alike.

A checkpoint is a dict of plain types and tensors, loadable with ``torch.load(weights_only=True)``::

    format        "procto-checkpoint"            version      1
    task          what trained it ("usam", "staging")
    model         registry name for procto.nets.create_model ("usam_b", "staging_f_rmc5")
    model_kwargs  its keyword arguments
    config        the task's settings (a plain dict)
    extra         what inference needs besides the weights (e.g. how the training data were made)
    state_dict    the weights (CPU tensors)
    epoch, iteration, history   epochs and optimisation steps done, one log row per epoch
    training      only in resumable checkpoints (``last.pt``): optimizer, scheduler, task_state, scaler

:func:`load_checkpoint` rebuilds the network through the registry and returns ``(model, record)``; a missing,
corrupt or foreign file is one :class:`~procto.errors.InputError`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import numpy as np

from procto.errors import InputError

__all__ = ["FORMAT", "VERSION", "build_model", "load_checkpoint", "make_record", "plain", "read_checkpoint",
           "save_checkpoint"]

FORMAT = "procto-checkpoint"
VERSION = 1


def plain(obj: Any) -> Any:
    """``obj`` with numpy scalars/arrays, paths and tuples turned into plain Python (what ``weights_only`` loads)."""
    if isinstance(obj, Mapping):
        return {str(k) if isinstance(k, Path) else k: plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [plain(v) for v in obj]
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    return obj


def build_model(name: str, kwargs: Mapping[str, Any] | None = None):
    """``procto.nets.create_model(name, **kwargs)`` with one-line errors for unknown names and bad arguments."""
    from procto.nets.registry import create_model

    try:
        return create_model(name, **dict(kwargs or {}))
    except (TypeError, ValueError) as exc:
        raise InputError(f"cannot build {name} with {dict(kwargs or {})}: {exc}") from None


def make_record(model: str, model_kwargs: Mapping[str, Any], state_dict: Mapping[str, Any], *, task: str,
                config: Mapping[str, Any] | None = None, extra: Mapping[str, Any] | None = None, epoch: int = 0,
                iteration: int = 0, history: list | None = None, training: Mapping[str, Any] | None = None) -> dict:
    """A checkpoint record (module docstring); ``training`` (optimizer/scheduler/task state) makes it resumable."""
    record = {"format": FORMAT, "version": VERSION, "task": str(task), "model": str(model),
              "model_kwargs": plain(dict(model_kwargs)), "config": plain(dict(config or {})),
              "extra": plain(dict(extra or {})),
              "state_dict": {k: v.detach().cpu() for k, v in state_dict.items()},
              "epoch": int(epoch), "iteration": int(iteration), "history": plain(list(history or []))}
    if training is not None:
        record["training"] = dict(training)
    return record


def save_checkpoint(path: str | Path, record: Mapping[str, Any]) -> Path:
    """Write ``record`` atomically (a crash never leaves a half-written checkpoint)."""
    from procto.io import save_torch

    return save_torch(dict(record), path)


def read_checkpoint(path: str | Path, task: str | None = None, *, title: str | None = None) -> dict:
    """The record of checkpoint ``path`` (tensors on the CPU); ``task`` (e.g. "usam") refuses checkpoints of other
    tasks, naming the model as ``title`` in the message."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise InputError("checkpoint not found", path)
    try:
        record = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 — any unpickling problem (text, zip, foreign objects) is a bad input file
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise InputError(f"not a readable model checkpoint ({exc.__class__.__name__}: {first[:160]})", path) from None
    name = title or task or "model"
    train = f" (train one with `procto train {task}`)" if task else ""
    if not isinstance(record, dict) or record.get("format") != FORMAT:
        raise InputError(f"not a procto {name} checkpoint{train}", path)
    if task is not None and record.get("task") != task:
        raise InputError(f"not a procto {name} checkpoint: it holds a {record.get('task')} model{train}", path)
    if int(record.get("version", 0)) > VERSION:
        raise InputError(f"checkpoint version {record.get('version')} is newer than this procto reads ({VERSION})",
                         path)
    return record


def load_checkpoint(path: str | Path, task: str | None = None, *, title: str | None = None, device: Any = "cpu"):
    """``(model in eval mode on device, record)``: the network rebuilt with ``create_model(record["model"],
    **record["model_kwargs"])`` and its weights loaded (see :func:`read_checkpoint` for ``task``/``title``)."""
    import torch

    record = read_checkpoint(path, task, title=title)
    with torch.random.fork_rng(devices=[]):  # building initialises weights: leave the caller's RNG alone
        model = build_model(record["model"], record.get("model_kwargs"))
    try:
        model.load_state_dict(record["state_dict"])
    except RuntimeError as exc:
        raise InputError(f"weights do not fit {record['model']}: {str(exc).splitlines()[0]}", path) from None
    model.to(device).eval()
    return model, record
