"""The demo's model bundles: the smallest faithful version of each model the report runs, trained briefly on phantoms
and installed under ``$PROCTO_HOME`` (cached: a second demo starts at once).

* **RCSegNeXt-B** (MRI rectum + tumour) through nnU-Net v2 on a sagittal T2 phantom cohort cropped around the rectum;
* the **staging CNN** (f-rMC5 + bilinear + focal/triplet, T2 vs T3) on the same kind of MRI phantoms, cropped
  around the tumour as in ``procto cv staging``'s phantom acceptance run;
* **CoSAM** (small encoders, window 5) on CT phantoms in Meply's layout with benign nodes as hard negatives: the
  detector alone at learning rate 1e-3, then the whole model jointly (CCM included) from its weights.

AG-CRC (CT tumour) is not trained here: the report says its step was skipped.  Training happens in a temporary
folder; only the installed bundles stay in ``$PROCTO_HOME`` (``bundles/demo-<task>[-<schedule>]``).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from procto.errors import InputError

#: The MRI phantoms of the demo (training and patient): sagittal T2, 16 slices of 4 mm, 84 mm around the rectum.
MRI_GRID = {"shape": (16, 48, 48), "spacing": (4.0, 1.75, 1.75), "center": "rectum"}
#: nnU-Net data set of the RCSegNeXt cohort (in the temporary training folder).
DATASET_ID, DATASET_NAME = 990, "ProctoDemo"
#: CoSAM's window (the paper's ablation minimum; 9 is its choice) and its CT phantoms' benign nodes per case.
COSAM_WINDOW, COSAM_BENIGN = 5, (0, 2)
TASKS = ("rcsegnext", "staging", "cosam")


@dataclass(frozen=True)
class DemoSchedule:
    """How long each demo model trains (cases, epochs, iterations)."""

    name: str
    # RCSegNeXt-B through nnU-Net: training cases, epochs × iterations of batch 1
    seg_cases: int
    seg_epochs: int
    seg_iters: int
    # staging CNN: training cases, slice-level + volume-level epochs, crop size and slices
    stage_cases: int
    stage_slice_epochs: int
    stage_epochs: int
    stage_size: int
    stage_depth: int
    # CoSAM: CT training cases, detector steps (lr 1e-3), joint steps; prompts per window in training; boxes kept
    # per window at inference
    cosam_cases: int
    cosam_det_steps: int
    cosam_joint_steps: int
    cosam_prompts: int = 4
    cosam_boxes: int = 4
    cosam_size: int = 224  # U-SAM's and the detector's input side (CT slices of 128 px are resized to it)

    @property
    def suffix(self) -> str:
        return "" if self.name == "default" else f"-{self.name}"


SCHEDULES = {
    # as short as possible while every bundle is valid (tests); the models learn nothing
    "smoke": DemoSchedule("smoke", seg_cases=2, seg_epochs=1, seg_iters=2, stage_cases=4, stage_slice_epochs=1,
                          stage_epochs=1, stage_size=32, stage_depth=4, cosam_cases=1, cosam_det_steps=2,
                          cosam_joint_steps=1, cosam_prompts=1, cosam_boxes=1, cosam_size=128),
    # the demo: a few minutes on a CPU, RCSegNeXt and the staging CNN visibly learning (CoSAM barely: see
    # procto/demo/__init__.py)
    "default": DemoSchedule("default", seg_cases=8, seg_epochs=8, seg_iters=16, stage_cases=48,
                            stage_slice_epochs=16, stage_epochs=4, stage_size=48, stage_depth=6, cosam_cases=6,
                            cosam_det_steps=120, cosam_joint_steps=40, cosam_size=128),
    # `procto demo --full`: longer (CoSAM: benchmarks/cosam_train_bench.py's detector and joint steps at 224 px)
    "full": DemoSchedule("full", seg_cases=16, seg_epochs=20, seg_iters=40, stage_cases=90, stage_slice_epochs=16,
                         stage_epochs=4, stage_size=48, stage_depth=6, cosam_cases=16, cosam_det_steps=600,
                         cosam_joint_steps=200, cosam_prompts=6, cosam_boxes=6),
}


def schedule_of(schedule: str | DemoSchedule) -> DemoSchedule:
    """A :class:`DemoSchedule` from its name (``smoke``, ``default``, ``full``) or itself."""
    if isinstance(schedule, DemoSchedule):
        return schedule
    if schedule not in SCHEDULES:
        raise InputError(f"unknown demo schedule {schedule!r}; known: {', '.join(SCHEDULES)}")
    return SCHEDULES[schedule]


def bundle_names(schedule: str | DemoSchedule = "default") -> dict[str, str]:
    """``{task: installed name}`` of the demo's bundles for ``schedule`` (``demo-rcsegnext``,
    ``demo-staging-full``, …)."""
    suffix = schedule_of(schedule).suffix
    return {task: f"demo-{task}{suffix}" for task in TASKS}


def default_threads() -> int:
    """Torch threads for training: the idle cores (every core on an idle machine, one on a busy one — several
    threads fighting another process for the same cores run many times slower than one)."""
    cores = os.cpu_count() or 1
    try:
        busy = os.getloadavg()[0]
    except (AttributeError, OSError):
        busy = 0.0
    return max(1, min(cores, int(cores - busy + 0.5)))


# ---------------------------------------------------------------------------------------------------------- progress
class _Steps:
    """Progress of one training run on an optional rich Progress (``None``: nothing shown)."""

    def __init__(self, progress, description: str, total: int | None) -> None:
        self.progress = progress
        self.task = progress.add_task(description, total=total) if progress is not None else None

    def update(self, completed: int | None = None, total: int | None = None, description: str | None = None,
               advance: int = 0) -> None:
        if self.progress is None:
            return
        kw: dict[str, Any] = {"advance": advance} if advance else {}
        if completed is not None:
            kw["completed"] = completed
        if total is not None:
            kw["total"] = total
        if description is not None:
            kw["description"] = description
        self.progress.update(self.task, **kw)


# ---------------------------------------------------------------------------------------------------------- training
def _seed_everything(seed: int) -> None:
    import random

    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def train_rcsegnext(work: Path, schedule: DemoSchedule, *, seed: int = 0, device: str = "auto",
                    threads: int | None = None, progress=None, log: Path | None = None) -> Path:
    """RCSegNeXt-B through nnU-Net v2 on ``schedule.seg_cases`` MRI phantoms (fold ``all``); returns its model
    folder.  nnU-Net's own messages go to ``log`` (default ``work/nnunet.log``)."""
    from procto.infer.nnunet_env import quiet_stdout
    from procto.phantom import write_cohort
    from procto.train.nnunet import train
    from procto.util import torch_threads

    s = schedule
    steps = _Steps(progress, "RCSegNeXt-B: phantoms, plan, preprocess", None)
    root = Path(write_cohort(work / "nnUNet_raw", s.seg_cases, "mri", layout="nnunet", seed=seed,
                             dataset_id=DATASET_ID, name=DATASET_NAME, **MRI_GRID))

    def on_epoch(epoch: int, num_epochs: int, values: dict) -> None:
        loss = values.get("train_losses", float("nan"))
        steps.update(completed=epoch, total=num_epochs, description=f"RCSegNeXt-B (loss {loss:.3f})")

    _seed_everything(seed)  # nnU-Net's loader and augmentation run in this process (workers=0)
    with quiet_stdout(log or work / "nnunet.log"), torch_threads(threads or default_threads()):
        run = train(root, "all", model="rcsegnext_b", out=work, epochs=s.seg_epochs, iters=s.seg_iters, val_iters=1,
                    patch=MRI_GRID["shape"], batch_size=1, device=device, workers=0, resume=False, validate=False,
                    check_integrity=False, preprocess_processes=1, on_epoch=on_epoch, seed=seed)
    return Path(run.model_dir)


