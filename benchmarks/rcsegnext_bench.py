"""Full-volume inference time and peak memory: RCSegNeXt-B vs nnU-Net's default 3d_fullres U-Net (PlainConvUNet).

Both networks come from one nnU-Net 3d_fullres configuration (spacing [4.0, 0.875, 0.875], the paper's patch
[16, 320, 320]): nnU-Net's default architecture is what its planner derives for that patch and spacing
(``get_pool_and_conv_props`` + the planner's PlainConvUNet settings, built with ``get_network_from_plans``); RCSegNeXt-B
is what procto's trainer builds from the same configuration
(:func:`procto.train.nnunet.trainers.rcsegnext_configuration`).
Weights are random.  Inference is nnU-Net's sliding window (step 0.5, Gaussian weighting; mirroring off unless
``--mirror``) over a random [24, 512, 512] volume, one run per network, each in its own process so that its peak
memory (max RSS on CPU, ``torch.cuda.max_memory_allocated`` on GPU) is its own.

    python benchmarks/rcsegnext_bench.py                       # paper patch, [24, 512, 512], CPU or the GPU
    python benchmarks/rcsegnext_bench.py --patch 16,160,160 --shape 24,256,256 --threads 2
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time

SPACING = (4.0, 0.875, 0.875)

# run from a checkout: import the procto next to this script (the subprocesses below re-run this file)
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _triple(text: str) -> list[int]:
    values = [int(v) for v in text.replace("x", ",").split(",")]
    if len(values) != 3:
        raise argparse.ArgumentTypeError(f"need three integers z,y,x, got {text!r}")
    return values


def nnunet_default_arch(patch: list[int]) -> tuple[dict, list[int]]:
    """nnU-Net's default 3d_fullres architecture dict for ``patch`` at :data:`SPACING` (as its ExperimentPlanner)."""
    from nnunetv2.experiment_planning.experiment_planners.network_topology import get_pool_and_conv_props

    _, strides, kernels, patch_size, _ = get_pool_and_conv_props(list(SPACING), list(patch), 4, 999999)
    n = len(strides)
    arch = {
        "network_class_name": "dynamic_network_architectures.architectures.unet.PlainConvUNet",
        "arch_kwargs": {
            "n_stages": n,
            "features_per_stage": [min(320, 32 * 2**i) for i in range(n)],
            "conv_op": "torch.nn.modules.conv.Conv3d",
            "kernel_sizes": kernels,
            "strides": strides,
            "n_conv_per_stage": [2] * n,
            "n_conv_per_stage_decoder": [2] * (n - 1),
            "conv_bias": True,
            "norm_op": "torch.nn.modules.instancenorm.InstanceNorm3d",
            "norm_op_kwargs": {"eps": 1e-5, "affine": True},
            "dropout_op": None,
            "dropout_op_kwargs": None,
            "nonlin": "torch.nn.LeakyReLU",
            "nonlin_kwargs": {"inplace": True},
        },
        "_kw_requires_import": ["conv_op", "norm_op", "dropout_op", "nonlin"],
    }
    return arch, [int(p) for p in patch_size]


def configuration(patch: list[int]) -> dict:
    arch, patch_size = nnunet_default_arch(patch)
    return {
        "data_identifier": "nnUNetPlans_3d_fullres", "preprocessor_name": "DefaultPreprocessor", "batch_size": 2,
        "patch_size": patch_size, "median_image_size_in_voxels": [24, 512, 512], "spacing": list(SPACING),
        "normalization_schemes": ["ZScoreNormalization"], "use_mask_for_norm": [False],
        "resampling_fn_data": "resample_data_or_seg_to_shape", "resampling_fn_seg": "resample_data_or_seg_to_shape",
        "resampling_fn_data_kwargs": {"is_seg": False, "order": 3, "order_z": 0, "force_separate_z": None},
        "resampling_fn_seg_kwargs": {"is_seg": True, "order": 1, "order_z": 0, "force_separate_z": None},
        "resampling_fn_probabilities": "resample_data_or_seg_to_shape",
        "resampling_fn_probabilities_kwargs": {"is_seg": False, "order": 1, "order_z": 0, "force_separate_z": None},
        "batch_dice": False, "architecture": arch,
    }


def build(which: str, patch: list[int]):
    """(network, ConfigurationManager, PlansManager) of ``which`` ("rcsegnext_b" or "nnunet") from one configuration."""
    from nnunetv2.utilities.get_network_from_plans import get_network_from_plans
    from nnunetv2.utilities.plans_handling.plans_handler import ConfigurationManager, PlansManager

    from procto.train.nnunet.trainers import build_rcsegnext, rcsegnext_configuration

    cfg = configuration(patch)
    if which == "nnunet":
        a = cfg["architecture"]
        net = get_network_from_plans(a["network_class_name"], a["arch_kwargs"], a["_kw_requires_import"], 1, 3,
                                     allow_init=True, deep_supervision=False)
    else:
        cfg = rcsegnext_configuration(cfg, "rcsegnext_b", patch_size=patch)
        net = None
    cm = ConfigurationManager(cfg)
    if net is None:
        net = build_rcsegnext(cm, 1, 3, "rcsegnext_b", deep_supervision=False)
    plans = {"dataset_name": "Dataset999_Bench", "plans_name": "nnUNetPlans", "original_median_spacing_after_transp":
             list(SPACING), "original_median_shape_after_transp": [24, 512, 512], "image_reader_writer": "SimpleITKIO",
             "transpose_forward": [0, 1, 2], "transpose_backward": [0, 1, 2], "configurations": {"3d_fullres": cfg},
             "experiment_planner_used": "ExperimentPlanner", "label_manager": "LabelManager",
             "foreground_intensity_properties_per_channel": {}}
    return net, cm, PlansManager(plans)


