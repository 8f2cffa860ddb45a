"""``procto train staging``, ``procto cv staging``, ``procto predict staging``: the volumetric T2/T3 staging CNN.

Data folder: images + rectum/tumour label maps + ``stages.csv`` (case → T2/T3), e.g. what
``procto phantom --modality mri --layout nnunet|nifti`` writes (see
:func:`procto.preprocess.staging_data.find_staging_cases`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from procto.cli._app import console, friendly_errors, predict_app, progress_bar, train_app, cv_app
from procto.util import torch_threads

_PAPER = "paper: lr 0.01, weight decay 0.01, N4, 256×256×N crops around the rectum, f-rMC5 + bilinear + focal/triplet"


def _config(
    variant: str, aggregation: str, loss: str, loss_weight: Optional[float], epochs: int, slice_epochs: int,
    size: int, depth: int, margin: float, crop_on: str, n4: bool, batch_size: int, lr: float, momentum: float,
    weight_decay: float, augment: bool, tta: bool, seed: int, representative: int,
):
    from procto.errors import InputError
    from procto.nets.aggregation import canonical_aggregation
    from procto.nets.staging import canonical_variant
    from procto.train.staging import StagingConfig

    try:
        variant = canonical_variant(variant)
        aggregation = canonical_aggregation(aggregation)
    except ValueError as exc:
        raise InputError(str(exc)) from None
    supplementary = None if loss.lower() in ("none", "focal", "") else loss.lower()
    return StagingConfig(
        variant=variant, aggregation=aggregation, supplementary=supplementary, loss_weight=loss_weight,
        epochs=epochs, slice_epochs=slice_epochs, size=(size, size), depth=depth, margin_mm=margin, crop_on=crop_on,
        n4=n4, batch_size=batch_size, lr=lr, momentum=momentum, weight_decay=weight_decay, augment=augment, tta=tta,
        seed=seed, representative=representative,
    )


def _load(data: Path, config, progress):
    from procto.preprocess.staging_data import find_staging_cases, load_staging_samples

    records = find_staging_cases(data)
    task = progress.add_task("preprocess", total=len(records))
    samples = load_staging_samples(records, config, on_case=lambda _: progress.advance(task))
    return samples


# Options shared by train and cv (typer needs them spelled out per command).
_VARIANT = typer.Option("rmc5", help="Feature extractor: r2d, r3d, r2plus1d, mc2–mc5, rmc2–rmc5 (f-rMC5 = paper).")
_AGG = typer.Option("bilinear", help="Depth aggregation: bilinear (paper), avg, max, attention.")
_LOSS = typer.Option("triplet", help="Supplementary loss added to focal loss: triplet (paper), center or none.")
_LOSS_W = typer.Option(None, help="Weight of the supplementary loss (default 1 for triplet, 0.003 for center).")
_EPOCHS = typer.Option(20, min=0, help="Volume-level epochs (depth aggregation trained).")
_SLICE_EPOCHS = typer.Option(10, min=0, help="Slice-level epochs first (representative slices, shared slice FC).")
_REPRESENTATIVE = typer.Option(3, min=1, help="Representative slices per case for slice-level training: the ones "
                               "with the largest tumour area (paper: one to three, chosen by radiologists).")
_SIZE = typer.Option(256, min=32, help="In-plane crop size in pixels (paper 256).")
_DEPTH = typer.Option(16, min=1, help="Slices N kept around the rectum (zero padded if fewer).")
_MARGIN = typer.Option(10.0, min=0.0, help="Margin around the rectum mask, mm.")
_CROP_ON = typer.Option("rectum", help="Localise around the rectum + tumour mask (rectum) or the tumour only.")
_N4 = typer.Option(True, "--n4/--no-n4", help="N4 bias-field correction first (paper: yes).")
_BATCH = typer.Option(8, min=2, help="Volumes per batch.")
_LR = typer.Option(0.01, help="Initial SGD learning rate (paper 0.01).")
_MOMENTUM = typer.Option(0.9, help="SGD momentum (not stated in the paper).")
_WD = typer.Option(0.01, help="Weight decay (paper 0.01).")
_AUGMENT = typer.Option(True, "--augment/--no-augment", help="Training-time augmentation.")
_TTA = typer.Option(True, "--tta/--no-tta", help="Flip test-time augmentation.")
_SEED = typer.Option(0, help="Seed (model init, sampling, augmentation, folds).")
_THREADS = typer.Option(None, help="CPU threads for torch (1 gives bit-identical reruns).")
_DEVICE = typer.Option("auto", help="auto (cuda when available), cpu, cuda or cuda:N.")


@train_app.command("staging")
@friendly_errors
def train_staging_command(
    data: Path = typer.Option(..., "--data", "-d", help="Folder with images, rectum/tumour labels and stages.csv."),
    out: Path = typer.Option(Path("staging_run"), "--out", "-o", help="Output folder (model.pt, last.pt, log.csv)."),
    variant: str = _VARIANT, aggregation: str = _AGG, loss: str = _LOSS, loss_weight: Optional[float] = _LOSS_W,
    epochs: int = _EPOCHS, slice_epochs: int = _SLICE_EPOCHS, representative: int = _REPRESENTATIVE,
    size: int = _SIZE, depth: int = _DEPTH,
    margin: float = _MARGIN, crop_on: str = _CROP_ON, n4: bool = _N4, batch_size: int = _BATCH, lr: float = _LR,
    momentum: float = _MOMENTUM, weight_decay: float = _WD, augment: bool = _AUGMENT, tta: bool = _TTA,
    seed: int = _SEED, threads: Optional[int] = _THREADS, device: str = _DEVICE,
    resume: bool = typer.Option(False, "--resume", help="Continue from OUT/last.pt (same settings)."),
) -> None:
    """Train the T2/T3 staging CNN (slice-level, then volume-level with depth aggregation)."""
    from procto.io import check_output
    from procto.train.staging import method_name, train_staging

    check_output(out, kind="folder")
    config = _config(variant, aggregation, loss, loss_weight, epochs, slice_epochs, size, depth, margin, crop_on, n4,
                     batch_size, lr, momentum, weight_decay, augment, tta, seed, representative)
    with progress_bar() as progress, torch_threads(threads):
        samples = _load(data, config, progress)
        task = progress.add_task("train", total=config.total_epochs)
        if resume and (out / "last.pt").is_file():
            from procto.infer.staging import read_staging_checkpoint

            progress.update(task, completed=int(read_staging_checkpoint(out / "last.pt")["epoch"]))
        result = train_staging(samples, config, out, resume=resume and (out / "last.pt").is_file(), device=device,
                               on_epoch=lambda row: progress.advance(task))
    summary = ""
    if result.history:
        last = result.history[-1]
        summary = (f"; epoch {last['epoch']} ({last['phase']} level): loss {last['loss']:.4f}, "
                   f"train acc {last['train_acc']:.3f}")
    console.print(f"{method_name(config)} trained on {len(samples)} cases{summary}", highlight=False)
    console.print(f"model: {result.checkpoint}  log: {out / 'log.csv'}")


@cv_app.command("staging")
@friendly_errors
def cv_staging_command(
    data: Path = typer.Option(..., "--data", "-d", help="Folder with images, rectum/tumour labels and stages.csv."),
    folds: int = typer.Option(10, min=2, help="Folds (paper: 10), stratified by T stage."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Folder for cv_folds.csv, cv_predictions.csv, "
                                       "cv_table.md and the folds' logs."),
    variant: str = _VARIANT, aggregation: str = _AGG, loss: str = _LOSS, loss_weight: Optional[float] = _LOSS_W,
    epochs: int = _EPOCHS, slice_epochs: int = _SLICE_EPOCHS, representative: int = _REPRESENTATIVE,
    size: int = _SIZE, depth: int = _DEPTH,
    margin: float = _MARGIN, crop_on: str = _CROP_ON, n4: bool = _N4, batch_size: int = _BATCH, lr: float = _LR,
    momentum: float = _MOMENTUM, weight_decay: float = _WD, augment: bool = _AUGMENT, tta: bool = _TTA,
    seed: int = _SEED, threads: Optional[int] = _THREADS, device: str = _DEVICE,
) -> None:
    """Cross-validate the staging CNN; prints the paper's table (Method, AUC, ACC, Recall(T2), Recall(T3))."""
    from procto.io import check_output
    from procto.metrics.tables import staging_cv_table
    from procto.train.staging import cross_validate_staging

    if out is not None:
        check_output(out, kind="folder")
    config = _config(variant, aggregation, loss, loss_weight, epochs, slice_epochs, size, depth, margin, crop_on, n4,
                     batch_size, lr, momentum, weight_decay, augment, tta, seed, representative)
    with progress_bar() as progress, torch_threads(threads):
        samples = _load(data, config, progress)
        task = progress.add_task(f"{folds}-fold cv", total=folds * config.total_epochs)
        result = cross_validate_staging(samples, config, folds, out_dir=out, device=device,
                                        on_epoch=lambda row: progress.advance(task))
    for row in result.folds:
        typer.echo(f"fold {row['fold']}: AUC {row['auc']:.3f}  ACC {100 * row['acc']:.1f}  "
                   f"Recall(T2) {100 * row['recall_t2']:.1f}  Recall(T3) {100 * row['recall_t3']:.1f}  "
                   f"({row['n_test']} hold-out cases)")
    typer.echo(staging_cv_table([result.row]))
    if out is not None:
        typer.echo(f"results: {out / 'cv_folds.csv'}, {out / 'cv_predictions.csv'}, {out / 'cv_table.md'}")


