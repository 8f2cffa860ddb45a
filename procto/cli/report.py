"""``procto report``: one patient's scans → report.json, report.html, label maps and DICOM-SEG."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from procto.cli._app import app, console, friendly_errors, progress_bar


def _summary(report: dict) -> str:
    t, n, tum = report.get("t_stage") or {}, report.get("nodes") or {}, report.get("tumour") or {}
    parts = [f"T: {t['label']} (P(T3) = {t['t3_probability']:.2f})" if t.get("available")
             else f"T: unavailable ({t.get('reason')})",
             f"N: {n['n_category']} ({n['n_metastatic']} of {len(n['items'])} node(s) metastatic)"
             if n.get("available") else f"N: unavailable ({n.get('reason')})"]
    if tum.get("available"):
        parts.append(f"tumour {tum['volume_ml']:.1f} mL, {tum['craniocaudal_length_mm']:.0f} mm craniocaudal")
    return "; ".join(parts)


@app.command("report")
@friendly_errors
def report_command(
    out: Path = typer.Option(..., "--out", "-o", help="Output folder (report.json, report.html, label maps, "
                                                       "DICOM-SEG)."),
    mri: Optional[Path] = typer.Option(None, "--mri", help="Sagittal T2 MRI: a NIfTI/NRRD/MHA file or a DICOM "
                                                           "series folder."),
    ct: Optional[Path] = typer.Option(None, "--ct", help="Contrast CT: a NIfTI/NRRD/MHA file or a DICOM series "
                                                         "folder."),
    seg: Optional[Path] = typer.Option(None, "--seg", help="Measure this label map (1 rectum, 2 tumour) instead of "
                                                           "segmenting the scan it belongs to."),
    organs: Optional[Path] = typer.Option(None, "--organs", help="The CT's TotalSegmentator organ map (AG-CRC)."),
    bundle: list[str] = typer.Option([], "--bundle", "-b", help="Model bundle (.procto file or installed name); "
                                                                "repeatable.  Default: the installed bundle of each "
                                                                "task ($PROCTO_HOME)."),
    score_threshold: float = typer.Option(0.5, min=0.0, max=1.0, help="CoSAM score from which a node counts as "
                                                                      "metastatic."),
    dicom: bool = typer.Option(True, help="Write a DICOM-SEG (and SR) for DICOM inputs."),
) -> None:
    """From one patient's scans to a report: MRI → rectum + tumour (RCSegNeXt) → T2/T3 (staging); CT → tumour
    (AG-CRC) → lymph nodes (CoSAM) → N category.  Steps whose model is not installed are skipped and say so."""
    from procto.io import check_output
    from procto.report import run_report

    check_output(out, kind="folder")
    with progress_bar() as progress:
        task = progress.add_task("report", total=4)

        def on_step(name: str, status: str) -> None:
            if status == "start":
                progress.update(task, description=name)
            else:
                progress.advance(task)

        report = run_report(out, mri=mri, ct=ct, seg=seg, organs=organs, bundles=bundle,
                            score_threshold=score_threshold, dicom=dicom, progress=on_step)
    for step in report["steps"]:
        if step["status"] != "done":
            console.print(f"  {step['name']}: {step['status']} ({step['reason']})", highlight=False, markup=False)
    for warning in report["quality"]["warnings"]:
        console.print(f"  warning: {warning}", highlight=False, markup=False)
    console.print(_summary(report), highlight=False, markup=False)
    console.print(f"report: {out / 'report.html'}, {out / 'report.json'}", highlight=False, markup=False)
