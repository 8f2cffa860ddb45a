"""``procto phantom``, ``procto evaluate`` and ``procto demo``."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Optional

import typer

from procto.cli._app import app, console, friendly_errors, progress_bar


class Modality(str, Enum):
    ct = "ct"
    mri = "mri"


class Layout(str, Enum):
    nnunet = "nnunet"
    care = "care"
    nifti = "nifti"
    meply = "meply"


# --------------------------------------------------------------------------------------------------- phantom
@app.command()
@friendly_errors
def phantom(
    out: Path = typer.Option(..., "--out", "-o", help="Output folder."),
    n: int = typer.Option(10, "--n", "-n", min=1, help="Number of training cases."),
    n_test: int = typer.Option(0, "--n-test", min=0, help="Number of extra held-out test cases."),
    modality: Optional[Modality] = typer.Option(None, help="ct (axial, HU) or mri (sagittal T2); default mri, ct for "
                                                          "--layout meply."),
    layout: Layout = typer.Option(Layout.nnunet, help="nnunet (raw dataset), care (2D npz slices), nifti, or meply "
                                                      "(CoSAM: 2.5D 15-slice windows + 3D npz, CT)."),
    seed: int = typer.Option(0, help="Seed of the first case; cohorts are deterministic."),
    dataset_id: int = typer.Option(501, help="nnU-Net dataset id (nnunet layout)."),
    name: str = typer.Option("", help="Dataset name (default: ProctoPhantomCT / ProctoPhantomMRI)."),
    shape: Optional[str] = typer.Option(None, help="Volume shape z,y,x, e.g. 32,96,96."),
    spacing: Optional[str] = typer.Option(None, help="Spacing z,y,x in mm, e.g. 4.0,0.875,0.875."),
    benign_nodes: Optional[str] = typer.Option(None, "--benign-nodes", help="Benign lymph nodes per case (0-8), or "
                                               "lo,hi for a random count; default none."),
) -> None:
    """Write a synthetic pelvic phantom cohort (images, rectum/tumour labels, nodes, organs, stage CSV).

    The meply layout (CT) defaults to a 96×128×128 grid at 1.25×0.7×0.7 mm centred on the tumour; its labels hold the
    metastatic nodes only."""
    from procto.errors import InputError
    from procto.io import check_output
    from procto.phantom import write_cohort
    from procto.util import parse_list

    options = {}
    if shape:
        options["shape"] = parse_list(shape, int, n=3, what="--shape", example="32,96,96", minimum=1)
    if spacing:
        options["spacing"] = parse_list(spacing, float, n=3, what="--spacing", example="4.0,0.875,0.875")
    if benign_nodes:
        counts = parse_list(benign_nodes, int, what="--benign-nodes", example="2 or 0,4", minimum=0)
        if len(counts) > 2:
            raise InputError(f"--benign-nodes takes a count or lo,hi, got {benign_nodes!r}")
        options["benign_nodes"] = counts[0] if len(counts) == 1 else counts
    mod = (modality.value if modality is not None else ("ct" if layout is Layout.meply else "mri"))
    check_output(out, kind="folder")
    with progress_bar() as progress:
        task = progress.add_task(f"phantom {mod}", total=n + n_test)
        root = write_cohort(
            out, n, mod, layout=layout.value, seed=seed, n_test=n_test, dataset_id=dataset_id,
            name=name or None,
            progress=lambda *_: progress.advance(task), **options,
        )
    console.print(f"wrote {n + n_test} {mod} phantom cases ({layout.value} layout) to {root}")


# --------------------------------------------------------------------------------------------------- evaluate
def _label_pair(item: str) -> tuple[int, str]:
    key, sep, name = item.partition("=")
    if not sep or not key.strip().isdigit() or not name.strip():
        raise ValueError(item)
    return int(key), name.strip()


def _parse_labels(text: str) -> dict[int, str]:
    from procto.util import parse_list

    return dict(parse_list(text, _label_pair, what="--labels", example="1=rectum,2=tumour"))


@app.command()
@friendly_errors
def evaluate(
    pred: Path = typer.Option(..., "--pred", "-p", help="Folder of predicted label maps."),
    ref: Path = typer.Option(..., "--ref", "-r", help="Folder of reference label maps (same case names)."),
    out: Path = typer.Option(Path("evaluation.csv"), "--out", "-o", help="CSV with one row per case and class."),
    labels: str = typer.Option("1=rectum,2=tumour", help="Classes to evaluate, as id=name pairs."),
    tolerance: float = typer.Option(4.0, help="NSD tolerance in mm."),
) -> None:
    """Compare predicted with reference label maps: Dice, IoU, precision, recall, NSD, HD95, ASD per class.

    A class present in only one of the two maps scores HD95/ASD 1000 mm (the empty-mask penalty); a warning on stderr
    names those cases and classes."""
    from rich.markup import escape

    from procto.cli._app import err_console
    from procto.evaluate import empty_mask_warnings, evaluate_folders, match_cases, summary_table, write_results_csv
    from procto.io import check_output

    check_output(out, suffixes=(".csv",))
    label_map = _parse_labels(labels)
    n_cases = len(match_cases(pred, ref))
    with progress_bar() as progress:
        task = progress.add_task("evaluate", total=n_cases)
        results = evaluate_folders(pred, ref, label_map, tolerance, on_case=lambda _: progress.advance(task))
    write_results_csv(results, out)
    console.print(summary_table(results, f"{n_cases} cases (NSD at {tolerance:g} mm)"))
    console.print(f"per-case results: {out}")
    for line in empty_mask_warnings(results):
        err_console.print(f"[yellow]warning:[/yellow] {escape(line)}", highlight=False, soft_wrap=True)


# --------------------------------------------------------------------------------------------------- demo
@app.command()
@friendly_errors
def demo(
    out: Path = typer.Option(Path("procto_demo_out"), "--out", "-o", help="Working folder for the demo's files "
                             "(patient DICOM, report)."),
    full: bool = typer.Option(False, "--full", help="Train the demo's models longer (their own bundles, "
                              "demo-*-full)."),
    retrain: bool = typer.Option(False, "--retrain", help="Train the demo's bundles again even when installed."),
    seed: int = typer.Option(0, min=0, help="Seed of the phantom patient and of training."),
    device: str = typer.Option("auto", "--device", help="Training device: cpu, cuda or auto."),
    schedule: Optional[str] = typer.Option(None, "--schedule", hidden=True,
                                           help="default, full or smoke (tests: valid bundles, nothing learned)."),
) -> None:
    """The whole pipeline on a phantom patient: trains small models briefly on phantoms (once: cached under
    $PROCTO_HOME), runs `procto report` on the patient's MRI and CT (DICOM) and prints the findings beside the
    phantom's truth."""
    from procto.demo import run_demo
    from procto.io import check_output

    check_output(out, kind="folder")
    run_demo(out, full=full, retrain=retrain, seed=seed, device=device, schedule=schedule, console=console,
             progress_factory=progress_bar)
