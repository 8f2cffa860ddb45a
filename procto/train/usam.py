"""Training U-SAM and the SAM baseline on CARE-layout slices with the authors' recipe.

Recipe (kanydao/U-SAM ``u-sam.py``; ``../shared/spec/usam.md``):

* **AdamW with three learning-rate groups** (the code's grouping, which the paper's text words differently):
  ``lr`` = 1e-3 for everything that is neither the ViT image encoder nor the CNN down path — the mask decoder
  (two-way transformer, mask tokens, hypernetwork MLPs, UP blocks, heads) and the prompt encoder; ``lr_vit`` =
  1e-4 for the ViT image encoder (``image_encoder.*``); ``lr_backbone`` = 1e-4 for the CNN down path
  (``down_path.*``, U-SAM's "downsampling adapter"; empty for the SAM baseline).  Frozen parameters (LoRA variants'
  encoder, the unused patch embedding) are left out.  Weight decay 1e-4.
* **poly decay** per iteration, ``lr · (1 − it / max_it)^0.9`` (``max_it`` = epochs × iterations per epoch), with
  the authors' optional warm-up (half an epoch, linear).
* **gradient clipping** at max-norm 0.1 (the authors' ``--clip_max_norm`` default).
* **loss** 0.4 · cross-entropy + 0.6 · softmax Dice loss (V-Net form 1 − (2Σpt + ε)/(Σp² + Σt² + ε) per class over
  the batch, averaged over all classes including background, ε = 1e-5) — MONAI's ``DiceCELoss`` with those options.
* **augmentation**: random 90° rotation + flip (p = 0.5), otherwise random rotation −20 … 20° (p = 0.25).
* **batch 24, 100 epochs**, 224 × 224 input; slices without foreground are skipped, as in the authors' loader.
* **prompts** sampled afresh for every batch from the (augmented) reference per the prompt mode: ``none``,
  ``points`` (``points_per_class`` random positive points per class), ``boxes`` (one box around the rectum with
  0–4 px random margins), ``both`` — the authors' prompt modes 0, 2, 1, 3 — and procto's ``mixed``: every batch
  draws one of none / points / boxes and 1, 3 or 5 points per class, so that one model serves every setting of
  Table 4 (the authors train one model per setting).  Points are positive clicks (SAM label 1) as in the authors'
  code; ``point_labels="class"`` (procto's option) gives normal-rectum points SAM's label 0 and tumour points label 1,
  so the model can tell which class a click is on (the decoder's prompt tokens carry no order).

The loop is procto's training engine (:mod:`procto.train.engine`); this module is U-SAM's task for it.  Outputs in
``out_dir``: ``last.pt`` (model, optimiser, epoch, iteration — for ``resume``; every epoch's randomness depends on
(seed, epoch) only, so a resumed run continues as the uninterrupted one would), ``model.pt`` (weights + model
description, what ``procto predict usam`` loads through :func:`procto.infer.usam.load_model`), ``best.pt`` when a
validation split is given, ``log.csv`` (one row per epoch) and ``config.json``; checkpoints in procto's one format
(:mod:`procto.nets.checkpoint`).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn

from procto.errors import InputError
from procto.train.engine import Engine, EpochStats, LoopConfig, StepOutput, TrainTask, epoch_seed
from procto.train.schedules import poly_factor

TASK = "usam"
VARIANTS = ("usam_b", "usam_b_lora", "sam_b", "sam_b_lora", "usam_l", "usam_h", "sam_l", "sam_h")
#: ``prompt="mixed"``: each batch draws its prompt mode and its points per class from these.
MIXED_MODES = ("none", "points", "boxes")
MIXED_POINTS = (1, 3, 5)
LOG_FIELDS = ("epoch", "iteration", "loss", "loss_ce", "loss_dice", "lr", "lr_vit", "lr_backbone", "seconds",
              "val_mean_dice")


@dataclass
class USamTrainConfig:
    """Training options; defaults are the authors' (batch 24, 100 epochs, 1e-3 / 1e-4 / 1e-4, wd 1e-4, clip 0.1)."""

    variant: str = "usam_b"
    model_kwargs: dict = field(default_factory=dict)
    epochs: int = 100
    batch_size: int = 24
    lr: float = 1e-3  # decoder, prompt encoder and other new parts
    lr_vit: float = 1e-4  # ViT image encoder
    lr_backbone: float = 1e-4  # CNN down path
    weight_decay: float = 1e-4
    clip_max_norm: float = 0.1
    poly_power: float = 0.9
    warmup: bool = False
    ce_weight: float = 0.4
    dice_weight: float = 0.6
    prompt: str = "none"  # none | points | boxes | both | mixed
    points_per_class: int = 3
    box_mode: str = "union"
    point_labels: str = "positive"  # positive (authors: every point label 1) | class (label tells the class)
    augment: bool = True
    img_size: int | None = None  # model input; default the model's (224)
    seed: int = 0
    num_workers: int = 0
    device: str | None = None  # default: cuda if available
    sam_checkpoint: str | None = None
    train_split: str | None = "train"
    val_split: str | None = None
    val_every: int = 1
    max_steps: int | None = None  # stop early after this many iterations (smoke tests)
    threads: int | None = None  # torch.set_num_threads
    amp: bool = False  # mixed precision (CUDA only)

    def check(self) -> "USamTrainConfig":
        from procto.nets import list_models
        from procto.preprocess.prompts import BOX_MODES, POINT_LABEL_MODES, check_prompt_mode

        if self.variant not in list_models("*sam*"):
            raise InputError(f"unknown U-SAM/SAM variant {self.variant!r}; choose one of "
                             f"{', '.join(list_models('*sam_*'))}")
        if self.point_labels not in POINT_LABEL_MODES:
            raise InputError(f"point labels must be one of {', '.join(POINT_LABEL_MODES)}, got {self.point_labels!r}")
        self.prompt = str(self.prompt).lower()
        if self.prompt != "mixed":
            check_prompt_mode(self.prompt)
        if self.box_mode not in BOX_MODES:
            raise InputError(f"box mode must be one of {', '.join(BOX_MODES)}, got {self.box_mode!r}")
        for name in ("epochs", "batch_size", "points_per_class", "val_every"):
            if int(getattr(self, name)) < 1:
                raise InputError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("lr", "lr_vit", "lr_backbone"):
            if not getattr(self, name) >= 0:
                raise InputError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.max_steps is not None and self.max_steps < 1:
            raise InputError(f"max_steps must be >= 1, got {self.max_steps}")
        return self

    def loop_config(self) -> LoopConfig:
        return LoopConfig(epochs=self.epochs, seed=self.seed, device=self.device, clip_max_norm=self.clip_max_norm,
                          amp=self.amp, max_steps=self.max_steps, threads=self.threads)


