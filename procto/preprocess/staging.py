"""Staging preparation, shared by training and inference: one T2-weighted volume → the network's ``(N, H, W)`` input.

What the staging paper says, and what this module does with it:

* "we start our experiment from the x-y localized setting (around the rectum and tumor) and resize along the first
  and second axes to create 256 × 256 × N pixel volumes" — each case is cropped in-plane around its rectum + tumour
  mask (:func:`procto.preprocess.crop.crop_around_mask`, ``margin_mm``, square) and resized to ``size`` (256 × 256 by
  default; smaller for tests); ``depth`` slices centred on the mask are kept (the slice axis is array axis 0 — the
  sagittal slices of a rectal MRI).  Slices are never interpolated.  Batches need one ``N``, so volumes with fewer
  slices are zero padded and the padding slices are marked (``valid``) so that the depth aggregation leaves them out.
* "we apply N4ITK to correct the intensity inhomogeneity" — :func:`procto.preprocess.n4.n4_bias_correction`
  (``n4``); intensities are then clipped to the 0.5–99.5 percentiles of the crop and z-scored (the paper does not
  say how it normalises; this is our choice).
* Slice-level labels: "we assign the pathologically confirmed cancer stage of an MR volume to all of its
  representative slice(s)"; radiologists picked "one to three representative slices" — here the ``representative``
  slices with the largest tumour area (:func:`representative_slices`).

:class:`StagingPreprocessing` holds these settings; the model's config
(:class:`procto.infer.staging.StagingModelConfig`) and the training run's config
(:class:`procto.train.staging.StagingConfig`) extend it, so a checkpoint's config gives the preprocessing back
(:meth:`StagingPreprocessing.from_dict`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np

from procto.errors import InputError
from procto.io import Volume

__all__ = [
    "STAGES",
    "StagingPreprocessing",
    "StagingSample",
    "normalise",
    "prepare_sample",
    "prepare_volume",
    "representative_slices",
    "stage_value",
]

STAGES = ("T2", "T3")  # index = target (T3 is the positive class)


def stage_value(text: Any, where: Any = None) -> str:
    """``"T2"`` or ``"T3"`` from a table cell (``T2``/``2``/``0``, ``T3``/``3``/``1``); anything else is an
    :class:`InputError` naming ``where``."""
    t = str(text).strip().upper()
    if t in ("T2", "2", "0"):
        return "T2"
    if t in ("T3", "3", "1"):
        return "T3"
    raise InputError(f"T stage must be T2 or T3, got {text!r}", where)


@dataclass
class StagingPreprocessing:
    """How a volume becomes the network's input (module docstring): crop, N4, size, slices, representative slices."""

    size: tuple[int, int] = (256, 256)
    depth: int = 16
    margin_mm: float = 10.0
    crop_on: str = "rectum"
    n4: bool = True
    n4_shrink: int = 4
    representative: int = 3
    tumour_label: int = 2

    def __post_init__(self) -> None:
        self.size = tuple(int(s) for s in self.size)  # type: ignore[assignment]
        if len(self.size) != 2 or min(self.size) < 32:
            raise InputError(f"size must be two integers >= 32 (the network strides by 32), got {self.size}")
        if self.depth < 1:
            raise InputError(f"depth must be >= 1, got {self.depth}")
        if self.crop_on not in ("rectum", "tumour"):
            raise InputError(f"crop_on must be 'rectum' or 'tumour', got {self.crop_on!r}")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["size"] = list(self.size)
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any]):
        """An instance from a dict (e.g. a checkpoint's config); keys that are not fields of ``cls`` are ignored."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


@dataclass
class StagingSample:
    """One preprocessed case, ready for the network.

    ``image`` ``(depth, H, W)`` float32; ``valid`` ``(depth,)`` real (True) vs padding slices; ``representative``
    ``(depth,)`` the slices trained at slice level; ``target`` 1 = T3, 0 = T2.
    """

    case_id: str
    image: np.ndarray
    valid: np.ndarray
    representative: np.ndarray
    target: int

    @property
    def t_stage(self) -> str:
        return STAGES[self.target]


def representative_slices(label: np.ndarray | None, valid: np.ndarray, k: int = 3, tumour_label: int = 2) -> np.ndarray:
    """The ``k`` slices (axis 0) with the largest tumour area — "one to three representative slices that best
    reflect the clinical state"; without tumour voxels the slices with the largest mask area; without a label map
    the central real slice."""
    depth = valid.shape[0]
    chosen = np.zeros(depth, dtype=bool)
    if label is not None:
        for mask in (label == tumour_label, label != 0):
            area = mask.reshape(depth, -1).sum(axis=1) * valid
            if area.max() > 0:
                order = np.argsort(-area, kind="stable")
                chosen[[i for i in order[:k] if area[i] > 0]] = True
                return chosen
    real = np.flatnonzero(valid)
    chosen[real[len(real) // 2]] = True
    return chosen


def normalise(array: np.ndarray) -> np.ndarray:
    """Clip to the 0.5–99.5 percentiles, then z-score (float32)."""
    lo, hi = np.percentile(array, [0.5, 99.5])
    x = np.clip(array.astype(np.float32), lo, hi)
    sd = float(x.std())
    return ((x - float(x.mean())) / (sd if sd > 1e-6 else 1.0)).astype(np.float32)


def _crop_function(image: Volume, mask: Volume | np.ndarray | None, prep: StagingPreprocessing):
    """``(crop(volume, pad_value) -> Volume, first slice of the depth window)``: in-plane box around the mask (or the
    whole field of view, squared, when there is none) and ``prep.depth`` slices centred on it."""
    from procto.io import check_same_geometry
    from procto.preprocess.crop import crop_around_mask, crop_box, depth_window

    depth, n = int(prep.depth), image.shape[0]
    if mask is None:  # no localisation: the whole field of view, squared, central slices
        h, w = image.shape[1:]
        side = max(h, w)
        y0, x0 = (h - side) // 2, (w - side) // 2
        start, stop = depth_window(n, depth, (n - 1) / 2.0)
        return (lambda v, pad: crop_box(v, (start, y0, x0), (stop, y0 + side, x0 + side), pad)), start
    mask_arr = np.asarray(mask.array if isinstance(mask, Volume) else mask)
    if prep.crop_on == "tumour" and np.any(mask_arr == prep.tumour_label):
        mask_arr = mask_arr == prep.tumour_label
    else:
        mask_arr = mask_arr != 0
    if isinstance(mask, Volume):
        check_same_geometry(image, mask, names=("image", "mask"))
    zs = np.flatnonzero(mask_arr.reshape(n, -1).any(axis=1)) if mask_arr.any() else np.array([0])
    start, _ = depth_window(n, depth, (zs[0] + zs[-1]) / 2.0)

    def crop(volume: Volume, pad: float) -> Volume:
        return crop_around_mask(volume, mask_arr, prep.margin_mm, square=True, depth=depth, pad_value=pad)

    return crop, start


def prepare_volume(
    image: Volume, mask: Volume | np.ndarray | None, prep: StagingPreprocessing, label: Volume | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Preprocess one volume as in training: N4 (``prep.n4``), in-plane crop around ``mask`` (whole field of view
    when None), resize to ``prep.size``, ``prep.depth`` slices (zero padded), intensity normalisation.

    Returns ``(image (depth, H, W) float32, valid (depth,) bool, label (depth, H, W) or None)``; ``label`` (same grid
    as ``image``) is cropped the same way, with nearest-neighbour resizing.
    """
    from procto.preprocess.crop import resize_volume
    from procto.preprocess.n4 import n4_bias_correction

    if prep.n4:
        image = n4_bias_correction(image, shrink_factor=prep.n4_shrink)  # type: ignore[assignment]
    depth, n = int(prep.depth), image.shape[0]
    crop, start = _crop_function(image, mask, prep)
    valid = np.zeros(depth, dtype=bool)
    valid[max(0, -start):min(depth, n - start)] = True
    img = crop(image.with_array(image.array.astype(np.float32, copy=False)), 0.0)
    arr = resize_volume(img, prep.size, interpolation="linear").array.astype(np.float32)
    out = np.zeros_like(arr)
    out[valid] = normalise(arr[valid]) if valid.any() else arr[valid]
    lab = None
    if label is not None:
        lab = resize_volume(crop(label, 0), prep.size, interpolation="nearest").array
    return out, valid, lab


def prepare_sample(
    case_id: str, image: Volume, label: Volume | None, t_stage: str, prep: StagingPreprocessing
) -> StagingSample:
    """A :class:`StagingSample` from an image, its rectum/tumour label map (localisation + representative slices)
    and its T stage."""
    arr, valid, lab = prepare_volume(image, label, prep, label=label)
    rep = representative_slices(lab, valid, prep.representative, prep.tumour_label)
    return StagingSample(case_id, arr, valid, rep, STAGES.index(stage_value(t_stage, case_id)))