def run_one(which: str, patch: list[int], shape: list[int], device: str, mirror: bool, threads: int | None) -> dict:
    import torch

    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor

    if threads:
        torch.set_num_threads(threads)
    net, cm, pm = build(which, patch)
    dev = torch.device(device)
    net = net.to(dev).eval()
    n_params = sum(p.numel() for p in net.parameters())
    predictor = nnUNetPredictor(tile_step_size=0.5, use_gaussian=True, use_mirroring=mirror,
                                perform_everything_on_device=dev.type == "cuda", device=dev, verbose=False,
                                allow_tqdm=False)
    ds_json = {"channel_names": {"0": "T2"}, "labels": {"background": 0, "rectum": 1, "tumour": 2},
               "numTraining": 0, "file_ending": ".nii.gz"}
    predictor.manual_initialization(net, pm, cm, None, ds_json, "bench", (0, 1, 2) if mirror else None)
    gen = torch.Generator().manual_seed(0)
    volume = torch.randn((1, *shape), generator=gen)
    n_windows = len(predictor._internal_get_sliding_window_slicers(tuple(shape)))
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
        torch.cuda.synchronize()
    t = time.perf_counter()
    with torch.inference_mode():
        logits = predictor.predict_sliding_window_return_logits(volume)
    if dev.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - t
    out = {
        "model": which, "params": n_params, "patch": list(cm.patch_size), "strides": cm.pool_op_kernel_sizes,
        "windows": n_windows, "seconds": seconds, "output_shape": list(logits.shape),
        "max_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
        "rss_before_mib": rss_before,
        "torch_threads": torch.get_num_threads(),
    }
    if dev.type == "cuda":
        out["cuda_peak_mib"] = torch.cuda.max_memory_allocated() / 2**20
    return out


def machine() -> str:
    model = platform.processor() or platform.machine()
    try:
        for line in subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout.splitlines():
            if line.startswith("Model name:"):
                model = line.split(":", 1)[1].strip()
    except OSError:
        pass
    return f"{model}, {os.cpu_count()} logical CPUs"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--patch", type=_triple, default=[16, 320, 320], help="patch z,y,x (default the paper's)")
    ap.add_argument("--shape", type=_triple, default=[24, 512, 512], help="volume z,y,x (default 24,512,512)")
    ap.add_argument("--device", default=None, help="cpu or cuda (default cuda when available)")
    ap.add_argument("--mirror", action="store_true", help="with mirroring TTA (8x the work)")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    ap.add_argument("--only", choices=["rcsegnext_b", "nnunet"], help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.device is None:
        import torch

        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    if args.only:
        print(json.dumps(run_one(args.only, args.patch, args.shape, args.device, args.mirror, args.threads)))
        return 0

    print(f"machine: {machine()}; device: {args.device}; volume {args.shape}, patch {args.patch}, "
          f"mirroring {'on' if args.mirror else 'off'}")
    results = {}
    for which in ("rcsegnext_b", "nnunet"):
        cmd = [sys.executable, __file__, "--only", which, "--patch", ",".join(map(str, args.patch)),
               "--shape", ",".join(map(str, args.shape)), "--device", args.device]
        if args.mirror:
            cmd.append("--mirror")
        if args.threads:
            cmd += ["--threads", str(args.threads)]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            print(proc.stdout, proc.stderr, file=sys.stderr)
            return proc.returncode
        res = json.loads(proc.stdout.strip().splitlines()[-1])
        results[which] = res
        res["rss_inference_mib"] = res["max_rss_mib"] - res["rss_before_mib"]
        mem = f"peak RSS {res['max_rss_mib']:.0f} MiB (+{res['rss_inference_mib']:.0f} MiB during inference)"
        if "cuda_peak_mib" in res:
            mem += f", CUDA peak {res['cuda_peak_mib']:.0f} MiB"
        print(f"{which:12s} params {res['params'] / 1e6:6.2f} M  strides {res['strides']}  patch {res['patch']}  "
              f"{res['windows']} windows  {res['seconds']:8.2f} s  ({res['seconds'] / res['windows']:.2f} s/window)  "
              f"{mem}  torch threads {res['torch_threads']}", flush=True)
    r, n = results["rcsegnext_b"], results["nnunet"]
    print(f"time ratio nnU-Net / RCSegNeXt-B: {n['seconds'] / r['seconds']:.2f}x; "
          f"peak RSS ratio: {n['max_rss_mib'] / r['max_rss_mib']:.2f}x "
          f"(inference increase: {n['rss_inference_mib'] / max(r['rss_inference_mib'], 1.0):.2f}x)"
          + (f"; CUDA peak ratio: {n['cuda_peak_mib'] / r['cuda_peak_mib']:.2f}x" if "cuda_peak_mib" in r else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
