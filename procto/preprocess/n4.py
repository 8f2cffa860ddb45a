"""N4ITK bias-field correction of MR volumes (SimpleITK's ``N4BiasFieldCorrectionImageFilter``).

The staging paper: "For pre-processing, we apply N4ITK to correct the intensity inhomogeneity, following the
conventions of MRI community".  The usual recipe (Tustison et al.; SimpleITK's N4 example) is followed:

* the bias field is estimated inside an Otsu foreground mask (or a mask you give);
* for speed the estimate runs on a shrunken copy of the image (``shrink_factor``), then the log bias field is
  evaluated on the full-resolution grid (``GetLogBiasFieldAsImage``) and the original image is divided by its
  exponential — the B-spline field is smooth, so shrinking costs almost nothing in accuracy;
* thick-slice axes are not shrunk: a sagittal MR volume with 4 mm slices and 0.9 mm pixels is shrunk in-plane only.

N4 models ``v = u · b`` in the log domain, so intensities must be positive inside the mask.  MR magnitude images are;
an image with negative values is shifted to start at zero first (and shifted back afterwards).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from procto.errors import InputError
from procto.io import Volume, check_same_geometry

__all__ = ["n4_bias_correction", "otsu_mask", "shrink_factors"]


def shrink_factors(spacing: Sequence[float], factor: int | Sequence[int]) -> tuple[int, int, int]:
    """Per-axis shrink factors (z, y, x).

    An integer ``factor`` applies to the fine axes only: an axis whose spacing is more than 1.5 times the finest
    spacing (the slice axis of an anisotropic scan) is left at 1.  Three integers are used as given.

    >>> shrink_factors((4.0, 0.875, 0.875), 4)
    (1, 4, 4)
    >>> shrink_factors((1.0, 1.0, 1.0), 2)
    (2, 2, 2)
    """
    if np.ndim(factor) == 0:
        f = int(factor)
        if f < 1:
            raise InputError(f"shrink_factor must be >= 1, got {factor}")
        finest = min(spacing)
        return tuple(1 if s > 1.5 * finest else f for s in spacing)  # type: ignore[return-value]
    values = tuple(int(v) for v in factor)  # type: ignore[union-attr]
    if len(values) != 3 or min(values) < 1:
        raise InputError(f"shrink_factor must be one integer or three integers >= 1, got {factor}")
    return values  # type: ignore[return-value]


def otsu_mask(volume: Volume, bins: int = 200) -> np.ndarray:
    """Foreground mask (bool, z-y-x) of the voxels brighter than Otsu's threshold."""
    import SimpleITK as sitk

    image = volume.with_array(volume.array.astype(np.float32, copy=False)).to_sitk()
    # OtsuThreshold(image, insideValue, outsideValue, bins): voxels at or below the threshold get insideValue.
    mask = sitk.OtsuThreshold(image, 0, 1, int(bins))
    return sitk.GetArrayFromImage(mask).astype(bool)


def n4_bias_correction(
    volume: Volume,
    mask: Volume | np.ndarray | None = None,
    *,
    shrink_factor: int | Sequence[int] = 4,
    iterations: Sequence[int] = (50, 50, 50, 50),
    convergence_threshold: float = 1e-3,
    spline_order: int = 3,
    control_points: int | Sequence[int] = 4,
    histogram_bins: int = 200,
    return_bias: bool = False,
) -> Volume | tuple[Volume, Volume]:
    """N4 bias-field correction of an MR ``volume``.

    Args:
        volume: the image (any real dtype; output is float32 with the same geometry and meta).
        mask: voxels used to estimate the field (bool/label array or Volume on the same grid); default an Otsu mask.
        shrink_factor: downsampling for the estimate: one integer (fine axes only, see :func:`shrink_factors`) or
            three (z, y, x).  1 = full resolution (slow).
        iterations: maximum iterations per fitting level (its length is the number of levels; ITK default 4 × 50).
        convergence_threshold: ITK's convergence threshold.
        spline_order: B-spline order of the field.
        control_points: control points of the coarsest B-spline grid per axis (ITK default 4; at least
            ``spline_order + 1``).
        histogram_bins: bins of Otsu's threshold for the default mask.
        return_bias: also return the estimated multiplicative bias field (a float32 Volume).

    Returns:
        The corrected Volume, or ``(corrected, bias)`` with ``return_bias=True``; ``volume ≈ corrected · bias``.
    """
    import SimpleITK as sitk

    array = np.asarray(volume.array, dtype=np.float32)
    if not np.all(np.isfinite(array)):
        raise InputError("n4_bias_correction: the image contains NaN or Inf")
    offset = float(array.min()) if array.min() < 0 else 0.0
    work = volume.with_array(array - offset)

    if mask is None:
        mask_arr = otsu_mask(work, histogram_bins)
    elif isinstance(mask, Volume):
        check_same_geometry(volume, mask, names=("image", "mask"))
        mask_arr = np.asarray(mask.array) != 0
    else:
        mask_arr = np.asarray(mask) != 0
        if mask_arr.shape != volume.shape:
            raise InputError(f"n4_bias_correction: mask shape {mask_arr.shape} differs from the image {volume.shape}")
    mask_arr = mask_arr & (work.array > 0)
    if mask_arr.sum() < 10:
        raise InputError("n4_bias_correction: the mask holds fewer than 10 positive voxels")

    image = work.to_sitk()
    mask_img = work.with_array(mask_arr.astype(np.uint8)).to_sitk()
    factors_zyx = shrink_factors(volume.spacing, shrink_factor)
    factors_xyz = [int(min(f, s)) for f, s in zip(reversed(factors_zyx), image.GetSize())]
    small = sitk.Shrink(image, factors_xyz) if max(factors_xyz) > 1 else image
    small_mask = sitk.Shrink(mask_img, factors_xyz) if max(factors_xyz) > 1 else mask_img
    if sitk.GetArrayViewFromImage(small_mask).sum() < 10:  # a thin mask can vanish when shrunk
        small, small_mask = image, mask_img

    n4 = sitk.N4BiasFieldCorrectionImageFilter()
    n4.SetMaximumNumberOfIterations([int(i) for i in iterations])
    n4.SetConvergenceThreshold(float(convergence_threshold))
    n4.SetSplineOrder(int(spline_order))
    cp = [int(control_points)] * 3 if np.ndim(control_points) == 0 else [int(c) for c in reversed(control_points)]
    n4.SetNumberOfControlPoints(cp)
    n4.Execute(small, small_mask)
    log_bias = sitk.GetArrayFromImage(n4.GetLogBiasFieldAsImage(image)).astype(np.float32)
    bias = np.exp(log_bias)
    corrected = (work.array / bias + offset).astype(np.float32)
    out = volume.with_array(corrected, n4_corrected=True)
    if return_bias:
        return out, volume.with_array(bias.astype(np.float32))
    return out