def staging_config(schedule: DemoSchedule, seed: int = 0):
    """The demo's staging settings: the paper's network and losses (f-rMC5 + bilinear + focal/triplet) on small
    tumour-centred crops without N4 (the settings of ``procto cv staging``'s phantom acceptance run)."""
    from procto.train.staging import StagingConfig

    s = schedule
    return StagingConfig(variant="rmc5", aggregation="bilinear", supplementary="triplet", size=(s.stage_size,) * 2,
                         depth=s.stage_depth, margin_mm=6.0, crop_on="tumour", n4=False,
                         slice_epochs=s.stage_slice_epochs, epochs=s.stage_epochs, batch_size=4, seed=seed)


def train_staging_cnn(work: Path, schedule: DemoSchedule, *, seed: int = 0, device: str = "auto",
                      threads: int | None = None, progress=None) -> Path:
    """The staging CNN on ``schedule.stage_cases`` MRI phantoms (T2/T3 alternating); returns its run folder."""
    from procto.phantom import make_cohort
    from procto.preprocess.staging import prepare_sample
    from procto.train.staging import train_staging
    from procto.util import resolve_device, torch_threads

    config = staging_config(schedule, seed)
    steps = _Steps(progress, "staging CNN: phantoms", schedule.stage_cases)
    samples = []
    for case in make_cohort(schedule.stage_cases, "mri", seed, **MRI_GRID):
        samples.append(prepare_sample(case.case_id, case.image, case.label, case.t_stage, config))
        steps.update(advance=1)
    steps.update(completed=0, total=config.total_epochs, description="staging CNN")
    out = work / "staging"
    with torch_threads(threads or default_threads()):
        train_staging(samples, config, out, device=str(resolve_device(device)),
                      on_epoch=lambda row: steps.update(advance=1, description=f"staging CNN (loss "
                                                                                f"{row.get('loss', float('nan')):.3f})"))
    return out


