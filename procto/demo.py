"""``procto demo``: the main job on the embedded default (synthetic phantoms; nothing to download).

1. writes a small sagittal T2 MRI phantom cohort (rectum-centred field of view) as an nnU-Net v2 raw data set, with
   held-out test cases in ``imagesTs``/``labelsTs``;
2. trains RCSegNeXt-B on the training cases through nnU-Net v2 (procto's ``nnUNetTrainerRCSegNeXt``) for a short
   schedule on the CPU (or GPU when present);
3. segments the held-out cases with the trained model (:func:`procto.infer.nnunet.predict`: sliding window, outputs
   in the input's geometry);
4. evaluates the predictions against the phantom labels with procto's metrics and prints the Dice table.

The default schedule takes about three minutes on a 2-core CPU (153–196 s measured); ``epochs``/``iters`` make it
longer (the paper: 100 × 250).  The same steps are ``procto phantom``, ``procto train rcsegnext``,
``procto predict rcsegnext`` and ``procto evaluate``.
"""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from rich.console import Console

#: The demo cohort: sagittal T2 phantoms cropped around the rectum.
DEMO_SHAPE = (16, 48, 48)
DEMO_SPACING = (4.0, 1.75, 1.75)
DEMO_DATASET_ID, DEMO_DATASET_NAME = 990, "ProctoDemo"


@dataclass
class DemoResult:
    results: list  # per-case, per-class results of procto.evaluate.evaluate_folders
    dataset: Path
    model_dir: Path
    predictions: Path
    seconds: dict  # wall time of each step


def run_demo(out: str | Path, n: int = 8, n_test: int = 2, epochs: int = 8, iters: int = 18, seed: int = 0,
             device: str = "auto", console: Console | None = None,
             progress_factory: Callable | None = None) -> DemoResult:
    """Run the demo into folder ``out`` (phantoms, nnU-Net folders, model, predictions); return the evaluation.

    ``n`` training and ``n_test`` held-out phantoms; RCSegNeXt-B is trained for ``epochs`` × ``iters`` iterations of
    batch 1 on all training cases (nnU-Net fold ``all``).  nnU-Net's own messages go to ``out/nnunet.log``."""
    import random

    import numpy as np
    import torch

    from procto.evaluate import evaluate_folders, summary_table
    from procto.infer.nnunet import predict
    from procto.infer.nnunet_env import quiet_stdout
    from procto.phantom import write_cohort
    from procto.train.nnunet import train
    from procto.util import torch_threads

    console = console or Console()
    out = Path(out)
    seconds: dict[str, float] = {}
    console.print(f"[bold]procto demo[/bold]: {n} + {n_test} sagittal T2 MRI phantoms → train RCSegNeXt-B "
                  f"({epochs} × {iters} iterations) → segment the held-out phantoms → Dice table")
    t = time.perf_counter()
    root = Path(write_cohort(out / "nnUNet_raw", n, "mri", layout="nnunet", seed=seed, n_test=n_test,
                             dataset_id=DEMO_DATASET_ID, name=DEMO_DATASET_NAME, shape=DEMO_SHAPE,
                             spacing=DEMO_SPACING, center="rectum"))
    seconds["phantoms"] = time.perf_counter() - t

    random.seed(seed)
    np.random.seed(seed)  # nnU-Net's data loader and augmentation (in this process: workers=0)
    torch.manual_seed(seed)
    cores = os.cpu_count() or 1  # every core, whatever an earlier call in this process set
    log = out / "nnunet.log"
    t = time.perf_counter()
    with _progress(progress_factory) as progress, quiet_stdout(log), torch_threads(cores):
        task = progress.add_task("plan, preprocess, train RCSegNeXt-B", total=None) if progress else None

        def on_epoch(epoch: int, num_epochs: int, values: dict) -> None:
            if progress is not None:
                loss = values.get("train_losses", float("nan"))
                progress.update(task, total=num_epochs, completed=epoch,
                                description=f"train RCSegNeXt-B (loss {loss:.3f})")

        run = train(root, "all", model="rcsegnext_b", out=out, epochs=epochs, iters=iters, val_iters=1,
                    patch=DEMO_SHAPE, batch_size=1, device=device, workers=0, resume=False, validate=False,
                    check_integrity=False, on_epoch=on_epoch)
    seconds["train"] = time.perf_counter() - t

    t = time.perf_counter()
    pred_dir = out / "predictions"
    with _progress(progress_factory) as progress, torch_threads(cores):
        task = progress.add_task("segment held-out phantoms", total=n_test) if progress else None
        predict(run.model_dir, root / "imagesTs", pred_dir, device=device, mirror=False, log=log,
                on_case=(lambda _: progress.advance(task)) if progress else None)
    seconds["predict"] = time.perf_counter() - t

    results = evaluate_folders(pred_dir, root / "labelsTs")
    console.print(summary_table(results, f"RCSegNeXt-B on {n_test} held-out MRI phantoms (NSD at 4 mm)"))
    console.print(f"dataset: {root}\nmodel: {run.model_dir}\npredictions: {pred_dir}\nnnU-Net log: {log}")
    console.print("time: " + ", ".join(f"{k} {v:.0f} s" for k, v in seconds.items()))
    return DemoResult(results, root, run.model_dir, pred_dir, seconds)


def _progress(factory: Callable | None):
    """A progress bar from ``factory`` (yields None without one)."""
    return factory() if factory is not None else contextlib.nullcontext()
