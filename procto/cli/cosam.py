"""``procto train cosam`` and ``procto predict cosam`` (CoSAM, paper 004): metastatic perirectal lymph nodes in CT."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Optional

import typer

from procto.cli._app import console, cv_app, err_console, friendly_errors, predict_app, progress_bar, train_app


class Stage(str, Enum):
    all = "all"
    detector = "detector"
    segmenter = "segmenter"
    joint = "joint"


class Protocol(str, Enum):
    paper = "paper"
    whole = "whole"


@train_app.command("cosam")
@friendly_errors
def train_cosam_command(
    data: Path = typer.Option(..., "--data", "-d", help="Meply-layout folder (train/*.npz windows; "
                                                         "`procto phantom --layout meply` writes one)."),
    out: Path = typer.Option(Path("cosam_run"), "--out", "-o", help="Output folder (model.pt, last.pt, log.csv)."),
    stage: Stage = typer.Option(Stage.all, help="all (detector, then segmenter, then joint epochs), or one phase."),
    window: int = typer.Option(9, help="Slices per window (odd, 5…15; paper: 9)."),
    epochs_detector: int = typer.Option(100, min=0, help="Detector epochs (paper: 100)."),
    epochs_segmenter: int = typer.Option(100, min=0, help="Segmenter (U-SAM) epochs (paper: 100)."),
    epochs_joint: int = typer.Option(100, min=0, help="Joint epochs (paper: 100)."),
    iters: Optional[int] = typer.Option(None, min=1, help="Steps per epoch (default: one pass over the windows)."),
    protocol: Protocol = typer.Option(Protocol.paper, help="paper: node-centred 112-px crops resized to 224 (the "
                                                           "authors' loader); whole: full slices."),
    lr_detector: float = typer.Option(1e-4, min=0.0, help="Detector learning rate (paper: 1e-4; a small detector "
                                                           "from scratch on a CPU budget: 1e-3)."),
    small: bool = typer.Option(False, help="ResNet-18 detector and a 1-block ViT (CPU smoke runs)."),
    init: Optional[Path] = typer.Option(None, help="Start from an earlier stage's CoSAM model.pt (e.g. --stage "
                                                    "joint --init detector_and_segmenter_run/model.pt)."),
    resume: bool = typer.Option(False, help="Continue from OUT/last.pt."),
    max_steps: Optional[int] = typer.Option(None, min=1, help="Stop after this many iterations (smoke tests)."),
    seed: int = typer.Option(0, help="Random seed."),
    device: str = typer.Option("auto", help="auto (cuda when available), cpu, cuda or cuda:N."),
    threads: Optional[int] = typer.Option(None, min=1, help="CPU threads for torch."),
) -> None:
    """Train CoSAM: the 2.5D sequence detector and U-SAM separately, then jointly with the collaborative classifier
    (AdamW, detector 1e-4, U-SAM 1e-3 / 1e-4 / 1e-4, CCM 1e-3, poly decay, clipping 0.1, HU window [−100, 100])."""
    from procto.io import check_output
    from procto.train.cosam import CoSAMTrainConfig, train_cosam

    check_output(out, kind="folder")
    config = CoSAMTrainConfig(window=window, small=small, epochs_detector=epochs_detector,
                              epochs_segmenter=epochs_segmenter, epochs_joint=epochs_joint, iters_per_epoch=iters,
                              protocol=protocol.value, seed=seed, lr_detector=lr_detector)
    with progress_bar() as progress:
        task = progress.add_task("train CoSAM", total=None)

        def on_step(i, total, info):
            progress.update(task, completed=i, total=total,
                            description=f"train CoSAM epoch {info['epoch'] + 1} loss {info['loss']:.3f}")

        result = train_cosam(data, out, config, stage.value, init=init, resume=resume, device=device, threads=threads,
                             on_step=on_step, max_steps=max_steps,
                             log=lambda msg: err_console.print(msg, highlight=False))
    console.print(f"trained CoSAM ({stage.value}): {result.iterations} iterations in {result.seconds:.0f} s; "
                  f"model: {result.checkpoint}; log: {out / 'log.csv'}")


@predict_app.command("cosam")
@friendly_errors
def predict_cosam_command(
    model: Path = typer.Option(..., "--model", "-m", help="CoSAM model.pt (procto train cosam), or a .procto "
                                                          "bundle / installed bundle name."),
    ct: Path = typer.Option(..., "--ct", "-i", help="CT image (NIfTI/NRRD/MHA or a DICOM series folder)."),
    out: Path = typer.Option(..., "--out", "-o", help="Node instance map to write (.nii.gz, .nii, .nrrd, .mha)."),
    nodes_json: Optional[Path] = typer.Option(None, "--json", help="Node list to write (default: OUT with .json)."),
    threshold: float = typer.Option(0.5, min=0.0, max=1.0, help="CCM score for a mask / a metastatic node."),
    device: str = typer.Option("auto", help="auto (cuda when available), cpu, cuda or cuda:N."),
    threads: Optional[int] = typer.Option(None, min=1, help="CPU threads for torch."),
) -> None:
    """CoSAM on a whole CT: node instance map in the CT's geometry, a JSON list of nodes (centre, short/long axis,
    volume, score) and the N category (N0 / N1 1–3 / N2 ≥ 4 metastatic nodes)."""
    import json

    from procto.bundle import resolve_model
    from procto.infer.cosam import CoSAMPredictor
    from procto.io import check_output, read_image, strip_image_suffix, write_image, write_text_atomic
    from procto.io.image import WRITE_SUFFIXES
    from procto.util import torch_threads

    out = check_output(out, suffixes=WRITE_SUFFIXES)
    if nodes_json is None:
        nodes_json = out.with_name(strip_image_suffix(out) + ".json")
    nodes_json = check_output(nodes_json, suffixes=(".json",))
    image = read_image(ct)
    with torch_threads(threads), progress_bar() as progress:
        model = resolve_model(model, "cosam")
        predictor = CoSAMPredictor(model, device=device, score_threshold=threshold)
        task = progress.add_task("CoSAM slices", total=image.shape[0])
        result = predictor.predict_volume(image, progress=lambda done, total: progress.update(task, completed=done))
    write_image(result.instances, out)
    write_text_atomic(nodes_json, json.dumps({"n_category": result.n_category, "nodes": result.nodes}, indent=2)
                      + "\n")
    n_meta = sum(n["metastatic"] for n in result.nodes)
    console.print(f"{len(result.nodes)} node(s), {n_meta} metastatic → {result.n_category}; {out}, {nodes_json}")


def _window_results(model_path: Path, data: Path, split: str, device: str) -> tuple[dict, int]:
    from procto.nets.checkpoint import load_checkpoint
    from procto.preprocess.meply import MeplyDataset
    from procto.train.cosam_eval import evaluate_cosam
    from procto.util import resolve_device

    dev = resolve_device(device)
    model, _ = load_checkpoint(model_path, "cosam", title="CoSAM", device=dev)
    size = int(model.segmenter.img_size)
    items = MeplyDataset(data, split, window=model.window, size=size, protocol="paper")
    return evaluate_cosam(model, items, device=dev), model.window


def _volume_cases(data: Path, split: str):
    """(name, CT, metastatic node instances) of the split's cases that have a 3D npz (MEPLYv2 layout)."""
    from procto.preprocess.meply import read_meply_volume

    listed = data / f"caselist_{split}.txt"
    names = sorted({ln.strip().rpartition("_")[0] for ln in listed.read_text().splitlines() if ln.strip()}) \
        if listed.is_file() else []
    for name in names:
        path = data / "npz" / f"{name}.npz"
        if path.is_file():
            ct, nodes, _ = read_meply_volume(path)
            yield name, ct, nodes


