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
  the batch, averaged over all classes including background, ε = 1e-5).
* **augmentation**: random 90° rotation + flip (p = 0.5), otherwise random rotation −20 … 20° (p = 0.25).
* **batch 24, 100 epochs**, 224 × 224 input; slices without foreground are skipped, as in the authors' loader.
* **prompts** sampled afresh for every batch from the (augmented) reference per the prompt mode: ``none``,
  ``points`` (``points_per_class`` random positive points per class), ``boxes`` (one box around the rectum with
  0–4 px random margins), ``both`` — the authors' prompt modes 0, 2, 1, 3 — and procto's ``mixed``: every batch
  draws one of none / points / boxes and 1, 3 or 5 points per class, so that one model serves every setting of
  Table 4 (the authors train one model per setting).  Points are positive clicks (SAM label 1) as in the authors'
  code; ``point_labels="class"`` (procto's option) gives normal-rectum points SAM's label 0 and tumour points label 1,
  so the model can tell which class a click is on (the decoder's prompt tokens carry no order).

Outputs in ``out_dir``: ``last.pt`` (model, optimiser, epoch, iteration — for ``resume``; every epoch's randomness
depends on (seed, epoch) only, so a resumed run continues as the uninterrupted one would), ``model.pt`` (weights +
model description, what ``procto predict usam`` loads), ``best.pt`` when a validation split is given, ``log.csv``
(one row per epoch) and ``config.json``.
"""

from __future__ import annotations

import csv
import io
import json
import math
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from procto.errors import InputError

CHECKPOINT_FORMAT = "procto.usam"
CHECKPOINT_VERSION = 1
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

    def check(self) -> "USamTrainConfig":
        from procto.preprocess.prompts import BOX_MODES, POINT_LABEL_MODES, check_prompt_mode

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


def poly_factor(iteration: int, max_iterations: int, power: float = 0.9, warmup_iterations: int = 0) -> float:
    """Learning-rate factor at ``iteration`` (0-based): ``(1 − it/max_it)^power``; with warm-up, the authors'
    ``min((1 − (it − w)/max_it)^power, it / w)``."""
    max_iterations = max(1, int(max_iterations))
    if warmup_iterations > 0:
        base = max(0.0, 1.0 - (iteration - warmup_iterations) / max_iterations)
        return min(base ** power, iteration / warmup_iterations) if base > 0 else 0.0
    return max(0.0, 1.0 - iteration / max_iterations) ** power


class USamLoss(nn.Module):
    """``ce_weight · CE + dice_weight · softmax Dice loss`` (the authors' 0.4 / 0.6; Dice in V-Net form per class
    over the batch, averaged over all ``num_classes`` classes including background)."""

    def __init__(self, num_classes: int = 3, ce_weight: float = 0.4, dice_weight: float = 0.6, smooth: float = 1e-5):
        super().__init__()
        self.num_classes = int(num_classes)
        self.ce_weight = float(ce_weight)
        self.dice_weight = float(dice_weight)
        self.smooth = float(smooth)

    def dice_loss(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        prob = torch.softmax(logits.float(), dim=1)
        onehot = F.one_hot(target.long(), self.num_classes).permute(0, 3, 1, 2).float()
        dims = (0, 2, 3)
        inter = (prob * onehot).sum(dims)
        den = (prob * prob).sum(dims) + (onehot * onehot).sum(dims)
        return (1.0 - (2 * inter + self.smooth) / (den + self.smooth)).mean()

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> dict[str, torch.Tensor]:
        ce = F.cross_entropy(logits.float(), target.long())
        dl = self.dice_loss(logits, target)
        return {"loss": self.ce_weight * ce + self.dice_weight * dl, "loss_ce": ce, "loss_dice": dl}


# ------------------------------------------------------------------------------------------------------ checkpoints
def build_model(variant: str, model_kwargs: dict | None = None) -> nn.Module:
    """``procto.nets.create_model(variant, **model_kwargs)`` with a one-line error for unknown variants."""
    from procto.nets import create_model, list_models

    if variant not in list_models("*sam*"):
        raise InputError(f"unknown U-SAM/SAM variant {variant!r}; choose one of {', '.join(list_models('*sam_*'))}")
    try:
        return create_model(variant, **(model_kwargs or {}))
    except (TypeError, ValueError) as exc:
        raise InputError(f"cannot build {variant} with {model_kwargs}: {exc}") from None


def _torch_save_atomic(obj, path: Path) -> None:
    from procto.io import atomic_output

    with atomic_output(path, suffix=".pt") as tmp:
        torch.save(obj, tmp)


def model_record(model: nn.Module, config: USamTrainConfig, data_info: dict | None = None) -> dict:
    """What ``procto predict usam`` needs besides the weights."""
    return {"format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION, "variant": config.variant,
            "model_kwargs": dict(config.model_kwargs), "img_size": int(model.img_size),
            "num_classes": int(model.num_classes), "prompt": config.prompt,
            "points_per_class": int(config.points_per_class), "box_mode": config.box_mode,
            "point_labels": config.point_labels,
            "data": dict(data_info or {})}


def save_model(path: str | Path, model: nn.Module, config: USamTrainConfig, data_info: dict | None = None,
               extra: dict | None = None) -> Path:
    """Write the weights and their description (:func:`model_record`) atomically."""
    path = Path(path)
    rec = model_record(model, config, data_info)
    rec["state_dict"] = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    rec.update(extra or {})
    _torch_save_atomic(rec, path)
    return path


def load_model(path: str | Path, device="cpu") -> tuple[nn.Module, dict]:
    """Rebuild a model saved by :func:`save_model` (or a training ``last.pt``); returns ``(model in eval mode,
    record without the tensors)``."""
    path = Path(path)
    if not path.is_file():
        raise InputError("model checkpoint not found", path)
    try:
        rec = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # corrupt or not a torch file
        raise InputError(f"not a readable model checkpoint ({exc.__class__.__name__}: {exc})", path) from None
    if not isinstance(rec, dict) or rec.get("format") != CHECKPOINT_FORMAT:
        raise InputError("not a procto U-SAM checkpoint (train one with `procto train usam`)", path)
    model = build_model(rec["variant"], rec.get("model_kwargs"))
    try:
        model.load_state_dict(rec["state_dict"])
    except RuntimeError as exc:
        raise InputError(f"weights do not fit {rec['variant']}: {str(exc).splitlines()[0]}", path) from None
    model.to(device).eval()
    info = {k: v for k, v in rec.items() if k not in ("state_dict", "optimizer", "rng")}
    model.procto_prompt_info = prompt_info(info)
    return model, info


def prompt_info(record: dict) -> dict:
    """How a model was prompted in training (kept on loaded models as ``model.procto_prompt_info``)."""
    return {"prompt": record.get("prompt", "none"), "points_per_class": int(record.get("points_per_class", 3)),
            "box_mode": record.get("box_mode", "union"), "point_labels": record.get("point_labels", "positive")}


# ------------------------------------------------------------------------------------------------------ training
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
    from ``{split}_cases.json`` (procto's converter), from ``phantom.json`` (``procto phantom --layout care``, whose
    writer uses its own CT window), else procto's CARE default."""
    from procto.preprocess.care import CT_WINDOW

    geo = next(iter(dataset.geometry.values()), {}) if getattr(dataset, "geometry", None) else {}
    window = geo.get("window")
    if window is None:
        for parent in list(dataset.folder.parents)[:3]:
            meta = parent / "phantom.json"
            if meta.is_file():
                try:
                    if json.loads(meta.read_text()).get("modality") == "ct":
                        from procto.phantom.writers import CARE_CT_WINDOW

                        window = CARE_CT_WINDOW
                except (ValueError, ImportError):
                    pass
                break
    return {"window": list(window or CT_WINDOW), "transpose": bool(geo.get("transpose", True)),
            "size": int(geo.get("size", 224)), "slices": len(dataset), "cases": len(dataset.cases)}


def _write_log(path: Path, rows: list[dict]) -> None:
    from procto.io import write_text_atomic

    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(LOG_FIELDS), lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: (f"{r[k]:.6g}" if isinstance(r.get(k), float) else r.get(k, "")) for k in LOG_FIELDS})
    write_text_atomic(path, buf.getvalue())


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
    from procto.util import torch_threads

    config = (config or USamTrainConfig()).check()
    with torch_threads(config.threads):  # config.threads applies to this run only
        return _train_usam(data, out_dir, config, resume=resume, progress=progress, log=log)


