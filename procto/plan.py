"""Alias of :mod:`procto.nets.plan` (RCSegNeXt's spacing-driven plan, Appendix A, Algorithm 1), kept because the public
API promises ``procto.plan.plan_kernels_strides``."""

from procto.nets.plan import *  # noqa: F401,F403
from procto.nets.plan import __all__  # noqa: F401