@cv_app.command("cosam")
@friendly_errors
def cv_cosam_command(
    data: Path = typer.Option(..., "--data", "-d", help="Meply-layout folder (its test split; 3D npz/ for the "
                                                         "whole-volume protocol)."),
    models: list[Path] = typer.Option(..., "--model", "-m", help="CoSAM model.pt; repeat for the window ablation "
                                                                 "(one model per window)."),
    separate: Optional[Path] = typer.Option(None, help="A model trained without the joint phase (Table 4's E2E ✗)."),
    split: str = typer.Option("test", help="Split to evaluate."),
    volumes: bool = typer.Option(True, help="Also the whole-volume protocol on the split's 3D npz cases."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="JSON with every number."),
    device: str = typer.Option("auto", help="auto (cuda when available), cpu, cuda or cuda:N."),
    threads: Optional[int] = typer.Option(None, min=1, help="CPU threads for torch."),
) -> None:
    """Evaluate CoSAM models on a Meply split and print the paper's Tables 2–4 beside its numbers (paper protocol:
    node-centred 112-px crops, AP50 per window centre slice with the 16-px margin, pooled Dice/IoU), then procto's
    whole-volume table (2D AP50, 3D node AP@0.1, FROC, Dice, N-category accuracy) — labelled as not the paper's."""
    import json

    from procto.infer.cosam import CoSAMPredictor
    from procto.io import check_output, write_text_atomic
    from procto.metrics.tables import cosam_table2, cosam_table3, cosam_table4, cosam_whole_volume_table
    from procto.train.cosam_eval import evaluate_cosam_volumes
    from procto.util import torch_threads

    if out is not None:
        out = check_output(out, suffixes=(".json",))
    report: dict = {"windows": {}, "volumes": {}}
    with torch_threads(threads), progress_bar() as progress:
        task = progress.add_task("CoSAM windows", total=len(models) + (separate is not None))
        by_window = {}
        for path in models:
            res, window = _window_results(path, data, split, device)
            report["windows"][str(path)] = {**res, "window": window}
            by_window.setdefault(window, res)
            progress.advance(task)
        main = report["windows"][str(models[0])]
        table4 = {(True, True): (main["ap50"], main["dice"]), (True, False): (main["ap50_det"], None)}
        if separate is not None:
            res, _ = _window_results(separate, data, split, device)
            report["separate"] = res
            table4[(False, False)] = (res["ap50_det"], res["dice"])
            progress.advance(task)
        cases = list(_volume_cases(data, split)) if volumes and (data / "npz").is_dir() else []
        if cases:
            vtask = progress.add_task("CoSAM volumes", total=len(cases) * len(models))
            for path in models:
                predictor = CoSAMPredictor(path, device=device)
                report["volumes"][path.stem if len(models) == 1 else str(path)] = evaluate_cosam_volumes(
                    predictor, cases, progress=lambda *_: progress.advance(vtask))
    tables = [cosam_table2([("CoSAM (procto)", main["dice"], main["iou"])]),
              cosam_table3({w: r["ap50_det"] for w, r in by_window.items()}), cosam_table4(table4)]
    if report["volumes"]:
        tables.append(cosam_whole_volume_table(report["volumes"]))
    for table in tables:
        console.print(table + "\n", markup=False, highlight=False, soft_wrap=True)
    if out is not None:
        write_text_atomic(out, json.dumps(report, indent=1, default=_jsonable) + "\n")
        console.print(f"results: {out}")


def _jsonable(value):
    """JSON for MeanSD / FROCResult (dataclasses) and numpy numbers."""
    import dataclasses

    import numpy as np

    if dataclasses.is_dataclass(value):
        return dataclasses.asdict(value)
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)
