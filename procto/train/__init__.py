"""Training: one engine (:mod:`procto.train.engine`) for the models procto trains itself (U-SAM, staging) and
the nnU-Net v2 integration for the models built on nnU-Net (RCSegNeXt).  See ``docs/architecture.md``."""

from procto.util import torch_threads

__all__ = ["torch_threads"]
