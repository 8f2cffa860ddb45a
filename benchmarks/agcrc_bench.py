"""AG-CRC patch sampling: procto's maps and sampler against straightforward implementations, side by side in one run.

* the final sampling map (Eq. 6) — :func:`procto.train.agcrc_sampling.final_psm` (separable 1-D correlations over the
  masks' bounding boxes) against a reference that convolves each mask with the full 3-D truncated Gaussian kernel by
  FFT (``scipy.signal.fftconvolve``); the two maps are checked equal (max relative difference printed);
* drawing a batch of 2 patch centres — :class:`~procto.train.agcrc_sampling.PSMSampler` (cached mask coordinates and
  cumulative weights, exact mixture draws) against drawing from the built map (cumulative sum once, then
  ``searchsorted``), after each one's set-up.

* nnU-Net 2.8.1's default sampler, side by side with :class:`~procto.train.agcrc_sampling.PSMSampler`, all nnU-Net
  code called as installed (nothing re-implemented):

  - one-time per-case cost: ``DefaultPreprocessor._sample_foreground_locations`` (the ``class_locations`` the
    preprocessor stores; seed 1234, 10000 samples, 1 % coverage, on the float32 (1, z, y, x) label map as
    ``run_case_npy`` passes it) against the PSMSampler construction (cached coordinates and cumulative weights);
  - a batch of 2 centres: ``nnUNetDataLoader.get_bbox`` of a real ``nnUNetDataLoader`` (batch 2, oversample 0.33,
    not probabilistic: sample 0 random, sample 1 forced foreground; initial patch from
    ``nnUNetTrainer.configure_rotation_dummyDA_mirroring_and_inital_patch_size``) against ``PSMSampler.sample(2)``;
  - where the centres land (a few thousand draws): P(centre in OOI) and P(final patch contains a tumour voxel), with
    uniform centres for reference.  nnU-Net's centre is that of its initial patch (``bbox_lbs + initial // 2``, where
    ``SpatialTransform`` centre-crops the final patch); the final patch is the box of the configuration's patch size
    around the centre (augmentation ignored).

    python benchmarks/agcrc_bench.py                         # 100 x 512 x 512, patch 40 x 224 x 192 (the paper's)
    python benchmarks/agcrc_bench.py --quick                 # smoke run: 40 x 128 x 128, patch 16 x 64 x 64
    python benchmarks/agcrc_bench.py --shape 40,128,128 --patch 16,64,64
"""

from __future__ import annotations

import argparse
import os
import resource
import time
import types

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


def nnunet_loader(patch: tuple[int, int, int]):
    """nnU-Net's training loader as ``nnUNetTrainer.get_dataloaders`` builds it for one case (batch 2, default
    oversampling), and the initial (rotation-enlarged) patch size its trainer computes for ``patch``."""
    from nnunetv2.training.dataloading.data_loader import nnUNetDataLoader
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
    from nnunetv2.utilities.label_handling.label_handling import LabelManager

    trainer_like = types.SimpleNamespace(configuration_manager=types.SimpleNamespace(patch_size=list(patch)),
                                         print_to_log_file=lambda *a, **k: None)
    _, _, initial_patch, _ = nnUNetTrainer.configure_rotation_dummyDA_mirroring_and_inital_patch_size(trainer_like)
    label_manager = LabelManager({"background": 0, "tumour": 1}, regions_class_order=None)
    dataset = types.SimpleNamespace(identifiers=["case"])  # get_bbox never touches the data set
    loader = nnUNetDataLoader(dataset, 2, initial_patch, list(patch), label_manager, oversample_foreground_percent=0.33,
                              sampling_probabilities=None, pad_sides=None, probabilistic_oversampling=False)
    return loader, label_manager, tuple(int(v) for v in initial_patch)


def nnunet_class_locations(seg: np.ndarray, label_manager) -> dict:
    """The preprocessor's ``class_locations`` for a label map ``seg`` of shape (1, z, y, x)."""
    from nnunetv2.preprocessing.preprocessors.default_preprocessor import DefaultPreprocessor

    return DefaultPreprocessor._sample_foreground_locations(seg, label_manager.foreground_labels, seed=1234,
                                                            verbose=False, min_num_samples=10000,
                                                            min_percent_coverage=0.01)


def nnunet_batch(loader, shape: tuple[int, int, int], class_locations: dict) -> list:
    """The lower corners of one batch's initial patches, exactly as ``generate_train_batch`` asks for them."""
    return [loader.get_bbox(shape, loader.get_do_oversample(j), class_locations)[0] for j in range(loader.batch_size)]


