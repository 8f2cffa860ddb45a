"""Per-iteration learning-rate schedules of the training engine, as small functions of ``(step, total)``.

Each returns the factor the base rate of every parameter group is multiplied by before optimisation step ``step``
(0-based) of ``total``: :func:`poly_factor` (U-SAM's poly decay, with the authors' optional warm-up),
:func:`cosine_factor` (the staging default) and :func:`constant_factor`.  :func:`schedule` picks one by name.
"""

from __future__ import annotations

import math
from typing import Callable

from procto.errors import InputError

__all__ = ["SCHEDULES", "constant_factor", "cosine_factor", "poly_factor", "schedule"]


def poly_factor(iteration: int, max_iterations: int, power: float = 0.9, warmup_iterations: int = 0) -> float:
    """Learning-rate factor at ``iteration`` (0-based): ``(1 − it/max_it)^power``; with warm-up, the authors'
    ``min((1 − (it − w)/max_it)^power, it / w)``."""
    max_iterations = max(1, int(max_iterations))
    if warmup_iterations > 0:
        base = max(0.0, 1.0 - (iteration - warmup_iterations) / max_iterations)
        return min(base ** power, iteration / warmup_iterations) if base > 0 else 0.0
    return max(0.0, 1.0 - iteration / max_iterations) ** power


def cosine_factor(step: int, total: int) -> float:
    """Cosine decay from 1 at step 0 to 0 at ``total`` (held at 0 beyond)."""
    total = max(1, int(total))
    return 0.5 * (1 + math.cos(math.pi * min(step, total) / total))


def constant_factor(step: int, total: int) -> float:
    """No decay."""
    return 1.0


SCHEDULES: dict[str, Callable[..., float]] = {"poly": poly_factor, "cosine": cosine_factor,
                                              "constant": constant_factor}


def schedule(name: str, **options) -> Callable[[int, int], float]:
    """The schedule ``name`` ("poly", "cosine", "constant") as ``factor(step, total)``; ``options`` go to it (e.g.
    ``power``, ``warmup_iterations`` for poly)."""
    try:
        fn = SCHEDULES[name]
    except KeyError:
        raise InputError(f"schedule must be one of {', '.join(SCHEDULES)}, got {name!r}") from None
    return lambda step, total: fn(step, total, **options)
