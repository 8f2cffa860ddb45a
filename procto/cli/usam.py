"""``procto train usam`` and ``procto predict usam`` (U-SAM, Zhang et al., Commun. Med. 2025).

Evaluation in the layout of the paper's Tables 2 and 4 is ``procto predict usam --model M --evaluate <CARE folder>``.
"""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Optional

import typer

from procto.cli._app import console, err_console, friendly_errors, predict_app, progress_bar, train_app


class Variant(str, Enum):
    usam_b = "usam_b"
    usam_b_lora = "usam_b_lora"
    sam_b = "sam_b"
    sam_b_lora = "sam_b_lora"


class PointLabels(str, Enum):
    positive = "positive"
    cls = "class"


class PromptMode(str, Enum):
    none = "none"
    points = "points"
    boxes = "boxes"
    both = "both"
    mixed = "mixed"


def _model_kwargs(encoder_depth, encoder_embed_dim, cnn_channels, lora_rank) -> dict:
    from procto.util import parse_list

    kw: dict = {}
    if encoder_depth is not None:
        kw["encoder_depth"] = encoder_depth
    if encoder_embed_dim is not None:
        kw["encoder_embed_dim"] = encoder_embed_dim
    channels = parse_list(cnn_channels, int, n=4, what="--cnn-channels", example="32,64,128,256", minimum=1)
    if channels is not None:
        kw["cnn_channels"] = list(channels)
    if lora_rank is not None:
        kw["lora_rank"] = lora_rank
    return kw


