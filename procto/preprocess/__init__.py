"""Preprocessing between raw volumes and networks, shared by training and inference.

* U-SAM: point/box prompts (:mod:`~procto.preprocess.prompts`) and CARE slices — the one CARE slice writer and the
  volume-to-slice converter (:mod:`~procto.preprocess.care`).
* Staging: N4 bias-field correction (:mod:`~procto.preprocess.n4`), crops (:mod:`~procto.preprocess.crop`), the
  volume preparation and representative slices (:mod:`~procto.preprocess.staging`), case discovery and the stage
  table (:mod:`~procto.preprocess.staging_data`) and the slice-consistent MONAI augmentation
  (:mod:`~procto.preprocess.augment`).
* AG-CRC: OOI and bowel-wall masks, the CT/MOS/OOI input, its nnU-Net data set (:mod:`~procto.preprocess.agcrc`).
"""
