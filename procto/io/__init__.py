"""Volumes with geometry: the :class:`Volume` type, readers/writers and geometry checks.

>>> from procto.io import read_image, write_image
>>> vol = read_image("ct.nii.gz")            # doctest: +SKIP
>>> vol.array.shape, vol.spacing               # doctest: +SKIP
((64, 512, 512), (2.5, 0.94, 0.94))
"""

from procto.io.atomic import atomic_output, check_output, save_torch, write_csv, write_text_atomic
from procto.io.geometry import check_same_geometry, resample, resampled_shape
from procto.io.image import image_suffix, read_image, read_label, strip_image_suffix, write_image
from procto.io.volume import Volume

__all__ = [
    "Volume",
    "atomic_output",
    "write_text_atomic",
    "write_csv",
    "save_torch",
    "check_output",
    "read_image",
    "read_label",
    "write_image",
    "check_same_geometry",
    "resample",
    "resampled_shape",
    "image_suffix",
    "strip_image_suffix",
]