@train_app.command("usam")
@friendly_errors
def train_usam_command(
    data: Path = typer.Option(..., "--data", "-d", help="CARE-layout folder: train_npz/ (and test_npz/) with "
                                                         "image/label .npz slices."),
    out: Path = typer.Option(Path("usam_run"), "--out", "-o", help="Output folder (model.pt, last.pt, log.csv)."),
    variant: Variant = typer.Option(Variant.usam_b, help="usam_b (U-SAM-B), usam_b_lora, sam_b (SAM-B baseline), "
                                                         "sam_b_lora."),
    epochs: int = typer.Option(100, min=1, help="Epochs (paper: 100)."),
    batch_size: int = typer.Option(24, "--batch-size", "-b", min=1, help="Batch size (paper: 24)."),
    prompt: PromptMode = typer.Option(PromptMode.none, help="Prompts sampled per batch from the reference: none, "
                                                            "points (k per class), boxes (rectum box), both, or "
                                                            "mixed (each batch one of none/points/boxes, 1/3/5 "
                                                            "points: one model for all settings)."),
    points_per_class: int = typer.Option(3, min=1, help="Points per class in points/both mode (paper: 3)."),
    point_labels: PointLabels = typer.Option(PointLabels.positive, help="positive: every point is a positive click "
                                                                        "(the authors'); class: the point's label "
                                                                        "tells normal rectum from tumour."),
    sam_checkpoint: Optional[Path] = typer.Option(None, help="Official SAM checkpoint (sam_vit_b_01ec64.pth) to "
                                                             "initialise the encoder/decoder from."),
    resume: bool = typer.Option(False, help="Continue from OUT/last.pt."),
    val_split: Optional[str] = typer.Option(None, help="Split evaluated after each epoch (best.pt keeps the best)."),
    lr: float = typer.Option(1e-3, help="Learning rate of the decoder, prompt encoder and heads."),
    lr_vit: float = typer.Option(1e-4, help="Learning rate of the ViT image encoder."),
    lr_backbone: float = typer.Option(1e-4, help="Learning rate of the CNN down path (U-shaped adapter)."),
    weight_decay: float = typer.Option(1e-4, help="AdamW weight decay."),
    clip: float = typer.Option(0.1, help="Gradient clipping max-norm (0 = off)."),
    warmup: bool = typer.Option(False, help="Half an epoch of linear warm-up before the poly decay."),
    no_augment: bool = typer.Option(False, "--no-augment", help="Turn off random flip/rotation."),
    img_size: Optional[int] = typer.Option(None, help="Model input size (default 224; multiples of 16)."),
    encoder_depth: Optional[int] = typer.Option(None, help="Smaller ViT: number of blocks (default 12)."),
    encoder_embed_dim: Optional[int] = typer.Option(None, help="Smaller ViT: width (default 768)."),
    cnn_channels: Optional[str] = typer.Option(None, help="U-SAM CNN widths f0..f3 (default 32,64,128,256)."),
    lora_rank: Optional[int] = typer.Option(None, help="LoRA rank of the *_lora variants (default 4)."),
    max_steps: Optional[int] = typer.Option(None, min=1, help="Stop after this many iterations (smoke tests)."),
    seed: int = typer.Option(0, help="Random seed."),
    device: str = typer.Option("auto", help="auto (cuda when available), cpu, cuda or cuda:N."),
    workers: int = typer.Option(0, min=0, help="Data-loader worker processes."),
    threads: Optional[int] = typer.Option(None, min=1, help="CPU threads for torch."),
    amp: bool = typer.Option(False, help="Mixed precision (float16 autocast) on CUDA."),
) -> None:
    """Train U-SAM (or the SAM baseline) with the authors' recipe: AdamW with three learning rates (decoder and
    prompt encoder 1e-3, ViT 1e-4, CNN adapter 1e-4), weight decay 1e-4, poly decay, gradient clipping 0.1,
    0.4 CE + 0.6 Dice, random flip/rotation, batch 24, 100 epochs.  Evaluate afterwards with
    `procto predict usam --model OUT/model.pt --evaluate DATA`."""
    from procto.io import check_output
    from procto.train.usam import USamTrainConfig, train_usam

    check_output(out, kind="folder")
    config = USamTrainConfig(
        variant=variant.value, model_kwargs=_model_kwargs(encoder_depth, encoder_embed_dim, cnn_channels, lora_rank),
        epochs=epochs, batch_size=batch_size, lr=lr, lr_vit=lr_vit, lr_backbone=lr_backbone,
        weight_decay=weight_decay, clip_max_norm=clip, warmup=warmup, prompt=prompt.value,
        points_per_class=points_per_class, point_labels=point_labels.value, augment=not no_augment,
        img_size=img_size, seed=seed,
        num_workers=workers, device=device, sam_checkpoint=str(sam_checkpoint) if sam_checkpoint else None,
        val_split=val_split, max_steps=max_steps, threads=threads, amp=amp,
    )
    with progress_bar() as progress:
        task = progress.add_task(f"train {variant.value}", total=None)

        def on_step(i, total, info):
            progress.update(task, completed=i, total=total,
                            description=f"train {variant.value} epoch {info['epoch'] + 1} loss {info['loss']:.3f}")

        result = train_usam(data, out, config, resume=resume, progress=on_step,
                            log=lambda msg: err_console.print(msg, highlight=False))
    console.print(f"trained {variant.value}: {result.iterations} iterations in {result.seconds:.0f} s; "
                  f"model: {result.model_path}; log: {out / 'log.csv'}")


def _parse_slices(text: Optional[str]):
    from procto.errors import InputError
    from procto.util import parse_list

    if text is None or text in ("all", "prompted"):
        return text
    what, example = "--slices", "all, prompted, 20:45 or 20,21,22"
    if ":" not in text:
        return list(parse_list(text, int, what=what, example=example, minimum=0))
    bounds = parse_list(text.replace(":", ","), int, n=2, what=what, example=example, minimum=0)
    if bounds[1] <= bounds[0]:
        raise InputError(f"{what} FIRST:STOP needs FIRST < STOP, got {text!r}")
    return range(*bounds)


