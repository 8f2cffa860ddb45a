"""``procto prepare|pretrain|train|predict|cv agcrc``: AG-CRC (paper 001), anatomy-guided colorectal cancer
segmentation in CT, through nnU-Net v2.

The data set is :mod:`procto.preprocess.agcrc` (MSD Task10_Colon + TotalSegmentator maps, or CT phantoms), training
and cross-validation :mod:`procto.train.agcrc`, prediction :mod:`procto.infer.agcrc` — imported inside the commands,
so that ``procto --help`` stays fast.  procto downloads nothing: the organ maps come from TotalSegmentator run by the
user (or by ``--mos auto`` when the ``totalsegmentator`` package and its weights are installed).
"""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Optional

import typer

from procto.cli._app import (Device, console, cv_app, epoch_reporter, friendly_errors, int_list, predict_app,
                             prepare_app, pretrain_app, progress_bar, train_app)
from procto.util import torch_threads


class Config(str, Enum):
    """Table IX configurations (+ Table VIII's M+P+F): M = CT+MOS+OOI input, P = AG-sampling, S = AG-SSL weights,
    F = AF-loss.  Equal to ``procto.train.agcrc.AGCRC_CONFIGS`` (a test checks it)."""

    M = "M"
    MP = "MP"
    MPF = "MPF"
    MPS = "MPS"
    MPSF = "MPSF"


class Sampling(str, Enum):
    """Table VI patch-sampling strategies; equal to ``procto.train.agcrc.SAMPLINGS`` (a test checks it)."""

    ag = "ag"
    uniform = "uniform"
    uniform_colon = "uniform_colon"
    uniform_ooi = "uniform_ooi"
    hybrid_uniform = "hybrid_uniform"
    hybrid_colon = "hybrid_colon"
    hybrid_ooi = "hybrid_ooi"


class Scheme(str, Enum):
    ts_v2 = "ts_v2"
    ts_v1 = "ts_v1"


class Paper(str, Enum):
    msd = "msd"
    rjh = "rjh"
    none = "none"


#: Default nnU-Net data set ids of ``procto prepare agcrc`` (tumour labels) and ``--wall`` (AG-SSL).
DATASET_ID, WALL_DATASET_ID = 510, 511
PAPER_SPACING_TEXT = "5,0.78,0.78"

# Options shared by pretrain, train and cv (typer needs them spelled out per command).
_DATA = typer.Option(..., "--data", "-d", help="nnU-Net v2 raw data set folder written by `procto prepare agcrc`.")
_SPACING = typer.Option(PAPER_SPACING_TEXT, "--target-spacing",
                        help="Target spacing z,y,x in mm (the paper's 5,0.78,0.78), or 'native' for nnU-Net's own "
                             "planned spacing.")
_EPOCHS = typer.Option(None, "--epochs", min=1, help="Epochs (default: the paper's 1000).")
_ITERS = typer.Option(None, "--iters", min=1, help="Iterations per epoch (default 250).")
_VAL_ITERS = typer.Option(None, "--val-iters", min=1, help="Validation iterations per epoch (default 50).")
_PATCH = typer.Option(None, "--patch", help="Patch z,y,x (default: nnU-Net's plan).")
_BATCH = typer.Option(None, "--batch-size", min=1, help="Batch size (default: nnU-Net's plan, 2).")
_DEVICE = typer.Option(Device.auto, "--device", help="Training device (auto: cuda when available).")
_OUT = typer.Option(None, "--out", "-o", help="Folder for nnUNet_preprocessed/ and nnUNet_results/ (default: your "
                                              "nnU-Net environment variables).")
_WORKERS = typer.Option(None, "--workers", min=0, help="Data-augmentation processes (nnUNet_n_proc_DA; 0 = in the "
                                                       "main process).")
_THREADS = typer.Option(None, "--threads", min=1, help="torch CPU threads.")
_RESUME = typer.Option(True, "--resume/--restart", help="Continue from the fold's last checkpoint.")
_CONFIG = typer.Option(Config.MPSF, "--config", case_sensitive=False,
                       help="M, MP, MPF, MPS or MPSF (Table IX; MPS/MPSF need --pretrained).")
_SAMPLING = typer.Option(None, "--sampling", case_sensitive=False,
                         help="Table VI sampling variant (with --config M only; default: the configuration's own).")
_PRETRAINED = typer.Option(None, "--pretrained", help="AG-SSL weights: the checkpoint or model folder of "
                                                      "`procto pretrain agcrc` (needed by MPS and MPSF).")


