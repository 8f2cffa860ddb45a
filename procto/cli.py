"""The ``procto`` command line (typer + rich).

Every verb prints one line ``error: <file>: <problem>`` and exits with status 2 on bad input; long work shows a
progress bar on stderr.
"""

from __future__ import annotations

import functools
import sys
from enum import Enum
from pathlib import Path
from typing import Callable, Optional

import typer
from rich.console import Console
from rich.table import Table

from procto import __version__
from procto.errors import ProctoError

app = typer.Typer(
    name="procto",
    help="Rectal-cancer imaging AI: segmentation, staging and lymph-node detection in CT and MRI.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console()
err_console = Console(stderr=True)

# Model verbs: ``procto train <model>``, ``procto predict <model>``, ``procto cv <model>``.  Each model's commands live
# in ``procto/commands/<model>.py`` and register themselves on these groups (imported at the bottom of this file).
train_app = typer.Typer(help="Train a model (see `procto train <model> --help`).", no_args_is_help=True)
predict_app = typer.Typer(help="Run a trained model on images.", no_args_is_help=True)
cv_app = typer.Typer(help="Cross-validation with the paper's table layout.", no_args_is_help=True)
app.add_typer(train_app, name="train")
app.add_typer(predict_app, name="predict")
app.add_typer(cv_app, name="cv")


def _version(value: bool) -> None:
    if value:
        console.print(f"procto {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version."),
) -> None:
    """procto: rectal-cancer imaging AI toolkit."""


def friendly_errors(fn: Callable) -> Callable:
    """Turn procto's input errors into one line on stderr and exit status 2."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except ProctoError as exc:
            err_console.print(f"[red]error:[/red] {exc}", highlight=False, soft_wrap=True)
            raise typer.Exit(2) from None

    return wrapper


def progress_bar():
    """A rich progress bar on stderr (hidden when stderr is not a terminal and CI is quiet)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    return Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
        console=err_console, transient=False,
    )


class Modality(str, Enum):
    ct = "ct"
    mri = "mri"


class Layout(str, Enum):
    nnunet = "nnunet"
    care = "care"
    nifti = "nifti"


# --------------------------------------------------------------------------------------------------- phantom
@app.command()
@friendly_errors
def phantom(
    out: Path = typer.Option(..., "--out", "-o", help="Output folder."),
    n: int = typer.Option(10, "--n", "-n", min=1, help="Number of training cases."),
    n_test: int = typer.Option(0, "--n-test", min=0, help="Number of extra held-out test cases."),
    modality: Modality = typer.Option(Modality.mri, help="ct (axial, HU) or mri (sagittal T2)."),
    layout: Layout = typer.Option(Layout.nnunet, help="nnunet (raw dataset), care (2D npz slices) or nifti."),
    seed: int = typer.Option(0, help="Seed of the first case; cohorts are deterministic."),
    dataset_id: int = typer.Option(501, help="nnU-Net dataset id (nnunet layout)."),
    name: str = typer.Option("", help="Dataset name (default: ProctoPhantomCT / ProctoPhantomMRI)."),
    shape: Optional[str] = typer.Option(None, help="Volume shape z,y,x, e.g. 32,96,96."),
    spacing: Optional[str] = typer.Option(None, help="Spacing z,y,x in mm, e.g. 4.0,0.875,0.875."),
) -> None:
    """Write a synthetic pelvic phantom cohort (images, rectum/tumour labels, nodes, organs, stage CSV)."""
    from procto.phantom import write_cohort

    options = {}
    if shape:
        options["shape"] = _parse_triple(shape, int, "shape")
    if spacing:
        options["spacing"] = _parse_triple(spacing, float, "spacing")
    with progress_bar() as progress:
        task = progress.add_task(f"phantom {modality.value}", total=n + n_test)
        root = write_cohort(
            out, n, modality.value, layout=layout.value, seed=seed, n_test=n_test, dataset_id=dataset_id,
            name=name or None,
            progress=lambda *_: progress.advance(task), **options,
        )
    console.print(f"wrote {n + n_test} {modality.value} phantom cases ({layout.value} layout) to {root}")