def _train_usam(data: str | Path, out_dir: str | Path, config: USamTrainConfig, *, resume: bool,
                progress: Callable[[int, int, dict], None] | None,
                log: Callable[[str], None] | None) -> USamTrainResult:
    from procto.preprocess.care import CareDataset
    from procto.preprocess.prompts import batch_prompts
    from procto.train.usam_eval import evaluate_usam

    say = log or (lambda _msg: None)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    device = torch.device(config.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    random.seed(config.seed)
    np.random.seed(config.seed)
    torch.manual_seed(config.seed)

    model_kwargs = dict(config.model_kwargs)
    if config.img_size is not None:
        model_kwargs["img_size"] = int(config.img_size)
    config.model_kwargs = model_kwargs
    model = build_model(config.variant, model_kwargs)
    model.procto_prompt_info = prompt_info(asdict(config))
    if config.sam_checkpoint and not resume:
        from procto.nets.sam_checkpoint import load_sam_checkpoint

        try:
            report = load_sam_checkpoint(model, config.sam_checkpoint)
        except (ValueError, KeyError) as exc:
            raise InputError(f"cannot load into {config.variant}: {exc}", config.sam_checkpoint) from None
        say(report.summary())
    model.to(device)

    train_set = CareDataset(data, config.train_split, img_size=model.img_size, augment=config.augment,
                            skip_empty=True, seed=config.seed)
    val_set = None
    if config.val_split:
        val_set = CareDataset(data, config.val_split, img_size=model.img_size, skip_empty=False)
    n_batches = len(train_set) // config.batch_size
    drop_last = n_batches > 0
    n_batches = max(1, n_batches)
    loader = torch.utils.data.DataLoader(train_set, batch_size=config.batch_size, shuffle=True, drop_last=drop_last,
                                         num_workers=config.num_workers, collate_fn=_collate,
                                         generator=torch.Generator().manual_seed(config.seed),
                                         persistent_workers=config.num_workers > 0)
    max_iter = config.epochs * n_batches
    warmup_iter = max(1, n_batches // 2) if config.warmup else 0
    groups = usam_param_groups(model, config.lr, config.lr_vit, config.lr_backbone, config.weight_decay)
    optimizer = torch.optim.AdamW([g for g in groups if g["params"]], lr=config.lr, weight_decay=config.weight_decay)
    trainable = [p for g in groups for p in g["params"]]
    criterion = USamLoss(model.num_classes, config.ce_weight, config.dice_weight)

    start_epoch, iteration, rows, best = 0, 0, [], None
    last_path, model_path = out_dir / "last.pt", out_dir / "model.pt"
    if resume:
        if not last_path.is_file():
            raise InputError("nothing to resume: no last.pt", out_dir)
        state = torch.load(last_path, map_location="cpu", weights_only=False)
        if state.get("variant") != config.variant or state.get("model_kwargs") != model_kwargs:
            raise InputError(f"last.pt is a {state.get('variant')} {state.get('model_kwargs')}, not "
                             f"{config.variant} {model_kwargs}", last_path)
        model.load_state_dict(state["state_dict"])
        optimizer.load_state_dict(state["optimizer"])
        start_epoch, iteration = int(state["epoch"]) + 1, int(state["iteration"])
        rows = list(state.get("log", []))
        best = state.get("best_val_dice")
        say(f"resumed from {last_path} at epoch {start_epoch}, iteration {iteration}")

    (out_dir / "config.json").write_text(json.dumps(asdict(config), indent=1, default=str))
    data_info = _data_info(train_set)
    total = max_iter if config.max_steps is None else min(max_iter, config.max_steps)
    t0 = time.perf_counter()
    epoch = start_epoch - 1
    loss_value = math.nan
    stop = iteration >= total
    for epoch in range(start_epoch, config.epochs):
        if stop:
            break
        model.train()
        # every epoch's randomness (order, augmentation, prompts) depends only on (seed, epoch): resuming continues
        # exactly as an uninterrupted run would
        loader.generator.manual_seed(config.seed * 100003 + epoch)
        torch.manual_seed(config.seed * 100003 + epoch)
        rng = np.random.default_rng([config.seed, epoch])
        sums = {"loss": 0.0, "loss_ce": 0.0, "loss_dice": 0.0}
        n_seen = 0
        for batch in loader:
            factor = poly_factor(iteration, max_iter, config.poly_power, warmup_iter)
            for g in optimizer.param_groups:
                g["lr"] = g["initial_lr"] * factor
            images = batch["image"].to(device, non_blocking=True)
            labels = batch["label"].to(device, non_blocking=True)
            mode, k = config.prompt, config.points_per_class
            if mode == "mixed":  # procto's extension: one model for every Table 4 setting
                mode = MIXED_MODES[int(rng.integers(len(MIXED_MODES)))]
                k = MIXED_POINTS[int(rng.integers(len(MIXED_POINTS)))]
            prompts = batch_prompts(batch["label"], mode, k, seed=rng, training=True, box_mode=config.box_mode,
                                    point_label_mode=config.point_labels)
            prompts = {k: torch.as_tensor(v, device=device) for k, v in prompts.items()}
            logits = model(images, **prompts)
            losses = criterion(logits, labels)
            optimizer.zero_grad(set_to_none=True)
            losses["loss"].backward()
            if config.clip_max_norm and config.clip_max_norm > 0:
                torch.nn.utils.clip_grad_norm_(trainable, config.clip_max_norm)
            optimizer.step()
            iteration += 1
            n_seen += 1
            for k in sums:
                sums[k] += float(losses[k].detach())
            loss_value = float(losses["loss"].detach())
            if progress is not None:
                progress(iteration, total, {"epoch": epoch, "loss": loss_value})
            if iteration >= total:
                stop = True
                break
        lrs = {g.get("name", str(i)): g["lr"] for i, g in enumerate(optimizer.param_groups)}
        row = {"epoch": epoch, "iteration": iteration, **{k: v / max(1, n_seen) for k, v in sums.items()},
               "lr": lrs.get("decoder", math.nan), "lr_vit": lrs.get("vit", math.nan),
               "lr_backbone": lrs.get("backbone", math.nan), "seconds": time.perf_counter() - t0,
               "val_mean_dice": ""}
        if val_set is not None and ((epoch + 1) % config.val_every == 0 or stop or epoch + 1 == config.epochs):
            setting = {"none": "none", "boxes": "boxes", "points": f"points{config.points_per_class}",
                       "both": f"both{config.points_per_class}", "mixed": f"points{config.points_per_class}"}[
                config.prompt]
            ev = evaluate_usam(model, val_set, [setting], batch_size=config.batch_size, seed=config.seed,
                               device=device, box_mode=config.box_mode, point_label_mode=config.point_labels)
            row["val_mean_dice"] = ev.mean_dice(setting)
            if best is None or row["val_mean_dice"] > best:
                best = row["val_mean_dice"]
                save_model(out_dir / "best.pt", model, config, data_info, {"epoch": epoch, "val_mean_dice": best})
        rows.append(row)
        say(f"epoch {epoch + 1}/{config.epochs}: loss {row['loss']:.4f} (ce {row['loss_ce']:.4f}, "
            f"dice {row['loss_dice']:.4f})" + (f", val mean Dice {row['val_mean_dice']:.4f}"
                                                if row["val_mean_dice"] != "" else ""))
        save_model(model_path, model, config, data_info, {"epoch": epoch, "iteration": iteration})
        state = model_record(model, config, data_info)
        state.update({"state_dict": model.state_dict(), "optimizer": optimizer.state_dict(), "epoch": epoch,
                      "iteration": iteration, "log": rows, "best_val_dice": best})
        _torch_save_atomic(state, last_path)
        _write_log(out_dir / "log.csv", rows)
    return USamTrainResult(out_dir, model_path, epoch + 1, iteration, time.perf_counter() - t0, loss_value, rows,
                           best)


__all__ = [
    "USamTrainConfig",
    "USamLoss",
    "usam_param_groups",
    "poly_factor",
    "build_model",
    "model_record",
    "save_model",
    "load_model",
    "prompt_info",
    "train_usam",
    "USamTrainResult",
]
