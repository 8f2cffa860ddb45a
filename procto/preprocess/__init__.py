"""Preprocessing between raw volumes and networks: prompts and CARE slices for U-SAM (:mod:`~procto.preprocess.prompts`,
:mod:`~procto.preprocess.care`), N4 bias-field correction and crops for staging (:mod:`~procto.preprocess.n4`,
:mod:`~procto.preprocess.crop`)."""