def _spacing(text: str) -> Optional[tuple[float, float, float]]:
    from procto.util import parse_list

    if text.strip().lower() == "native":
        return None
    return parse_list(text, float, n=3, what="--target-spacing (z,y,x mm, or 'native')", example=PAPER_SPACING_TEXT,
                      minimum=1e-6)  # type: ignore[return-value]


def _patch(text: Optional[str]) -> Optional[tuple[int, int, int]]:
    from procto.util import parse_list

    return parse_list(text, int, n=3, what="--patch (z,y,x)", example="40,224,192", minimum=1)  # type: ignore


# ------------------------------------------------------------------------------------------------------ prepare
def _phantom_cases(n: int, seed: int, word: bool, mos_errors: Optional[str], shape: Optional[str],
                   spacing: Optional[str]) -> list:
    from procto.phantom import agcrc_cases
    from procto.util import parse_list

    options: dict = {}
    if shape is not None:
        options["shape"] = parse_list(shape, int, n=3, what="--shape (z,y,x)", example="64,256,256", minimum=1)
    if spacing is not None:
        options["spacing"] = parse_list(spacing, float, n=3, what="--spacing (z,y,x mm)", example="5,1.56,1.56",
                                        minimum=1e-6)
    errors = tuple(e.strip() for e in mos_errors.split(",") if e.strip()) if mos_errors else ()
    return list(agcrc_cases(range(seed, seed + n), word=word, mos_errors=errors, **options))


@prepare_app.command("agcrc")
@friendly_errors
def prepare_agcrc(
    out: Path = typer.Option(..., "--out", "-o", help="nnUNet_raw folder; the data set goes into "
                                                      "OUT/DatasetXXX_<name>."),
    msd: Optional[Path] = typer.Option(None, "--msd", help="MSD Task10_Colon folder (imagesTr, labelsTr, "
                                                           "dataset.json)."),
    ts: Optional[Path] = typer.Option(None, "--ts", help="Folder of TotalSegmentator maps named as the CTs "
                                                         "(colon_001.nii.gz: TotalSegmentator -i … -o … --ml)."),
    word: Optional[Path] = typer.Option(None, "--word", help="Folder of WORD-model maps named as the CTs (optional)."),
    phantoms: Optional[int] = typer.Option(None, "--phantoms", min=1, help="Instead of --msd: N CT phantoms."),
    seed: int = typer.Option(0, "--seed", min=0, help="First phantom seed (seeds SEED … SEED+N-1)."),
    phantom_word: bool = typer.Option(False, "--phantom-word", help="Phantoms: add a WORD-style organ map."),
    mos_errors: Optional[str] = typer.Option(None, "--mos-errors", help="Phantoms: organ-map errors to inject, "
                                                                        "comma separated (procto.phantom."
                                                                        "agcrc_cases)."),
    shape: Optional[str] = typer.Option(None, "--shape", help="Phantoms: volume shape z,y,x."),
    spacing: Optional[str] = typer.Option(None, "--spacing", help="Phantoms: voxel spacing z,y,x in mm."),
    dataset_id: Optional[int] = typer.Option(None, "--id", min=1, max=999,
                                             help=f"nnU-Net data set id (default {DATASET_ID}; {WALL_DATASET_ID} "
                                                  "with --wall)."),
    name: Optional[str] = typer.Option(None, "--name", help="Data set name (default AGCRC; AGCRCWall with --wall)."),
    wall: bool = typer.Option(False, "--wall", help="Bowel walls as labels: the AG-SSL pre-training data set."),
    dilation: int = typer.Option(3, "--dilation", min=0, help="OOI dilations (6-connected; default 3)."),
    scheme: Scheme = typer.Option(Scheme.ts_v2, "--scheme", help="Id scheme of the TotalSegmentator maps."),
) -> None:
    """Write an AG-CRC nnU-Net raw data set (channels CT, MOS, OOI; tumour labels, or bowel walls with --wall) from
    MSD Task10_Colon + TotalSegmentator maps, or from CT phantoms."""
    from procto.errors import InputError, OutputError
    from procto.io import check_output
    from procto.preprocess.agcrc import read_msd_colon, write_agcrc_dataset

    check_output(out, kind="folder")
    if (msd is None) == (phantoms is None):
        raise InputError("pass either --msd <Task10_Colon folder> --ts <TotalSegmentator maps> or --phantoms N")
    if msd is not None and ts is None:
        raise InputError("--msd needs --ts <folder of TotalSegmentator maps>, one per CT: TotalSegmentator "
                         "-i imagesTr/colon_001.nii.gz -o ts/colon_001.nii.gz --ml")
    if msd is None and (ts is not None or word is not None):
        raise InputError("--ts and --word go with --msd; phantoms bring their own organ maps (--phantom-word)")
    if msd is not None and (phantom_word or mos_errors or shape or spacing):
        raise InputError("--phantom-word, --mos-errors, --shape and --spacing go with --phantoms")
    dataset_id = dataset_id or (WALL_DATASET_ID if wall else DATASET_ID)
    name = name or ("AGCRCWall" if wall else "AGCRC")
    root = out / f"Dataset{dataset_id:03d}_{name}"
    if root.exists():
        raise OutputError("already exists; remove it or choose another --id or --name", root)
    with progress_bar() as progress:
        task = progress.add_task("read cases" if msd else "make phantoms", total=None)
        if msd is not None:
            cases, tumour_ids = read_msd_colon(msd, ts, word), (1,)  # MSD label 1: colon cancer primaries
        else:
            cases, tumour_ids = _phantom_cases(phantoms, seed, phantom_word, mos_errors, shape, spacing), (2,)
        progress.update(task, total=len(cases), completed=0, description="write cases")
        path = write_agcrc_dataset(cases, out, dataset_id, wall=wall, name=name, scheme=scheme.value,
                                   dilation=dilation, tumour_ids=tumour_ids,
                                   progress=lambda done, total, _: progress.update(task, completed=done))
    what = "bowel walls (AG-SSL)" if wall else "tumour labels"
    console.print(f"wrote {len(cases)} case(s) with {what}: {path}")
    verb = "pretrain" if wall else "train"
    console.print(f"next: procto {verb} agcrc --data {path}")


