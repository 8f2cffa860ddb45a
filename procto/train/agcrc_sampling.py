"""AG-CRC anatomy-guided patch sampling (paper 001, §III-C, Eqs. 1–6; ``../shared/spec/agcrc-facts.md`` §3).

- :func:`gain_map` (Eqs. 1–2): the binary map O correlated with a truncated Gaussian patch kernel, std 0.1·patch
  voxels per axis, offsets ``|o| <= patch//2``, normaliser (2π)^-3/2·det(Σ)^-1/2, zero outside the image.  The kernel is
  separable, so the map is three 1-D correlations, computed only over the mask's bounding box grown by the kernel.
- :func:`psm_map` (Eqs. 4–5): (g/μ + 1/n) / Σ(g/μ + 1/n), n the number of voxels.
- :func:`final_psm` (Eq. 6): (1 − λ)·psm(OOI) + λ·psm(tumour), λ = 0.33.
- :class:`PSMSampler`: draws patch centres exactly from :func:`final_psm` without building it.  Each component map is
  a mixture: mass 1/(G/μ + 1) uniform over the image (G = Σg) and the rest distributed as g/G.  g/G is itself a
  mixture over the mask voxels q with weight w_q = Π_a W_a(q_a) (the kernel mass that lands inside the image, which is
  separable), followed by a per-axis offset drawn from the discrete truncated Gaussian restricted to the image.  Per
  case the sampler caches the mask voxels' flat indices and the cumulative weights, so a draw is a binary search.

Axes are the arrays' own axes: ``patch[a]`` is the patch size along axis ``a`` of the masks.  Pure numpy/scipy.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage

from procto.errors import InputError

__all__ = ["gain_map", "psm_map", "final_psm", "PSMSampler", "kernel_1d"]

SIGMA_FRACTION = 0.1  # std of the patch kernel, as a fraction of the patch size (Eq. 2, σ = 0.1·d read as a std)
DEFAULT_LAMBDA = 0.33  # tumour weight of the final map (Eq. 6)


# ---------------------------------------------------------------------------------------------------------------------
# input checks


def _check_patch(patch: Sequence[int], ndim: int = 3) -> tuple[int, ...]:
    try:
        values = tuple(patch)
    except TypeError:
        raise InputError(f"patch must be {ndim} positive integers, got {patch!r}") from None
    if len(values) != ndim or not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in values):
        raise InputError(f"patch must be {ndim} positive integers, got {patch!r}")
    if any(v < 1 for v in values):
        raise InputError(f"patch sizes must be >= 1, got {values}")
    return tuple(int(v) for v in values)


def _check_mask(mask: np.ndarray, what: str = "mask") -> np.ndarray:
    """A 3-D bool view of ``mask`` (bool or integer array, or a float array holding only 0 and 1)."""
    if not isinstance(mask, np.ndarray):
        raise InputError(f"{what} must be a numpy array, got {type(mask).__name__}")
    if mask.ndim != 3:
        raise InputError(f"{what} must be 3-D, got shape {mask.shape}")
    if mask.size == 0:
        raise InputError(f"{what} is empty (shape {mask.shape})")
    if mask.dtype == bool:
        return mask
    if np.issubdtype(mask.dtype, np.integer):
        return mask != 0
    if np.issubdtype(mask.dtype, np.floating):
        if not np.all((mask == 0) | (mask == 1)):
            raise InputError(f"{what} must be binary (0/1); threshold a soft map first")
        return mask != 0
    raise InputError(f"{what} must be a bool or integer array, got dtype {mask.dtype}")


def _check_positive(value: float, what: str) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise InputError(f"{what} must be a number, got {value!r}") from None
    if not np.isfinite(v) or v <= 0:
        raise InputError(f"{what} must be > 0, got {value!r}")
    return v


def _check_lambda(lam: float) -> float:
    try:
        v = float(lam)
    except (TypeError, ValueError):
        raise InputError(f"lam must be a number in [0, 1], got {lam!r}") from None
    if not 0.0 <= v <= 1.0:
        raise InputError(f"lam must be in [0, 1], got {lam!r}")
    return v


def _check_pair(ooi: np.ndarray, tumour: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    o = _check_mask(ooi, "ooi")
    t = _check_mask(tumour, "tumour")
    if o.shape != t.shape:
        raise InputError(f"ooi and tumour shapes differ: {o.shape} vs {t.shape}")
    return o, t


# ---------------------------------------------------------------------------------------------------------------------
# the patch kernel and the maps


def kernel_1d(size: int) -> np.ndarray:
    """The kernel's factor along one axis: offsets −size//2 … size//2, exp(−o²/2σ²)/(√(2π)·σ), σ = 0.1·size.  The
    product of the three factors is Eq. 2's K with C = (2π)^-3/2·det(Σ)^-1/2, Σ = diag(σ²)."""
    half = size // 2
    sigma = SIGMA_FRACTION * size
    offsets = np.arange(-half, half + 1, dtype=np.float64)
    return np.exp(-0.5 * (offsets / sigma) ** 2) / (np.sqrt(2.0 * np.pi) * sigma)