@predict_app.command("usam")
@friendly_errors
def predict_usam_command(
    model: Path = typer.Option(..., "--model", "-m", help="Checkpoint from `procto train usam` (model.pt), or a "
                                                          ".procto bundle / installed bundle name."),
    input: Optional[Path] = typer.Option(None, "--input", "-i", help="CT volume in HU (NIfTI, NRRD, MHA, DICOM "
                                                                      "folder); axial slices along the z axis."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Output label map (0 background, "
                                                                        "1 normal rectum, 2 tumour)."),
    points: Optional[Path] = typer.Option(None, help='JSON points in original-slice pixels: {"points": [{"slice": 12, '
                                                     '"x": 140, "y": 201, "class": 2}]}.'),
    boxes: Optional[Path] = typer.Option(None, help='JSON boxes: {"boxes": [{"slice": 12, "box": [x1, y1, x2, y2]}, '
                                                    '{"slices": [10, 14], "box": [...]}]}.'),
    slices: Optional[str] = typer.Option(None, help="Slices to segment: all (default without prompts), prompted "
                                                    "(default with prompts), FIRST:STOP, or a comma list."),
    evaluate: Optional[Path] = typer.Option(None, help="Instead of -i/-o: evaluate on this CARE-layout folder "
                                                       "(Tables 2/4: Dice, IoU, NSD per class and mean)."),
    split: str = typer.Option("test", help="Split of --evaluate (test_npz/ …)."),
    prompts: str = typer.Option("none,points1,points3,points5,boxes", help="Prompt settings for --evaluate."),
    csv: Optional[Path] = typer.Option(None, help="CSV of the --evaluate table (per-case rows next to it)."),
    tolerance: float = typer.Option(2.0, help="NSD tolerance in mm for --evaluate."),
    pixel_mm: float = typer.Option(1.0, help="Pixel size for NSD when the CARE folder has no case geometry."),
    seed: int = typer.Option(0, help="Seed of the evaluation prompts."),
    batch_size: int = typer.Option(8, min=1, help="Slices per forward pass."),
    device: str = typer.Option("auto", help="auto (cuda when available), cpu, cuda or cuda:N."),
) -> None:
    """Segment normal rectum and tumour in a CT volume slice by slice, optionally with point/box prompts given in
    pixel coordinates of the original slices; or, with --evaluate, score a CARE test folder per prompt setting
    (no prompt, 1/3/5 points per class, box) aggregated over all slices per class (the authors' way) and per case."""
    from procto.bundle import resolve_model
    from procto.errors import InputError
    from procto.infer.usam import USamPredictor
    from procto.io import check_output
    from procto.io.image import WRITE_SUFFIXES

    if evaluate is None and (input is None or output is None):
        raise InputError("give -i/--input and -o/--output (segmentation) or --evaluate <CARE folder>")
    if output is not None:
        check_output(output, suffixes=WRITE_SUFFIXES)
    if csv is not None:
        check_output(csv, suffixes=(".csv",))
    if input is not None and not input.exists():
        raise InputError("input image not found", input)
    model = resolve_model(model, "usam")
    predictor = USamPredictor(model, device=device, batch_size=batch_size)
    if evaluate is not None:
        from procto.infer.usam_eval import evaluate_usam, parse_settings
        from procto.preprocess.care import CareDataset

        settings = parse_settings(prompts)
        dataset = CareDataset(evaluate, split, img_size=predictor.img_size)
        with progress_bar() as progress:
            task = progress.add_task("evaluate", total=len(dataset) * len(settings))
            ev = evaluate_usam(predictor.model, dataset, settings, tolerance_mm=tolerance,
                               pixel_mm=(pixel_mm, pixel_mm), seed=seed, batch_size=batch_size,
                               box_mode=predictor.box_mode, point_label_mode=predictor.point_label_mode,
                               progress=lambda n: progress.advance(task, n))
        typer.echo(ev.table())  # plain text: the tables are wider than a terminal's default 80 columns
        typer.echo(ev.table(per_case=True))
        if csv is not None:
            pooled, per_case = ev.write_csv(csv)
            console.print(f"tables: {pooled}, {per_case}")
        if input is None:
            return

    from procto.io import read_image, write_image
    from procto.preprocess.prompts import load_prompt_file, merge_prompts

    user = merge_prompts(*(load_prompt_file(p) for p in (points, boxes) if p is not None))
    volume = read_image(input)
    chosen = _parse_slices(slices) or ("prompted" if user else "all")
    zs = predictor.select_slices(volume.shape[0], user, chosen)
    with progress_bar() as progress:
        task = progress.add_task("segment", total=len(zs))
        result = predictor.predict_volume(volume, user or None, slices=zs, progress=lambda n: progress.advance(task, n))
    write_image(result, output)
    counts = {c: int((result.array == c).sum()) for c in (1, 2)}
    console.print(f"wrote {output}: {len(zs)} slices segmented; voxels normal {counts[1]}, tumour {counts[2]}")
