"""T2/T3 staging of one rectal MR volume with a trained staging CNN.

>>> from procto.infer.staging import predict_stage
>>> predict_stage("runs/staging/model.pt", image, mask)        # doctest: +SKIP
{'t3_probability': 0.83, 'label': 'T3'}

The volume is preprocessed exactly as in training (:func:`procto.preprocess.staging.prepare_volume`: N4 if the model
was trained with it, in-plane crop around the rectum/tumour ``mask`` with the training margin, resize, the training
number of slices, normalisation), and the T3 probability is the test-time-augmented mean over the identity and the
horizontal flip (when the model was trained with ``tta``) — "to report the final predictions performance, we follow
the test-time augmentation procedure from Wu et al.".  Without a mask the whole field of view is used — the model was
trained on localised crops ("we start our experiment from the x-y localized setting (around the rectum and tumor)"),
so pass the rectum / tumour segmentation whenever there is one.

A model's settings (:class:`StagingModelConfig`: network, preprocessing, TTA, threshold) come from its checkpoint
record (procto's one checkpoint format, :mod:`procto.nets.checkpoint`) or are passed with the model; the training
run's config (:class:`procto.train.staging.StagingConfig`) extends them.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from procto.errors import InputError
from procto.io import Volume
from procto.preprocess.staging import StagingPreprocessing

__all__ = [
    "TASK",
    "StagingModelConfig",
    "load_staging_model",
    "predict_probabilities",
    "predict_stage",
    "read_staging_checkpoint",
    "staging_network",
    "staging_network_name",
]

#: The checkpoint ``task`` of staging models (:mod:`procto.nets.checkpoint`).
TASK = "staging"


@dataclass
class StagingModelConfig(StagingPreprocessing):
    """What a trained staging model needs at inference: its network (``variant`` of the extractor, depth
    ``aggregation``), its preprocessing (the fields of :class:`~procto.preprocess.staging.StagingPreprocessing`),
    flip test-time augmentation (``tta``) and the T3 decision ``threshold``."""

    variant: str = "rmc5"
    aggregation: str = "bilinear"
    tta: bool = True
    threshold: float = 0.5


def staging_network_name(config: StagingModelConfig) -> tuple[str, dict[str, Any]]:
    """Registry name and keyword arguments of the :class:`~procto.nets.staging.StagingNet` ``config`` names
    (``staging_f_<variant>`` with ``aggregation``)."""
    from procto.nets.staging import canonical_variant

    return f"staging_f_{canonical_variant(config.variant)}", {"aggregation": config.aggregation}


def staging_network(config: StagingModelConfig):
    """The untrained :class:`~procto.nets.staging.StagingNet` ``config`` names, from the registry."""
    from procto.nets import create_model

    name, kwargs = staging_network_name(config)
    return create_model(name, **kwargs)


def read_staging_checkpoint(path: str | Path) -> dict[str, Any]:
    """The record of a staging checkpoint (``config``, ``epoch``, ``history``, ``state_dict`` …, see
    :mod:`procto.nets.checkpoint`); anything else is an :class:`InputError`."""
    from procto.nets.checkpoint import read_checkpoint

    return read_checkpoint(path, TASK, title="staging")


def load_staging_model(model_or_checkpoint: Any, config: StagingModelConfig | None = None):
    """``(model in eval mode, config)`` from a checkpoint path (its saved config) or a
    :class:`~procto.nets.staging.StagingNet` (with ``config``, by default :class:`StagingModelConfig`'s defaults)."""
    if isinstance(model_or_checkpoint, (str, Path)):
        from procto.nets.checkpoint import load_checkpoint

        model, record = load_checkpoint(model_or_checkpoint, TASK, title="staging")
        return model, config or StagingModelConfig.from_dict(record["config"])
    model = model_or_checkpoint
    if not hasattr(model, "extractor") or not hasattr(model, "aggregation"):
        raise InputError("predict_stage needs a StagingNet (volume classifier) or a staging checkpoint path")
    if config is None:
        warnings.warn("predict_stage with a model object but no config: using the default preprocessing (256 x 256, "
                      "16 slices, N4); pass the training config (TrainResult.config) or the checkpoint path",
                      stacklevel=3)
        config = StagingModelConfig()
    return model, config


def predict_probabilities(
    model, images: Sequence[np.ndarray], valids: Sequence[np.ndarray], *, tta: bool = True, batch_size: int = 8
) -> np.ndarray:
    """T3 probabilities of preprocessed volumes ``(D, H, W)``; with ``tta`` the mean over the identity and the
    horizontal flip (array axis 2 — the flip used in training)."""
    import torch

    model.eval()
    dev = next(model.parameters()).device
    probs = []
    with torch.no_grad():
        for pos in range(0, len(images), batch_size):
            x = torch.stack([torch.from_numpy(np.asarray(a, dtype=np.float32)) for a in images[pos:pos + batch_size]])
            v = torch.stack([torch.from_numpy(np.asarray(m, dtype=bool)) for m in valids[pos:pos + batch_size]])
            x, v = x[:, None].to(dev), v.to(dev)
            p = torch.sigmoid(model(x, v).logit)
            if tta:
                p = (p + torch.sigmoid(model(torch.flip(x, dims=[-1]), v).logit)) / 2
            probs.append(p.double().cpu().numpy())
    return np.concatenate(probs) if probs else np.zeros(0)


def _check_inputs(image: Volume, mask: Volume | np.ndarray | None) -> None:
    if not isinstance(image, Volume):
        raise InputError(f"image must be a procto.io.Volume, got {type(image).__name__}")
    if not np.all(np.isfinite(np.asarray(image.array, dtype=np.float64))):
        raise InputError("the image contains NaN or Inf")
    if mask is not None:
        mask_arr = np.asarray(mask.array if isinstance(mask, Volume) else mask)
        if mask_arr.shape != image.shape:
            raise InputError(f"mask shape {mask_arr.shape} differs from the image {image.shape}")
        if not mask_arr.any():
            raise InputError("the mask is empty: nothing to localise the rectum with")
    else:
        warnings.warn("predict_stage without a mask: using the whole field of view (the model was trained on crops "
                      "around the rectum)", stacklevel=3)


def predict_stage(
    model_or_checkpoint: Any,
    image: Volume,
    mask: Volume | np.ndarray | None = None,
    *,
    config: StagingModelConfig | None = None,
    tta: bool | None = None,
    threshold: float | None = None,
) -> dict[str, Any]:
    """T3 probability and label of one T2-weighted volume.

    Args:
        model_or_checkpoint: a checkpoint written by ``procto train staging`` (``model.pt`` / ``last.pt``) or a
            trained :class:`~procto.nets.staging.StagingNet`.
        image: the T2-weighted MR volume (slice axis = array axis 0).
        mask: rectum/tumour label map or segmentation on the image's grid; the crop is taken around it (around the
            tumour label when the model was trained with ``crop_on="tumour"`` and the mask has one).
        config: the model's settings (a :class:`StagingModelConfig` or the training run's ``StagingConfig``);
            default: the checkpoint's, or the defaults for a bare model.
        tta: flip test-time augmentation (default: as trained).
        threshold: T3 decision threshold on the probability (default: as trained, 0.5).

    Returns:
        ``{"t3_probability": float, "label": "T2" | "T3"}``.
    """
    from procto.preprocess.staging import prepare_volume

    _check_inputs(image, mask)
    model, config = load_staging_model(model_or_checkpoint, config)
    arr, valid, _ = prepare_volume(image, mask, config)
    use_tta = config.tta if tta is None else bool(tta)
    p = float(predict_probabilities(model, [arr], [valid], tta=use_tta, batch_size=1)[0])
    cut = config.threshold if threshold is None else float(threshold)
    return {"t3_probability": p, "label": "T3" if p >= cut else "T2"}