# ------------------------------------------------------------------------------------------------------ recipe
def usam_param_groups(model: nn.Module, lr: float = 1e-3, lr_vit: float = 1e-4, lr_backbone: float = 1e-4,
                      weight_decay: float = 1e-4) -> list[dict]:
    """The authors' three AdamW groups (trainable parameters only): ``decoder`` (all but ``image_encoder`` and
    ``down_path``: mask decoder, prompt encoder) at ``lr``; ``vit`` (``image_encoder``) at ``lr_vit``; ``backbone``
    (``down_path``, the CNN adapter) at ``lr_backbone``.  Each group keeps its base rate in ``initial_lr``."""
    groups = {"decoder": [], "vit": [], "backbone": []}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        if name.startswith("image_encoder."):
            groups["vit"].append(p)
        elif name.startswith("down_path."):
            groups["backbone"].append(p)
        else:
            groups["decoder"].append(p)
    rates = {"decoder": lr, "vit": lr_vit, "backbone": lr_backbone}
    return [{"name": k, "params": v, "lr": rates[k], "initial_lr": rates[k], "weight_decay": weight_decay}
            for k, v in groups.items()]


class USamLoss(nn.Module):
    """``ce_weight · CE + dice_weight · softmax Dice loss`` (the authors' 0.4 / 0.6; Dice in V-Net form per class
    over the batch, averaged over all ``num_classes`` classes including background): MONAI's ``DiceCELoss`` (softmax,
    one-hot target, squared prediction, batch Dice, background included, smoothing 1e-5), which returns the sum
    only — the parts come from its own Dice and CE terms, combined with its weights exactly as its ``forward`` does."""

    def __init__(self, num_classes: int = 3, ce_weight: float = 0.4, dice_weight: float = 0.6, smooth: float = 1e-5):
        super().__init__()
        from monai.losses import DiceCELoss

        self.num_classes = int(num_classes)
        self.loss = DiceCELoss(include_background=True, to_onehot_y=True, softmax=True, squared_pred=True,
                               batch=True, smooth_nr=float(smooth), smooth_dr=float(smooth),
                               lambda_ce=float(ce_weight), lambda_dice=float(dice_weight))

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> dict[str, torch.Tensor]:
        logits, target = logits.float(), target.long()[:, None]
        dl = self.loss.dice(logits, target)
        ce = self.loss.ce(logits, target)
        return {"loss": self.loss.lambda_dice * dl + self.loss.lambda_ce * ce, "loss_ce": ce, "loss_dice": dl}


