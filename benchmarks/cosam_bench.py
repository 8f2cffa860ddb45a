"""CoSAM inference cost per CT case: wall time and peak memory of ``CoSAMPredictor.predict_volume`` on a CT phantom
(the facts file's grid, 96 × 128 × 128 at 1.25 × 0.7 × 0.7 mm), for the paper-size model (ResNet-50-FPN detector at
torchvision's 800-px resize + U-SAM ViT-B) and procto's small preset, on CPU and, when present, on the GPU.

Untrained weights: the cost does not depend on them, except through the number of boxes that reach U-SAM — every
window is therefore run with the detector's full 100 boxes (score threshold 0), the worst case.  ``--slices K`` runs K
windows and extrapolates to the whole case (the per-window cost is the same for every slice).

    python benchmarks/cosam_bench.py                     # both models, CPU (+ GPU), 4 windows each
    python benchmarks/cosam_bench.py --slices 96         # the whole case
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import time

import numpy as np
import torch


def _peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20


def _run(name: str, model_kwargs: dict, device: str, n_slices: int, ct) -> dict:
    from procto.infer.cosam import CoSAMPredictor
    from procto.io import Volume
    from procto.nets import create_model

    torch.manual_seed(0)
    model = create_model("cosam", **model_kwargs)
    model.detector.roi_heads.score_thresh = 0.0  # worst case: every kept box prompts U-SAM
    predictor = CoSAMPredictor(model, device=device, batch_size=1)
    sub = Volume(ct.array[:max(n_slices, model.window)], ct.spacing, ct.origin, ct.direction)
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    predictor.predict_volume(sub)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    seconds = time.perf_counter() - t0
    per_window = seconds / sub.shape[0]
    gpu = torch.cuda.max_memory_allocated() / 2 ** 30 if device.startswith("cuda") else None
    return {"model": name, "device": device, "windows": sub.shape[0], "s_per_window": per_window,
            "s_per_case": per_window * ct.shape[0], "params_M": sum(p.numel() for p in model.parameters()) / 1e6,
            "peak_rss_GiB": _peak_rss_gib(), "gpu_peak_GiB": gpu}


def main() -> None:
    from procto.phantom import make_case

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--slices", type=int, default=4, help="windows timed per model (extrapolated to the case)")
    ap.add_argument("--models", default="paper,small", help="paper, small or both (comma-separated)")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    ct = make_case(0, "ct", shape=(96, 128, 128), spacing=(1.25, 0.7, 0.7), center="tumour").image
    models = {"paper": {"window": 9}, "small": {"window": 9, "small": True}}
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}, "
          f"threads {torch.get_num_threads()}; load before: {os.getloadavg()}")
    print(f"case: {ct.shape} voxels at {ct.spacing} mm; {args.slices} windows per model, extrapolated to "
          f"{ct.shape[0]} windows")
    print("| model | device | params (M) | s / window | s / case | peak RSS (GiB) | GPU peak (GiB) |")
    print("|---|---|---|---|---|---|---|")
    for name in [m.strip() for m in args.models.split(",") if m.strip()]:
        for device in devices:
            r = _run(name, models[name], device, args.slices, ct)
            gpu = f"{r['gpu_peak_GiB']:.2f}" if r["gpu_peak_GiB"] is not None else "—"
            print(f"| {name} | {device} | {r['params_M']:.1f} | {r['s_per_window']:.2f} | {r['s_per_case']:.0f} | "
                  f"{r['peak_rss_GiB']:.2f} | {gpu} |", flush=True)
    print(f"load after: {os.getloadavg()}")


if __name__ == "__main__":
    np.set_printoptions(precision=3)
    main()
