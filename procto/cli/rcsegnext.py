"""``procto train|predict|cv rcsegnext`` and ``procto nnunet-trainers``: RCSegNeXt through nnU-Net v2.

Training and cross-validation are :mod:`procto.train.nnunet`, prediction :mod:`procto.infer.nnunet` (imported inside
the commands, so that ``procto --help`` stays fast).
"""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Optional

import typer

from procto.cli._app import Device, app, console, cv_app, epoch_reporter, friendly_errors, int_list, predict_app, \
    progress_bar, train_app
from procto.util import torch_threads


class Size(str, Enum):
    b = "b"
    l = "l"  # noqa: E741


class Variant(str, Enum):
    """Table 4 ablation variants of RCSegNeXt-B (the block kinds of the anisotropic/isotropic stages)."""

    plain = "plain"
    conv = "conv"
    convnext = "convnext"
    res2net = "res2net"
    res2next = "res2next"
    grouped = "grouped"


def _model_name(size: Size, variant: Optional[Variant]) -> str:
    from procto.errors import InputError

    if variant is None:
        return f"rcsegnext_{size.value}"
    if size is not Size.b:
        raise InputError("the ablation variants (--variant) are RCSegNeXt-B variants; use --size b")
    return f"rcsegnext_b_{variant.value}"


def _triple(text: Optional[str], what: str) -> Optional[tuple[int, int, int]]:
    from procto.util import parse_list

    return parse_list(text, int, n=3, what=f"{what} (z,y,x)", example="21,512,512", minimum=1)  # type: ignore


