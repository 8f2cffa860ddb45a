"""Benchmark: inference time of SAM-B and U-SAM-B (full ViT-B, 224 × 224 input, random weights).

Two numbers per model and device:

* **per slice**: one forward pass of a single prepared 224 × 224 slice (batch 1, no prompt), best of ``--repeats``
  after a warm-up (the two models alternate, so load changes on a shared machine hit both alike);
* **per case**: a whole case of ``--slices`` (default 80) axial 512 × 512 CT slices in HU through
  :meth:`procto.infer.usam.USamPredictor.predict_slices` — HU window, cubic resize to 224, CARE transposition,
  batched forward passes (``--batch-size``), logits resized back to 512 × 512 and the argmax — i.e. what
  ``procto predict usam`` spends per case besides reading and writing the files.

The ratio U-SAM-B / SAM-B is printed for both.  Runs on CPU (``--threads``) and, when available, CUDA.

Run:  ``python benchmarks/usam_bench.py [--threads 2] [--slices 80] [--batch-size 8] [--repeats 3] [--no-cuda]``
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from procto.infer.usam import USamPredictor  # noqa: E402
from procto.nets import create_model  # noqa: E402

MODELS = ("sam_b", "usam_b")


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_slice(model, device) -> float:
    x = torch.rand(1, 3, model.img_size, model.img_size, device=device)
    with torch.no_grad():
        _sync(device)
        t = time.perf_counter()
        model(x)
        _sync(device)
    return time.perf_counter() - t


def time_case(predictor: USamPredictor, device, volume: np.ndarray) -> float:
    _sync(device)
    t = time.perf_counter()
    predictor.predict_slices(volume)
    _sync(device)
    return time.perf_counter() - t


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2, help="CPU threads (torch.set_num_threads)")
    ap.add_argument("--slices", type=int, default=80, help="slices per case")
    ap.add_argument("--size", type=int, default=512, help="in-plane size of the case's slices")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=5, help="per-slice repeats (best of)")
    ap.add_argument("--case-repeats", type=int, default=1, help="per-case repeats on CPU (best of; CUDA: 3)")
    ap.add_argument("--no-cuda", action="store_true")
    args = ap.parse_args(argv)

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    volume = rng.normal(40, 300, (args.slices, args.size, args.size)).astype(np.float32)  # HU-like noise

    devices = [torch.device("cpu")]
    if torch.cuda.is_available() and not args.no_cuda:
        devices.append(torch.device("cuda"))
    print(f"torch {torch.__version__}, CPU threads {args.threads}; case = {args.slices} slices of "
          f"{args.size}x{args.size} HU, batch {args.batch_size}; random weights, no prompt")
    for device in devices:
        if device.type == "cuda":
            print(f"CUDA device: {torch.cuda.get_device_name(device)}")
        models = {name: create_model(name).eval().to(device) for name in MODELS}
        predictors = {name: USamPredictor(m, device=device, batch_size=args.batch_size) for name, m in models.items()}
        for name in MODELS:  # warm-up
            time_slice(models[name], device)
            predictors[name].predict_slices(volume[: args.batch_size])
        # the two models alternate, so that a change of load on a shared machine hits both alike; best of N
        per_slice = {name: time_slice(models[name], device) for name in MODELS}
        for _ in range(args.repeats - 1):
            for name in MODELS:
                per_slice[name] = min(per_slice[name], time_slice(models[name], device))
        case_repeats = 3 if device.type == "cuda" else args.case_repeats
        per_case = {name: float("inf") for name in MODELS}
        for _ in range(case_repeats):
            for name in MODELS:
                per_case[name] = min(per_case[name], time_case(predictors[name], device, volume))
        for name in MODELS:
            n_params = sum(p.numel() for p in models[name].parameters())
            t_slice, t_case = per_slice[name], per_case[name]
            print(f"{device.type:4s} {name:7s} {n_params / 1e6:7.2f} M params   per slice {t_slice * 1000:9.1f} ms   "
                  f"per case ({args.slices} slices) {t_case:8.2f} s   ({t_case / args.slices * 1000:.1f} ms/slice)",
                  flush=True)
        print(f"{device.type:4s} ratio U-SAM-B / SAM-B: per slice {per_slice['usam_b'] / per_slice['sam_b']:.2f}x, "
              f"per case {per_case['usam_b'] / per_case['sam_b']:.2f}x")
        del models, predictors
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return 0


if __name__ == "__main__":
    sys.exit(main())