# ------------------------------------------------------------------------------------------------------ pretrain
@pretrain_app.command("agcrc")
@friendly_errors
def pretrain_agcrc_command(
    data: Path = typer.Option(..., "--data", "-d", help="AG-SSL raw data set (`procto prepare agcrc --wall`)."),
    fold: str = typer.Option("all", "--fold", "-f", help="Fold (0-4) or 'all' (default: every case)."),
    target_spacing: str = _SPACING, epochs: Optional[int] = _EPOCHS, iters: Optional[int] = _ITERS,
    val_iters: Optional[int] = _VAL_ITERS, patch: Optional[str] = _PATCH, batch_size: Optional[int] = _BATCH,
    device: Device = _DEVICE, out: Optional[Path] = _OUT, workers: Optional[int] = _WORKERS,
    threads: Optional[int] = _THREADS, resume: bool = _RESUME,
) -> None:
    """AG-SSL pre-training: reconstruct the CT with the bowel wall replaced by noise (L1).  Its weights initialise
    `procto train agcrc --config MPS|MPSF --pretrained`."""
    from procto.io import check_output
    from procto.train.agcrc import pretrain_agcrc

    if out is not None:
        check_output(out, kind="folder")
    fold_value = int_list(fold, "--fold")[0]
    spacing, patch_size = _spacing(target_spacing), _patch(patch)
    with progress_bar() as progress, torch_threads(threads):
        task = progress.add_task("plan, preprocess, pre-train", total=None)
        result = pretrain_agcrc(data, fold_value, out=out, target_spacing=spacing, epochs=epochs, iters=iters,
                                val_iters=val_iters, patch=patch_size, batch_size=batch_size, device=device.value,
                                workers=workers, resume=resume, on_epoch=epoch_reporter(progress, task))
    state = "resumed and finished" if result.resumed else "finished"
    console.print(f"AG-SSL fold {fold_value} {state} ({result.epochs} epochs): {result.checkpoint}")
    console.print(f"for `procto train agcrc --pretrained`: {result.checkpoint}")


