"""CT intensity model: Hounsfield-like values per tissue (portal-venous contrast CT), tissue texture, the scanner's
blur and partial-volume averaging, and slightly correlated Gaussian noise.  Output is int16 HU like a real CT.

Typical values: air −1000, fat ≈ −100, muscle ≈ 50, enhancing mucosa / tumour 60–120, urine ≈ 10, contrast-filled
vessels ≈ 170, cancellous bone 300–420 with a 900–1300 HU cortex.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

from procto.phantom.fields import smooth_noise
from procto.phantom.grid import Grid
from procto.phantom.tissues import N_TISSUES, Tissue

#: tissue → (mean HU, ± case-to-case jitter, texture amplitude HU)
CT_TISSUE_HU: dict[Tissue, tuple[float, float, float]] = {
    Tissue.AIR: (-1000, 0, 0),
    Tissue.SUBCUT_FAT: (-105, 8, 6),
    Tissue.MUSCLE: (50, 6, 5),
    Tissue.VISCERAL_FAT: (-98, 8, 8),
    Tissue.MESO_FAT: (-92, 8, 8),
    Tissue.FASCIA: (10, 10, 4),
    Tissue.MUCOSA: (95, 15, 8),
    Tissue.MUSCULARIS: (55, 8, 5),
    Tissue.GAS: (-995, 4, 2),
    Tissue.LUMEN_FLUID: (15, 10, 5),
    Tissue.FAECES: (-150, 60, 80),
    Tissue.TUMOUR: (80, 15, 12),
    Tissue.NODE: (45, 10, 8),
    Tissue.BLADDER_WALL: (45, 6, 4),
    Tissue.URINE: (8, 6, 3),
    Tissue.CORTEX: (1100, 150, 60),
    Tissue.MARROW: (360, 50, 45),
    Tissue.BOWEL_WALL: (90, 15, 8),
    Tissue.BOWEL_FLUID: (12, 8, 6),
    Tissue.GLAND: (45, 8, 6),
    Tissue.LIVER: (105, 12, 5),
    Tissue.KIDNEY: (160, 25, 10),
    Tissue.VESSEL: (170, 30, 6),
    Tissue.CSF: (12, 4, 3),
    Tissue.DISC: (85, 10, 5),
    Tissue.TABLE: (250, 50, 0),
    # benign nodes: lower and steadier than metastatic ones (no case-to-case jitter, no texture; no random draw, so
    # adding the class left every earlier case bit-identical)
    Tissue.BENIGN_NODE: (30, 0, 0),
}

#: In-plane point-spread function of the scanner (Gaussian sigma, mm) and the noise level (HU) at ``noise=1``.
PSF_MM = 0.5
NOISE_HU = 12.0


def partial_volume_sigma(grid: Grid, psf_mm: float, slice_axis: int = 0, slice_psf: float = 0.35) -> list[float]:
    """Gaussian sigma (voxels) per array axis: the scanner PSF combined with averaging over one voxel."""
    sig = []
    for j, sp in enumerate(grid.spacing):
        psf = slice_psf * sp if j == slice_axis else psf_mm
        sig.append(float(np.sqrt((psf / sp) ** 2 + 0.35 ** 2)))
    return sig


def render_ct(tissue: np.ndarray, grid: Grid, rng: np.random.Generator, noise: float = 1.0,
              blur: bool = True) -> np.ndarray:
    """CT image (int16 HU) of a tissue map.

    Args:
        tissue: uint8 tissue map on ``grid``.
        rng: the intensity random stream.
        noise: noise level multiplier (0 = noise-free).
        blur: apply the scanner PSF / partial-volume blur.
    """
    mean = np.zeros(N_TISSUES, np.float32)
    amp = np.zeros(N_TISSUES, np.float32)
    for t, (m, jit, a) in CT_TISSUE_HU.items():
        mean[t] = m + (rng.uniform(-jit, jit) if jit else 0.0)
        amp[t] = a
    tex = smooth_noise(grid, rng, corr_mm=4.0)
    img = mean[tissue] + amp[tissue] * tex
    if blur:
        img = ndi.gaussian_filter(img, partial_volume_sigma(grid, PSF_MM), mode="nearest", truncate=3.0)
    if noise > 0:
        white = rng.standard_normal(grid.shape, dtype=np.float32)
        # CT noise is correlated in-plane (reconstruction kernel), not across slices
        corr = ndi.gaussian_filter(white, (0, 0.7, 0.7), mode="wrap", truncate=3.0)
        corr *= np.float32(NOISE_HU * noise / max(float(corr.std()), 1e-6))
        img += corr
    return np.clip(np.rint(img), -1024, 3071).astype(np.int16)
