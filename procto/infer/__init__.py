"""Inference: trained models applied to volumes and slices, outputs in the input's geometry.

Modules: :mod:`procto.infer.usam` (``USamPredictor``, slice-wise volume inference), :mod:`procto.infer.staging`
(T3 probability of a T2 volume), :mod:`procto.infer.nnunet` (``NNUNetPredictor``: every procto model trained through
nnU-Net v2, RCSegNeXt now, any number of input channels) with :mod:`procto.infer.nnunet_env` (nnU-Net's environment,
shared with :mod:`procto.train.nnunet`).  Nothing here imports :mod:`procto.train`.
"""
