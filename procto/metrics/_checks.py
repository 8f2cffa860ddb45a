"""Input checks shared by the metric modules (all failures raise :class:`~procto.errors.InputError`)."""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from procto.errors import InputError


def as_mask(array, name: str = "mask") -> np.ndarray:
    """Return ``array`` as a boolean numpy array (non-zero = foreground).

    Boolean arrays are returned as they are (no copy); integer and floating arrays are compared with 0.

    Raises:
        InputError: if ``array`` is not numeric or contains NaN.
    """
    arr = np.asarray(array)
    if arr.dtype == bool:
        return arr
    if arr.dtype.kind not in "iuf":
        raise InputError(f"{name} must be a numeric or boolean array, got dtype {arr.dtype}")
    if arr.dtype.kind == "f" and np.isnan(arr).any():
        raise InputError(f"{name} contains NaN")
    return arr != 0


def mask_pair(pred, ref, *, ndims: Sequence[int] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Check that ``pred`` and ``ref`` have the same shape (and, if given, one of ``ndims`` dimensions); return them
    as boolean arrays."""
    p = as_mask(pred, "pred")
    r = as_mask(ref, "ref")
    if p.shape != r.shape:
        raise InputError(f"shape mismatch: pred {p.shape} vs ref {r.shape}")
    if ndims is not None and p.ndim not in ndims:
        want = " or ".join(f"{d}D" for d in ndims)
        raise InputError(f"masks must be {want}, got {p.ndim}D array of shape {p.shape}")
    return p, r


def check_spacing(spacing, ndim: int) -> tuple[float, ...]:
    """Return ``spacing`` as a tuple of ``ndim`` positive finite floats (mm, same axis order as the array)."""
    try:
        values = tuple(float(s) for s in np.asarray(spacing, dtype=float).reshape(-1))
        given = np.ndim(spacing)
    except (TypeError, ValueError):
        raise InputError(f"spacing must be a sequence of {ndim} numbers, got {spacing!r}") from None
    if given != 1 or len(values) != ndim:
        raise InputError(f"spacing must have {ndim} elements for a {ndim}D mask, got {spacing!r}")
    if not all(math.isfinite(v) and v > 0 for v in values):
        raise InputError(f"spacing must be positive and finite, got {spacing!r}")
    return values


def check_nonnegative(value, name: str) -> float:
    """Return ``value`` as a float, raising InputError unless it is finite and >= 0."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise InputError(f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(v) or v < 0:
        raise InputError(f"{name} must be finite and >= 0, got {value!r}")
    return v


def check_penalty(value) -> float:
    """Return the empty-mask penalty as a float (>= 0; ``inf`` allowed)."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise InputError(f"empty_penalty must be a number, got {value!r}") from None
    if not v >= 0:
        raise InputError(f"empty_penalty must be >= 0, got {value!r}")
    return v