def _parse_triple(text: str, cast, what: str):
    from procto.errors import InputError

    try:
        values = tuple(cast(v) for v in text.replace("x", ",").split(","))
    except ValueError:
        raise InputError(f"--{what} must be three numbers like 32,96,96, got {text!r}") from None
    if len(values) != 3:
        raise InputError(f"--{what} must be three numbers like 32,96,96, got {text!r}")
    return values


# --------------------------------------------------------------------------------------------------- evaluate
def _parse_labels(text: str) -> dict[int, str]:
    from procto.errors import InputError

    labels = {}
    for item in text.split(","):
        key, _, name = item.partition("=")
        if not key.strip().isdigit() or not name.strip():
            raise InputError(f"--labels must look like 1=rectum,2=tumour, got {text!r}")
        labels[int(key)] = name.strip()
    return labels


def print_summary(results, title: str, metrics=None) -> None:
    """Print a rich table of mean ± sd per class and metric."""
    from procto.evaluate import METRICS, summarise

    metrics = metrics or METRICS
    summary = summarise(results)
    table = Table(title=title)
    table.add_column("class")
    headers = {"dice": "Dice", "iou": "IoU", "precision": "PR", "recall": "RE", "nsd": "NSD", "hd95": "HD95 mm",
               "asd": "ASD mm"}
    for m in metrics:
        table.add_column(headers.get(m, m), justify="right")
    for label, values in summary.items():
        table.add_row(label, *(str(values[m]) for m in metrics))
    console.print(table)


@app.command()
@friendly_errors
def evaluate(
    pred: Path = typer.Option(..., "--pred", "-p", help="Folder of predicted label maps."),
    ref: Path = typer.Option(..., "--ref", "-r", help="Folder of reference label maps (same case names)."),
    out: Path = typer.Option(Path("evaluation.csv"), "--out", "-o", help="CSV with one row per case and class."),
    labels: str = typer.Option("1=rectum,2=tumour", help="Classes to evaluate, as id=name pairs."),
    tolerance: float = typer.Option(4.0, help="NSD tolerance in mm."),
) -> None:
    """Compare predicted with reference label maps: Dice, IoU, precision, recall, NSD, HD95, ASD per class."""
    from procto.evaluate import evaluate_folders, match_cases, write_results_csv

    label_map = _parse_labels(labels)
    n_cases = len(match_cases(pred, ref))
    with progress_bar() as progress:
        task = progress.add_task("evaluate", total=n_cases)
        results = evaluate_folders(pred, ref, label_map, tolerance, on_case=lambda _: progress.advance(task))
    write_results_csv(results, out)
    print_summary(results, f"{n_cases} cases (NSD at {tolerance:g} mm)")
    console.print(f"per-case results: {out}")


# --------------------------------------------------------------------------------------------------- demo
@app.command()
@friendly_errors
def demo(
    out: Path = typer.Option(Path("procto_demo_out"), "--out", "-o", help="Working folder for the demo's files."),
    n: int = typer.Option(8, "--n", "-n", min=1, help="Number of training phantoms."),
    n_test: int = typer.Option(2, "--n-test", min=1, help="Number of held-out phantoms to segment."),
    epochs: int = typer.Option(8, "--epochs", min=1, help="Training epochs (the paper: 100)."),
    iters: int = typer.Option(18, "--iters", min=1, help="Iterations per epoch (the paper: 250)."),
    seed: int = typer.Option(0, help="Seed of the phantom cohort and of training."),
    device: str = typer.Option("auto", "--device", help="cpu, cuda or auto."),
) -> None:
    """The main job on the embedded default: train RCSegNeXt briefly on MRI phantoms, segment held-out phantoms and
    print the Dice table."""
    from procto.demo import run_demo

    run_demo(out, n=n, n_test=n_test, epochs=epochs, iters=iters, seed=seed, device=device, console=console,
             progress_factory=progress_bar)


def _register_model_commands() -> None:
    import importlib
    import pkgutil

    import procto.commands

    for info in pkgutil.iter_modules(procto.commands.__path__):
        importlib.import_module(f"procto.commands.{info.name}")


_register_model_commands()

if __name__ == "__main__":  # pragma: no cover
    # ``python -m procto.cli``: the model commands registered themselves on ``procto.cli.app`` (this file imported
    # as a module), not on this ``__main__`` copy's app
    from procto.cli import app as _app

    sys.exit(_app())
