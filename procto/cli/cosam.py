"""``procto train cosam`` and ``procto predict cosam`` (CoSAM, paper 004): metastatic perirectal lymph nodes in CT."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Optional

import typer

from procto.cli._app import console, err_console, friendly_errors, predict_app, progress_bar, train_app


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
                              protocol=protocol.value, seed=seed)
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
    model: Path = typer.Option(..., "--model", "-m", help="CoSAM model.pt (procto train cosam)."),
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
        predictor = CoSAMPredictor(model, device=device, score_threshold=threshold)
        task = progress.add_task("CoSAM slices", total=image.shape[0])
        result = predictor.predict_volume(image, progress=lambda done, total: progress.update(task, completed=done))
    write_image(result.instances, out)
    write_text_atomic(nodes_json, json.dumps({"n_category": result.n_category, "nodes": result.nodes}, indent=2)
                      + "\n")
    n_meta = sum(n["metastatic"] for n in result.nodes)
    console.print(f"{len(result.nodes)} node(s), {n_meta} metastatic → {result.n_category}; {out}, {nodes_json}")
