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


# ----------------------------------------------------------------------------------------------- CoSAM (Tables 2–4)
#: Protocol labels of the CoSAM tables.  The paper's: reference-node-centred 112-px crops resized to 224, AP50 per
#: window centre slice, Dice/IoU pooled over the evaluated slices; procto's default: whole CT volumes, fully automatic.
COSAM_PAPER_PROTOCOL = "paper protocol"
COSAM_WHOLE_PROTOCOL = "whole-volume protocol, not in the paper"
#: Paper 004 (Meply) Table 2, segmentation on the test set: method → (Dice %, IoU %).
COSAM_PAPER_TABLE2 = {
    "U-Net": (68.35, 65.17), "MissFormer": (64.54, 47.64), "TransUnet": (67.61, 51.07), "V-Net": (66.37, 49.66),
    "DoubleUnet": (65.40, 48.59), "SwinUnet": (68.47, 52.05), "UCTransNet": (68.68, 52.30),
    "AttenUnet": (65.23, 48.40), "MultiResUnet": (69.05, 52.73), "SAM": (67.74, 46.77), "SAMed": (70.79, 54.79),
    "U-SAM": (69.08, 52.76), "CoSAM": (74.12, 58.59),
}
#: CoSAM's Dice / IoU (%) as the paper's text (§5.2) states them (Table 2 prints 74.12 / 58.59).
COSAM_PAPER_TEXT_DICE_IOU = (74.21, 59.00)
#: Table 3: the detector's AP50 by window size L (the paper uses 9; 11 is best).
COSAM_PAPER_TABLE3 = {5: 0.820, 7: 0.835, 9: 0.845, 11: 0.849, 13: 0.839, 15: 0.810}
#: Table 4 (ablation): (E2E joint training, CCM) → (AP50, Dice %).
COSAM_PAPER_TABLE4 = {(False, False): (0.849, 59.45), (True, False): (0.847, 69.46), (True, True): (0.875, 74.12)}
#: Average false positives per scan of the whole-volume table's FROC rows.
COSAM_FROC_RATES = (0.125, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0)


def _cosam_pct(value: Any, digits: int = 2) -> str:
    """A fraction (0–1) printed in % (``"74.12"``), ``"n/a"`` when missing or NaN."""
    return "n/a" if value is None else mean_sd_cell(float(value), None, 100.0, digits)


def _cosam_num(value: Any, digits: int = 3) -> str:
    return "n/a" if value is None else mean_sd_cell(float(value), None, 1.0, digits)


def cosam_table2(rows: Sequence[tuple[str, float, float]] = (), *, paper: bool = True) -> str:
    """CoSAM's Table 2 layout (Markdown, with a caption line): Method, Dice (%), IoU (%), Source.  ``rows``:
    procto's ``(method, dice, iou)`` in 0–1, pooled over the evaluated centre slices (paper protocol); ``paper``: the
    paper's rows first (:data:`COSAM_PAPER_TABLE2` and CoSAM's pair from the text)."""
    columns = ("Method", "Dice (%)", "IoU (%)", "Source")
    out = []
    if paper:
        out += [dict(zip(columns, (m, f"{d:.2f}", f"{i:.2f}", "paper, Table 2")))
                for m, (d, i) in COSAM_PAPER_TABLE2.items()]
        d, i = COSAM_PAPER_TEXT_DICE_IOU
        out.append(dict(zip(columns, ("CoSAM", f"{d:.2f}", f"{i:.2f}", "paper, text §5.2"))))
    out += [dict(zip(columns, (name, _cosam_pct(d), _cosam_pct(i), "procto"))) for name, d, i in rows]
    caption = (f"Table 2 — node segmentation, Dice / IoU (%) pooled over the evaluated centre slices "
               f"({COSAM_PAPER_PROTOCOL}: 112-px crops around a reference node, resized to 224)")
    return caption + "\n\n" + markdown_table(columns, out)


def cosam_table3(ap50_by_window: Mapping[int, float] | None = None, *, label: str = "procto") -> str:
    """CoSAM's Table 3 layout (Markdown): AP50 of the detector by window size L (5…15 and any other measured L), the
    paper's column beside ``label``'s (``ap50_by_window``: L → AP50 per window centre slice, paper protocol)."""
    measured = dict(ap50_by_window or {})
    columns = ("Window L", "AP50 (paper)", f"AP50 ({label})")
    rows = [dict(zip(columns, (str(w), _cosam_num(COSAM_PAPER_TABLE3.get(w)), _cosam_num(measured.get(w)))))
            for w in sorted(set(COSAM_PAPER_TABLE3) | set(measured))]
    caption = f"Table 3 — detector AP50 vs window size ({COSAM_PAPER_PROTOCOL}: AP50 per window centre slice)"
    return caption + "\n\n" + markdown_table(columns, rows)


