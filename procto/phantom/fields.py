"""Seeded random fields: smooth 3D noise on a grid (tissue texture, bias fields) and smooth periodic functions of
(arc length, angle) used to make tube walls, tumours and fronts irregular.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

from procto.phantom.grid import Grid


def smooth_noise(grid: Grid, rng: np.random.Generator, corr_mm: float = 8.0) -> np.ndarray:
    """Zero-mean, unit-variance smooth noise on ``grid`` (float32) with correlation length about ``corr_mm``.

    White noise on a coarse lattice of step ``corr_mm`` is interpolated (linearly) to the grid, so the cost does not
    depend on the fine resolution beyond one interpolation and the texture looks alike at every resolution.
    """
    extent = np.asarray(grid.shape) * np.asarray(grid.spacing)
    coarse = np.maximum(np.ceil(extent / corr_mm).astype(int) + 1, 2)
    field = rng.standard_normal(tuple(coarse)).astype(np.float32)
    zoom = np.asarray(grid.shape) / coarse
    out = ndi.zoom(field, zoom, order=1, grid_mode=True, mode="nearest")
    out = out[: grid.shape[0], : grid.shape[1], : grid.shape[2]]
    if out.shape != grid.shape:  # zoom rounding: pad by edge values
        pad = [(0, g - o) for g, o in zip(grid.shape, out.shape)]
        out = np.pad(out, pad, mode="edge")
    std = float(out.std())
    return ((out - float(out.mean())) / (std if std > 0 else 1.0)).astype(np.float32)


class Periodic2D:
    """A smooth random function of arc length ``s`` (mm) and angle ``theta`` (rad): a sum of a few random
    sinusoids, periodic in ``theta``, with values of about unit amplitude.

    Args:
        rng: random generator (its state advances by a fixed number of draws).
        n_terms: number of sinusoids.
        max_theta_freq: highest angular frequency (integer).
        s_wavelength: (min, max) wavelength along ``s``, mm.
    """

    def __init__(self, rng: np.random.Generator, n_terms: int = 6, max_theta_freq: int = 4,
                 s_wavelength: tuple[float, float] = (15.0, 60.0)):
        self.k_theta = rng.integers(0, max_theta_freq + 1, size=n_terms)
        self.k_s = 2 * np.pi / rng.uniform(*s_wavelength, size=n_terms)
        self.phase = rng.uniform(0, 2 * np.pi, size=n_terms)
        self.amp = rng.uniform(0.5, 1.0, size=n_terms)
        self.amp /= np.sqrt((self.amp ** 2).sum() / 2.0)

    def __call__(self, s: np.ndarray, theta: np.ndarray) -> np.ndarray:
        out = np.zeros(np.broadcast(s, theta).shape, dtype=np.float32)
        for kt, ks, ph, a in zip(self.k_theta, self.k_s, self.phase, self.amp):
            out += np.float32(a) * np.cos(kt * theta + ks * s + ph).astype(np.float32)
        return out


def smooth_profile(rng: np.random.Generator, s: np.ndarray, n_terms: int = 4,
                   wavelength: tuple[float, float] = (30.0, 120.0)) -> np.ndarray:
    """A smooth random 1D profile along ``s`` (mm) with values in about [-1, 1]."""
    k = 2 * np.pi / rng.uniform(*wavelength, size=n_terms)
    ph = rng.uniform(0, 2 * np.pi, size=n_terms)
    a = rng.uniform(0.5, 1.0, size=n_terms)
    out = (a[:, None] * np.cos(k[:, None] * s[None, :] + ph[:, None])).sum(0)
    return out / a.sum()