def landing(centres: np.ndarray, ooi: np.ndarray, tumour_sat: np.ndarray, patch) -> tuple[float, float]:
    """P(centre in the OOI) and P(the final patch around the centre contains a tumour voxel)."""
    shape = np.asarray(ooi.shape)
    inside = np.all((centres >= 0) & (centres < shape), axis=1)
    c = np.clip(centres, 0, shape - 1)
    in_ooi = inside & ooi[c[:, 0], c[:, 1], c[:, 2]]
    start = centres - np.asarray(patch) // 2
    lo, hi = np.clip(start, 0, shape), np.clip(start + np.asarray(patch), 0, shape)
    (z0, y0, x0), (z1, y1, x1) = lo.T, hi.T
    s = tumour_sat
    count = (s[z1, y1, x1] - s[z0, y1, x1] - s[z1, y0, x1] - s[z1, y1, x0]
             + s[z0, y0, x1] + s[z0, y1, x0] + s[z1, y0, x0] - s[z0, y0, x0])
    return float(in_ooi.mean()), float((count > 0).mean())


def summed_area(mask: np.ndarray) -> np.ndarray:
    """3-D summed-area table, zero-padded at the low end: box sums in O(1)."""
    s = np.zeros(tuple(n + 1 for n in mask.shape), dtype=np.int32)
    s[1:, 1:, 1:] = mask
    for axis in range(3):
        np.cumsum(s, axis=axis, out=s)
    return s


def median_time(fn, n: int) -> float:
    times = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return float(np.median(times))


def nnunet_comparison(ooi: np.ndarray, tumour: np.ndarray, patch, args) -> None:
    """nnU-Net's default sampler against PSMSampler: per-case set-up, a batch of 2, and where the centres land."""
    shape = ooi.shape
    loader, label_manager, initial = nnunet_loader(patch)
    seg = tumour[None].astype(np.float32)  # as run_case_npy passes it: (1, z, y, x), float32 as the readers return it
    t_locs, locs = timed(lambda: nnunet_class_locations(seg, label_manager), repeats=3)
    t_cache, sampler = timed(lambda: PSMSampler(ooi, tumour, patch, seed=0), repeats=3)
    print(f"nnU-Net: initial patch {initial}, class_locations {', '.join(f'{k}: {len(v)}' for k, v in locs.items())}")
    print(f"per-case set-up (best of 3): PSMSampler cache {t_cache * 1e3:.0f} ms | nnU-Net class_locations "
          f"{t_locs * 1e3:.0f} ms | ratio {t_locs / t_cache:.1f}x")

    np.random.seed(0)  # get_bbox draws from numpy's global state, as in nnU-Net's workers
    t_psm = median_time(lambda: sampler.sample(2), args.draws)
    t_nn = median_time(lambda: nnunet_batch(loader, shape, locs), args.draws)
    t_rand = median_time(lambda: loader.get_bbox(shape, False, locs), args.draws)
    t_fg = median_time(lambda: loader.get_bbox(shape, True, locs), args.draws)
    print(f"batch of 2 centres (median of {args.draws}): PSMSampler {t_psm * 1e6:.0f} us | nnU-Net get_bbox "
          f"random + forced {t_nn * 1e6:.0f} us (random {t_rand * 1e6:.0f} us, forced {t_fg * 1e6:.0f} us) "
          f"| ratio {t_nn / t_psm:.1f}x")

    n = args.landing_batches
    sat = summed_area(tumour)
    half = np.asarray(initial) // 2
    corners = np.array([nnunet_batch(loader, shape, locs) for _ in range(n)])  # (n, 2, 3)
    rows = {
        "PSMSampler (AG)": PSMSampler(ooi, tumour, patch, seed=1).sample(2 * n),
        "nnU-Net, batch of 2": (corners + half).reshape(-1, 3),
        "  nnU-Net sample 0 (random)": corners[:, 0] + half,
        "  nnU-Net sample 1 (forced fg)": corners[:, 1] + half,
        "uniform voxel": np.random.default_rng(2).integers(0, shape, size=(2 * n, 3)),
    }
    print(f"where the centres land ({2 * n} centres each; final patch {tuple(patch)} around the centre):")
    for name, centres in rows.items():
        p_ooi, p_tum = landing(centres, ooi, sat, patch)
        print(f"  {name:32s} P(centre in OOI) {p_ooi:.3f} | P(patch contains tumour) {p_tum:.3f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shape", default="100,512,512")
    ap.add_argument("--patch", default="40,224,192")
    ap.add_argument("--draws", type=int, default=200, help="batches of 2 centres timed for each sampler")
    ap.add_argument("--landing-batches", type=int, default=2000, help="batches of 2 for the landing fractions")
    ap.add_argument("--quick", action="store_true", help="smoke run: 40x128x128, patch 16x64x64, fewer draws")
    args = ap.parse_args()
    if args.quick:
        args.shape, args.patch, args.draws, args.landing_batches = "40,128,128", "16,64,64", 50, 500
    print(f"load average before: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
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

    nnunet_comparison(ooi, tumour, patch, args)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20
    print(f"peak memory (max RSS) {peak:.1f} GiB | load average after: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")


if __name__ == "__main__":
    main()
