"""CoSAM inference: one window, or a whole CT volume → metastatic node instance map in the CT's geometry, a list of
nodes (centre in patient mm, short and long axis, volume, score) and the N category.

>>> p = CoSAMPredictor("runs/cosam/model.pt")                                        # doctest: +SKIP
>>> result = p.predict_volume(read_image("ct.nii.gz"))                               # doctest: +SKIP
>>> result.instances, result.nodes, result.n_category                                # doctest: +SKIP

The whole-volume protocol is procto's (the paper evaluates node-centred crops of windows around reference nodes):
every axial slice is the centre of one window (slices beyond the volume replicate the border slice), the HU window
[−100, 100] → [0, 1] and a resize to the model's input size are applied, and the window's mask (the union of the
masks of the boxes kept by NMS 0.15 among boxes scoring ≥ 0.7 × the top score, :func:`procto.nets.cosam.union_mask`)
is kept where the top CCM score reaches ``score_threshold``.  Per-slice masks are stacked and linked into 3D nodes
by 6-connected components; a node's score is the highest CCM score of the boxes that produced it, and a node counts
as metastatic when that score reaches ``score_threshold``.  N category from the number of metastatic nodes:
N0 (0), N1 (1–3), N2 (≥ 4).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from procto.errors import InputError
from procto.io import Volume
from procto.metrics.nodes import n_category
from procto.metrics.shape import physical_points, slab_axes
from procto.preprocess.meply import hu_window, window_slices

TASK = "cosam"


@dataclass
class VolumeResult:
    """CoSAM on one CT: the node instance map (ids 1…n, uint8/uint16, the CT's geometry), the nodes (dicts: ``id``,
    ``centre_mm`` (z, y, x) physical position in mm as procto's Volumes order it, ``short_axis_mm``, ``long_axis_mm``, ``volume_ml``, ``score``, ``metastatic``),
    the N category and the per-slice detections (``slice``, ``boxes`` (K, 4) in slice pixels, ``scores``,
    ``det_scores``)."""

    instances: Volume
    nodes: list[dict]
    n_category: str
    detections: list[dict] = field(default_factory=list)


def describe_nodes(instances: np.ndarray, ct: Volume, scores: dict[int, float], threshold: float) -> list[dict]:
    """One dict per node id of ``instances`` (see :class:`VolumeResult`); short and long axis as RECIST 1.1 reads
    them in the patient's axial plane (:func:`procto.metrics.shape.slab_axes`: on the slab where the node is
    largest)."""
    from scipy import ndimage

    from procto.preprocess.crop import crop_box

    out = []
    whole = ct.with_array(instances)
    for i, sl in enumerate(ndimage.find_objects(instances), start=1):
        if sl is None:
            continue
        # measured on the node's bounding box (same voxel positions in space): the cost follows the node's size,
        # not the CT's
        volume = crop_box(whole, [s.start for s in sl], [s.stop for s in sl], pad_value=0)
        mask = np.asarray(volume.array) == i
        pts = physical_points(volume, mask)
        axes = slab_axes(volume, mask)
        score = float(scores.get(i, 0.0))
        out.append({"id": i, "centre_mm": [float(c) for c in pts.mean(axis=0)], "short_axis_mm": axes["short_axis_mm"],
                    "long_axis_mm": axes["long_axis_mm"], "volume_ml": len(pts) * ct.voxel_volume_mm3 / 1000.0,
                    "score": score, "metastatic": bool(score >= threshold)})
    return out


class CoSAMPredictor:
    """A trained CoSAM (a :mod:`procto.nets.checkpoint` file written by ``procto train cosam``, or a model) on
    windows and whole CT volumes.  ``score_threshold``: a window's mask and a node count when their CCM score reaches
    it."""

    def __init__(self, model: Any, *, device: str | None = "auto", score_threshold: float = 0.5,
                 batch_size: int = 4):
        import torch

        from procto.util import resolve_device

        self.device = resolve_device(device)
        if isinstance(model, (str, Path)):
            from procto.nets.checkpoint import load_checkpoint

            model, _ = load_checkpoint(model, TASK, title="CoSAM", device=self.device)
        if not isinstance(model, torch.nn.Module):
            raise InputError(f"not a CoSAM model or checkpoint: {type(model).__name__}")
        self.model = model.to(self.device).eval()
        self.window = int(model.window)
        self.img_size = int(model.segmenter.img_size)
        self.score_threshold = float(score_threshold)
        self.batch_size = max(1, int(batch_size))

    def _run(self, windows: np.ndarray) -> list[dict]:
        """Model outputs of unit-range windows (B, L, H, W), boxes and masks back at H × W."""
        import torch
        import torch.nn.functional as F

        x = torch.as_tensor(windows, dtype=torch.float32, device=self.device)
        h, w = x.shape[-2:]
        if (h, w) != (self.img_size, self.img_size):
            x = F.interpolate(x, size=(self.img_size, self.img_size), mode="bilinear", align_corners=False)
        with torch.no_grad():
            outs = self.model(x)
        scale = np.array([w / self.img_size, h / self.img_size] * 2, dtype=np.float32)
        res = []
        for o in outs:
            mask = o["mask"][None, None].float()
            if (h, w) != (self.img_size, self.img_size):
                mask = F.interpolate(mask, size=(h, w), mode="nearest")
            res.append({"boxes": o["boxes"].cpu().numpy() * scale, "scores": o["scores"].cpu().numpy(),
                        "det_scores": o["det_scores"].cpu().numpy(), "mask": mask[0, 0].cpu().numpy() > 0.5})
        return res

    def predict_window(self, hu: np.ndarray) -> dict:
        """One window of HU slices (L, H, W): ``boxes`` (K, 4) in its pixels, ``scores`` (CCM), ``det_scores`` and the
        centre slice's ``mask`` (H, W)."""
        hu = np.asarray(hu)
        if hu.ndim != 3 or hu.shape[0] != self.window:
            raise InputError(f"a window is ({self.window}, H, W) HU slices, got shape {hu.shape}")
        return self._run(hu_window(hu)[None])[0]

    def predict_volume(self, ct: Volume, progress: Callable[[int, int], None] | None = None) -> VolumeResult:
        """The whole CT (axial slices along array axis 0) → :class:`VolumeResult` (see the module docstring)."""
        from scipy import ndimage

        arr = np.asarray(ct.array)
        if arr.ndim != 3 or min(arr.shape) == 0:
            raise InputError(f"CoSAM needs a non-empty 3D CT, got shape {arr.shape}")
        if arr.shape[0] < self.window:
            raise InputError(f"the CT has {arr.shape[0]} slices, fewer than the model's window of {self.window}")
        unit = hu_window(arr)
        masks = np.zeros(arr.shape, bool)
        slice_scores = np.zeros(arr.shape[0])
        detections = []
        for start in range(0, arr.shape[0], self.batch_size):
            centres = list(range(start, min(start + self.batch_size, arr.shape[0])))
            batch = np.stack([unit[window_slices(c, self.window, arr.shape[0])] for c in centres])
            for c, res in zip(centres, self._run(batch)):
                top = float(res["scores"].max()) if len(res["scores"]) else 0.0
                slice_scores[c] = top
                if top >= self.score_threshold:
                    masks[c] = res["mask"]
                detections.append({"slice": c, **{k: res[k] for k in ("boxes", "scores", "det_scores")}})
            if progress is not None:
                progress(centres[-1] + 1, arr.shape[0])
        labels, n = ndimage.label(masks, structure=ndimage.generate_binary_structure(3, 1))
        scores = {i + 1: float(slice_scores[sl[0]].max()) for i, sl in enumerate(ndimage.find_objects(labels))}
        dtype = np.uint8 if n < 256 else np.uint16
        instances = Volume(labels.astype(dtype), ct.spacing, ct.origin, ct.direction.copy(),
                           {"description": "procto CoSAM lymph-node instances"})
        nodes = describe_nodes(labels, ct, scores, self.score_threshold)
        return VolumeResult(instances, nodes, n_category(sum(nd["metastatic"] for nd in nodes)), detections)


__all__ = ["CoSAMPredictor", "VolumeResult", "describe_nodes"]
