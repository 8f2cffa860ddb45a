"""Evaluate predicted label maps against references, folder against folder (what ``procto evaluate`` runs).

Cases are matched by file name without the image suffix (``case_001.nii.gz`` ↔ ``case_001.nrrd``), so nnU-Net
prediction folders and ``labelsTr`` folders pair up directly.  Every pair must share geometry.

Where exactly one of a class's two masks is empty, HD95 and ASD are the empty-mask penalty of
:mod:`procto.metrics.surface` (``empty_penalty``, 1000 mm); :func:`empty_mask_warnings` says which cases and classes
got it (``procto evaluate`` prints it on stderr).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Mapping

import numpy as np

from procto.errors import InputError
from procto.io import check_same_geometry, image_suffix, read_label, strip_image_suffix, write_csv
from procto.metrics.surface import DEFAULT_EMPTY_PENALTY

#: The label convention of CARE / RCSegNeXt phantoms and outputs.
DEFAULT_LABELS: dict[int, str] = {1: "rectum", 2: "tumour"}
#: Metrics reported per class, in table order.
METRICS = ("dice", "iou", "precision", "recall", "nsd", "hd95", "asd")


@dataclass
class CaseResult:
    """One case and class: its metrics, and which of its two masks is empty (``empty``: "" none, "prediction",
    "reference" — HD95/ASD are then the empty-mask penalty — or "both")."""

    case: str
    label: str
    values: dict[str, float]
    empty: str = ""


def _empty_side(pred: np.ndarray, ref: np.ndarray, label: int) -> str:
    pred_empty, ref_empty = not np.any(pred == label), not np.any(ref == label)
    if pred_empty and ref_empty:
        return "both"
    return "prediction" if pred_empty else "reference" if ref_empty else ""


def list_cases(folder: str | Path) -> dict[str, Path]:
    """Map case name → image file for every image file in ``folder`` (not recursive)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError("not a folder", folder)
    cases: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if path.is_file() and image_suffix(path) and not path.name.startswith("."):
            name = strip_image_suffix(path)
            if name in cases:
                raise InputError(f"case {name!r} appears twice ({cases[name].name}, {path.name})", folder)
            cases[name] = path
    return cases


def match_cases(pred_dir: str | Path, ref_dir: str | Path) -> list[tuple[str, Path, Path]]:
    """Pair prediction and reference files by case name; every reference needs a prediction."""
    preds, refs = list_cases(pred_dir), list_cases(ref_dir)
    if not refs:
        raise InputError("no reference label maps found", ref_dir)
    missing = sorted(set(refs) - set(preds))
    if missing:
        shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        raise InputError(f"{len(missing)} reference case(s) have no prediction: {shown}", pred_dir)
    return [(name, preds[name], refs[name]) for name in sorted(refs)]


def evaluate_folders(
    pred_dir: str | Path,
    ref_dir: str | Path,
    labels: Mapping[int, str] = DEFAULT_LABELS,
    tolerance_mm: float = 4.0,
    on_case: Callable[[str], None] | None = None,
) -> list[CaseResult]:
    """Per-case, per-class metrics (``METRICS``) of every prediction in ``pred_dir`` against ``ref_dir``."""
    from procto.metrics import evaluate_labels

    results: list[CaseResult] = []
    for name, pred_path, ref_path in match_cases(pred_dir, ref_dir):
        ref = read_label(ref_path)
        pred = read_label(pred_path)
        try:
            check_same_geometry(ref, pred, names=("reference", "prediction"))
        except InputError as exc:
            raise InputError(exc.problem, pred_path) from None
        per_class = evaluate_labels(pred.array, ref.array, ref.spacing, labels=dict(labels), tolerance_mm=tolerance_mm)
        for (label, label_name), values in zip(labels.items(), per_class.values()):
            results.append(CaseResult(name, label_name, {m: float(values[m]) for m in METRICS},
                                      _empty_side(pred.array, ref.array, int(label))))
        if on_case is not None:
            on_case(name)
    return results


def summarise(results: Iterable[CaseResult]):
    """Mean ± sample SD of every metric, per class: ``{label: {metric: MeanSD}}``."""
    from procto.metrics import summarize

    rows = [{"label": r.label, **r.values} for r in results]
    return summarize(rows, METRICS, by="label")


def write_results_csv(results: Iterable[CaseResult], path: str | Path) -> None:
    """Write one row per case and class (atomically: temp file + rename)."""
    rows = ({"case": r.case, "label": r.label, **r.values} for r in results)
    write_csv(path, rows, ["case", "label", *METRICS], float_format=".6f")


def _cases_and_classes(results: list[CaseResult], limit: int = 10) -> str:
    by_case: dict[str, list[str]] = {}
    for r in results:
        by_case.setdefault(r.case, []).append(r.label)
    shown = [f"{case} ({', '.join(labels)})" for case, labels in list(by_case.items())[:limit]]
    more = f" and {len(by_case) - limit} more case(s)" if len(by_case) > limit else ""
    return ", ".join(shown) + more


def empty_mask_warnings(results: Iterable[CaseResult], empty_penalty: float = DEFAULT_EMPTY_PENALTY) -> list[str]:
    """One line per problem an evaluation should not pass over in silence (empty when there is none):

    * classes whose prediction is empty where the reference is not, and the reverse — their HD95 and ASD are the
      ``empty_penalty`` (the empty-mask rule of :func:`procto.metrics.hd95` / ``asd``: exactly one mask empty), naming
      the cases and classes;
    * every prediction empty (no voxel of any evaluated class in any case).
    """
    results = list(results)
    lines = []
    for side, other in (("prediction", "reference"), ("reference", "prediction")):
        hit = [r for r in results if r.empty == side]
        if hit:
            pairs = f"{len(hit)} case/class pair{'s' * (len(hit) != 1)}"
            lines.append(
                f"empty {side} where the {other} has the class ({pairs}): HD95 and ASD are {empty_penalty:g} mm by "
                f"the empty-mask rule (exactly one mask empty → hd95/asd empty_penalty): {_cases_and_classes(hit)}"
            )
    if results and all(r.empty in ("prediction", "both") for r in results):
        n_cases = len({r.case for r in results})
        classes = ", ".join(dict.fromkeys(r.label for r in results))
        cases = f"{n_cases} case{'s' * (n_cases != 1)}"
        lines.append(f"every prediction is empty: no voxel of {classes} in any of the {cases}")
    return lines


_HEADERS = {"dice": "Dice", "iou": "IoU", "precision": "PR", "recall": "RE", "nsd": "NSD", "hd95": "HD95 mm",
            "asd": "ASD mm"}


def summary_table(results: Iterable[CaseResult], title: str, metrics: Iterable[str] | None = None):
    """A ``rich`` table of mean ± sd per class and metric (what ``procto evaluate`` and ``procto demo`` print)."""
    from rich.table import Table

    metrics = list(metrics or METRICS)
    table = Table(title=title)
    table.add_column("class")
    for m in metrics:
        table.add_column(_HEADERS.get(m, m), justify="right")
    for label, values in summarise(results).items():
        table.add_row(label, *(str(values[m]) for m in metrics))
    return table

