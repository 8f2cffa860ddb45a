"""Paper-table formatting, in one place: every model's evaluation table (RCSegNeXt Table 1, U-SAM Tables 2/4, staging
Tables 2–4) is laid out here, from numbers that the metrics, predictors and cross-validation produce.

Generic helpers first (:func:`mean_sd_cell`, :func:`markdown_table`), then one section per paper.
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

__all__ = ["mean_sd_cell", "markdown_table"]


def mean_sd_cell(mean: float, sd: float | None = None, scale: float = 1.0, digits: int = 3, sep: str = "±") -> str:
    """``mean·scale`` and ``sd·scale`` with ``digits`` decimals as the papers print them (``"0.831±0.062"``,
    ``"79.3±6.2"``); the mean alone when ``sd`` is missing/NaN, ``"n/a"`` when the mean is NaN."""
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return "n/a"
    if sd is None or (isinstance(sd, float) and math.isnan(sd)):
        return f"{mean * scale:.{digits}f}"
    return f"{mean * scale:.{digits}f}{sep}{sd * scale:.{digits}f}"


def markdown_table(columns: Sequence[str], rows: Sequence[Mapping[str, Any]]) -> str:
    """A Markdown table with ``columns`` as header and one line per row (cells by column name)."""
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for r in rows:
        lines.append("| " + " | ".join(str(r[c]) for c in columns) + " |")
    return "\n".join(lines)
