"""Paper-table formatting, in one place: every model's evaluation table (RCSegNeXt Table 1, U-SAM Tables 2/4, staging
Tables 2–4) is laid out here, from numbers that the metrics, predictors and cross-validation produce.

Generic helpers first (:func:`mean_sd_cell`, :func:`markdown_table`), then one section per paper.
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

__all__ = ["mean_sd_cell", "markdown_table", "usam_table"]


def mean_sd_cell(mean: float, sd: float | None = None, scale: float = 1.0, digits: int = 3, sep: str = "±") -> str:
    """``mean·scale`` and ``sd·scale`` with ``digits`` decimals as the papers print them (``"0.831±0.062"``,
    ``"79.3±6.2"``); the mean alone when ``sd`` is missing/NaN, ``"n/a"`` when the mean is NaN."""
    if mean is None or math.isnan(float(mean)):
        return "n/a"
    if sd is None or math.isnan(float(sd)):
        return f"{mean * scale:.{digits}f}"
    return f"{mean * scale:.{digits}f}{sep}{sd * scale:.{digits}f}"


def markdown_table(columns: Sequence[str], rows: Sequence[Mapping[str, Any]]) -> str:
    """A Markdown table with ``columns`` as header and one line per row (cells by column name)."""
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for r in rows:
        lines.append("| " + " | ".join(str(r[c]) for c in columns) + " |")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------- U-SAM, Tables 2 and 4
def usam_table(groups: Sequence[str], rows: Sequence[tuple[str, Sequence[tuple[float, float | None]]]],
               footer: str, per_case: bool = False) -> str:
    """Text table in the layout of U-SAM's Tables 2/4: one line per prompt setting, Dice/IoU/NSD (%) for each class
    group (normal, tumour, mean).  ``rows``: ``(setting title, [(value, sd) × 3 per group])`` with values in 0–1;
    ``sd`` None for pooled values, a number (or NaN: printed as 0) for mean ± sd over cases (``per_case``)."""
    width = 13 if per_case else 8
    head1 = f"{'Setting':<22}" + "".join(f"| {g:<{3 * width + 2}}" for g in groups)
    head2 = f"{'':<22}" + "".join("| " + "".join(f"{m:>{width}}" for m in ("Dice(%)", "IoU(%)", "NSD(%)")) + "  "
                                  for _ in groups)
    lines = [head1, head2, "-" * len(head2)]
    for title, values in rows:
        cells = [mean_sd_cell(v, None if sd is None else (0.0 if math.isnan(sd) else sd), scale=100, digits=2)
                 for v, sd in values]
        line = f"{title:<22}"
        for g in range(len(groups)):
            line += "| " + "".join(f"{c:>{width}}" for c in cells[3 * g: 3 * g + 3]) + "  "
        lines.append(line)
    lines.append(footer)
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------- RCSegNeXt (Table 1)
#: Short class names of RCSegNeXt's Table 1 columns (``Fold0 Rect``, ``Fold0 Tumor``).
RCSEGNEXT_SHORT_NAMES = {"rectum": "Rect", "tumour": "Tumor", "tumor": "Tumor"}


def rcsegnext_cv_table(table: Mapping[Any, Mapping[str, Any]], folds: Sequence[Any], labels: Sequence[str],
                       metrics: Sequence[str] = ("dice", "hd95", "asd")) -> tuple[list[str], list[dict[str, str]]]:
    """RCSegNeXt's Table 1 layout of a cross-validation ``table`` (:func:`procto.metrics.fold_table` over per-case
    ``<label>_<metric>`` columns): a column per fold and class (``Fold0 Rect``: the fold's mean), then ``Avg <Class>``
    (mean ± sd across the folds' means); a row per metric, Dice in %, HD95 and ASD in mm.  Returns (columns, rows)."""
    across = [k for k in table if k not in folds][0]
    columns = ["metric", *(f"Fold{f} {RCSEGNEXT_SHORT_NAMES.get(n, n)}" for f in folds for n in labels),
               *(f"Avg {n.capitalize()}" for n in labels)]
    rows = []
    for metric in metrics:
        scale, unit = (100.0, "Dice (%)") if metric == "dice" else (1.0, f"{metric.upper()} (mm)")
        cells = [f"{table[f][f'{n}_{metric}'].mean * scale:.2f}" for f in folds for n in labels]
        cells += [mean_sd_cell(table[across][f"{n}_{metric}"].mean, table[across][f"{n}_{metric}"].sd, scale, 2, " ± ")
                  for n in labels]
        rows.append(dict(zip(columns, [unit, *cells])))
    return columns, rows


__all__ += ["RCSEGNEXT_SHORT_NAMES", "rcsegnext_cv_table"]


# ----------------------------------------------------------------------------------------------- staging (Tables 2–4)
#: Columns of the staging paper's Tables 2–4.
STAGING_CV_COLUMNS = ("Method", "AUC", "ACC", "Recall(T2)", "Recall(T3)")


def staging_cv_row(method: str, summary: Mapping[str, Any]) -> dict[str, str]:
    """One row of the staging Tables 2–4 from cross-validation ``summary`` (mean ± sd over folds of ``auc``, ``acc``,
    ``recall_t2``, ``recall_t3``; objects with ``mean`` and ``sd``): AUC as ``0.831±0.062``, the others in %
    (``79.3±6.2``)."""
    return {
        "Method": method,
        "AUC": mean_sd_cell(summary["auc"].mean, summary["auc"].sd, 1.0, 3),
        "ACC": mean_sd_cell(summary["acc"].mean, summary["acc"].sd, 100.0, 1),
        "Recall(T2)": mean_sd_cell(summary["recall_t2"].mean, summary["recall_t2"].sd, 100.0, 1),
        "Recall(T3)": mean_sd_cell(summary["recall_t3"].mean, summary["recall_t3"].sd, 100.0, 1),
    }


def staging_cv_table(rows: Sequence[Mapping[str, Any]]) -> str:
    """Markdown table with the staging paper's columns (Method, AUC, ACC, Recall(T2), Recall(T3))."""
    return markdown_table(STAGING_CV_COLUMNS, rows)


__all__ += ["STAGING_CV_COLUMNS", "staging_cv_row", "staging_cv_table"]


# ----------------------------------------------------------------------------------------------- AG-CRC (Tables III–IX)
#: Columns of AG-CRC's result tables: Dice, precision, recall, NSD (4 mm tolerance), HD95 (mm; an empty prediction
#: counts 1000 mm).
AGCRC_COLUMNS = ("Model", "Dice", "PR", "RE", "NSD", "HD95")
#: The per-case metric behind each value column, in column order.
AGCRC_METRICS = ("dice", "precision", "recall", "nsd", "hd95")
#: The paper's numbers (Dice, PR, RE, NSD, HD95), to print beside procto's: Table III (MSD-Colon, 5-fold
#: cross-validation) and Table IX (+ Table VIII's M+P+F row; RJH-Colon test set, in-house data).
AGCRC_PAPER = {
    "msd": {
        "nnUNet": (0.4559, 0.6330, 0.4739, 0.5204, 238.04),
        "AG-CRC": (0.5086, 0.5907, 0.5294, 0.5804, 125.15),
    },
    "rjh": {
        "nnUNet (CT)": (0.6001, 0.6898, 0.6264, 0.6338, 162.00),
        "M": (0.6490, 0.7062, 0.6864, 0.6899, 126.34),
        "M+P": (0.6616, 0.7569, 0.6734, 0.7103, 115.40),
        "M+P+F": (0.6963, 0.7413, 0.7238, 0.7384, 91.14),
        "M+P+S": (0.6900, 0.7163, 0.7308, 0.7354, 85.16),
        "M+P+S+F": (0.6935, 0.7270, 0.7275, 0.7428, 78.33),
    },
}


def agcrc_config_label(config: str) -> str:
    """The paper's name of a configuration: ``"MPSF"`` → ``"M+P+S+F"`` (Table IX: modality, AG-sampling, AG-SSL,
    AF-loss)."""
    return "+".join(str(config).upper())


def agcrc_cell(metric: str, mean: float, sd: float | None = None) -> str:
    """One value as the paper prints it: 4 decimals for Dice/PR/RE/NSD, 2 for HD95 (mm); ``"0.5086 ± 0.0312"`` with
    an SD."""
    digits = 2 if metric == "hd95" else 4
    return mean_sd_cell(mean, sd, 1.0, digits, sep=" ± ")


def _value(item: Any) -> tuple[float, float | None]:
    """``(mean, sd)`` of a :class:`procto.metrics.MeanSD`-like object or a plain number."""
    if hasattr(item, "mean"):
        return float(item.mean), (None if getattr(item, "sd", None) is None else float(item.sd))
    return float(item), None


def agcrc_row(name: str, summary: Mapping[str, Any]) -> dict[str, str]:
    """A row of AG-CRC's tables: ``summary`` maps each of :data:`AGCRC_METRICS` to a mean ± sd (``MeanSD``) or a
    number."""
    row = {"Model": name}
    for column, metric in zip(AGCRC_COLUMNS[1:], AGCRC_METRICS):
        row[column] = agcrc_cell(metric, *_value(summary[metric]))
    return row


def agcrc_cv_table(table: Mapping[Any, Mapping[str, Any]], folds: Sequence[Any], name: str,
                   separate_sd: bool = False) -> tuple[list[str], list[dict[str, str]]]:
    """AG-CRC's table layout of a cross-validation ``table`` (:func:`procto.metrics.fold_table` over per-case
    ``dice``, ``precision``, ``recall``, ``nsd``, ``hd95``): a row per fold (the fold's case means), then ``name``
    with the mean ± sd across the folds' means (Table III reports the model row).  ``separate_sd``: the model row
    holds the means and a row ``± sd`` below it the SDs (narrow terminals).  Returns (columns, rows)."""
    across = [k for k in table if k not in folds][0]
    rows = [agcrc_row(f"Fold {f}", {m: table[f][m].mean for m in AGCRC_METRICS}) for f in folds]
    if separate_sd:
        rows.append(agcrc_row(name, {m: table[across][m].mean for m in AGCRC_METRICS}))
        rows.append(agcrc_row("± sd", {m: table[across][m].sd for m in AGCRC_METRICS}))
    else:
        rows.append(agcrc_row(name, table[across]))
    return list(AGCRC_COLUMNS), rows


def agcrc_paper_rows(dataset: str = "msd") -> list[dict[str, str]]:
    """The paper's rows of :data:`AGCRC_PAPER` (``"msd"``: Table III, ``"rjh"``: Table IX) in the table layout, the
    model names suffixed ``(paper, MSD)`` or ``(paper, RJH)``."""
    return [agcrc_row(f"{model} (paper, {dataset.upper()})", dict(zip(AGCRC_METRICS, values)))
            for model, values in AGCRC_PAPER[dataset].items()]


__all__ += ["AGCRC_COLUMNS", "AGCRC_METRICS", "AGCRC_PAPER", "agcrc_config_label", "agcrc_cell", "agcrc_row",
            "agcrc_cv_table", "agcrc_paper_rows"]
