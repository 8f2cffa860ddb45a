"""Training-time augmentation of the staging CNN's input volumes, with MONAI's 2D random transforms.

The paper: "elastic transformation, optical distortion, grid distortion, random shift, random scale, random rotate,
random crop, horizontal flip, CLAHE, random brightness, random contrast, motion blur, median blur, and Gaussian blur".

They are applied slice-consistently: the ``(D, H, W)`` volume is handed to MONAI as ``D`` channels of one 2D image,
so every random draw (one flip, one affine, one deformation field, one blur kernel) is the same for all slices and
the inter-slice relationship the 3D layers model is kept.  Padding slices (``valid`` False) are left out and stay
zero.  Per volume, in this order:

* horizontal flip (image columns, array axis 2), p 0.5 — :class:`monai.transforms.RandFlip`;
* shift ±6.25 % of the side, scale ±10 %, rotate ±15°, p 0.5 — :class:`monai.transforms.RandAffine`;
* random crop of 85–100 % of each side resized back to the full size, p 0.3 —
  :class:`monai.transforms.RandSpatialCrop` + :class:`monai.transforms.Resize`;
* one of elastic (:class:`monai.transforms.Rand2DElastic`, control points every 1/8 of the side), grid
  (:class:`monai.transforms.RandGridDistortion`, 4 cells, ±5 %) or optical (radial barrel / pincushion,
  ``r' = r (1 + k r²)``, |k| ≤ 0.1; hand-written, MONAI has none) distortion, p 0.3;
* brightness ±0.2 sd, p 0.5 — :class:`monai.transforms.RandShiftIntensity`;
* contrast ×[0.8, 1.2] about the mean, p 0.5 — :class:`monai.transforms.RandScaleIntensityFixedMean`;
* one of Gaussian (:class:`monai.transforms.RandGaussianSmooth`, σ 0.5–1.5 px), median
  (:class:`monai.transforms.MedianSmooth`, 3 or 5 px) or motion blur (a 3–7 px line at a random angle; hand-written,
  MONAI has none), p 0.2.  Kernel sizes are those of the paper's 256 × 256 crops scaled to the crop size actually
  used, so a blur removes the same physical detail at any size; a kernel that shrinks below a pixel is skipped.

CLAHE is left out (a per-slice 8-bit histogram operation with no volumetric counterpart).  Every draw comes from the
seed given to :meth:`StagingAugmentation.__call__` (``monai``'s ``set_random_state``), so training derives it from
``(seed, epoch, position in the epoch)`` and a resumed run draws what an uninterrupted one would.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from monai.transforms import (
    Compose,
    Identity,
    MedianSmooth,
    OneOf,
    Rand2DElastic,
    RandAffine,
    RandFlip,
    RandGaussianSmooth,
    RandGridDistortion,
    RandomizableTransform,
    RandScaleIntensityFixedMean,
    RandShiftIntensity,
    RandSpatialCrop,
    Resize,
)

__all__ = ["RandMedianSmooth", "RandMotionBlur", "RandOpticalDistortion", "StagingAugmentation", "augment_volume"]


def _plain(x: Any) -> torch.Tensor:
    """A plain ``torch.Tensor`` (MONAI returns ``MetaTensor``\\ s)."""
    return x.as_tensor() if hasattr(x, "as_tensor") else torch.as_tensor(x)


class RandOpticalDistortion(RandomizableTransform):
    """Radial (barrel / pincushion) lens distortion ``r' = r (1 + k r²)`` with ``k`` uniform in ``k_range``, on a
    channel-first 2D image ``(C, H, W)`` (bilinear, reflection at the border)."""

    def __init__(self, prob: float = 1.0, k_range: tuple[float, float] = (-0.1, 0.1)):
        super().__init__(prob)
        self.k_range = k_range
        self._k = 0.0

    def randomize(self, data: Any = None) -> None:
        super().randomize(None)
        self._k = float(self.R.uniform(*self.k_range))

    def __call__(self, img: torch.Tensor, randomize: bool = True) -> torch.Tensor:
        if randomize:
            self.randomize()
        if not self._do_transform:
            return img
        x = _plain(img)
        _, h, w = x.shape
        yy, xx = torch.meshgrid(torch.linspace(-1, 1, h, device=x.device), torch.linspace(-1, 1, w, device=x.device),
                                indexing="ij")
        factor = 1 + self._k * (xx ** 2 + yy ** 2)
        grid = torch.stack((xx * factor, yy * factor), dim=-1)[None].to(x.dtype)
        return F.grid_sample(x[None], grid, mode="bilinear", padding_mode="reflection", align_corners=True)[0]


class RandMotionBlur(RandomizableTransform):
    """Motion blur: the mean along a line of ``length`` pixels (uniform in ``length_range``) at a random angle, on a
    channel-first 2D image ``(C, H, W)``; lines shorter than 2 pixels leave the image as it is."""

    def __init__(self, prob: float = 1.0, length_range: tuple[float, float] = (3.0, 7.0)):
        super().__init__(prob)
        self.length_range = length_range
        self._length, self._angle = 0.0, 0.0

    def randomize(self, data: Any = None) -> None:
        super().randomize(None)
        self._length = float(self.R.uniform(*self.length_range))
        self._angle = float(self.R.uniform(0.0, math.pi))

    def kernel(self) -> torch.Tensor:
        """The current draw's normalised line kernel ``(k, k)``."""
        length, angle = self._length, self._angle
        radius = int(math.ceil((length - 1) / 2))
        kernel = torch.zeros(2 * radius + 1, 2 * radius + 1)
        for t in torch.linspace(-(length - 1) / 2, (length - 1) / 2, int(math.ceil(length)) * 2):
            row, col = radius + float(t) * math.sin(angle), radius + float(t) * math.cos(angle)
            kernel[int(round(row)), int(round(col))] = 1.0
        return kernel / kernel.sum()

    def __call__(self, img: torch.Tensor, randomize: bool = True) -> torch.Tensor:
        if randomize:
            self.randomize()
        if not self._do_transform or self._length < 2:
            return img
        x = _plain(img)
        kernel = self.kernel().to(device=x.device, dtype=x.dtype)[None, None]
        pad = kernel.shape[-1] // 2
        return F.conv2d(F.pad(x[:, None], (pad,) * 4, mode="replicate"), kernel)[:, 0]


