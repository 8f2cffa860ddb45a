"""Network architectures, one file per paper, with a registry (``create_model``, ``list_models``).

Architecture files register themselves with :func:`register_model`; add the module path to
``procto.nets.registry._MODEL_MODULES`` so that it is imported lazily on first use.
"""

from procto.nets.registry import create_model, list_models, register_model


def paper_complexity(name: str, with_default: bool = False) -> dict:
    """Parameters, tunable parameters and MACs of model ``name`` counted the way its paper counts them: every
    registered paper model (the SAM family of U-SAM Table 5, RCSegNeXt B/L and its Table 4 ablations, the eleven
    staging variants of Table 2); ``macs`` is None where the paper gives none.  See
    :func:`procto.nets.complexity.paper_complexity` for the keys."""
    from procto.nets.complexity import paper_complexity as _impl

    return _impl(name, with_default=with_default)


__all__ = ["create_model", "list_models", "register_model", "paper_complexity"]
