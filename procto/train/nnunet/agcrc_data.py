"""AG-CRC's patch sampling inside nnU-Net's data loader, and CT-only intensity augmentation.

nnU-Net's training loader (``nnUNetDataLoader.generate_train_batch``) loads a case, then asks ``get_bbox`` for the
patch: a *random* patch, or a *forced-foreground* one whose centre is a voxel drawn from the case's
``properties['class_locations']`` (lower corner ``max(lbs, voxel − patch // 2)`` over the enlarged rotation patch).
:class:`CentreDataset` wraps the training data set so that every loaded case carries, as its only "class location",
one patch centre drawn by a strategy; the trainer sets nnU-Net's foreground fraction to 1, so every sample of a batch
is centred on a fresh, i.i.d. draw (facts §3: "the cropping copies nnU-Net's foreground branch for a chosen voxel";
cases stay uniform, as in nnU-Net).  Nothing of nnU-Net's loader is copied or patched.

Strategies (Table VI; all on the preprocessed grid, the binary OOI = channel 2 > 0.5, colon = MOS channel within 0.5
of the colon id, tumour = label 1):

* ``ag`` — :class:`procto.train.agcrc_sampling.PSMSampler` (Eqs. 1–6, λ = 0.33), built once per case per worker;
* ``uniform_ooi`` / ``uniform_colon`` — a uniform voxel of the OOI / the colon;
* ``hybrid_ooi`` / ``hybrid_colon`` — with probability 0.33 a tumour voxel drawn as nnU-Net does (from its own
  ``class_locations``), else a uniform voxel of the OOI / colon (i.i.d. per sample; the paper's "67 % + 33 %");
* ``uniform`` and ``hybrid_uniform`` need no wrapper: nnU-Net's random branch (foreground fraction 0) and nnU-Net's
  default (0.33, which forces 1 of 2 samples at batch size 2).

A case whose region is empty falls back to nnU-Net's random patch (empty class locations).
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch

from procto.train.agcrc_sampling import DEFAULT_LAMBDA, PSMSampler

#: Strategies that draw patch centres through :class:`CentreDataset`.
CENTRE_STRATEGIES = ("ag", "uniform_ooi", "uniform_colon", "hybrid_ooi", "hybrid_colon")
#: Strategies nnU-Net's loader does by itself, with its foreground fraction.
NNUNET_STRATEGIES = {"uniform": 0.0, "hybrid_uniform": 0.33}
SAMPLINGS = ("ag", "uniform", "uniform_colon", "uniform_ooi", "hybrid_uniform", "hybrid_colon", "hybrid_ooi")
#: The tumour share of the hybrid strategies.
HYBRID_FOREGROUND = 0.33
#: Colon id of each TotalSegmentator id scheme.
COLON_IDS = {"ts_v2": 20, "ts_v1": 57}


def foreground_fraction(strategy: str) -> float:
    """nnU-Net's ``oversample_foreground_percent`` for ``strategy``."""
    if strategy not in SAMPLINGS:
        raise ValueError(f"unknown sampling {strategy!r}; known: {', '.join(SAMPLINGS)}")
    return NNUNET_STRATEGIES.get(strategy, 1.0)


class _CaseCentres:
    """The patch-centre draw of one case for one strategy (coordinates cached at construction)."""

    def __init__(self, strategy: str, data, seg, properties: dict, patch: Sequence[int], mos_scale: float,
                 colon_id: int, seed: int):
        self.strategy = strategy
        self.rng = np.random.default_rng(seed)
        ooi = np.asarray(data[2]) > 0.5
        if strategy == "ag":
            self.psm = PSMSampler(ooi, np.asarray(seg[0]) == 1, patch, DEFAULT_LAMBDA, seed=seed)
            return
        if strategy.endswith("_colon"):
            region = np.abs(np.asarray(data[1], dtype=np.float64) * mos_scale - colon_id) < 0.5
        else:
            region = ooi
        self.region = np.argwhere(region)
        tumour = properties.get("class_locations", {}).get(1)
        self.tumour = np.asarray(tumour)[:, 1:] if tumour is not None and len(tumour) else np.zeros((0, 3), int)

    def draw(self) -> np.ndarray | None:
        """One centre (z, y, x), or None when the case has no voxel to draw from."""
        if self.strategy == "ag":
            return self.psm.sample(1)[0]
        pool = self.region
        if self.strategy.startswith("hybrid") and len(self.tumour) and self.rng.random() < HYBRID_FOREGROUND:
            pool = self.tumour
        if not len(pool):
            return None
        return pool[self.rng.integers(len(pool))]


