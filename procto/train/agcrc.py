"""AG-CRC training from Python (paper 001): AG-SSL pre-training, the Table IX configurations, the Table VI sampling
variants and cross-validation with the paper's metrics, on procto's nnU-Net v2 trainers
(:mod:`procto.train.nnunet.agcrc_trainer`).

>>> from procto.train.agcrc import pretrain_agcrc, train_agcrc                       # doctest: +SKIP
>>> ssl = pretrain_agcrc("raw/Dataset602_AGCRCWall", out="runs")                   # write_agcrc_dataset(wall=True)
>>> run = train_agcrc("raw/Dataset601_AGCRC", fold=0, config="MPSF", pretrained=ssl.checkpoint, out="runs")

Configurations (Table IX; Table VIII adds MPF): ``M`` CT + MOS + OOI input with nnU-Net's sampling, ``MP`` + AG
sampling, ``MPF`` + AF-loss, ``MPS`` / ``MPSF`` the same started from AG-SSL weights (``pretrained``: the checkpoint
of :func:`pretrain_agcrc`, or its model folder).  ``sampling`` (with ``M`` only) picks a Table VI alternative.
Data sets are nnU-Net raw data sets written by :func:`procto.preprocess.agcrc.write_agcrc_dataset`.  The target
spacing defaults to the paper's 5.0 × 0.78 × 0.78 mm (``None``: nnU-Net's own plan); pre-training and fine-tuning
must use the same one (same network).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np

from procto.errors import InputError
from procto.io import image_suffix, read_image, read_label, strip_image_suffix, write_csv
from procto.train.nnunet.agcrc_data import SAMPLINGS
from procto.train.nnunet.dataset import dataset_id_and_name
from procto.train.nnunet.run import TrainResult, train

#: The paper's target spacing (z, y, x) in mm.
PAPER_TARGET_SPACING = (5.0, 0.78, 0.78)
#: Configuration → (trainer key of procto.train.nnunet.models.TRAINER_TABLE, needs AG-SSL weights).
CONFIG_TRAINERS = {"M": ("agcrc_m", False), "MP": ("agcrc_mp", False), "MPF": ("agcrc_mpf", False),
                   "MPS": ("agcrc_mps", True), "MPSF": ("agcrc_mpsf", True)}
AGCRC_CONFIGS = tuple(CONFIG_TRAINERS)
#: Table VI sampling → trainer key (all with the M input and Dice + CE).
SAMPLING_TRAINERS = {"ag": "agcrc_mp", "hybrid_uniform": "agcrc_m", "uniform": "agcrc_uniform",
                     "uniform_colon": "agcrc_uniform_colon", "uniform_ooi": "agcrc_uniform_ooi",
                     "hybrid_colon": "agcrc_hybrid_colon", "hybrid_ooi": "agcrc_hybrid_ooi"}
#: The paper's metrics (§IV-D): Dice, precision, recall, NSD at 4 mm, HD95 with 1000 mm for empty predictions.
AGCRC_METRICS = ("dice", "precision", "recall", "nsd", "hd95")
NSD_TOLERANCE_MM = 4.0
EMPTY_HD95_MM = 1000.0


def trainer_key(config: str = "MPSF", sampling: str | None = None) -> tuple[str, bool]:
    """The trainer key of a configuration (and Table VI ``sampling``) and whether it needs AG-SSL weights."""
    cfg = str(config).upper().replace("+", "")
    if cfg not in CONFIG_TRAINERS:
        raise InputError(f"unknown AG-CRC configuration {config!r}; known: {', '.join(AGCRC_CONFIGS)}")
    if sampling is None:
        return CONFIG_TRAINERS[cfg]
    if sampling not in SAMPLINGS:
        raise InputError(f"unknown sampling {sampling!r}; known: {', '.join(SAMPLINGS)}")
    if cfg != "M":
        raise InputError(f"--sampling picks a Table VI variant of configuration M, not {cfg}")
    return SAMPLING_TRAINERS[sampling], False


def pretrained_checkpoint(pretrained: str | Path | TrainResult) -> Path:
    """The AG-SSL checkpoint file of ``pretrained``: a checkpoint, a :class:`TrainResult`, a fold folder or the
    model folder of :func:`pretrain_agcrc` (its ``fold_all``, else its only fold)."""
    if isinstance(pretrained, TrainResult):
        return Path(pretrained.checkpoint)
    path = Path(pretrained)
    if path.is_file():
        return path
    if path.is_dir():
        folds = [path] if path.name.startswith("fold_") else sorted(path.glob("fold_*"))
        folds = [f for f in folds if f.name == "fold_all"] or folds
        for fold in folds:
            for name in ("checkpoint_final.pth", "checkpoint_best.pth", "checkpoint_latest.pth"):
                if (fold / name).is_file():
                    return fold / name
    raise InputError("no AG-SSL checkpoint here (run `procto pretrain agcrc` first)", path)


def _check_dataset(data: str | Path, wall: bool) -> None:
    import json

    dataset_id_and_name(data)
    meta = json.loads((Path(data) / "dataset.json").read_text())
    record = meta.get("procto_agcrc")
    if record is None or len(meta.get("channel_names", {})) != 3:
        raise InputError("not an AG-CRC data set (write it with `procto prepare agcrc`)", Path(data) / "dataset.json")
    want = "bowel_wall" if wall else "tumour"
    if record.get("target") != want:
        what = "an AG-SSL (--wall) data set" if wall else "a tumour data set (not --wall)"
        raise InputError(f"expected {what}, this one's target is {record.get('target')!r}",
                         Path(data) / "dataset.json")


def train_agcrc(data: str | Path, fold: int | str = 0, *, config: str = "MPSF", sampling: str | None = None,
                pretrained: str | Path | TrainResult | None = None,
                target_spacing: Sequence[float] | None = PAPER_TARGET_SPACING, **train_kwargs) -> TrainResult:
    """Train AG-CRC ``config`` on ``fold`` of an AG-CRC raw data set (see the module docstring).

    ``train_kwargs`` are :func:`procto.train.nnunet.train`'s (out, epochs, iters, val_iters, patch, batch_size,
    device, workers, resume, validate, save_every, on_epoch, check_integrity, preprocess_processes); epochs default to
    the paper's 1000.
    """
    key, needs_ssl = trainer_key(config, sampling)
    _check_dataset(data, wall=False)
    if needs_ssl and pretrained is None:
        raise InputError(f"configuration {config} starts from AG-SSL weights: give pretrained= (the checkpoint of "
                         "pretrain_agcrc / `procto pretrain agcrc`)")
    if not needs_ssl and pretrained is not None:
        raise InputError(f"configuration {config} trains from scratch; pretrained weights go with MPS or MPSF")
    checkpoint = pretrained_checkpoint(pretrained) if pretrained is not None else None
    return train(data, fold, model=key, target_spacing=target_spacing, pretrained=checkpoint, **train_kwargs)


def pretrain_agcrc(data: str | Path, fold: int | str = "all", *,
                   target_spacing: Sequence[float] | None = PAPER_TARGET_SPACING, **train_kwargs) -> TrainResult:
    """AG-SSL pre-training on an AG-CRC bowel-wall data set (``write_agcrc_dataset(..., wall=True)``); by default on
    every case (fold ``all``).  ``result.checkpoint`` is what :func:`train_agcrc` takes as ``pretrained``."""
    _check_dataset(data, wall=True)
    train_kwargs.setdefault("validate", False)
    return train(data, fold, model="agcrc_ssl", target_spacing=target_spacing, **train_kwargs)


# ------------------------------------------------------------------------------------------------ cross-validation
@dataclass
class AGCRCCVResult:
    rows: list[dict]  # one per case: fold, case, dice, precision, recall, nsd, hd95
    table: dict  # procto.metrics.fold_table over the rows
    folds: list[int]
    model_dir: Path
    metrics: tuple[str, ...] = AGCRC_METRICS


def case_metrics(pred: np.ndarray, ref: np.ndarray, spacing: Sequence[float]) -> dict[str, float]:
    """The paper's per-case tumour metrics (§IV-D)."""
    from procto.metrics import dice, hd95, nsd, precision, recall

    p, r = np.asarray(pred) > 0, np.asarray(ref) > 0
    return {"dice": float(dice(p, r)), "precision": float(precision(p, r)), "recall": float(recall(p, r)),
            "nsd": float(nsd(p, r, spacing, NSD_TOLERANCE_MM)), "hd95": float(hd95(p, r, spacing, EMPTY_HD95_MM))}


