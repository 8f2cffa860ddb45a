"""Small helpers every layer may use (the bottom layer with :mod:`procto.errors`): one list parser and one device
helper and the torch thread-count context.  Nothing here imports torch at module level."""

from __future__ import annotations

import contextlib
from typing import Any, Callable, Iterator, Sequence

from procto.errors import InputError

__all__ = ["parse_list", "resolve_device", "torch_threads"]


def parse_list(text: str | Sequence[Any] | None, cast: Callable[[str], Any] = int, *, n: int | None = None,
               what: str = "value", example: str = "1,2,3", minimum: float | None = None,
               words: Sequence[str] = ()) -> tuple | None:
    """Parse ``"16,96,96"`` (for plain numbers ``x`` also separates: ``16x96x96``) or a sequence into a tuple of ``cast`` values.

    ``n``: exact number of items; ``minimum``: smallest allowed value; ``words``: literal items kept as strings (e.g.
    ``"all"`` for folds).  None or an empty string gives None.  Bad input is one :class:`InputError` naming ``what``.
    """
    if text is None:
        return None
    if isinstance(text, str):
        if not text.strip():
            return None
        numeric = cast in (int, float) and not words  # "16x96x96" reads as a shape only for plain numbers
        items = [t.strip() for t in (text.replace("x", ",") if numeric else text).split(",")]
    else:
        items = list(text)
    values: list[Any] = []
    for item in items:
        if isinstance(item, str) and item in words:
            values.append(item)
            continue
        try:
            value = cast(item)
        except (TypeError, ValueError):
            raise InputError(f"{what} must look like {example}, got {text!r}") from None
        if minimum is not None and value < minimum:
            raise InputError(f"{what} must be numbers >= {minimum:g} like {example}, got {text!r}")
        values.append(value)
    if not values:
        raise InputError(f"{what} is empty")
    if n is not None and len(values) != n:
        raise InputError(f"{what} must be {n} values like {example}, got {text!r}")
    return tuple(values)


def resolve_device(name: Any = None, default: str = "auto"):
    """A ``torch.device`` from ``"auto"`` (CUDA when available, else CPU), ``"cpu"``, ``"cuda"``, ``"cuda:1"``,
    ``"mps"`` or a device; asking for CUDA without a GPU is one :class:`InputError`."""
    import torch

    if isinstance(name, torch.device):
        return name
    text = str(name or default).strip().lower()
    if text == "auto":
        text = "cuda" if torch.cuda.is_available() else "cpu"
    kind = text.split(":")[0]
    if kind not in ("cpu", "cuda", "mps"):
        raise InputError(f"device must be cpu, cuda, cuda:N, mps or auto, got {name!r}")
    if kind == "cuda" and not torch.cuda.is_available():
        raise InputError("device cuda requested but no CUDA GPU is available (use --device cpu)")
    try:
        return torch.device(text)
    except RuntimeError as exc:
        raise InputError(f"bad device {name!r}: {exc}") from None


@contextlib.contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Run a block with torch's intra-op thread count set to ``n`` (None or 0: leave it); restore it afterwards."""
    if not n:
        yield
        return
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(int(n))
    try:
        yield
    finally:
        torch.set_num_threads(old)
