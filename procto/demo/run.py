"""``procto demo``: the whole pipeline on a phantom patient — the demo's bundles (trained once, cached under
``$PROCTO_HOME``), the patient's MRI and CT as DICOM series, ``procto report`` on them, and the report's findings
beside the phantom's truth."""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from procto.demo.bundles import TASKS, TITLES, installed, bundle_names, schedule_of, train_demo_bundles
from procto.demo.patient import demo_patient, write_demo_patient

#: A value the report does not give.
_MISSING = "—"


@dataclass
class DemoResult:
    """What :func:`run_demo` did: the report dict, the phantom's truth, the table's rows ``(finding, procto, truth)``,
    the paths (``out``, ``mri``, ``ct``, ``report``, ``json``, ``html`` when written), the bundles used
    (``{task: name}``), the tasks trained in this run (the rest came from the cache) and the seconds of each step."""

    report: dict[str, Any]
    truth: dict[str, Any]
    rows: list[tuple[str, str, str]]
    paths: dict[str, Path]
    bundles: dict[str, str]
    trained: list[str] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)


def _num(value: Any, digits: int) -> str:
    return _MISSING if value is None else f"{float(value):.{digits}f}"


def _tumour_rows(tumour: dict, truth: dict) -> list[tuple[str, str, str]]:
    have = tumour if tumour.get("available") else {}
    rows = []
    for label, key, digits in (("tumour volume (mL)", "volume_ml", 1),
                               ("craniocaudal length (mm)", "craniocaudal_length_mm", 1),
                               ("circumferential extent (°)", "circumferential_extent_deg", 0),
                               ("distance to ARJ, proxy (mm)", "distance_to_anorectal_junction_mm", 1)):
        rows.append((label, _num(have.get(key), digits), _num(truth.get(key), digits)))
    return rows


def table_rows(report: dict[str, Any], truth: dict[str, Any]) -> list[tuple[str, str, str]]:
    """The demo's table: ``(finding, procto's value, the phantom's value)`` as printed."""
    t = report.get("t_stage") or {}
    nodes = report.get("nodes") or {}
    t_ok, n_ok = bool(t.get("available")), bool(nodes.get("available"))
    return [
        ("T stage", t.get("label") if t_ok else _MISSING, truth["t_stage"]),
        ("P(T3)", _num(t.get("t3_probability"), 2) if t_ok else _MISSING, _MISSING),
        ("N category", nodes.get("n_category") if n_ok else _MISSING, truth["n_category"]),
        ("metastatic nodes", str(nodes.get("n_metastatic")) if n_ok else _MISSING, str(truth["n_metastatic"])),
        *_tumour_rows(report.get("tumour") or {}, truth["tumour"]),
    ]


def render_table(rows: list[tuple[str, str, str]]):
    """The rows as a rich Table."""
    from rich.table import Table

    table = Table(title="procto report vs the phantom's truth")
    table.add_column("finding")
    table.add_column("procto", justify="right")
    table.add_column("phantom truth", justify="right")
    for row in rows:
        table.add_row(*row)
    return table


def _progress(factory: Callable | None):
    """A progress bar from ``factory`` (yields None without one)."""
    return factory() if factory is not None else contextlib.nullcontext()


def _html_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("procto.report.html") is not None


def _run_report(out: Path, series: dict[str, Path], names: dict[str, str], home, progress_factory) -> dict:
    """``procto report`` on the patient's series with the demo's bundles (one torch thread: bit-identical reruns)."""
    from procto.report import run_report
    from procto.report.pipeline import STEPS
    from procto.util import torch_threads

    with _progress(progress_factory) as progress, torch_threads(1):
        task = progress.add_task("procto report", total=len(STEPS)) if progress is not None else None

        def on_step(name: str, status: str) -> None:
            if progress is None:
                return
            if status == "start":
                progress.update(task, description=f"report: {name}")
            else:
                progress.advance(task)

        return run_report(out, mri=series["mri"], ct=series["ct"], bundles=[names[t] for t in TASKS], home=home,
                          html=_html_available(), progress=on_step)


