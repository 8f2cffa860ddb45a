"""Aggregation of per-case results into the papers' tables: mean ± sd per metric, per fold and across folds, a
paired t-test, and formatting ("0.812 ± 0.034").

Per-case results are plain rows: an iterable of mappings such as
``{"case": "p001", "fold": 0, "rectum": {"dice": 0.91, ...}, "tumour": {"dice": 0.78, ...}}``.  Nested mappings
(e.g. the output of :func:`~procto.metrics.evaluate_labels`) are flattened to ``"rectum/dice"``-style columns; every
numeric column is a metric unless named as the grouping key.  A pandas DataFrame can be passed as
``df.to_dict("records")``.

Standard deviations are sample SDs (``ddof=1``) by default; NaN values are left out of a mean (the count ``n`` says
how many values were used).
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from procto.errors import InputError

__all__ = [
    "MeanSD",
    "format_mean_sd",
    "mean_sd",
    "flatten",
    "summarize",
    "fold_table",
    "format_table",
    "paired_t_test",
]

ACROSS_FOLDS = "mean ± sd"

#: Columns never treated as metrics when ``metrics`` is not given (identifiers, even when numeric).
ID_COLUMNS = ("case", "case_id", "id", "fold", "seed", "center", "split")


def format_mean_sd(mean: float, sd: float, digits: int = 3) -> str:
    """``"0.812 ± 0.034"``; just the mean if ``sd`` is NaN (one value), ``"n/a"`` if the mean is NaN."""
    from procto.metrics.tables import mean_sd_cell

    return mean_sd_cell(mean, sd, 1.0, digits, sep=" ± ")


@dataclass(frozen=True)
class MeanSD:
    """Mean and standard deviation of ``n`` values.

    Attributes:
        mean: arithmetic mean (NaN if ``n == 0``).
        sd: standard deviation with the requested ``ddof`` (NaN if ``n <= ddof``).
        n: number of (non-NaN) values.
    """

    mean: float
    sd: float
    n: int

    def format(self, digits: int = 3) -> str:
        """Formatted as ``"0.812 ± 0.034"`` with ``digits`` decimals."""
        return format_mean_sd(self.mean, self.sd, digits)

    def __str__(self) -> str:
        return self.format()


def mean_sd(values: Iterable[float], ddof: int = 1) -> MeanSD:
    """Mean ± SD of ``values`` (NaNs left out).

    Example:
        >>> str(mean_sd([0.8, 0.85, 0.9]))
        '0.850 ± 0.050'
    """
    try:
        arr = np.asarray(list(values), dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        raise InputError("mean_sd needs numeric values") from None
    arr = arr[~np.isnan(arr)]
    n = int(arr.size)
    mean = float(np.mean(arr)) if n else float("nan")
    sd = float(np.std(arr, ddof=ddof)) if n > ddof else float("nan")
    return MeanSD(mean, sd, n)


def flatten(row: Mapping[str, Any], sep: str = "/") -> dict[str, Any]:
    """Flatten nested mappings: ``{"tumour": {"dice": 0.8}}`` → ``{"tumour/dice": 0.8}``."""
    out: dict[str, Any] = {}
    for key, value in row.items():
        if isinstance(value, Mapping):
            for sub, v in flatten(value, sep).items():
                out[f"{key}{sep}{sub}"] = v
        else:
            out[str(key)] = value
    return out


def _is_number(value) -> bool:
    return isinstance(value, (numbers.Real, np.number)) and not isinstance(value, (bool, np.bool_))


def _rows(rows: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    if isinstance(rows, Mapping):
        raise InputError("rows must be a list of per-case mappings, not a single mapping")
    out = []
    for i, row in enumerate(rows):
        if not isinstance(row, Mapping):
            raise InputError(f"row {i} is not a mapping: {row!r}")
        out.append(flatten(row))
    if not out:
        raise InputError("no rows to aggregate")
    return out


def _metric_columns(rows: list[dict[str, Any]], metrics: Sequence[str] | None, exclude: set[str]) -> list[str]:
    if metrics is not None:
        missing = [m for m in metrics if not any(m in r for r in rows)]
        if missing:
            raise InputError(f"metric column(s) not found in rows: {', '.join(missing)}")
        return list(metrics)
    cols: list[str] = []
    for r in rows:
        for k, v in r.items():
            if k not in exclude and k not in cols and _is_number(v):
                cols.append(k)
    if not cols:
        raise InputError("rows have no numeric metric columns")
    return cols


def _column(rows: list[dict[str, Any]], metric: str) -> list[float]:
    values = []
    for r in rows:
        v = r.get(metric, float("nan"))
        if v is None:
            v = float("nan")
        if not _is_number(v):
            raise InputError(f"column {metric!r} holds a non-numeric value {v!r}")
        values.append(float(v))
    return values


def summarize(
    rows: Iterable[Mapping[str, Any]],
    metrics: Sequence[str] | None = None,
    *,
    by: str | None = None,
    ddof: int = 1,
    exclude: Sequence[str] = ID_COLUMNS,
) -> dict[Any, dict[str, MeanSD]]:
    """Mean ± SD of every metric column, overall or per group.

    Args:
        rows: per-case mappings (nested mappings are flattened with "/").
        metrics: metric columns to summarise; default every numeric column except ``by`` and ``exclude``, in
            first-seen order.
        by: grouping column (e.g. ``"fold"``, ``"center"``); None = one group named ``"all"``.
        ddof: delta degrees of freedom of the SD (1 = sample SD).
        exclude: identifier columns skipped when ``metrics`` is None (default ``ID_COLUMNS``: case, case_id, id,
            fold, seed, center, split).

    Returns:
        ``{group: {metric: MeanSD}}``, groups in first-seen order.
    """
    table = _rows(rows)
    cols = _metric_columns(table, metrics, set(exclude) | ({by} if by else set()))
    groups: dict[Any, list[dict[str, Any]]] = {}
    for r in table:
        if by is None:
            key = "all"
        elif by not in r:
            raise InputError(f"row without grouping column {by!r}: {r!r}")
        else:
            key = r[by]
        groups.setdefault(key, []).append(r)
    return {g: {m: mean_sd(_column(rs, m), ddof) for m in cols} for g, rs in groups.items()}


def fold_table(
    rows: Iterable[Mapping[str, Any]],
    metrics: Sequence[str] | None = None,
    *,
    fold_key: str = "fold",
    across: str = "folds",
    ddof: int = 1,
) -> dict[Any, dict[str, MeanSD]]:
    """Per-fold mean ± SD over cases, plus a last row ``"mean ± sd"`` across folds (cross-validation tables such as
    RCSegNeXt's per-fold rectum/tumour Dice).

    Args:
        rows: per-case mappings with a ``fold_key`` column.
        metrics: metric columns (default: all numeric columns).
        fold_key: name of the fold column.
        across: ``"folds"`` — last row is mean ± SD of the per-fold means (n = number of folds);
            ``"cases"`` — mean ± SD over all cases pooled.
        ddof: delta degrees of freedom of the SDs.

    Returns:
        ``{fold: {metric: MeanSD}, ..., "mean ± sd": {metric: MeanSD}}``, folds sorted.

    Example:
        >>> rows = [{"fold": f, "dice": d} for f, d in [(0, 0.8), (0, 0.9), (1, 0.7), (1, 0.8)]]
        >>> t = fold_table(rows)
        >>> str(t[0]["dice"]), str(t["mean ± sd"]["dice"])
        ('0.850 ± 0.071', '0.800 ± 0.071')
    """
    if across not in ("folds", "cases"):
        raise InputError(f"across must be 'folds' or 'cases', got {across!r}")
    table = _rows(rows)
    per_fold = summarize(table, metrics, by=fold_key, ddof=ddof)
    try:
        folds = sorted(per_fold)
    except TypeError:
        folds = list(per_fold)
    out = {f: per_fold[f] for f in folds}
    cols = list(next(iter(per_fold.values())))
    if across == "folds":
        out[ACROSS_FOLDS] = {m: mean_sd([per_fold[f][m].mean for f in folds], ddof) for m in cols}
    else:
        out[ACROSS_FOLDS] = summarize(table, cols, ddof=ddof)["all"]
    return out


def format_table(
    table: Mapping[Any, Mapping[str, MeanSD]],
    *,
    digits: int = 3,
    row_header: str = "fold",
    metrics: Sequence[str] | None = None,
) -> str:
    """Markdown table of a :func:`summarize`/:func:`fold_table` result, cells formatted as ``"0.812 ± 0.034"``.

    Example:
        >>> print(format_table({"all": {"dice": MeanSD(0.8123, 0.0341, 10)}}, row_header="set"))
        | set | dice |
        |---|---|
        | all | 0.812 ± 0.034 |
    """
    if not table:
        raise InputError("empty table")
    cols = list(metrics) if metrics is not None else list(next(iter(table.values())))
    lines = ["| " + " | ".join([row_header, *cols]) + " |", "|" + "---|" * (len(cols) + 1)]
    for key, cells in table.items():
        vals = [cells[c].format(digits) if c in cells else "" for c in cols]
        lines.append("| " + " | ".join([str(key), *vals]) + " |")
    return "\n".join(lines)


def paired_t_test(a: Sequence[float], b: Sequence[float]) -> float:
    """Two-tailed paired t-test p-value for ``a`` vs ``b`` (same cases, same order); equals
    ``scipy.stats.ttest_rel(a, b).pvalue``.

    NaN if all differences are equal to zero (as scipy); 0 if they are all equal and non-zero.

    Raises:
        InputError: if the lengths differ, there are fewer than 2 pairs, or values are not finite.
    """
    try:
        x = np.asarray(a, dtype=np.float64).reshape(-1)
        y = np.asarray(b, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        raise InputError("paired_t_test needs numeric sequences") from None
    if x.shape != y.shape:
        raise InputError(f"paired_t_test needs equal lengths, got {x.size} and {y.size}")
    if x.size < 2:
        raise InputError(f"paired_t_test needs at least 2 pairs, got {x.size}")
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        raise InputError("paired_t_test values must be finite")
    from scipy.special import stdtr

    d = x - y
    n = d.size
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.mean(d) / np.sqrt(np.var(d, ddof=1) / n)
    return float(2.0 * stdtr(n - 1, -np.abs(t)))
