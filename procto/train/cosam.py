"""CoSAM training on procto's engine (paper 004 §5.1, facts §5): the detector and the segmenter are trained
separately (100 epochs each), then the whole model jointly (100 epochs) with every loss summed (RPN + RoI + U-SAM +
CCM, weights 1); one run goes through the three phases in that order (``stage="all"``), or one phase alone.

* **detector** phase: RPN and RoI losses of the sequence detector on the window's centre-slice boxes;
* **segmenter** phase: U-SAM alone, prompted with each reference node's box plus a random 0–20 px margin (the authors'
  stand-alone U-SAM training), target the node's 8-connected component on the centre slice, U-SAM's 0.4·CE + 0.6·Dice;
* **joint** phase: :class:`procto.nets.cosam.CoSAM`'s training losses (U-SAM prompted with the detector's sampled
  proposals, CCM on node vs false positive).

Optimiser: AdamW with separate groups ("distinct learning rates for detector and segmenter", §5.1; values in the
unavailable supplement): U-SAM's three groups (1e-3 decoder, 1e-4 ViT, 1e-4 CNN), the detector at 1e-4, the CCM at
1e-3; weight decay 1e-4, poly 0.9 decay over the run, gradient clipping 0.1 (U-SAM's recipe).  Data: a Meply-layout
folder read by :class:`procto.preprocess.meply.MeplyDataset` (HU window [−100, 100] → [0, 1], random crop / flip /
contrast in training).  Resume, seeding, logs and checkpoints are the engine's (:mod:`procto.train.engine`).

>>> result = train_cosam("data/meply", "runs/cosam", CoSAMTrainConfig(epochs_detector=100, epochs_segmenter=100,
...                                                                    epochs_joint=100))   # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from procto.errors import InputError
from procto.train.engine import Engine, LoopConfig, StepOutput, TrainTask
from procto.train.schedules import poly_factor

TASK = "cosam"
STAGES = ("detector", "segmenter", "joint", "all")
#: The authors' random margin of the stand-alone U-SAM box prompt (pixels at 224).
PROMPT_MARGIN = (0, 20)


@dataclass
class CoSAMTrainConfig:
    """CoSAM's training settings (paper defaults; the small ones are for CPU tests)."""

    window: int = 9
    img_size: int = 224
    small: bool = False  # ResNet-18 detector and a 1-block ViT (CPU tests)
    model_kwargs: dict = field(default_factory=dict)
    epochs_detector: int = 100
    epochs_segmenter: int = 100
    epochs_joint: int = 100
    batch_size: int = 1  # windows per step (the authors: one)
    iters_per_epoch: int | None = None  # None: one pass over the training windows
    lr_detector: float = 1e-4
    lr: float = 1e-3  # U-SAM decoder / prompt encoder
    lr_vit: float = 1e-4
    lr_backbone: float = 1e-4
    lr_ccm: float = 1e-3
    weight_decay: float = 1e-4
    poly_power: float = 0.9
    clip_max_norm: float = 0.1
    protocol: str = "paper"  # MeplyDataset protocol: "paper" (node-centred 112-px crops) or "whole"
    crop: int = 112
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("epochs_detector", "epochs_segmenter", "epochs_joint"):
            if int(getattr(self, name)) < 0:
                raise InputError(f"{name} must be >= 0, got {getattr(self, name)}")
        if int(self.batch_size) < 1:
            raise InputError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.window % 2 == 0 or not 5 <= self.window <= 15:
            raise InputError(f"window must be odd, 5…15, got {self.window}")


def phase_epochs(config: CoSAMTrainConfig, stage: str) -> list[str]:
    """The phase of every epoch of a run of ``stage`` (``all``: detector, segmenter, joint epochs in order)."""
    if stage not in STAGES:
        raise InputError(f"unknown stage {stage!r}; known: {', '.join(STAGES)}")
    counts = {"detector": config.epochs_detector, "segmenter": config.epochs_segmenter, "joint": config.epochs_joint}
    phases = [stage] if stage != "all" else ["detector", "segmenter", "joint"]
    return [p for p in phases for _ in range(int(counts[p]))]