def gain_map(mask: np.ndarray, patch: Sequence[int]) -> np.ndarray:
    """Eq. 1: g_i = K_i · O for every voxel i (float64, the mask's shape; zero outside the image)."""
    m = _check_mask(mask)
    d = _check_patch(patch)
    out = np.zeros(m.shape, dtype=np.float64)
    if not m.any():
        return out
    # g vanishes farther than patch//2 from the mask: correlate only over its bounding box grown by the kernel
    box = []
    for axis, size in enumerate(d):
        hit = np.flatnonzero(m.any(axis=tuple(a for a in range(3) if a != axis)))
        box.append(slice(max(int(hit[0]) - size // 2, 0), min(int(hit[-1]) + size // 2 + 1, m.shape[axis])))
    g = m[tuple(box)].astype(np.float64)
    for axis, size in enumerate(d):
        g = ndimage.correlate1d(g, kernel_1d(size), axis=axis, mode="constant", cval=0.0)
    out[tuple(box)] = g
    return out


def psm_map(mask: np.ndarray, patch: Sequence[int], mu: float = 1.0) -> np.ndarray:
    """Eqs. 4–5: s_i = (g_i/μ + 1/n) / Σ_j (g_j/μ + 1/n).  An empty mask gives the uniform map 1/n."""
    mu = _check_positive(mu, "mu")
    s = gain_map(mask, patch) / mu
    s += 1.0 / s.size
    s /= s.sum()
    return s


def final_psm(ooi: np.ndarray, tumour: np.ndarray, patch: Sequence[int], lam: float = DEFAULT_LAMBDA,
              mu: float = 1.0) -> np.ndarray:
    """Eq. 6: (1 − λ)·psm(OOI) + λ·psm(tumour)."""
    lam = _check_lambda(lam)
    o, t = _check_pair(ooi, tumour)
    return (1.0 - lam) * psm_map(o, patch, mu) + lam * psm_map(t, patch, mu)


# ---------------------------------------------------------------------------------------------------------------------
# exact sampling


def _inside_mass(shape: Sequence[int], patch: Sequence[int]) -> list[np.ndarray]:
    """Per axis a, W_a(x) = Σ_{o : 0 <= x + o < N_a} k_a(o): the kernel mass a mask voxel at x spreads inside the
    image (all x of the axis)."""
    masses = []
    for n, size in zip(shape, patch):
        k = kernel_1d(size)
        masses.append(np.convolve(np.ones(n), k, mode="full")[size // 2: size // 2 + n])
    return masses


class _Component:
    """One component map psm(O) in sampling form: uniform mass, mask voxels (flat) and their cumulative weights."""

    def __init__(self, mask: np.ndarray, mu: float, inside: list[np.ndarray]):
        flat = np.flatnonzero(mask.reshape(-1))
        index_type = np.int32 if mask.size < 2 ** 31 else np.int64
        self.voxels = flat.astype(index_type)
        if flat.size:
            z, y, x = np.unravel_index(flat, mask.shape)
            weights = inside[0][z] * inside[1][y] * inside[2][x]
            self.cumulative = np.cumsum(weights)
            gain_total = float(self.cumulative[-1])  # G = Σ_i g_i = Σ_q w_q
        else:
            self.cumulative = np.zeros(0)
            gain_total = 0.0
        self.uniform_mass = 1.0 / (gain_total / mu + 1.0)  # Eq. 5's normaliser is Σ_i (g_i/μ + 1/n) = G/μ + 1

    def draw_sources(self, rng: np.random.Generator, k: int) -> np.ndarray:
        """k mask voxels (flat indices), each with probability w_q / G."""
        u = rng.random(k) * self.cumulative[-1]
        pos = np.searchsorted(self.cumulative, u, side="right")
        return self.voxels[np.minimum(pos, self.voxels.size - 1)].astype(np.int64)


class PSMSampler:
    """Patch centres drawn exactly from ``final_psm(ooi, tumour, patch, lam, mu)`` for one case.

    The constructor caches, per component, the mask voxels and their cumulative in-image kernel masses (memory
    ≈ 12 bytes per mask voxel); :meth:`sample` then costs O(k·log |mask|).  Seeded (numpy PCG64), deterministic and
    picklable: a pickled sampler continues the same stream of draws as the original."""

    def __init__(self, ooi: np.ndarray, tumour: np.ndarray, patch: Sequence[int], lam: float = DEFAULT_LAMBDA,
                 seed: int | None = 0, mu: float = 1.0):
        o, t = _check_pair(ooi, tumour)
        self.patch = _check_patch(patch)
        self.lam = _check_lambda(lam)
        self.mu = _check_positive(mu, "mu")
        self.shape = tuple(int(s) for s in o.shape)
        self.size = int(o.size)
        self._inside = _inside_mass(self.shape, self.patch)
        self._kernel_cumulative = [np.concatenate([[0.0], np.cumsum(kernel_1d(s))]) for s in self.patch]
        self._components = (_Component(o, self.mu, self._inside), _Component(t, self.mu, self._inside))
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0):
            raise InputError(f"seed must be a non-negative integer or None, got {seed!r}")
        self.rng = np.random.default_rng(seed)

    @property
    def part_probabilities(self) -> np.ndarray:
        """Probabilities of the four parts: OOI uniform, OOI gain, tumour uniform, tumour gain."""
        weights = (1.0 - self.lam, self.lam)
        probs = []
        for w, comp in zip(weights, self._components):
            probs += [w * comp.uniform_mass, w * (1.0 - comp.uniform_mass)]  # an empty mask has uniform_mass 1
        return np.asarray(probs)

    def _offsets(self, sources: np.ndarray) -> np.ndarray:
        """Per axis, an offset from the discrete truncated Gaussian restricted to offsets that stay in the image; the
        result is the drawn centres (m, 3)."""
        coords = np.stack(np.unravel_index(sources, self.shape), axis=1)
        centres = np.empty_like(coords)
        for a in range(3):
            half = self.patch[a] // 2
            cum = self._kernel_cumulative[a]
            x = coords[:, a]
            lo = np.maximum(-half, -x) + half  # index of the lowest allowed offset in the kernel
            hi = np.minimum(half, self.shape[a] - 1 - x) + half  # index of the highest allowed offset
            u = cum[lo] + self.rng.random(x.size) * (cum[hi + 1] - cum[lo])
            idx = np.searchsorted(cum, u, side="right") - 1
            centres[:, a] = x + np.clip(idx, lo, hi) - half
        return centres

    def sample(self, k: int = 1) -> np.ndarray:
        """``k`` patch centres, int64 array (k, 3), i.i.d. from the final PSM."""
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 0:
            raise InputError(f"number of draws must be a non-negative integer, got {k!r}")
        k = int(k)
        out = np.empty((k, 3), dtype=np.int64)
        cumulative = np.cumsum(self.part_probabilities)
        cumulative /= cumulative[-1]  # ends at exactly 1, so a part of probability 0 is never drawn
        parts = np.searchsorted(cumulative, self.rng.random(k), side="right")
        uniform = (parts == 0) | (parts == 2)
        if uniform.any():
            flat = self.rng.integers(0, self.size, size=int(uniform.sum()))
            out[uniform] = np.stack(np.unravel_index(flat, self.shape), axis=1)
        for part, comp in ((1, self._components[0]), (3, self._components[1])):
            chosen = parts == part
            if chosen.any():
                out[chosen] = self._offsets(comp.draw_sources(self.rng, int(chosen.sum())))
        return out

    def __repr__(self) -> str:
        n_ooi, n_tum = (c.voxels.size for c in self._components)
        return (f"PSMSampler(shape={self.shape}, patch={self.patch}, lam={self.lam}, mu={self.mu}, "
                f"ooi_voxels={n_ooi}, tumour_voxels={n_tum})")
