"""CoSAM's longer documented run on CT phantoms (issue 11; not CI): the paper's schedule — the sequence detector
alone, then U-SAM alone and the joint phase (CCM) from the detector's weights — on Meply phantoms with benign nodes,
then both protocols on held-out phantoms: the paper's windows (Tables 2–4 layouts) and the fully automatic whole
volume (2D AP50, 3D node AP@0.1, FROC sensitivity per false positives per scan, pooled / per-case Dice, patient
N-category accuracy).  Prints the tables and the targets (node Dice ≥ 0.70, 3D sensitivity ≥ 0.80 at ≤ 2 FP/scan).

Small encoders (ResNet-18-FPN detector, 1-block ViT) at window 5 so it runs on a CPU; ``--full`` trains the paper-size
model (GPU).  Seeded.

    python benchmarks/cosam_train_bench.py                       # ≈ 15 min on 2 CPU cores
    python benchmarks/cosam_train_bench.py --train 24 --det-steps 1200 --joint-steps 400
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path


def _args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--train", type=int, default=16, help="training phantoms")
    p.add_argument("--test", type=int, default=4, help="held-out phantoms")
    p.add_argument("--window", type=int, default=5)
    p.add_argument("--det-steps", type=int, default=600)
    p.add_argument("--seg-steps", type=int, default=300)
    p.add_argument("--joint-steps", type=int, default=200)
    p.add_argument("--full", action="store_true", help="paper-size model (ResNet-50-FPN + ViT-B)")
    p.add_argument("--device", default="auto")
    p.add_argument("--out", type=Path, default=None, help="work folder (default: a temporary one)")
    return p.parse_args()


def main() -> None:
    import torch

    from procto.infer.cosam import CoSAMPredictor
    from procto.metrics.tables import cosam_table2, cosam_table4, cosam_whole_volume_table
    from procto.phantom.writers import write_meply
    from procto.preprocess.meply import MeplyDataset, read_meply_volume
    from procto.train.cosam import CoSAMTrainConfig, train_cosam
    from procto.train.cosam_eval import evaluate_cosam, evaluate_cosam_volumes
    from procto.nets.checkpoint import load_checkpoint

    a = _args()
    torch.set_num_threads(os.cpu_count() or 1)
    work = a.out or Path(tempfile.mkdtemp(prefix="cosam_bench_"))
    t0 = time.time()
    data = write_meply(work / "meply", a.train, seed=0, split="train", benign_nodes=(0, 2))
    write_meply(data, a.test, seed=0, split="test", start=a.train, benign_nodes=(2, 4), volumes=True)
    print(f"data: {a.train} + {a.test} phantoms in {time.time() - t0:.0f} s ({work})", flush=True)
    iters = 50
    common = dict(window=a.window, small=not a.full, iters_per_epoch=iters, seed=0,
                  model_kwargs={} if a.full else {"max_train_prompts": 6})
    t = time.time()
    det = train_cosam(data, work / "detector", CoSAMTrainConfig(
        epochs_detector=max(1, a.det_steps // iters), epochs_segmenter=0, epochs_joint=0,
        lr_detector=1e-4 if a.full else 1e-3, **common), "detector", device=a.device)
    sep = train_cosam(data, work / "separate", CoSAMTrainConfig(
        epochs_detector=0, epochs_segmenter=max(1, a.seg_steps // iters), epochs_joint=0, **common), "segmenter",
        init=det.checkpoint, device=a.device)
    full = train_cosam(data, work / "cosam", CoSAMTrainConfig(
        epochs_detector=0, epochs_segmenter=0, epochs_joint=max(1, a.joint_steps // iters), **common), "joint",
        init=sep.checkpoint, device=a.device)
    train_s = time.time() - t
    print(f"training: {train_s / 60:.1f} min", flush=True)

    windows = {}
    for name, ckpt in (("separate", sep.checkpoint), ("cosam", full.checkpoint)):
        model = load_checkpoint(ckpt, "cosam")[0]
        items = MeplyDataset(data, "test", window=a.window, size=int(model.segmenter.img_size), protocol="paper")
        windows[name] = evaluate_cosam(model, items)
    cases = [(p.stem, *read_meply_volume(p)[:2]) for p in sorted((data / "npz").glob("*.npz"))
             if p.stem in _test_cases(data)]
    t = time.time()
    volumes = {"CoSAM": evaluate_cosam_volumes(CoSAMPredictor(full.checkpoint, device=a.device), cases)}
    infer_s = (time.time() - t) / max(1, len(cases))
    c, s = windows["cosam"], windows["separate"]
    print(cosam_table2([("CoSAM (procto, phantoms)", c["dice"], c["iou"])], paper=False), "\n")
    print(cosam_table4({(False, False): (s["ap50_det"], s["dice"]), (True, False): (c["ap50_det"], None),
                        (True, True): (c["ap50"], c["dice"])}), "\n")
    print(cosam_whole_volume_table(volumes), "\n")
    v = volumes["CoSAM"]
    sens2 = v["froc"].sensitivity_at(2.0)
    print(f"targets: node Dice (paper protocol) {c['dice']:.3f} (≥ 0.70: {c['dice'] >= 0.70}); whole-volume Dice "
          f"{v['dice']:.3f}; 3D sensitivity at 2 FP/scan {sens2:.3f} (≥ 0.80: {sens2 >= 0.80}); N-category accuracy "
          f"{v['n_accuracy']:.3f} over {v['n_cases']} patients")
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch "
          f"{torch.__version__}, load {os.getloadavg()[0]:.2f}; training {train_s / 60:.1f} min, inference "
          f"{infer_s:.0f} s per case")


def _test_cases(data: Path) -> set[str]:
    lines = (data / "caselist_test.txt").read_text().split()
    return {ln.rpartition("_")[0] for ln in lines}


if __name__ == "__main__":
    main()