class RandMedianSmooth(RandomizableTransform):
    """Median blur with a kernel of one of ``sizes`` pixels (rounded to an odd size; below 3 pixels the image is left
    as it is), through :class:`monai.transforms.MedianSmooth`."""

    def __init__(self, prob: float = 1.0, sizes: tuple[float, ...] = (3.0, 5.0)):
        super().__init__(prob)
        self.sizes = sizes
        self._size = 0.0

    def randomize(self, data: Any = None) -> None:
        super().randomize(None)
        self._size = float(self.sizes[int(self.R.randint(len(self.sizes)))])

    def __call__(self, img: torch.Tensor, randomize: bool = True) -> torch.Tensor:
        if randomize:
            self.randomize()
        k = int(round(self._size)) // 2 * 2 + 1
        if not self._do_transform or k < 3:
            return img
        return MedianSmooth(radius=k // 2)(img)


def _spatial(h: int, w: int) -> list:
    side = min(h, w)
    crop = Compose([
        RandSpatialCrop((math.ceil(0.85 * h), math.ceil(0.85 * w)), max_roi_size=(h, w), random_size=True),
        Resize((h, w), mode="bilinear", align_corners=False),
    ])
    distortion = OneOf([
        Rand2DElastic(spacing=(h / 8, w / 8), magnitude_range=(0.005 * side, 0.01 * side), prob=1.0,
                      padding_mode="reflection"),
        RandGridDistortion(num_cells=4, distort_limit=0.05, prob=1.0, padding_mode="reflection"),
        RandOpticalDistortion(prob=1.0),
        Identity(),
    ], weights=[0.1, 0.1, 0.1, 0.7])
    return [
        RandFlip(prob=0.5, spatial_axis=1),
        RandAffine(prob=0.5, rotate_range=math.radians(15), scale_range=0.1, translate_range=(0.0625 * h, 0.0625 * w),
                   padding_mode="reflection"),
        OneOf([crop, Identity()], weights=[0.3, 0.7]),
        distortion,
    ]


def _intensity(h: int, w: int) -> list:
    scale = min(h, w) / 256.0
    sigma = (0.5 * scale, 1.5 * scale)
    gaussian = RandGaussianSmooth(sigma_x=sigma, sigma_y=sigma, prob=1.0) if sigma[1] >= 0.3 else Identity()
    blur = OneOf([gaussian, RandMedianSmooth(sizes=(3 * scale, 5 * scale)),
                  RandMotionBlur(length_range=(3 * scale, 7 * scale)), Identity()],
                 weights=[0.2 / 3, 0.2 / 3, 0.2 / 3, 0.8])
    return [RandShiftIntensity(offsets=0.2, prob=0.5), RandScaleIntensityFixedMean(factors=0.2, prob=0.5), blur]


class StagingAugmentation:
    """The paper's training augmentations (module docstring) for volumes of in-plane size ``(H, W)``.

    ``augmentation(x, valid, seed)``: ``x`` a z-scored ``(D, H, W)`` float tensor, ``valid`` ``(D,)`` real slices,
    ``seed`` an int; returns a new ``(D, H, W)`` tensor, padding slices zero.  Build one per run (building costs about
    as much as one call) and pass a seed per volume.
    """

    def __init__(self, size: tuple[int, int]):
        h, w = (int(s) for s in size)
        self.size = (h, w)
        self.pipeline = Compose(_spatial(h, w) + _intensity(h, w))

    def __call__(self, x: torch.Tensor, valid: torch.Tensor, seed: int) -> torch.Tensor:
        if tuple(x.shape[-2:]) != self.size:
            raise ValueError(f"this augmentation is for {self.size} slices, got {tuple(x.shape[-2:])}")
        self.pipeline.set_random_state(seed=int(seed))
        valid = torch.as_tensor(valid, dtype=torch.bool, device=x.device)
        out = torch.zeros_like(x)
        if bool(valid.any()):
            out[valid] = _plain(self.pipeline(x[valid])).to(x.dtype)
        return out


def augment_volume(
    x: torch.Tensor, valid: torch.Tensor, seed: int | torch.Generator, augmentation: StagingAugmentation | None = None
) -> torch.Tensor:
    """:class:`StagingAugmentation` of one ``(D, H, W)`` volume; ``seed`` an int or a seeded ``torch.Generator``
    (one int is drawn from it).  ``augmentation``: a prebuilt one for this size (saves building it per call)."""
    if isinstance(seed, torch.Generator):
        seed = int(torch.randint(0, 2**31 - 1, (), generator=seed))
    elif not isinstance(seed, (int, np.integer)):
        raise TypeError(f"seed must be an int or a torch.Generator, got {type(seed).__name__}")
    if augmentation is None:
        augmentation = StagingAugmentation(tuple(x.shape[-2:]))
    return augmentation(x, valid, int(seed))
