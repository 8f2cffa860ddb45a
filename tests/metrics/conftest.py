"""Helpers for the metric tests: the numpy-2 alias surface-distance needs, and random irregular masks."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage


def patch_surface_distance_numpy2() -> None:
    """surface-distance 0.1 uses ``np.Inf``/``np.NaN``, removed in numpy 2 (its empty-mask paths fail): alias them."""
    if not hasattr(np, "Inf"):
        np.Inf = np.inf
    if not hasattr(np, "NaN"):
        np.NaN = np.nan


@pytest.fixture(scope="session")
def sd():
    """The DeepMind ``surface_distance`` module, usable under numpy 2."""
    patch_surface_distance_numpy2()
    import surface_distance

    return surface_distance


def _blob(shape, seed: int, sigma: float = 2.0, fill: float = 0.3) -> np.ndarray:
    """Irregular blobby mask: smoothed noise thresholded to keep about ``fill`` of the voxels."""
    rng = np.random.default_rng(seed)
    field = ndimage.gaussian_filter(rng.standard_normal(shape), sigma)
    return field > np.quantile(field, 1 - fill)


def _perturbed(mask: np.ndarray, seed: int, flip: float = 0.15) -> np.ndarray:
    """``mask`` shifted by one voxel on a random axis with random flips of boundary voxels."""
    rng = np.random.default_rng(seed)
    out = np.roll(mask, int(rng.choice([-1, 1])), axis=int(rng.integers(mask.ndim)))
    boundary = ndimage.binary_dilation(out) & ~ndimage.binary_erosion(out)
    return out ^ (boundary & (rng.random(mask.shape) < flip))


@pytest.fixture(scope="session")
def blob():
    """``blob(shape, seed, sigma=2.0, fill=0.3)`` → irregular boolean mask."""
    return _blob


@pytest.fixture(scope="session")
def perturbed():
    """``perturbed(mask, seed, flip=0.15)`` → shifted mask with a noisy boundary."""
    return _perturbed
