"""Inference: trained models applied to volumes and slices, outputs in the input's geometry.

Modules: :mod:`procto.infer.usam` (``USamPredictor``, slice-wise volume inference), :mod:`procto.infer.staging`
(T3 probability of a T2 volume).  RCSegNeXt inference runs through nnU-Net v2's predictor (:mod:`procto.train.nnunet`).
"""