# ------------------------------------------------------------------------------------------------------ train
@train_app.command("agcrc")
@friendly_errors
def train_agcrc_command(
    data: Path = _DATA,
    fold: str = typer.Option("0", "--fold", "-f", help="Cross-validation fold (0-4) or 'all'."),
    config: Config = _CONFIG, sampling: Optional[Sampling] = _SAMPLING, pretrained: Optional[Path] = _PRETRAINED,
    target_spacing: str = _SPACING, epochs: Optional[int] = _EPOCHS, iters: Optional[int] = _ITERS,
    val_iters: Optional[int] = _VAL_ITERS, patch: Optional[str] = _PATCH, batch_size: Optional[int] = _BATCH,
    device: Device = _DEVICE, out: Optional[Path] = _OUT, workers: Optional[int] = _WORKERS,
    threads: Optional[int] = _THREADS, resume: bool = _RESUME,
    validation: bool = typer.Option(True, "--validation/--no-validation",
                                    help="Predict the fold's validation cases after training (nnU-Net's final "
                                         "validation)."),
) -> None:
    """Train AG-CRC (nnU-Net's 3d_fullres U-Net on CT + organ map + OOI) in one of the paper's configurations."""
    from procto.io import check_output
    from procto.metrics.tables import agcrc_config_label
    from procto.train.agcrc import train_agcrc

    if out is not None:
        check_output(out, kind="folder")
    sampling_value = None if sampling is None else sampling.value
    fold_value = int_list(fold, "--fold")[0]
    spacing, patch_size = _spacing(target_spacing), _patch(patch)
    with progress_bar() as progress, torch_threads(threads):
        task = progress.add_task("plan, preprocess, train", total=None)
        result = train_agcrc(data, fold_value, config=config.value, sampling=sampling_value, pretrained=pretrained,
                             out=out, target_spacing=spacing, epochs=epochs, iters=iters, val_iters=val_iters,
                             patch=patch_size, batch_size=batch_size, device=device.value, workers=workers,
                             resume=resume, validate=validation, on_epoch=epoch_reporter(progress, task))
    state = "resumed and finished" if result.resumed else "finished"
    label = agcrc_config_label(config.value)
    console.print(f"AG-CRC {label} fold {fold_value} {state} ({result.epochs} epochs): {result.checkpoint}")
    console.print(f"model folder (for `procto predict agcrc --model`): {result.model_dir}")


# ------------------------------------------------------------------------------------------------------ predict
@predict_app.command("agcrc")
@friendly_errors
def predict_agcrc_command(
    model: Path = typer.Option(..., "--model", "-m", help="Trained AG-CRC model folder (or --out of training), or "
                                                          "a .procto bundle / installed bundle name."),
    ct: Path = typer.Option(..., "--ct", "-i", help="CT file, DICOM series folder, or folder of CTs "
                                                    "(e.g. Task10_Colon/imagesTs)."),
    ts: Optional[Path] = typer.Option(None, "--ts", help="TotalSegmentator map of the CT (TotalSegmentator -i ct.nii.gz "
                                                         "-o ts.nii.gz --ml), or a folder of maps named as the CTs."),
    mos: Optional[str] = typer.Option(None, "--mos", help="'auto': run TotalSegmentator (needs the totalsegmentator "
                                                          "package and its weights; nothing is downloaded)."),
    word: Optional[Path] = typer.Option(None, "--word", help="WORD-model map (or folder of maps), optional."),
    out: Path = typer.Option(..., "--out", "-o", help="Output tumour label map file, or folder."),
    fold: Optional[str] = typer.Option(None, "--fold", "-f", help="Fold(s), e.g. 0 or 0,1,2 (ensemble); default: "
                                                                  "every trained fold."),
    mask_ooi: Optional[bool] = typer.Option(None, "--mask-ooi/--no-mask-ooi",
                                            help="Multiply the tumour probability by the OOI (default: on for "
                                                 "AF-loss models, as trained)."),
    device: Device = typer.Option(Device.auto, "--device", help="Inference device."),
    mirror: bool = typer.Option(True, "--mirror/--no-mirror", help="Mirroring test-time augmentation."),
    step_size: float = typer.Option(0.5, "--step-size", min=0.1, max=1.0, help="Sliding-window step (fraction of "
                                                                               "the patch)."),
    checkpoint: Optional[str] = typer.Option(None, "--checkpoint", help="Checkpoint file name (default: "
                                                                        "checkpoint_final.pth, else best/latest)."),
    threads: Optional[int] = _THREADS,
) -> None:
    """Segment colorectal tumours (label 1) in CT with a trained AG-CRC model; outputs keep each CT's geometry."""
    from procto.bundle import resolve_model
    from procto.errors import InputError
    from procto.infer.agcrc import MOS_AUTO, TS_HOWTO, predict_agcrc
    from procto.infer.nnunet import check_prediction_output

    check_prediction_output(out)
    if mos is not None and mos.strip().lower() != MOS_AUTO:
        raise InputError(f"--mos takes only 'auto' (run TotalSegmentator), got {mos!r}")
    if (mos is None) == (ts is None):
        raise InputError(f"pass the organ map with --ts <file or folder>, or --mos auto; {TS_HOWTO}")
    folds = int_list(fold, "--fold") if fold is not None else None
    with progress_bar() as progress, torch_threads(threads):
        task = progress.add_task("predict", total=None)
        model = resolve_model(model, "agcrc")
        written = predict_agcrc(model, ct, MOS_AUTO if mos else ts, out, word, folds=folds, device=device.value,
                                mask_ooi=mask_ooi, checkpoint=checkpoint, mirror=mirror, step_size=step_size,
                                on_start=lambda n: progress.update(task, total=n),
                                on_case=lambda _: progress.advance(task))
    where = written[0] if len(written) == 1 else written[0].parent
    console.print(f"wrote {len(written)} tumour label map(s) to {where}")


