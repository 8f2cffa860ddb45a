"""T2/T3 staging of one rectal MR volume with a trained staging CNN.

>>> from procto.infer.staging import predict_stage
>>> predict_stage("runs/staging/model.pt", image, mask)        # doctest: +SKIP
{'t3_probability': 0.83, 'label': 'T3'}

The volume is preprocessed exactly as in training (N4 if the model was trained with it, in-plane crop around the
rectum/tumour ``mask`` with the training margin, resize, the training number of slices, normalisation), and the T3
probability is the test-time-augmented mean over the identity and the horizontal flip (when the model was trained
with ``tta``).  Without a mask the whole field of view is used — the model was trained on localised crops
("we start our experiment from the x-y localized setting (around the rectum and tumor)"), so pass the rectum /
tumour segmentation whenever there is one.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np

from procto.errors import InputError
from procto.io import Volume

__all__ = ["load_staging_model", "predict_stage"]


def load_staging_model(model_or_checkpoint: Any):
    """``(model, config)`` from a checkpoint path or a :class:`~procto.nets.staging.StagingNet` (its
    ``staging_config`` attribute, set by training, or the default :class:`~procto.train.staging.StagingConfig`)."""
    from procto.train.staging import StagingConfig, load_checkpoint

    if isinstance(model_or_checkpoint, (str, Path)):
        model, config, _ = load_checkpoint(model_or_checkpoint)
        return model, config
    model = model_or_checkpoint
    if not hasattr(model, "extractor") or not hasattr(model, "aggregation"):
        raise InputError("predict_stage needs a StagingNet (volume classifier) or a staging checkpoint path")
    config = getattr(model, "staging_config", None) or StagingConfig()
    return model, config


def predict_stage(
    model_or_checkpoint: Any,
    image: Volume,
    mask: Volume | np.ndarray | None = None,
    *,
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
        tta: flip test-time augmentation (default: as trained).
        threshold: T3 decision threshold on the probability (default: as trained, 0.5).

    Returns:
        ``{"t3_probability": float, "label": "T2" | "T3"}``.
    """
    from procto.train.staging import predict_probabilities, prepare_volume

    if not isinstance(image, Volume):
        raise InputError(f"image must be a procto.io.Volume, got {type(image).__name__}")
    if not np.all(np.isfinite(np.asarray(image.array, dtype=np.float64))):
        raise InputError("the image contains NaN or Inf")
    model, config = load_staging_model(model_or_checkpoint)
    if mask is not None:
        mask_arr = np.asarray(mask.array if isinstance(mask, Volume) else mask)
        if mask_arr.shape != image.shape:
            raise InputError(f"mask shape {mask_arr.shape} differs from the image {image.shape}")
        if not mask_arr.any():
            raise InputError("the mask is empty: nothing to localise the rectum with")
    else:
        warnings.warn("predict_stage without a mask: using the whole field of view (the model was trained on crops "
                      "around the rectum)", stacklevel=2)
    arr, valid, _ = prepare_volume(image, mask, config)
    use_tta = config.tta if tta is None else bool(tta)
    p = float(predict_probabilities(model, [arr], [valid], tta=use_tta, batch_size=1)[0])
    cut = config.threshold if threshold is None else float(threshold)
    return {"t3_probability": p, "label": "T3" if p >= cut else "T2"}
