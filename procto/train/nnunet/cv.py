"""Cross-validation of a procto model through nnU-Net v2: train (or reuse) each fold, evaluate nnU-Net's validation
predictions of the fold against the raw reference label maps, and build the paper's per-fold table (Dice, HD95, ASD
per class; mean ± sd across the folds' means)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

from procto.errors import InputError
from procto.infer.nnunet import DEFAULT_LABELS, dataset_labels
from procto.io import image_suffix, read_label, strip_image_suffix, write_csv
from procto.train.nnunet.dataset import dataset_id_and_name
from procto.train.nnunet.run import train

CV_METRICS = ("dice", "hd95", "asd")


@dataclass
class CVResult:
    rows: list[dict]  # one per case: fold, case, <label>_<metric>
    table: dict  # procto.metrics.fold_table over the rows
    folds: list[int]
    model_dir: Path
    labels: dict[int, str] = field(default_factory=lambda: dict(DEFAULT_LABELS))

    @property
    def metrics(self) -> list[str]:
        """Column names ``<label>_<metric>`` in table order."""
        return [f"{name}_{m}" for name in self.labels.values() for m in CV_METRICS]


def _case_row(pred_path: Path, labels_dir: Path, fold: int, labels: dict[int, str], tolerance_mm: float) -> dict:
    from procto.io import check_same_geometry
    from procto.metrics import evaluate_labels

    name = strip_image_suffix(pred_path)
    refs = [r for r in labels_dir.iterdir() if strip_image_suffix(r) == name and image_suffix(r)]
    if not refs:
        raise InputError(f"no reference label map for case {name!r}", labels_dir)
    ref = read_label(refs[0])
    pred = read_label(pred_path)
    try:
        check_same_geometry(ref, pred, names=("reference", "prediction"))
    except InputError as exc:
        raise InputError(exc.problem, pred_path) from None
    res = evaluate_labels(pred.array, ref.array, ref.spacing, labels=labels, tolerance_mm=tolerance_mm)
    row: dict = {"fold": fold, "case": name}
    for lab_name, values in res.items():
        for metric in CV_METRICS:
            row[f"{lab_name}_{metric}"] = float(values[metric])
    return row


def evaluate_validation(fold_dir: Path, labels_dir: Path, fold: int, labels: dict[int, str],
                        tolerance_mm: float = 4.0) -> list[dict]:
    """Per-case metrics of nnU-Net's validation predictions of one fold (``fold_X/validation``) against the raw
    reference label maps."""
    val_dir = fold_dir / "validation"
    preds = sorted(p for p in val_dir.iterdir() if p.is_file() and image_suffix(p)) if val_dir.is_dir() else []
    if not preds:
        raise InputError("no validation predictions (run the fold's training with validation)", val_dir)
    return [_case_row(p, labels_dir, fold, labels, tolerance_mm) for p in preds]


def cross_validate(
    data: str | Path,
    folds: Iterable[int] = (0, 1, 2, 3, 4),
    *,
    model: str = "rcsegnext_b",
    out: str | Path | None = None,
    labels: dict[int, str] | None = None,
    on_fold: Callable[[int, str], None] | None = None,
    **train_kwargs,
) -> CVResult:
    """Train (or reuse) each fold, evaluate its validation predictions, and build the paper's per-fold table
    (Dice, HD95, ASD per class; mean ± sd across folds)."""
    from procto.metrics import fold_table

    data = Path(data)
    dataset_id_and_name(data)
    if labels is None:
        labels = dataset_labels(data / "dataset.json")
    folds = [int(f) for f in folds]
    if not folds:
        raise InputError("no folds given")
    rows: list[dict] = []
    model_dir = None
    for f in folds:
        if on_fold is not None:
            on_fold(f, "train")
        run = train(data, f, model=model, out=out, validate=True, **train_kwargs)
        model_dir = run.model_dir
        if on_fold is not None:
            on_fold(f, "evaluate")
        rows.extend(evaluate_validation(run.fold_dir, data / "labelsTr", f, labels))
    result = CVResult(rows, {}, folds, model_dir, labels)
    result.table = fold_table(rows, result.metrics)
    return result


def write_cv_csv(result: CVResult, path: str | Path) -> None:
    """Per-fold means (and the across-fold mean and sd) of every metric, one row per fold."""
    metrics = result.metrics
    rows: list[dict] = []
    for key, cells in result.table.items():
        if key in result.folds:
            rows.append({"fold": key, "n_cases": cells[metrics[0]].n, **{m: float(cells[m].mean) for m in metrics}})
    across = [k for k in result.table if k not in result.folds][0]
    n_cases = len(result.rows)  # mean and sd are across the folds' means, as in the paper
    rows.append({"fold": "mean", "n_cases": n_cases, **{m: float(result.table[across][m].mean) for m in metrics}})
    rows.append({"fold": "sd", "n_cases": n_cases, **{m: float(result.table[across][m].sd) for m in metrics}})
    write_csv(path, rows, ["fold", "n_cases", *metrics], float_format=".6f")


def write_cases_csv(result: CVResult, path: str | Path) -> None:
    """One row per validation case: fold, case and every metric."""
    cols = list(result.rows[0]) if result.rows else ["fold", "case"]
    write_csv(path, result.rows, cols, float_format=".6f")


__all__ = ["CV_METRICS", "CVResult", "evaluate_validation", "cross_validate", "write_cv_csv", "write_cases_csv"]
