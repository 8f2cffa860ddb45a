"""procto: rectal-cancer imaging AI toolkit.

Subpackages follow the data flow: ``procto.io`` (volumes with geometry) → ``procto.phantom`` (synthetic cohorts) →
``procto.preprocess`` → ``procto.nets`` (architectures + registry) → ``procto.train`` / ``procto.infer`` →
``procto.metrics`` → ``procto.report``.  Heavy dependencies (torch, MONAI, nnU-Net) are imported lazily.
"""

__version__ = "0.1.0"

from procto.errors import ProctoError, InputError  # noqa: E402

__all__ = ["__version__", "ProctoError", "InputError"]
