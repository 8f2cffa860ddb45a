"""Inference with U-SAM / SAM models: interactive 2D prediction with user prompts, and slice-wise volume inference.

>>> from procto.infer.usam import USamPredictor
>>> predictor = USamPredictor("runs/usam/model.pt")                                   # doctest: +SKIP
>>> mask = predictor.predict(ct[40], points=[(231, 301), (240, 310)], point_classes=[1, 2])  # doctest: +SKIP
>>> mask.shape == ct[40].shape                                                          # doctest: +SKIP
True

Slices go through the same preparation as the training data (:func:`procto.preprocess.care.prepare_slice`: HU window,
min–max normalisation, cubic resize to the model's input size, CARE transposition); prompts are given in pixel
coordinates ``(x, y)`` = (column, row) of the *original* slice and mapped to the model input
(:class:`procto.preprocess.prompts.SliceGeometry`); the class logits are mapped back (transposed, bilinearly resized
to the slice size) before the argmax, so the mask has the original slice's shape.

Checkpoints (``procto train usam``'s ``model.pt``) are read by :func:`load_model` through procto's one checkpoint
module (:mod:`procto.nets.checkpoint`); how the model was prompted in training comes from the checkpoint record
(:func:`prompt_info`) or from explicit arguments.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Iterable, Mapping, Sequence

import numpy as np
import torch
from torch.nn import functional as F

from procto.errors import InputError
from procto.io import Volume
from procto.preprocess.care import CT_WINDOW, prepare_slice, resize_slice
from procto.preprocess.prompts import Prompts, SliceGeometry, SlicePrompts, collate_prompts

#: The checkpoint ``task`` of U-SAM models (:mod:`procto.nets.checkpoint`).
TASK = "usam"


def prompt_info(config: Mapping) -> dict:
    """How a model was prompted in training, from its training config (the checkpoint record's ``config``)."""
    return {"prompt": config.get("prompt", "none"), "points_per_class": int(config.get("points_per_class", 3)),
            "box_mode": config.get("box_mode", "union"), "point_labels": config.get("point_labels", "positive")}


def load_model(path: str | Path, device="cpu") -> tuple[torch.nn.Module, dict]:
    """Rebuild a model trained by ``procto train usam`` (``model.pt``, ``best.pt`` or ``last.pt``); returns
    ``(model in eval mode, info)`` — ``info``: variant, model_kwargs, img_size, num_classes, the prompt settings of
    training (:func:`prompt_info`), ``data`` (how the training slices were made), epoch, iteration."""
    from procto.nets.checkpoint import load_checkpoint

    model, record = load_checkpoint(path, TASK, title="U-SAM", device=device)
    extra = record.get("extra", {})
    info = {"variant": record["model"], "model_kwargs": record.get("model_kwargs", {}),
            "img_size": int(extra.get("img_size", model.img_size)),
            "num_classes": int(extra.get("num_classes", model.num_classes)), **prompt_info(record.get("config", {})),
            "data": dict(extra.get("data", {})), "epoch": record.get("epoch"), "iteration": record.get("iteration")}
    return model, info


class USamPredictor:
    """Run a trained U-SAM/SAM model on original CT slices or volumes.

    Args:
        model: a model (``nn.Module``) or the path of a checkpoint written by ``procto train usam``.
        device: torch device (default: the model's, or cuda when loading and available).
        window: HU window of the training data (default from the checkpoint, else −125 … 275 HU).
        transpose: feed slices in CARE orientation (default from the checkpoint, else True).
        batch_size: slices per forward pass in :meth:`predict_slices` / :meth:`predict_volume`.
        point_labels: ``"positive"`` (every point a positive click, the authors') or ``"class"`` (the point label
            tells its class); default from the checkpoint, else positive.
        box_mode: how boxes were made in training (default from the checkpoint, else ``"union"``).
    """

    def __init__(self, model, *, device=None, window: Sequence[float] | None = None, transpose: bool | None = None,
                 batch_size: int = 8, point_labels: str | None = None, box_mode: str | None = None) -> None:
        from procto.util import resolve_device

        info: dict = {}
        if isinstance(model, (str, Path)):
            model, info = load_model(model, resolve_device(device))
        self.model = model.eval()
        self.info = info
        self.device = resolve_device(device) if device is not None else next(model.parameters()).device
        self.model.to(self.device)
        data = info.get("data", {})
        self.window = tuple(window if window is not None else data.get("window", CT_WINDOW))
        self.transpose = bool(transpose if transpose is not None else data.get("transpose", True))
        self.batch_size = max(1, int(batch_size))
        #: "positive" (every point a positive click, the authors') or "class" (the point label tells its class)
        self.point_label_mode = point_labels or info.get("point_labels", "positive")
        self.box_mode = box_mode or info.get("box_mode", "union")

    @property
    def img_size(self) -> int:
        return int(self.model.img_size)

    def geometry(self, shape: Sequence[int]) -> SliceGeometry:
        return SliceGeometry(int(shape[0]), int(shape[1]), self.img_size, self.transpose)

    # -------------------------------------------------------------------------------------------- core
    def _prepare(self, slice_2d: np.ndarray, normalised: bool) -> np.ndarray:
        return prepare_slice(slice_2d, self.img_size, None if normalised else self.window, self.transpose)

    def _forward(self, inputs: np.ndarray, prompts: Sequence[Prompts]) -> torch.Tensor:
        """Logits ``(N, C, S, S)`` (model frame) for prepared inputs; images with the same kinds/numbers of prompts
        run together (mixing would add padding tokens that a lone image would not get)."""
        n = len(inputs)
        out: list[torch.Tensor | None] = [None] * n
        groups: dict[tuple, list[int]] = {}
        for i, p in enumerate(prompts):
            key = (0 if p.points is None else len(p.points), 0 if p.boxes is None else len(p.boxes))
            groups.setdefault(key, []).append(i)
        with torch.no_grad():
            for idx in groups.values():
                for start in range(0, len(idx), self.batch_size):
                    sel = idx[start: start + self.batch_size]
                    x = torch.from_numpy(np.stack([inputs[i] for i in sel])).to(self.device)
                    x = x[:, None].expand(-1, 3, -1, -1)
                    kw = {k: torch.as_tensor(v, device=self.device)
                          for k, v in collate_prompts([prompts[i] for i in sel]).items()}
                    logits = self.model(x, **kw).float()
                    for j, i in enumerate(sel):
                        out[i] = logits[j].cpu()
        return torch.stack(out)  # type: ignore[arg-type]

    def _to_original(self, logits: torch.Tensor, shape: Sequence[int], probabilities: bool = False):
        if self.transpose:
            logits = logits.transpose(-1, -2)
        logits = F.interpolate(logits, size=tuple(int(s) for s in shape), mode="bilinear", align_corners=False)
        if probabilities:
            return torch.softmax(logits, dim=1).numpy()
        return logits.argmax(dim=1).to(torch.uint8).numpy()

    @staticmethod
    def _user_prompts(points=None, point_labels=None, point_classes=None, boxes=None) -> SlicePrompts:
        sp = SlicePrompts()
        if points is not None:
            pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
            if not np.isfinite(pts).all():
                raise InputError("points must be finite (x, y) pixel coordinates")
            sp.points = [tuple(p) for p in pts]
            labels = np.ones(len(pts), int) if point_labels is None else np.asarray(point_labels).reshape(-1)
            classes = np.zeros(len(pts), int) if point_classes is None else np.asarray(point_classes).reshape(-1)
            if len(labels) != len(pts) or len(classes) != len(pts):
                raise InputError(f"got {len(pts)} points but {len(labels)} labels / {len(classes)} classes")
            sp.point_labels = [int(v) for v in labels]
            sp.point_classes = [int(v) for v in classes]
        if boxes is not None:
            b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
            if np.isnan(b).any() or (b[:, 2] < b[:, 0]).any() or (b[:, 3] < b[:, 1]).any():
                raise InputError("boxes must be [x1, y1, x2, y2] with x1 <= x2 and y1 <= y2")
            sp.boxes = [list(r) for r in b]
        return sp

    # -------------------------------------------------------------------------------------------- public
    def predict(self, slice_2d, points=None, boxes=None, *, point_labels=None, point_classes=None,
                normalised: bool = False, return_probabilities: bool = False) -> np.ndarray:
        """Segment one original slice ``(H, W)`` (HU, or already in [0, 1] with ``normalised=True``).

        Args:
            points: ``(N, 2)`` (x, y) pixel coordinates in the slice (x = column, y = row).
            boxes: ``[x1, y1, x2, y2]`` or ``(K, 4)`` in the same coordinates.
            point_labels: SAM labels (1 positive — default —, 0 negative).
            point_classes: class of each point (1 normal rectum, 2 tumour); orders the points as in training.
            return_probabilities: return ``(C, H, W)`` class probabilities instead of the label mask.

        Returns:
            ``(H, W)`` uint8 label mask (0 background, 1 normal rectum, 2 tumour).
        """
        arr = np.asarray(slice_2d)
        if arr.ndim != 2:
            raise InputError(f"expected a 2D slice, got shape {arr.shape}")
        sp = self._user_prompts(points, point_labels, point_classes, boxes)
        logits = self._forward([self._prepare(arr, normalised)],
                               [sp.to_model(self.geometry(arr.shape), self.point_label_mode)])
        return self._to_original(logits, arr.shape, return_probabilities)[0]

    def predict_slices(self, slices, prompts: Sequence[SlicePrompts | None] | None = None, *,
                       normalised: bool = False, progress: Callable[[int], None] | None = None) -> np.ndarray:
        """Segment ``(N, H, W)`` slices (one prompt set or None per slice); returns ``(N, H, W)`` uint8."""
        arr = np.asarray(slices)
        if arr.ndim != 3:
            raise InputError(f"expected (N, H, W) slices, got shape {arr.shape}")
        prompts = list(prompts) if prompts is not None else [None] * len(arr)
        if len(prompts) != len(arr):
            raise InputError(f"got {len(prompts)} prompt sets for {len(arr)} slices")
        geo = self.geometry(arr.shape[1:])
        out = np.zeros(arr.shape, np.uint8)
        chunk = self.batch_size * 4  # bounded memory for the logits of long volumes
        for start in range(0, len(arr), chunk):
            stop = min(len(arr), start + chunk)
            inputs = [self._prepare(arr[i], normalised) for i in range(start, stop)]
            model_prompts = [(p.to_model(geo, self.point_label_mode) if p is not None else Prompts())
                             for p in prompts[start:stop]]
            out[start:stop] = self._to_original(self._forward(inputs, model_prompts), arr.shape[1:])
            if progress is not None:
                progress(stop - start)
        return out

    def predict_volume(self, volume: Volume, prompts: Mapping[int, SlicePrompts] | None = None, *,
                       slices: Iterable[int] | str | None = None,
                       progress: Callable[[int], None] | None = None) -> Volume:
        """Segment the axial slices (array axis 0) of a CT volume in HU; returns a uint8 label map with the input's
        geometry.

        Args:
            prompts: ``{slice index: SlicePrompts}`` in original-slice pixel coordinates (see
                :func:`procto.preprocess.prompts.load_prompt_file`); slices without prompts run without.
            slices: the slices to segment — None/"all": every slice; "prompted": those with prompts; or indices
                (e.g. ``range(20, 45)``, the rectum range).  Other slices are 0.
        """
        arr = np.asarray(volume.array)
        zs = self.select_slices(arr.shape[0], prompts, slices)
        out = np.zeros(arr.shape, np.uint8)
        if len(zs):
            sp = [None if prompts is None else prompts.get(int(z)) for z in zs]
            out[zs] = self.predict_slices(arr[zs], sp, progress=progress)
        return volume.with_array(out, description="procto U-SAM segmentation")

    @staticmethod
    def select_slices(n: int, prompts: Mapping[int, SlicePrompts] | None = None,
                      slices: Iterable[int] | str | None = None) -> np.ndarray:
        """Slice indices for :meth:`predict_volume` (validated)."""
        if slices is None or (isinstance(slices, str) and slices == "all"):
            zs = np.arange(n)
        elif isinstance(slices, str) and slices == "prompted":
            zs = np.asarray(sorted(prompts or {}), dtype=np.int64)
        elif isinstance(slices, str):
            raise InputError(f"slices must be 'all', 'prompted' or indices, got {slices!r}")
        else:
            zs = np.unique(np.asarray(list(slices), dtype=np.int64))
        if zs.size and (zs.min() < 0 or zs.max() >= n):
            raise InputError(f"slice indices must lie in 0 … {n - 1}, got {zs.min()} … {zs.max()}")
        if prompts:
            bad = [z for z in prompts if not 0 <= int(z) < n]
            if bad:
                raise InputError(f"prompts refer to slices outside 0 … {n - 1}: {sorted(bad)[:5]}")
        return zs


def assemble_volume(predictions: np.ndarray, z: Sequence[int], geometry: Mapping | Volume) -> Volume:
    """Put CARE-orientation slice predictions ``(N, S, S)`` back into a (z, y, x) label volume.

    ``geometry``: the reference volume, or a case record of ``{split}_cases.json`` (shape, spacing, origin,
    direction, transpose).  Slices are transposed back (if the record says so) and resized with nearest neighbour;
    slices not listed in ``z`` are 0.
    """
    if isinstance(geometry, Volume):
        shape, transpose = geometry.shape, True
        ref = geometry
    else:
        shape, transpose = tuple(geometry["shape"]), bool(geometry.get("transpose", True))
        ref = Volume(np.zeros(shape, np.uint8), geometry["spacing"], geometry.get("origin", (0, 0, 0)),
                     np.asarray(geometry.get("direction", np.eye(3).reshape(-1))).reshape(3, 3))
    pred = np.asarray(predictions)
    if len(pred) != len(z):
        raise InputError(f"got {len(pred)} slices for {len(z)} indices")
    out = np.zeros(shape, np.uint8)
    for p, k in zip(pred, z):
        p = p.T if transpose else p
        out[int(k)] = resize_slice(p.astype(np.uint8), shape[1:], 0)
    return ref.with_array(out)


__all__ = ["USamPredictor", "assemble_volume", "load_model", "prompt_info"]
