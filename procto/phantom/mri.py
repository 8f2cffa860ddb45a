"""T2-weighted MRI intensity model: relative signal per tissue (fat bright, muscularis propria and muscle dark,
tumour and lymph nodes intermediate, urine / CSF / rectal gel very bright, gas / cortical bone / flowing blood
dark), tissue texture, partial-volume blur over the thick slices, a smooth multiplicative bias field and Rician
noise (the magnitude of complex Gaussian noise).  Output is float32 in arbitrary scanner units (fat ≈ 400–900).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

from procto.phantom.ct import partial_volume_sigma
from procto.phantom.fields import smooth_noise
from procto.phantom.grid import Grid
from procto.phantom.tissues import N_TISSUES, Tissue

#: tissue → (relative T2w signal with fat ≈ 1, ± case-to-case jitter, texture amplitude)
MRI_TISSUE_SIGNAL: dict[Tissue, tuple[float, float, float]] = {
    Tissue.AIR: (0.0, 0, 0),
    Tissue.SUBCUT_FAT: (1.0, 0.04, 0.04),
    Tissue.MUSCLE: (0.22, 0.04, 0.03),
    Tissue.VISCERAL_FAT: (0.95, 0.04, 0.05),
    Tissue.MESO_FAT: (0.92, 0.05, 0.06),
    Tissue.FASCIA: (0.14, 0.03, 0.02),
    Tissue.MUCOSA: (0.62, 0.08, 0.05),
    Tissue.MUSCULARIS: (0.15, 0.03, 0.02),
    Tissue.GAS: (0.02, 0.01, 0.01),
    Tissue.LUMEN_FLUID: (1.35, 0.1, 0.05),
    Tissue.FAECES: (0.35, 0.1, 0.15),
    Tissue.TUMOUR: (0.48, 0.06, 0.06),
    Tissue.NODE: (0.45, 0.06, 0.05),
    Tissue.BLADDER_WALL: (0.25, 0.04, 0.02),
    Tissue.URINE: (1.7, 0.1, 0.03),
    Tissue.CORTEX: (0.03, 0.01, 0.01),
    Tissue.MARROW: (0.65, 0.08, 0.08),
    Tissue.BOWEL_WALL: (0.35, 0.05, 0.04),
    Tissue.BOWEL_FLUID: (1.3, 0.1, 0.08),
    Tissue.GLAND: (0.6, 0.08, 0.07),
    Tissue.LIVER: (0.25, 0.04, 0.03),
    Tissue.KIDNEY: (0.55, 0.06, 0.04),
    Tissue.VESSEL: (0.05, 0.02, 0.02),
    Tissue.CSF: (1.7, 0.1, 0.03),
    Tissue.DISC: (0.9, 0.1, 0.05),
    Tissue.TABLE: (0.0, 0, 0),
    Tissue.BENIGN_NODE: (0.42, 0, 0),  # homogeneous, no jitter / texture (no random draw)
}

#: In-plane PSF (Gaussian sigma, mm), noise sigma relative to fat at ``noise=1``, bias-field strength.
PSF_MM = 0.4
NOISE_REL = 0.03
BIAS_STRENGTH = 0.12


def bias_field(grid: Grid, rng: np.random.Generator, strength: float = BIAS_STRENGTH) -> np.ndarray:
    """A smooth multiplicative field exp(quadratic polynomial of the normalised coordinates), mean about 1."""
    axes = [np.linspace(-1, 1, n, dtype=np.float32) for n in grid.shape]
    a, b, c = np.meshgrid(*axes, indexing="ij", sparse=True)
    terms = [a, b, c, a * a, b * b, c * c, a * b, a * c, b * c]
    coef = rng.normal(0, strength, size=len(terms)).astype(np.float32)
    log = sum(k * t for k, t in zip(coef, terms))
    return np.exp(log - np.float32(np.mean(log))).astype(np.float32)


def render_mri(tissue: np.ndarray, grid: Grid, rng: np.random.Generator, noise: float = 1.0, blur: bool = True,
               bias: bool = True) -> np.ndarray:
    """T2-weighted MRI image (float32) of a tissue map.

    Args:
        tissue: uint8 tissue map on ``grid`` (array axis 0 = the thick slice axis).
        rng: the intensity random stream.
        noise: Rician noise level multiplier (0 = noise-free).
        blur: apply the in-plane PSF and partial-volume averaging over the slice thickness.
        bias: apply the smooth bias field.
    """
    mean = np.zeros(N_TISSUES, np.float32)
    amp = np.zeros(N_TISSUES, np.float32)
    for t, (m, jit, a) in MRI_TISSUE_SIGNAL.items():
        mean[t] = max(m + (rng.uniform(-jit, jit) if jit else 0.0), 0.0)
        amp[t] = a
    scale = np.float32(rng.uniform(400, 900))
    tex = smooth_noise(grid, rng, corr_mm=4.0)
    img = mean[tissue] + amp[tissue] * tex
    if blur:
        img = ndi.gaussian_filter(img, partial_volume_sigma(grid, PSF_MM), mode="nearest", truncate=3.0)
    field = bias_field(grid, rng)
    if bias:
        img *= field
    img *= scale
    if noise > 0:
        sigma = np.float32(NOISE_REL * noise) * scale
        re = img + sigma * rng.standard_normal(grid.shape, dtype=np.float32)
        im = sigma * rng.standard_normal(grid.shape, dtype=np.float32)
        img = np.sqrt(re * re + im * im)
    return np.maximum(img, 0).astype(np.float32)