def _af_model(model_dir: Path) -> bool:
    from procto.infer.agcrc import plans_record

    return bool(plans_record(model_dir).get("af_loss", False))


def evaluate_fold(fold_dir: Path, data: Path, fold: int, mask_ooi: bool) -> list[dict]:
    """Per-case metrics of nnU-Net's validation predictions of one fold against the raw tumour labels; with
    ``mask_ooi`` (AF models) the prediction is restricted to the case's OOI channel first, which for a binary
    arg-max equals multiplying the tumour probability by the OOI."""
    val_dir = fold_dir / "validation"
    preds = sorted(p for p in val_dir.iterdir() if p.is_file() and image_suffix(p)) if val_dir.is_dir() else []
    if not preds:
        raise InputError("no validation predictions (run the fold's training with validation)", val_dir)
    rows = []
    for path in preds:
        name = strip_image_suffix(path)
        ref = read_label(data / "labelsTr" / f"{name}.nii.gz")
        pred = np.asarray(read_label(path).array) > 0
        if mask_ooi:
            pred &= np.asarray(read_image(data / "imagesTr" / f"{name}_0002.nii.gz").array) > 0.5
        rows.append({"fold": fold, "case": name, **case_metrics(pred, ref.array, ref.spacing)})
    return rows


def cross_validate_agcrc(data: str | Path, folds: Iterable[int] = (0, 1, 2, 3, 4), *, config: str = "MPSF",
                         sampling: str | None = None, pretrained: str | Path | TrainResult | None = None,
                         on_fold: Callable[[int, str], None] | None = None, **train_kwargs) -> AGCRCCVResult:
    """Train (or reuse) each fold of ``config``, evaluate nnU-Net's validation predictions of the fold with the
    paper's metrics, and build the per-fold table (mean ± sd over the folds' means, as Table III's 5-fold CV)."""
    from procto.metrics import fold_table

    data = Path(data)
    folds = [int(f) for f in folds]
    if not folds:
        raise InputError("no folds given")
    rows: list[dict] = []
    model_dir = None
    for f in folds:
        if on_fold is not None:
            on_fold(f, "train")
        run = train_agcrc(data, f, config=config, sampling=sampling, pretrained=pretrained,
                          **{**train_kwargs, "validate": True})
        model_dir = run.model_dir
        if on_fold is not None:
            on_fold(f, "evaluate")
        rows.extend(evaluate_fold(run.fold_dir, data, f, _af_model(run.model_dir)))
    return AGCRCCVResult(rows, fold_table(rows, list(AGCRC_METRICS)), folds, model_dir)