def _print_summary(console, result: DemoResult) -> None:
    from rich.markup import escape

    report = result.report
    console.print(render_table(result.rows))
    truth = result.truth
    if truth["n_metastatic_in_ct"] != truth["n_metastatic"]:
        console.print(f"note: {truth['n_metastatic'] - truth['n_metastatic_in_ct']} metastatic node(s) of the "
                      "phantom lie outside the CT's field of view")
    paths = result.paths
    console.print(f"HTML report: {escape(str(paths['html']))}" if "html" in paths else
                  "HTML report: not written (this procto has no procto.report.html)")
    console.print(f"report.json: {escape(str(paths['json']))}\npatient DICOM: {escape(str(paths['mri']))}, "
                  f"{escape(str(paths['ct']))}")
    for line in (report.get("quality") or {}).get("warnings", []):
        console.print(f"[yellow]warning:[/yellow] {escape(line)}", soft_wrap=True)
    console.print("AG-CRC (CT tumour) is not trained by the demo: the report skips its step.")
    for step in report.get("steps", []):
        why = f" ({escape(str(step['reason']))})" if step.get("reason") else ""
        console.print(f"  {escape(step['name'])}: {step['status']}, {step['seconds']:.1f} s{why}", soft_wrap=True)
    console.print("time: " + ", ".join(f"{k} {v:.0f} s" for k, v in result.seconds.items()))


def run_demo(out: str | Path, *, full: bool = False, retrain: bool = False, seed: int = 0, device: str = "auto",
             console=None, progress_factory: Callable | None = None, home: str | Path | None = None,
             schedule: str | None = None, threads: int | None = None) -> DemoResult:
    """The demo into folder ``out``: the demo's bundles (``full``: the longer schedule; ``schedule`` names one:
    ``default``, ``full``, ``smoke``), trained into ``home`` (default ``$PROCTO_HOME``) unless installed there
    already (``retrain`` trains anyway); the patient of ``seed`` as DICOM (``out/patient/{mri,ct}``); ``procto
    report`` into ``out/report``; the findings beside the phantom's truth printed on ``console``.  ``threads``:
    torch threads for training (default: the idle cores); the report runs on one thread, so a rerun with the same
    bundles prints the same table."""
    from rich.console import Console

    from procto.io import check_output

    console = console or Console()
    s = schedule_of(schedule or ("full" if full else "default"))
    out = Path(check_output(out, kind="folder"))
    names = bundle_names(s)
    todo = [t for t in TASKS if retrain or not installed(names[t], t, home)]
    console.print(f"[bold]procto demo[/bold]: a phantom patient (T2 MRI + CT, DICOM) → procto report → the findings "
                  f"beside the phantom's truth; bundles: {', '.join(names.values())} ({s.name} schedule" +
                  (f"; training {', '.join(TITLES[t] for t in todo)})" if todo else ", cached)"))
    seconds: dict[str, float] = {}
    trained: dict[str, float] = {}
    t0 = time.perf_counter()
    with _progress(progress_factory) as progress:
        train_demo_bundles(home, schedule=s, seed=seed, device=device, retrain=retrain, threads=threads,
                           progress=progress, console=console, log=out / "training.log", seconds=trained)
    seconds.update({f"train {task}": v for task, v in trained.items()})
    if not todo:
        seconds["bundles (cached)"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    patient = demo_patient(seed)
    series = write_demo_patient(patient, out / "patient")
    seconds["patient"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    report = _run_report(out / "report", series, names, home, progress_factory)
    seconds["report"] = time.perf_counter() - t0
    paths = {"out": out, **series, "report": out / "report", "json": out / "report" / "report.json"}
    if (report.get("outputs") or {}).get("html"):
        paths["html"] = out / "report" / report["outputs"]["html"]
    result = DemoResult(report, patient.truth, table_rows(report, patient.truth), paths, names, todo, seconds)
    _print_summary(console, result)
    return result


__all__ = ["DemoResult", "run_demo", "table_rows", "render_table"]