# ------------------------------------------------------------------------------------------------------ the task
@dataclass
class USamTrainResult:
    out_dir: Path
    model_path: Path
    epochs: int
    iterations: int
    seconds: float
    final_loss: float
    log: list[dict]
    best_val_dice: float | None = None


def _collate(items: list[dict]) -> dict:
    return {"image": torch.stack([it["image"] for it in items]), "label": torch.stack([it["label"] for it in items]),
            "case": [it["case"] for it in items], "z": [it["z"] for it in items]}


def _data_info(dataset) -> dict:
    """How the training slices were made (HU window, orientation), so that volume inference prepares slices alike:
    from ``{split}_cases.json`` (procto's one CARE writer: the converter and ``procto phantom --layout care``), else
    procto's CARE default."""
    from procto.preprocess.care import CT_WINDOW

    geo = next(iter(dataset.geometry.values()), {}) if getattr(dataset, "geometry", None) else {}
    return {"window": list(geo.get("window") or CT_WINDOW), "transpose": bool(geo.get("transpose", True)),
            "size": int(geo.get("size", 224)), "slices": len(dataset), "cases": len(dataset.cases)}


def _validation_setting(config: USamTrainConfig) -> str:
    k = config.points_per_class
    return {"none": "none", "boxes": "boxes", "points": f"points{k}", "both": f"both{k}", "mixed": f"points{k}"}[
        config.prompt]