def write_agcrc_cv_csv(result: AGCRCCVResult, path: str | Path) -> None:
    """Per-fold means (and the across-fold mean and sd) of the paper's metrics, one row per fold."""
    metrics = list(result.metrics)
    rows = [{"fold": f, "n_cases": result.table[f][metrics[0]].n, **{m: float(result.table[f][m].mean)
                                                                      for m in metrics}} for f in result.folds]
    across = [k for k in result.table if k not in result.folds][0]
    n = len(result.rows)
    rows.append({"fold": "mean", "n_cases": n, **{m: float(result.table[across][m].mean) for m in metrics}})
    rows.append({"fold": "sd", "n_cases": n, **{m: float(result.table[across][m].sd) for m in metrics}})
    write_csv(path, rows, ["fold", "n_cases", *metrics], float_format=".6f")


def write_agcrc_cases_csv(result: AGCRCCVResult, path: str | Path) -> None:
    """One row per validation case: fold, case and the paper's metrics."""
    write_csv(path, result.rows, ["fold", "case", *result.metrics], float_format=".6f")


__all__ = ["PAPER_TARGET_SPACING", "AGCRC_CONFIGS", "CONFIG_TRAINERS", "SAMPLINGS", "SAMPLING_TRAINERS",
           "AGCRC_METRICS", "trainer_key", "pretrained_checkpoint", "train_agcrc", "pretrain_agcrc", "AGCRCCVResult",
           "case_metrics", "evaluate_fold", "cross_validate_agcrc", "write_agcrc_cv_csv", "write_agcrc_cases_csv"]