@predict_app.command("staging")
@friendly_errors
def predict_staging_command(
    model: Path = typer.Option(..., "--model", "-m", help="Checkpoint from `procto train staging` (model.pt), or "
                                                          "a .procto bundle / installed bundle name."),
    image: Path = typer.Option(..., "--image", "-i", help="T2-weighted MR volume (NIfTI, NRRD, MHA, DICOM folder)."),
    mask: Optional[Path] = typer.Option(None, "--mask", help="Rectum/tumour mask on the image grid (for the crop)."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Write the result as JSON here (atomic)."),
) -> None:
    """T3 probability and T2/T3 label of one volume, as JSON."""
    import warnings

    from procto.bundle import resolve_model
    from procto.infer.staging import predict_stage
    from procto.io import check_output, check_same_geometry, read_image, read_label, write_text_atomic

    if out is not None:
        check_output(out, kind="file", suffixes=(".json",))
    vol = read_image(image)
    mask_vol = None
    if mask is not None:
        mask_vol = read_label(mask)
        check_same_geometry(vol, mask_vol, names=(str(image), str(mask)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = resolve_model(model, "staging")
        result = predict_stage(model, vol, mask_vol)
    result = {"image": str(image), **result}
    text = json.dumps(result, indent=2)
    if out is not None:
        write_text_atomic(out, text + "\n")
    typer.echo(text)
