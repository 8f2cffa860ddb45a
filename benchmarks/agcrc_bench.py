"""AG-CRC patch sampling: procto's maps and sampler against straightforward implementations, side by side in one run.

* the final sampling map (Eq. 6) — :func:`procto.train.agcrc_sampling.final_psm` (separable 1-D correlations over the
  masks' bounding boxes) against a reference that convolves each mask with the full 3-D truncated Gaussian kernel by
  FFT (``scipy.signal.fftconvolve``); the two maps are checked equal (max relative difference printed);
* drawing a batch of 2 patch centres — :class:`~procto.train.agcrc_sampling.PSMSampler` (cached mask coordinates and
  cumulative weights, exact mixture draws) against drawing from the built map (cumulative sum once, then
  ``searchsorted``), after each one's set-up.

The nnU-Net default sampler (foreground oversampling from precomputed class locations) is not timed here yet.

    python benchmarks/agcrc_bench.py                         # 100 x 512 x 512, patch 40 x 224 x 192 (the paper's)
    python benchmarks/agcrc_bench.py --shape 40,128,128 --patch 16,64,64
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from scipy import signal

from procto.train.agcrc_sampling import PSMSampler, final_psm, kernel_1d


def masks(shape: tuple[int, int, int], seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A colon-like OOI (a thick tube winding through the volume) and a tumour (a ball on the tube)."""
    rng = np.random.default_rng(seed)
    z, y, x = np.ogrid[: shape[0], : shape[1], : shape[2]]
    t = np.linspace(0, 1, shape[0])[:, None, None]
    cy = shape[1] * (0.5 + 0.25 * np.sin(2 * np.pi * t + rng.uniform(0, 1)))
    cx = shape[2] * (0.5 + 0.25 * np.cos(2 * np.pi * t))
    r = 0.08 * min(shape[1:])
    ooi = (y - cy) ** 2 + (x - cx) ** 2 <= r ** 2
    k = shape[0] // 2
    ty, tx = cy[k, 0, 0], cx[k, 0, 0]
    tumour = (((z - k) * 4.0) ** 2 + (y - ty) ** 2 + (x - tx) ** 2) <= (0.6 * r) ** 2
    return ooi, tumour & ooi


def reference_final_psm(ooi: np.ndarray, tumour: np.ndarray, patch, lam: float = 0.33, mu: float = 1.0):
    """Eqs. 1–6 written plainly: full 3-D kernel, FFT convolution (kernel symmetric: convolution = correlation)."""
    kernel = np.einsum("i,j,k->ijk", *(kernel_1d(p) for p in patch))
    n = ooi.size
    maps = []
    for mask in (ooi, tumour):
        g = np.clip(signal.fftconvolve(mask.astype(np.float64), kernel, mode="same"), 0, None)
        m = g / mu + 1.0 / n
        maps.append(m / m.sum())
    return (1 - lam) * maps[0] + lam * maps[1]


def timed(fn, repeats: int = 1):
    best, value = float("inf"), None
    for _ in range(repeats):
        t = time.perf_counter()
        value = fn()
        best = min(best, time.perf_counter() - t)
    return best, value


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shape", default="100,512,512")
    ap.add_argument("--patch", default="40,224,192")
    ap.add_argument("--draws", type=int, default=200, help="batches of 2 centres timed for each sampler")
    args = ap.parse_args()
    shape = tuple(int(v) for v in args.shape.split(","))
    patch = tuple(int(v) for v in args.patch.split(","))
    ooi, tumour = masks(shape)
    print(f"volume {shape}, patch {patch}, OOI {int(ooi.sum())} voxels, tumour {int(tumour.sum())} voxels")

    t_procto, fast = timed(lambda: final_psm(ooi, tumour, patch))
    t_fft, ref = timed(lambda: reference_final_psm(ooi, tumour, patch))
    rel = float(np.max(np.abs(fast - ref)) / ref.max())
    print(f"final_psm map: procto {t_procto:.2f} s | FFT reference {t_fft:.2f} s | ratio {t_fft / t_procto:.1f}x "
          f"| max |diff| / max {rel:.1e}")

    t_cache, sampler = timed(lambda: PSMSampler(ooi, tumour, patch, seed=0))
    t_cdf, cdf = timed(lambda: np.cumsum(ref.ravel()))
    rng = np.random.default_rng(0)

    def from_map():
        idx = np.searchsorted(cdf, rng.random(2) * cdf[-1], side="right")
        return np.stack(np.unravel_index(np.minimum(idx, cdf.size - 1), shape), axis=1)

    per_batch = []
    for draw in (lambda: sampler.sample(2), from_map):
        times = []
        for _ in range(args.draws):
            t = time.perf_counter()
            draw()
            times.append(time.perf_counter() - t)
        per_batch.append(float(np.median(times)))
    print(f"set-up: PSMSampler cache {t_cache * 1e3:.0f} ms | map + cumulative sum {(t_fft + t_cdf):.2f} s "
          f"(FFT map) / {(t_procto + t_cdf):.2f} s (procto's map)")
    print(f"batch of 2 centres (median of {args.draws}): PSMSampler {per_batch[0] * 1e6:.0f} us | "
          f"from the built map {per_batch[1] * 1e6:.0f} us | ratio {per_batch[1] / per_batch[0]:.1f}x")


if __name__ == "__main__":
    main()