def _cosam_config(schedule: DemoSchedule, seed: int, detector: bool):
    from procto.nets.cosam import SMALL_DETECTOR
    from procto.train.cosam import CoSAMTrainConfig

    s = schedule
    steps = s.cosam_det_steps if detector else s.cosam_joint_steps
    det_kwargs: dict[str, Any] = {"box_detections_per_img": s.cosam_boxes}
    if s.cosam_size != 224:  # the small preset resizes to 224 (anchors 16…256): keep the side, scale the anchors
        det_kwargs.update(min_size=s.cosam_size, max_size=s.cosam_size,
                          anchor_sizes=[max(4, round(a * s.cosam_size / 224)) for a in SMALL_DETECTOR["anchor_sizes"]])
    return CoSAMTrainConfig(
        window=COSAM_WINDOW, small=True, img_size=s.cosam_size, seed=seed, iters_per_epoch=steps,
        epochs_detector=1 if detector else 0, epochs_segmenter=0, epochs_joint=0 if detector else 1,
        lr_detector=1e-3 if detector else 1e-4,
        model_kwargs={"max_train_prompts": s.cosam_prompts, "detector_kwargs": det_kwargs})


def train_cosam_small(work: Path, schedule: DemoSchedule, *, seed: int = 0, device: str = "auto",
                      threads: int | None = None, progress=None) -> Path:
    """CoSAM (small) on ``schedule.cosam_cases`` CT phantoms in Meply's layout: the detector alone (lr 1e-3), then
    the whole model jointly from its weights; returns the joint run's folder."""
    from procto.phantom import write_meply
    from procto.train.cosam import train_cosam

    s = schedule
    steps = _Steps(progress, "CoSAM: CT phantoms", s.cosam_cases)
    data = work / "meply"
    # the cohort's N2 and N1 cases (each block of six also holds two N0 cases: no window of the paper protocol)
    for i in [6 * b + k for b in range(-(-s.cosam_cases // 4)) for k in (4, 5, 2, 3)][:s.cosam_cases]:
        write_meply(data, 1, seed=seed, split="train", window=COSAM_WINDOW, start=i, benign_nodes=COSAM_BENIGN,
                    progress=lambda *_: steps.update(advance=1))
    threads = threads or default_threads()
    steps.update(completed=0, total=s.cosam_det_steps + s.cosam_joint_steps, description="CoSAM detector")
    det = train_cosam(data, work / "cosam_detector", _cosam_config(s, seed, True), "detector", device=device,
                      threads=threads, on_step=lambda *_: steps.update(advance=1))
    steps.update(description="CoSAM joint (detector + U-SAM + CCM)")
    train_cosam(data, work / "cosam", _cosam_config(s, seed, False), "joint", init=det.checkpoint, device=device,
                threads=threads, on_step=lambda *_: steps.update(advance=1))
    return work / "cosam"


TRAINERS: dict[str, Callable[..., Path]] = {"rcsegnext": train_rcsegnext, "staging": train_staging_cnn,
                                            "cosam": train_cosam_small}
TITLES = {"rcsegnext": "RCSegNeXt-B (MRI rectum + tumour)", "staging": "staging CNN (T2/T3)",
          "cosam": "CoSAM small (CT lymph nodes)"}


# ---------------------------------------------------------------------------------------------------------- bundles
def installed(name: str, task: str, home: str | Path | None = None) -> bool:
    """Whether bundle ``name`` of ``task`` is installed under ``home`` and verifies."""
    from procto.bundle import open_bundle

    try:
        open_bundle(name, task, home)
    except InputError:
        return False
    return True


def train_demo_bundles(home: str | Path | None = None, *, schedule: str | DemoSchedule = "default", seed: int = 0,
                       device: str = "auto", retrain: bool = False, threads: int | None = None, progress=None,
                       console=None, log: Path | None = None, work: str | Path | None = None,
                       seconds: dict[str, float] | None = None) -> dict[str, str]:
    """Train, export (``training_source="phantoms"``) and install the demo's bundles under ``home`` (default
    ``$PROCTO_HOME``); returns ``{task: installed name}`` (:func:`bundle_names`).  A bundle already installed (and
    verifying) is kept unless ``retrain``.

    ``schedule``: ``default`` (the demo), ``full`` (longer) or ``smoke`` (tests: valid bundles, nothing learned).
    ``threads``: torch threads for training (default :func:`default_threads`).  ``progress``: a rich Progress to
    show the work on; ``console``: where one line per trained model goes; ``log``: nnU-Net's messages (default:
    the temporary training folder, removed); ``work``: the training folder (kept; default a temporary one);
    ``seconds``: filled with each trained task's wall time (training, export and install).
    """
    from procto.bundle import export_bundle, install_bundle

    s = schedule_of(schedule)
    names = bundle_names(s)
    todo = [t for t in TASKS if retrain or not installed(names[t], t, home)]
    if not todo:
        return names
    threads = threads or default_threads()  # measured once, before this process adds to the load
    with contextlib.ExitStack() as stack:
        folder = Path(work) if work is not None else Path(stack.enter_context(
            tempfile.TemporaryDirectory(prefix="procto-demo-")))
        for task in todo:
            start = time.perf_counter()
            if console is not None:
                console.print(f"training {TITLES[task]} on phantoms ({s.name} schedule)")
            sub = folder / task
            shutil.rmtree(sub, ignore_errors=True)
            sub.mkdir(parents=True)
            kwargs = {"log": log} if task == "rcsegnext" else {}
            model = TRAINERS[task](sub, s, seed=seed, device=device, threads=threads, progress=progress, **kwargs)
            file = export_bundle(model, sub / f"{names[task]}.procto", task=task, name=names[task],
                                 training_source="phantoms")
            install_bundle(file, names[task], home, task=task, force=True)
            if seconds is not None:
                seconds[task] = time.perf_counter() - start
    return names


__all__ = ["DemoSchedule", "SCHEDULES", "MRI_GRID", "TASKS", "bundle_names", "default_threads", "installed",
           "schedule_of", "staging_config", "train_demo_bundles", "train_rcsegnext", "train_staging_cnn",
           "train_cosam_small"]
