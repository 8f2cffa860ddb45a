"""A timm-style model registry: architectures register a builder under their paper name.

>>> from procto.nets import create_model, list_models
>>> "rcsegnext_b" in list_models()       # doctest: +SKIP
True
>>> net = create_model("rcsegnext_b", input_channels=1, num_classes=3, spacing=(4.0, 0.875, 0.875))  # doctest: +SKIP
"""

from __future__ import annotations

import fnmatch
import importlib
from typing import Callable

_REGISTRY: dict[str, Callable] = {}

#: Modules that register models when imported.  ``list_models``/``create_model`` import them on first use, so that
#: ``import procto`` stays light.
_MODEL_MODULES: list[str] = ["procto.nets.rcsegnext", "procto.nets.usam", "procto.nets.staging", "procto.nets.agcrc",
                              "procto.nets.cosam"]


def register_model(name: str | None = None) -> Callable[[Callable], Callable]:
    """Decorator: register ``fn`` (a builder returning an ``nn.Module``) under ``name`` (default: the function name)."""

    def deco(fn: Callable) -> Callable:
        key = name or fn.__name__
        if key in _REGISTRY and _REGISTRY[key] is not fn:
            raise ValueError(f"model {key!r} is already registered")
        _REGISTRY[key] = fn
        return fn

    return deco


def _load_all() -> None:
    for mod in _MODEL_MODULES:
        try:
            importlib.import_module(mod)
        except ModuleNotFoundError as exc:  # an architecture file not written yet; anything else is a real error
            if exc.name != mod:
                raise


def list_models(pattern: str = "*") -> list[str]:
    """Sorted names of registered models matching the shell-style ``pattern``."""
    _load_all()
    return sorted(n for n in _REGISTRY if fnmatch.fnmatch(n, pattern))


def create_model(name: str, **kwargs):
    """Build the registered model ``name`` with ``kwargs`` (defaults are the paper's settings)."""
    _load_all()
    try:
        builder = _REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown model {name!r}; known: {', '.join(sorted(_REGISTRY))}") from None
    return builder(**kwargs)