class USamTask(TrainTask):
    """U-SAM / SAM on CARE slices for the :class:`~procto.train.engine.Engine` (the authors' recipe)."""

    name, title = TASK, "U-SAM"
    log_fields, log_float_format = list(LOG_FIELDS), ".6g"

    def __init__(self, data: str | Path, config: USamTrainConfig) -> None:
        from procto.preprocess.care import find_care_split

        find_care_split(data, config.train_split)  # a missing data folder is reported before anything is built
        self.data, self.config = data, config
        kwargs = dict(config.model_kwargs)
        if config.img_size is not None:
            kwargs["img_size"] = int(config.img_size)
        config.model_kwargs = kwargs
        self.model_name, self.model_kwargs = config.variant, kwargs
        self.best: float | None = None
        self.rng = np.random.default_rng(config.seed)

    def config_dict(self) -> dict:
        return asdict(self.config)

    def prepare(self, model, device, resume: bool, log: Callable[[str], None]) -> None:
        from procto.preprocess.care import CareDataset

        cfg = self.config
        if cfg.sam_checkpoint and not resume:
            from procto.nets.sam_checkpoint import load_sam_checkpoint

            try:
                report = load_sam_checkpoint(model, cfg.sam_checkpoint)
            except (ValueError, KeyError) as exc:
                raise InputError(f"cannot load into {cfg.variant}: {exc}", cfg.sam_checkpoint) from None
            log(report.summary())
        self.device, self.img_size, self.num_classes = device, int(model.img_size), int(model.num_classes)
        self.train_set = CareDataset(self.data, cfg.train_split, img_size=model.img_size, augment=cfg.augment,
                                     skip_empty=True, seed=cfg.seed)
        self.val_set = (CareDataset(self.data, cfg.val_split, img_size=model.img_size, skip_empty=False)
                        if cfg.val_split else None)
        n_batches = len(self.train_set) // cfg.batch_size
        self.n_batches = max(1, n_batches)
        self.loader = torch.utils.data.DataLoader(
            self.train_set, batch_size=cfg.batch_size, shuffle=True, drop_last=n_batches > 0,
            num_workers=cfg.num_workers, collate_fn=_collate, generator=torch.Generator().manual_seed(cfg.seed),
            persistent_workers=cfg.num_workers > 0)
        self.warmup_iterations = max(1, self.n_batches // 2) if cfg.warmup else 0
        self.criterion = USamLoss(self.num_classes, cfg.ce_weight, cfg.dice_weight)
        self.data_info = _data_info(self.train_set)

    def record_extra(self) -> dict:
        return {"img_size": self.img_size, "num_classes": self.num_classes, "data": self.data_info}

    def param_groups(self, model) -> list[dict]:
        c = self.config
        return usam_param_groups(model, c.lr, c.lr_vit, c.lr_backbone, c.weight_decay)

    def optimizer(self, groups: list[dict]):
        return torch.optim.AdamW(groups, lr=self.config.lr, weight_decay=self.config.weight_decay)

    def steps_per_epoch(self) -> int:
        return self.n_batches

    def lr_factor(self, step: int, total: int) -> float:
        return poly_factor(step, total, self.config.poly_power, self.warmup_iterations)

    def check_resume(self, record: dict, path: Path) -> None:
        if record.get("model") != self.model_name or record.get("model_kwargs") != self.model_kwargs:
            raise InputError(f"last.pt is a {record.get('model')} {record.get('model_kwargs')}, not "
                             f"{self.model_name} {self.model_kwargs}", path)

    def start_epoch(self, model, epoch: int) -> None:
        # every epoch's randomness (order, augmentation, prompts) depends only on (seed, epoch)
        self.loader.generator.manual_seed(epoch_seed(self.config.seed, epoch))
        self.rng = np.random.default_rng([self.config.seed, epoch])

    def batches(self, epoch: int):
        return self.loader

    def step(self, model, batch, epoch: int) -> StepOutput:
        from procto.preprocess.prompts import batch_prompts

        cfg = self.config
        images = batch["image"].to(self.device, non_blocking=True)
        labels = batch["label"].to(self.device, non_blocking=True)
        mode, k = cfg.prompt, cfg.points_per_class
        if mode == "mixed":  # procto's extension: one model for every Table 4 setting
            mode = MIXED_MODES[int(self.rng.integers(len(MIXED_MODES)))]
            k = MIXED_POINTS[int(self.rng.integers(len(MIXED_POINTS)))]
        prompts = batch_prompts(batch["label"], mode, k, seed=self.rng, training=True, box_mode=cfg.box_mode,
                                point_label_mode=cfg.point_labels)
        prompts = {key: torch.as_tensor(v, device=self.device) for key, v in prompts.items()}
        losses = self.criterion(model(images, **prompts), labels)
        return StepOutput(losses["loss"], {key: float(v.detach()) for key, v in losses.items()})

    def log_row(self, stats: EpochStats) -> dict:
        means = {k: stats.means.get(k, 0.0) for k in ("loss", "loss_ce", "loss_dice")}
        return {"epoch": stats.epoch, "iteration": stats.iteration, **means, "lr": stats.lrs.get("decoder", math.nan),
                "lr_vit": stats.lrs.get("vit", math.nan), "lr_backbone": stats.lrs.get("backbone", math.nan),
                "seconds": stats.elapsed, "val_mean_dice": ""}

    def end_epoch(self, model, stats: EpochStats, row: dict, engine: Engine) -> None:
        cfg = self.config
        if self.val_set is None or not ((stats.epoch + 1) % cfg.val_every == 0 or stats.last):
            return
        from procto.infer.usam_eval import evaluate_usam

        setting = _validation_setting(cfg)
        ev = evaluate_usam(model, self.val_set, [setting], batch_size=cfg.batch_size, seed=cfg.seed,
                           device=self.device, box_mode=cfg.box_mode, point_label_mode=cfg.point_labels)
        row["val_mean_dice"] = ev.mean_dice(setting)
        if self.best is None or row["val_mean_dice"] > self.best:
            self.best = row["val_mean_dice"]
            engine.save("best.pt", extra={"best_epoch": stats.epoch, "val_mean_dice": self.best})

    def epoch_message(self, row: dict) -> str:
        val = f", val mean Dice {row['val_mean_dice']:.4f}" if row["val_mean_dice"] != "" else ""
        return (f"epoch {row['epoch'] + 1}/{self.config.epochs}: loss {row['loss']:.4f} (ce {row['loss_ce']:.4f}, "
                f"dice {row['loss_dice']:.4f})" + val)

    def state_dict(self) -> dict:
        return {"best_val_dice": self.best}

    def load_state_dict(self, state: dict) -> None:
        self.best = state.get("best_val_dice")


def train_usam(data: str | Path, out_dir: str | Path, config: USamTrainConfig | None = None, *,
               resume: bool = False, progress: Callable[[int, int, dict], None] | None = None,
               log: Callable[[str], None] | None = None) -> USamTrainResult:
    """Train a U-SAM/SAM variant on the CARE-layout folder ``data`` (``train_npz/`` …) into ``out_dir``.

    Args:
        config: :class:`USamTrainConfig` (defaults: the authors' recipe).
        resume: continue from ``out_dir/last.pt`` (model, optimiser, schedule position).
        progress: ``progress(iteration, total_iterations, info)`` after every iteration.
        log: receives one-line messages (checkpoint report, epoch summaries).
    """
    config = (config or USamTrainConfig()).check()
    task = USamTask(data, config)
    result = Engine(task, config.loop_config(), out_dir, on_step=progress, log=log).run(resume)
    model_path = result.checkpoint or Path(out_dir) / "last.pt"  # an unfinished run: its last epoch checkpoint
    return USamTrainResult(Path(out_dir), model_path, result.epochs, result.iterations,
                           result.seconds, result.last_loss, result.history, task.best)


__all__ = [
    "USamTrainConfig",
    "USamLoss",
    "USamTask",
    "usam_param_groups",
    "poly_factor",
    "train_usam",
    "USamTrainResult",
]