def cosam_table4(results: Mapping[tuple[bool, bool], tuple[float, float]] | None = None, *,
                 label: str = "procto") -> str:
    """CoSAM's Table 4 layout (Markdown): the E2E / CCM ablation, AP50 and Dice (%) of the paper beside ``label``'s
    (``results``: ``(e2e, ccm)`` → ``(ap50, dice)`` with Dice in 0–1, paper protocol)."""
    measured = dict(results or {})
    columns = ("E2E", "CCM", "AP50 (paper)", "Dice % (paper)", f"AP50 ({label})", f"Dice % ({label})")
    rows = []
    for key in sorted(set(COSAM_PAPER_TABLE4) | set(measured)):
        ap, dice = COSAM_PAPER_TABLE4.get(key, (None, None))
        ours = measured.get(key, (None, None))
        rows.append(dict(zip(columns, ("✓" if key[0] else "✗", "✓" if key[1] else "✗", _cosam_num(ap),
                                       "n/a" if dice is None else f"{dice:.2f}", _cosam_num(ours[0]),
                                       _cosam_pct(ours[1])))))
    caption = ("Table 4 — ablation of joint training (E2E) and collaborative classification (CCM) "
               f"({COSAM_PAPER_PROTOCOL})")
    return caption + "\n\n" + markdown_table(columns, rows)


def _cosam_froc(froc: Any, rates: Sequence[float]) -> list[float | None]:
    """Sensitivities at ``rates`` from a :class:`procto.metrics.nodes.FROCResult` (or anything with
    ``sensitivity_at``) or a mapping rate → sensitivity; None where unknown."""
    if froc is None:
        return [None] * len(rates)
    if hasattr(froc, "sensitivity_at"):
        return [float(froc.sensitivity_at(r)) for r in rates]
    given = {float(k): v for k, v in dict(froc).items()}
    return [None if given.get(float(r)) is None else float(given[float(r)]) for r in rates]


def _cosam_mean_sd(item: Any) -> str:
    if item is None:
        return "n/a"
    mean, sd = _value(item) if not isinstance(item, (tuple, list)) else (float(item[0]), float(item[1]))
    return mean_sd_cell(mean, sd, 100.0, 2, " ± ")


def cosam_whole_volume_table(results: Mapping[str, Mapping[str, Any]],
                             fp_rates: Sequence[float] = COSAM_FROC_RATES) -> str:
    """procto's whole-volume CoSAM table (Markdown; not in the paper): one column per model, one row per metric.
    ``results``: model → mapping with any of ``ap50_2d`` (AP50 per slice, pycocotools), ``ap3d`` (3D node AP at IoU
    0.1), ``froc`` (a ``FROCResult`` or rate → sensitivity), ``dice`` (pooled, 0–1), ``dice_per_case`` (``MeanSD`` or
    ``(mean, sd)``), ``n_accuracy`` (0–1); a missing value prints ``n/a``."""
    names = list(results)
    columns = ("Metric", *names)
    cells: dict[str, list[str]] = {
        "2D AP50 (per slice, pycocotools)": [_cosam_num(results[n].get("ap50_2d")) for n in names],
        "3D node AP@0.1 (nnDetection)": [_cosam_num(results[n].get("ap3d")) for n in names],
    }
    froc = {n: _cosam_froc(results[n].get("froc"), fp_rates) for n in names}
    for k, rate in enumerate(fp_rates):
        cells[f"FROC sensitivity @ {rate:g} FP/scan"] = [_cosam_num(froc[n][k]) for n in names]
    cells["FROC mean sensitivity"] = [
        "n/a" if None in froc[n] else _cosam_num(sum(froc[n]) / len(froc[n])) for n in names]
    cells["Dice pooled (%)"] = [_cosam_pct(results[n].get("dice")) for n in names]
    cells["Dice per case (%, mean ± sd)"] = [_cosam_mean_sd(results[n].get("dice_per_case")) for n in names]
    cells["N-category accuracy (%)"] = [_cosam_pct(results[n].get("n_accuracy"), 1) for n in names]
    rows = [dict(zip(columns, (metric, *values))) for metric, values in cells.items()]
    caption = (f"procto — node detection and segmentation on whole CT volumes ({COSAM_WHOLE_PROTOCOL}: fully "
               f"automatic, N0 patients included)")
    return caption + "\n\n" + markdown_table(columns, rows)


__all__ += ["COSAM_PAPER_PROTOCOL", "COSAM_WHOLE_PROTOCOL", "COSAM_PAPER_TABLE2", "COSAM_PAPER_TEXT_DICE_IOU",
            "COSAM_PAPER_TABLE3", "COSAM_PAPER_TABLE4", "COSAM_FROC_RATES", "cosam_table2", "cosam_table3",
            "cosam_table4", "cosam_whole_volume_table"]