# ------------------------------------------------------------------------------------------------------ cv
def print_agcrc_table(result, name: str, title: str, paper: str = "msd") -> None:
    """The paper's table layout (Dice, PR, RE, NSD, HD95): a row per fold, the model's mean and sd over the folds,
    then the paper's rows (``paper``: ``msd`` = Table III, ``rjh`` = Table IX, ``none``)."""
    from rich.table import Table

    from procto.metrics.tables import agcrc_cv_table, agcrc_paper_rows

    columns, rows = agcrc_cv_table(result.table, result.folds, name, separate_sd=True)
    table = Table(title=title)
    for i, column in enumerate(columns):
        table.add_column(column, justify="left" if i == 0 else "right")
    for row in rows:
        table.add_row(*(row[c] for c in columns))
    if paper != "none":
        table.add_section()
        for row in agcrc_paper_rows(paper):
            table.add_row(*(row[c] for c in columns), style="dim")
    console.print(table)


@cv_app.command("agcrc")
@friendly_errors
def cv_agcrc(
    data: Path = _DATA,
    folds: str = typer.Option("0,1,2,3,4", "--folds", help="Folds to train (or reuse) and evaluate."),
    config: Config = _CONFIG, sampling: Optional[Sampling] = _SAMPLING, pretrained: Optional[Path] = _PRETRAINED,
    target_spacing: str = _SPACING, epochs: Optional[int] = _EPOCHS, iters: Optional[int] = _ITERS,
    val_iters: Optional[int] = _VAL_ITERS, patch: Optional[str] = _PATCH, batch_size: Optional[int] = _BATCH,
    device: Device = _DEVICE, out: Optional[Path] = _OUT, workers: Optional[int] = _WORKERS,
    threads: Optional[int] = _THREADS,
    csv: Optional[Path] = typer.Option(None, "--csv", help="Per-fold table CSV (default: <model folder>/"
                                                           "cv_summary.csv; per-case rows go next to it as "
                                                           "*_cases.csv)."),
    paper: Paper = typer.Option(Paper.msd, "--paper", help="Paper rows to print below: msd (Table III), rjh "
                                                           "(Table IX) or none."),
) -> None:
    """Cross-validation (the paper's MSD-Colon protocol: 5 folds): train (or reuse) each fold, evaluate its validation
    cases (Dice, precision, recall, NSD at 4 mm, HD95 with 1000 mm for a missed tumour) and print the paper's table."""
    from procto.io import check_output
    from procto.metrics.tables import agcrc_config_label
    from procto.train.agcrc import cross_validate_agcrc, write_agcrc_cases_csv, write_agcrc_cv_csv

    if out is not None:
        check_output(out, kind="folder")
    if csv is not None:
        check_output(csv, suffixes=(".csv",))
    sampling_value = None if sampling is None else sampling.value
    fold_list = int_list(folds, "--folds")
    spacing, patch_size = _spacing(target_spacing), _patch(patch)
    with progress_bar() as progress, torch_threads(threads):
        folds_task = progress.add_task("cross-validation folds", total=len(fold_list))
        epoch_task = progress.add_task("train", total=None)

        def on_fold(f: int, stage: str) -> None:
            if stage == "train":
                progress.reset(epoch_task, total=None, description=f"fold {f}: train (or reuse)")
            else:
                progress.update(epoch_task, description=f"fold {f}: evaluate")
                progress.advance(folds_task)

        result = cross_validate_agcrc(
            data, fold_list, config=config.value, sampling=sampling_value, pretrained=pretrained, out=out,
            on_fold=on_fold, target_spacing=spacing, epochs=epochs, iters=iters, val_iters=val_iters,
            patch=patch_size, batch_size=batch_size, device=device.value, workers=workers,
            on_epoch=epoch_reporter(progress, epoch_task),
        )
    csv_path = csv or (result.model_dir / "cv_summary.csv")
    write_agcrc_cv_csv(result, csv_path)
    cases_path = csv_path.with_name(csv_path.stem + "_cases.csv")  # csv_path ends in .csv (checked above)
    write_agcrc_cases_csv(result, cases_path)
    name = f"AG-CRC ({agcrc_config_label(config.value)}{', ' + sampling_value if sampling_value else ''})"
    print_agcrc_table(result, name, f"{name}: {len(fold_list)}-fold cross-validation on {data.name}", paper.value)
    console.print(f"per-fold table: {csv_path}\nper-case metrics: {cases_path}")