def _targets(batch: list[dict], device) -> list[dict]:
    out = []
    for item in batch:
        boxes = torch.as_tensor(np.asarray(item["boxes"], dtype=np.float32).reshape(-1, 4), device=device)
        out.append({"boxes": boxes, "labels": torch.ones(len(boxes), dtype=torch.int64, device=device),
                    "mask": torch.as_tensor(np.asarray(item["label"]) > 0, device=device)})
    return out


class CoSAMTask(TrainTask):
    """CoSAM on a Meply-layout folder for the :class:`~procto.train.engine.Engine` (see the module docstring)."""

    name, title = TASK, "CoSAM"
    log_float_format = ".6g"

    def __init__(self, data: str | Path, config: CoSAMTrainConfig, stage: str = "all",
                 init: str | Path | None = None) -> None:
        self.data, self.config, self.stage = Path(data), config, stage
        self.init = Path(init) if init is not None else None
        self.phases = phase_epochs(config, stage)
        if not self.phases:
            raise InputError(f"stage {stage!r} has 0 epochs")
        self.model_name = "cosam"
        self.model_kwargs = {"window": int(config.window), "img_size": int(config.img_size),
                             "small": bool(config.small), **config.model_kwargs}
        self.phase = self.phases[0]

    def config_dict(self) -> dict:
        return {**asdict(self.config), "stage": self.stage, "init": str(self.init) if self.init else None}

    def _load_init(self, model, log: Callable[[str], None]) -> None:
        """Start from the weights of an earlier stage's run (a CoSAM ``model.pt`` or ``last.pt`` of equal settings)."""
        from procto.nets.checkpoint import read_checkpoint

        record = read_checkpoint(self.init, self.name, title=self.title)
        if record.get("model_kwargs") != self.model_kwargs:
            raise InputError(f"is a CoSAM {record.get('model_kwargs')}, not {self.model_kwargs}", self.init)
        model.load_state_dict(record["state_dict"])
        log(f"initialised from {self.init} (stage {record.get('config', {}).get('stage', '?')})")

    def prepare(self, model, device, resume: bool, log: Callable[[str], None]) -> None:
        from procto.preprocess.meply import MeplyDataset

        c = self.config
        self.device = device
        if self.init is not None and not resume:
            self._load_init(model, log)
        self.train_set = MeplyDataset(self.data, "train", window=c.window, crop=c.crop, size=c.img_size,
                                      protocol=c.protocol, train=True, seed=c.seed)
        if len(self.train_set) == 0:
            raise InputError("no training windows (Meply layout: train/*.npz)", self.data)
        per_epoch = c.iters_per_epoch or -(-len(self.train_set) // c.batch_size)
        self.n_steps = max(1, int(per_epoch))

    def param_groups(self, model) -> list[dict]:
        from procto.train.usam import usam_param_groups

        c = self.config
        groups = [{"name": f"segmenter_{g['name']}", **{k: v for k, v in g.items() if k != "name"}}
                  for g in usam_param_groups(model.segmenter, c.lr, c.lr_vit, c.lr_backbone, c.weight_decay)]
        for name, module, lr in (("detector", model.detector, c.lr_detector), ("ccm", model.ccm, c.lr_ccm)):
            params = [p for p in module.parameters() if p.requires_grad]
            groups.append({"name": name, "params": params, "lr": lr, "initial_lr": lr,
                           "weight_decay": c.weight_decay})
        return [g for g in groups if g["params"]]

    def optimizer(self, groups: list[dict]):
        return torch.optim.AdamW(groups, lr=self.config.lr, weight_decay=self.config.weight_decay)

    def steps_per_epoch(self) -> int:
        return self.n_steps

    def lr_factor(self, step: int, total: int) -> float:
        return poly_factor(step, total, self.config.poly_power)

    def check_resume(self, record: dict, path: Path) -> None:
        if record.get("model_kwargs") != self.model_kwargs:
            raise InputError(f"last.pt is a CoSAM {record.get('model_kwargs')}, not {self.model_kwargs}", path)

    def start_epoch(self, model, epoch: int) -> None:
        self.phase = self.phases[min(epoch, len(self.phases) - 1)]

    def batches(self, epoch: int):
        rng = np.random.default_rng([self.config.seed, epoch])
        n = len(self.train_set)
        for _ in range(self.n_steps):
            idx = rng.integers(n, size=self.config.batch_size)
            if hasattr(self.train_set, "reseed"):  # augmentation drawn from (seed, epoch) only: exact resume
                self.train_set.reseed(int(rng.integers(2 ** 31)))
            yield [self.train_set[int(i)] for i in idx]

    def step(self, model, batch, epoch: int) -> StepOutput:
        windows = torch.as_tensor(np.stack([np.asarray(b["image"], np.float32) for b in batch]), device=self.device)
        targets = _targets(batch, self.device)
        if self.phase == "detector":
            losses, _ = model.detector(windows, targets)
        elif self.phase == "segmenter":
            losses = {"loss_sam": self._segmenter_loss(model, windows, targets, epoch)}
        else:
            losses = model(windows, targets)
        total = sum(losses.values())
        metrics = {"loss": float(total.detach()), **{k: float(v.detach()) for k, v in losses.items()}}
        return StepOutput(total, metrics, weight=len(batch))

    def _segmenter_loss(self, model, windows: torch.Tensor, targets: list[dict], epoch: int) -> torch.Tensor:
        """U-SAM alone, one prompt per reference node box (+ random 0–20 px margin)."""
        from procto.nets.cosam import component_targets

        rng = np.random.default_rng([self.config.seed, epoch, int(windows.sum().item() * 1e3) % 2 ** 31])
        centres, sx, sy = model._centre_images(windows)
        terms = []
        for b, target in enumerate(targets):
            boxes = target["boxes"]
            if not len(boxes):
                continue
            margin = torch.as_tensor(rng.uniform(*PROMPT_MARGIN, size=(len(boxes), 4)) * [-1, -1, 1, 1],
                                     dtype=boxes.dtype, device=boxes.device)
            h, w = windows.shape[-2:]
            prompts = (boxes + margin).clamp(min=0)
            prompts[:, 2::2] = prompts[:, 2::2].clamp(max=w)
            prompts[:, 1::2] = prompts[:, 1::2].clamp(max=h)
            out = model.segment_boxes(centres[b], prompts, sx, sy)
            seg_t = component_targets(target["mask"].cpu().numpy(), boxes.cpu().numpy(), np.ones(len(boxes)))
            seg_t = torch.as_tensor(seg_t, device=windows.device).float()[:, None]
            size = out["logits"].shape[-1]
            if seg_t.shape[-1] != size:
                seg_t = torch.nn.functional.interpolate(seg_t, size=(size, size), mode="nearest")
            terms.append(model.seg_loss(out["logits"].float(), seg_t))
        return torch.stack(terms).mean() if terms else windows.sum() * 0.0

    def log_row(self, stats) -> dict:
        return {"epoch": stats.epoch + 1, "phase": self.phases[min(stats.epoch, len(self.phases) - 1)],
                "iteration": stats.iteration, **stats.means, "seconds": stats.seconds}


def train_cosam(data: str | Path, out: str | Path, config: CoSAMTrainConfig | None = None, stage: str = "all", *,
                init: str | Path | None = None, resume: bool = False, device: str | None = "auto", threads: int | None = None,
                on_epoch: Callable[[dict], None] | None = None, on_step: Callable[[int, int, dict], None] | None = None,
                max_steps: int | None = None, log: Callable[[str], None] | None = None) -> Any:
    """Train CoSAM on a Meply-layout folder ``data`` into ``out`` (``last.pt`` every epoch, ``model.pt`` at the end,
    ``log.csv``); ``init``: start from an earlier stage's checkpoint (e.g. ``stage="detector"``, then
    ``stage="segmenter"`` with ``init`` its ``model.pt``, then ``"joint"``: the paper's separate-then-joint schedule
    in three runs); ``resume`` continues from ``out/last.pt``; ``on_epoch(row)`` gets each epoch's log row.  Returns
    the engine's :class:`~procto.train.engine.LoopResult`."""
    config = config or CoSAMTrainConfig()
    task = CoSAMTask(data, config, stage, init)
    loop = LoopConfig(epochs=len(task.phases), seed=config.seed, device=device, clip_max_norm=config.clip_max_norm,
                      threads=threads, max_steps=max_steps)
    return Engine(task, loop, out, on_step=on_step, on_epoch=on_epoch, log=log).run(resume=resume)


__all__ = ["TASK", "STAGES", "CoSAMTrainConfig", "CoSAMTask", "phase_epochs", "train_cosam"]
