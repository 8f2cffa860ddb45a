"""Network architectures, one file per paper, with a registry (``create_model``, ``list_models``).

Architecture files register themselves with :func:`register_model`; add the module path to
``procto.nets.registry._MODEL_MODULES`` so that it is imported lazily on first use.
"""

from procto.nets.registry import create_model, list_models, register_model



def paper_complexity(name: str) -> dict:
    """Parameters, tunable parameters and MACs of model ``name`` counted the way its paper counts them."""
    from procto.nets.complexity import paper_complexity as _impl

    return _impl(name)


__all__ = ["create_model", "list_models", "register_model", "paper_complexity"]
