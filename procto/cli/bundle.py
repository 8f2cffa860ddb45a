"""``procto bundle export | install | list``: trained models as portable ``.procto`` files (:mod:`procto.bundle`).

Every ``procto predict <model> --model`` also takes a ``.procto`` file or the name of an installed bundle."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from procto.cli._app import app, console, friendly_errors

bundle_app = typer.Typer(help="Portable trained models: export a run as one .procto file, install it, list the "
                              "installed ones ($PROCTO_HOME, default ~/.procto).", no_args_is_help=True)
app.add_typer(bundle_app, name="bundle")

_TASK_HELP = "rcsegnext, agcrc, usam, staging or cosam"


def _size(path: Path) -> str:
    size = float(path.stat().st_size)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return ""


@bundle_app.command("export")
@friendly_errors
def export_command(
    model: Path = typer.Option(..., "--model", "-m", help="Run folder or model: --out of `procto train usam|staging|"
                                                          "cosam` (its model.pt) or a checkpoint; --out of `procto "
                                                          "train rcsegnext|agcrc`, an nnU-Net results folder or one "
                                                          "of its fold_X folders."),
    out: Path = typer.Option(..., "--out", "-o", help="Bundle file to write (name.procto)."),
    task: Optional[str] = typer.Option(None, "--task", help=f"Task ({_TASK_HELP}); needed only for models of "
                                                            "nnU-Net's own trainers."),
    name: Optional[str] = typer.Option(None, "--name", help="Default install name (default: from --out)."),
    trained_on: Optional[str] = typer.Option(None, "--trained-on", help="What the model was trained on, recorded in "
                                                                       "the manifest (\"phantoms\" makes `procto "
                                                                       "report` say it has no accuracy claim)."),
) -> None:
    """Write a trained model (weights, nnU-Net plans/dataset.json or procto's config, a manifest with sha256 of
    every member) as one .procto file."""
    import json
    import zipfile

    from procto.bundle import export_bundle
    from procto.io import check_output

    check_output(out, suffixes=(".procto",))
    written = export_bundle(model, out, task=task, name=name, training_source=trained_on)
    with zipfile.ZipFile(written) as zf:
        manifest = json.loads(zf.read("manifest.json"))
    console.print(f"wrote {written} ({_size(written)}): {manifest['task']} {manifest.get('architecture') or ''}, "
                  f"{len(manifest['files'])} files; install with `procto bundle install {written}`", highlight=False)


@bundle_app.command("install")
@friendly_errors
def install_command(
    file: Path = typer.Argument(..., help="A .procto bundle, or an nnU-Net model zip (nnUNetv2_export_model_to_zip)."),
    name: Optional[str] = typer.Option(None, "--name", help="Install under this name (default: the bundle's name, "
                                                            "or the zip's file name)."),
    task: Optional[str] = typer.Option(None, "--task", help=f"Task of an nnU-Net zip ({_TASK_HELP}; default: from "
                                                            "its trainer name)."),
    force: bool = typer.Option(False, "--force", help="Replace an installed bundle of the same name."),
) -> None:
    """Verify a bundle (member names, sha256, weights-only loading) and extract it to $PROCTO_HOME/bundles/NAME;
    then `procto predict <task> --model NAME`."""
    import json

    from procto.bundle import install_bundle

    dest = install_bundle(file, name, task=task, force=force)
    manifest = json.loads((dest / "manifest.json").read_text())
    console.print(f"installed {dest.name} ({manifest['task']} {manifest.get('architecture') or ''}) at {dest}; "
                  f"use it with `procto predict {manifest['task']} --model {dest.name}`", highlight=False)


@bundle_app.command("list")
@friendly_errors
def list_command() -> None:
    """The installed bundles: name, task, modality, procto version and where they are."""
    from rich.table import Table

    from procto.bundle import bundles_dir, list_bundles

    rows = list_bundles()
    if not rows:
        console.print(f"no bundles installed in {bundles_dir()}", highlight=False)
        return
    table = Table(title=f"bundles in {bundles_dir()}", title_justify="left")
    for column in ("name", "task", "architecture", "modality", "procto"):
        table.add_column(column, no_wrap=column == "name", overflow="fold")
    table.add_column("installed at", overflow="fold")
    for r in rows:
        table.add_row(r["name"], r["task"] or "?", r["architecture"] or "", r["modality"] or "",
                      r["procto_version"] or "", r["path"] if "problem" not in r else f"{r['path']} ({r['problem']})")
    console.print(table)