class CentreDataset:
    """An nnU-Net data set whose ``load_case`` puts one patch centre drawn by ``strategy`` into the case's
    ``class_locations`` (see the module docstring).  Everything else is the wrapped data set's.  Picklable; the
    per-case samplers are built lazily in each worker process."""

    def __init__(self, dataset: Any, strategy: str, patch: Sequence[int], mos_scale: float = 117.0,
                 colon_id: int = COLON_IDS["ts_v2"]):
        if strategy not in CENTRE_STRATEGIES:
            raise ValueError(f"{strategy!r} is not a patch-centre strategy; known: {', '.join(CENTRE_STRATEGIES)}")
        self.dataset = dataset
        self.strategy = strategy
        self.patch = tuple(int(p) for p in patch)
        self.mos_scale = float(mos_scale)
        self.colon_id = int(colon_id)
        self._cases: dict[str, _CaseCentres] = {}

    @property
    def identifiers(self):
        return self.dataset.identifiers

    def __len__(self) -> int:
        return len(self.dataset)

    def __getattr__(self, name: str):
        if name.startswith("__") or "dataset" not in self.__dict__:
            raise AttributeError(name)
        return getattr(self.dataset, name)

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_cases": {}}

    def centres(self, identifier: str, data, seg, properties: dict) -> _CaseCentres:
        """The cached centre sampler of a case (built on first use, seeded from numpy's global generator, which
        nnU-Net's workers seed)."""
        if identifier not in self._cases:
            seed = int(np.random.randint(0, 2 ** 31 - 1))
            self._cases[identifier] = _CaseCentres(self.strategy, data, seg, properties, self.patch, self.mos_scale,
                                                   self.colon_id, seed)
        return self._cases[identifier]

    def load_case(self, identifier: str):
        data, seg, seg_prev, properties = self.dataset.load_case(identifier)
        centre = self.centres(identifier, data, seg, properties).draw()
        properties = dict(properties)
        properties["class_locations"] = {} if centre is None else {1: np.array([[0, *map(int, centre)]])}
        return data, seg, seg_prev, properties


# ------------------------------------------------------------------------------------------- augmentation
class FirstChannelsOnly:
    """Apply an (intensity) transform to the first ``channels`` image channels only; the others pass unchanged
    (AG-CRC's MOS and OOI channels keep their meaning)."""

    def __init__(self, transform, channels: int = 1):
        self.transform = transform
        self.channels = int(channels)

    def __call__(self, **data_dict) -> dict:
        image = data_dict["image"]
        out = self.transform(**{**data_dict, "image": image[:self.channels]})
        out["image"] = torch.cat([out["image"].to(image.dtype), image[self.channels:]], dim=0)
        return out

    def __repr__(self) -> str:
        return f"FirstChannelsOnly({self.transform!r}, channels={self.channels})"


#: nnU-Net 2.8.1's intensity transforms (inside ``RandomTransform``) in ``get_training_transforms``.
INTENSITY_TRANSFORMS = ("GaussianNoiseTransform", "GaussianBlurTransform", "MultiplicativeBrightnessTransform",
                        "ContrastTransform", "SimulateLowResolutionTransform", "GammaTransform")


def ct_only_intensity(compose) -> Any:
    """nnU-Net's training transform list with every intensity transform restricted to channel 0 (CT)."""
    wrapped = []
    for t in compose.transforms:
        inner = getattr(t, "transform", None)
        if type(inner).__name__ in INTENSITY_TRANSFORMS:
            t = FirstChannelsOnly(t)
        wrapped.append(t)
    compose.transforms = wrapped
    return compose


__all__ = ["CENTRE_STRATEGIES", "NNUNET_STRATEGIES", "SAMPLINGS", "HYBRID_FOREGROUND", "COLON_IDS",
           "foreground_fraction", "CentreDataset", "FirstChannelsOnly", "INTENSITY_TRANSFORMS", "ct_only_intensity"]