# ------------------------------------------------------------------------------------------------------ train
@train_app.command("rcsegnext")
@friendly_errors
def train_rcsegnext(
    data: Path = typer.Option(..., "--data", "-d", help="nnU-Net v2 raw data set folder (DatasetXXX_Name)."),
    fold: str = typer.Option("0", "--fold", "-f", help="Cross-validation fold (0-4) or 'all'."),
    size: Size = typer.Option(Size.b, "--size", help="RCSegNeXt-B (2.76 M) or -L (10.77 M)."),
    variant: Optional[Variant] = typer.Option(None, "--variant", help="Table 4 ablation variant of RCSegNeXt-B."),
    epochs: Optional[int] = typer.Option(None, "--epochs", min=1, help="Epochs (default: the paper's 100)."),
    iters: Optional[int] = typer.Option(None, "--iters", min=1, help="Iterations per epoch (default 250)."),
    val_iters: Optional[int] = typer.Option(None, "--val-iters", min=1,
                                            help="Validation iterations per epoch (default 50)."),
    patch: Optional[str] = typer.Option(None, "--patch", help="Patch z,y,x (default: the paper's 16,320,320, capped "
                                                               "by nnU-Net's plan for the data)."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", min=1, help="Batch size (default: the paper's 2)."),
    device: Device = typer.Option(Device.auto, "--device", help="Training device (auto: cuda when available)."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Folder for nnUNet_preprocessed/ and nnUNet_results/ "
                                                                 "(default: your nnU-Net environment variables)."),
    workers: Optional[int] = typer.Option(None, "--workers", min=0,
                                          help="Data-augmentation processes (nnUNet_n_proc_DA; 0 = in the main "
                                               "process)."),
    threads: Optional[int] = typer.Option(None, "--threads", min=1, help="torch CPU threads."),
    resume: bool = typer.Option(True, "--resume/--restart", help="Continue from the fold's last checkpoint."),
    validation: bool = typer.Option(True, "--validation/--no-validation",
                                    help="Predict the fold's validation cases after training (nnU-Net's final "
                                         "validation)."),
) -> None:
    """Train RCSegNeXt on an nnU-Net raw data set (plans and preprocesses it with nnU-Net first if needed)."""
    from procto.io import check_output
    from procto.train.nnunet import train

    if out is not None:
        check_output(out, kind="folder")
    model = _model_name(size, variant)
    fold_value = int_list(fold, "--fold")[0]
    with progress_bar() as progress, torch_threads(threads):
        task = progress.add_task("plan, preprocess, train", total=None)
        result = train(
            data, fold_value, model=model, out=out, epochs=epochs, iters=iters, val_iters=val_iters, patch=patch,
            batch_size=batch_size, device=device.value, workers=workers, resume=resume, validate=validation,
            on_epoch=epoch_reporter(progress, task),
        )
    state = "resumed and finished" if result.resumed else "finished"
    console.print(f"{model} fold {fold_value} {state} ({result.epochs} epochs): {result.checkpoint}")
    console.print(f"model folder (for `procto predict rcsegnext --model`): {result.model_dir}")


# ------------------------------------------------------------------------------------------------------ predict
@predict_app.command("rcsegnext")
@friendly_errors
def predict_rcsegnext(
    model: Path = typer.Option(..., "--model", "-m", help="Trained model folder (nnU-Net results folder of the "
                                                          "trainer, one of its fold_X folders, or --out of training), "
                                                          "or a .procto bundle / installed bundle name."),
    inputs: Path = typer.Option(..., "--input", "-i", help="Image file, DICOM series folder or folder of images."),
    output: Path = typer.Option(..., "--output", "-o", help="Output label map file, or folder."),
    fold: Optional[str] = typer.Option(None, "--fold", "-f", help="Fold(s) to use, e.g. 0 or 0,1,2 (ensemble); "
                                                                  "default: every trained fold."),
    resize_to: Optional[str] = typer.Option(None, "--resize-to", help="Resize images to z,y,x before inference and "
                                                                      "the prediction back (paper's Dataset B: "
                                                                      "21,512,512)."),
    device: Device = typer.Option(Device.auto, "--device", help="Inference device."),
    mirror: bool = typer.Option(True, "--mirror/--no-mirror", help="Mirroring test-time augmentation (8 flips)."),
    step_size: float = typer.Option(0.5, "--step-size", min=0.1, max=1.0, help="Sliding-window step (fraction of "
                                                                               "the patch)."),
    checkpoint: Optional[str] = typer.Option(None, "--checkpoint", help="Checkpoint file name (default: "
                                                                        "checkpoint_final.pth, else best/latest)."),
    threads: Optional[int] = typer.Option(None, "--threads", min=1, help="torch CPU threads."),
) -> None:
    """Segment rectum (1) and tumour (2) with a trained RCSegNeXt; outputs keep each input's geometry.  A model
    trained on several channels takes nnU-Net style inputs, one file per channel: case_0000, case_0001, …"""
    from procto.bundle import resolve_model
    from procto.infer.nnunet import check_prediction_output, predict

    check_prediction_output(output)
    folds = int_list(fold, "--fold") if fold is not None else None
    shape = _triple(resize_to, "--resize-to")
    with progress_bar() as progress, torch_threads(threads):
        task = progress.add_task("predict", total=None)
        model = resolve_model(model, "rcsegnext")
        written = predict(model, inputs, output, folds=folds, resize_to=shape, device=device.value, mirror=mirror,
                          step_size=step_size, checkpoint=checkpoint,
                          on_start=lambda n: progress.update(task, total=n),
                          on_case=lambda _: progress.advance(task))
    where = written[0] if len(written) == 1 else written[0].parent
    console.print(f"wrote {len(written)} label map(s) to {where}")


# ------------------------------------------------------------------------------------------------------ cv
def print_cv_table(result, title: str) -> None:
    """The paper's Table 1 layout (per-fold Rect/Tumor Dice in %, mean ± sd across folds) plus HD95/ASD rows."""
    from rich.table import Table

    from procto.metrics.tables import rcsegnext_cv_table
    from procto.train.nnunet import CV_METRICS

    columns, rows = rcsegnext_cv_table(result.table, result.folds, list(result.labels.values()), CV_METRICS)
    table = Table(title=title)
    for i, column in enumerate(columns):
        table.add_column(column, justify="left" if i == 0 else "right")
    for row in rows:
        table.add_row(*(row[c] for c in columns))
    console.print(table)


@cv_app.command("rcsegnext")
@friendly_errors
def cv_rcsegnext(
    data: Path = typer.Option(..., "--data", "-d", help="nnU-Net v2 raw data set folder (DatasetXXX_Name)."),
    folds: str = typer.Option("0,1,2,3,4", "--folds", help="Folds to train (or reuse) and evaluate."),
    size: Size = typer.Option(Size.b, "--size", help="RCSegNeXt-B or -L."),
    variant: Optional[Variant] = typer.Option(None, "--variant", help="Table 4 ablation variant of RCSegNeXt-B."),
    epochs: Optional[int] = typer.Option(None, "--epochs", min=1, help="Epochs (default: the paper's 100)."),
    iters: Optional[int] = typer.Option(None, "--iters", min=1, help="Iterations per epoch (default 250)."),
    val_iters: Optional[int] = typer.Option(None, "--val-iters", min=1, help="Validation iterations per epoch."),
    patch: Optional[str] = typer.Option(None, "--patch", help="Patch z,y,x (default: paper's, capped by the plan)."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", min=1, help="Batch size (default 2)."),
    device: Device = typer.Option(Device.auto, "--device", help="Training/inference device."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Folder for nnUNet_preprocessed/ and "
                                                                 "nnUNet_results/."),
    csv: Optional[Path] = typer.Option(None, "--csv",
                                       help="Per-fold table CSV (default: <model folder>/cv_summary.csv; per-case "
                                            "rows go next to it as *_cases.csv)."),
    workers: Optional[int] = typer.Option(None, "--workers", min=0, help="Data-augmentation processes."),
    threads: Optional[int] = typer.Option(None, "--threads", min=1, help="torch CPU threads."),
) -> None:
    """Cross-validation: train (or reuse) each fold, evaluate its validation cases, print the paper's per-fold table
    (Rect/Tumor Dice per fold, mean ± sd) with HD95 and ASD."""
    from procto.io import check_output
    from procto.train.nnunet import cross_validate, write_cases_csv, write_cv_csv

    if out is not None:
        check_output(out, kind="folder")
    if csv is not None:
        check_output(csv, suffixes=(".csv",))
    model = _model_name(size, variant)
    fold_list = int_list(folds, "--folds")
    with progress_bar() as progress, torch_threads(threads):
        folds_task = progress.add_task("cross-validation folds", total=len(fold_list))
        epoch_task = progress.add_task("train", total=None)
        reporter = epoch_reporter(progress, epoch_task)

        def on_fold(f: int, stage: str) -> None:
            if stage == "train":
                progress.reset(epoch_task, total=None, description=f"fold {f}: train (or reuse)")
            else:
                progress.update(epoch_task, description=f"fold {f}: evaluate")
                progress.advance(folds_task)

        result = cross_validate(
            data, fold_list, model=model, out=out, on_fold=on_fold, epochs=epochs, iters=iters, val_iters=val_iters,
            patch=patch, batch_size=batch_size, device=device.value, workers=workers, on_epoch=reporter,
        )
    csv_path = csv or (result.model_dir / "cv_summary.csv")
    write_cv_csv(result, csv_path)
    cases_path = csv_path.with_name(csv_path.stem + "_cases.csv")  # csv_path ends in .csv (checked above)
    write_cases_csv(result, cases_path)
    print_cv_table(result, f"{model}: {len(fold_list)}-fold cross-validation on {data.name}")
    console.print(f"per-fold table: {csv_path}\nper-case metrics: {cases_path}")


# ------------------------------------------------------------------------------------------------------ nnU-Net
@app.command("nnunet-trainers")
@friendly_errors
def nnunet_trainers(
    path: bool = typer.Option(False, "--path", help="Print only the folder for nnUNet_extTrainer."),
    install: bool = typer.Option(False, "--install", help="Instead of the environment variable: write a one-line "
                                                          "shim module into nnU-Net's trainer package."),
    uninstall: bool = typer.Option(False, "--uninstall", help="Remove the shim written by --install."),
) -> None:
    """How nnU-Net's own scripts (nnUNetv2_train -tr nnUNetTrainerRCSegNeXt, nnUNetv2_predict) find procto's
    trainers."""
    from procto.infer.nnunet_env import TRAINER_DIR
    from procto.train.nnunet.models import TRAINER_NAMES

    if install or uninstall:
        from procto.train.nnunet.trainers import install_shim, uninstall_shim

        target = install_shim() if install else uninstall_shim()
        console.print(f"{'wrote' if install else 'removed'} {target}")
        return
    if path:
        typer.echo(str(TRAINER_DIR))
        return
    console.print("procto's nnU-Net trainers: " + ", ".join(TRAINER_NAMES.values()))
    console.print("nnU-Net finds them through nnUNet_extTrainer (procto's own commands set it themselves):")
    typer.echo(f'export nnUNet_extTrainer="{TRAINER_DIR}"')
