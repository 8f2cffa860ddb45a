"""N4 bias-field correction: removes a smooth multiplicative field, keeps geometry, handles masks and offsets."""

from __future__ import annotations

import numpy as np
import pytest

from procto.errors import InputError
from procto.io import Volume
from procto.preprocess.n4 import n4_bias_correction, otsu_mask, shrink_factors

FAST = dict(iterations=(20, 20, 20), shrink_factor=2)


def _phantom(seed: int = 0):
    """A sagittal-like volume: a uniform disc (100) with a brighter insert (200) in zero background, times a smooth
    bias field, plus noise.  Returns (biased volume, uniform-region mask)."""
    rng = np.random.default_rng(seed)
    z, y, x = np.mgrid[:12, :64, :64].astype(float)
    truth = np.zeros((12, 64, 64), np.float32)
    body = (y - 32) ** 2 + (x - 32) ** 2 < 27 ** 2
    insert = (y - 32) ** 2 + (x - 26) ** 2 < 8 ** 2
    truth[body] = 100.0
    truth[insert] = 200.0
    field = np.exp(0.35 * (y - 32) / 32 + 0.25 * ((x - 32) / 32) ** 2 - 0.1 * (z - 6) / 6)
    image = np.clip(truth * field + rng.normal(0, 1.5, truth.shape), 0, None).astype(np.float32)
    uniform = body & ~insert & ((y - 32) ** 2 + (x - 32) ** 2 < 24 ** 2)
    uniform &= ~(((y - 32) ** 2 + (x - 26) ** 2) < 11 ** 2)
    vol = Volume(image, (4.0, 0.875, 0.875), (10.0, -20.0, 5.0), meta={"modality": "MR"})
    return vol, uniform


def _cv(a: np.ndarray, region: np.ndarray) -> float:
    return float(a[region].std() / a[region].mean())


def test_n4_reduces_coefficient_of_variation_in_uniform_region() -> None:
    vol, uniform = _phantom()
    before = _cv(vol.array, uniform)
    out = n4_bias_correction(vol, **FAST)
    after = _cv(out.array, uniform)
    assert before > 0.1
    assert after < 0.5 * before, (before, after)
    assert out.same_geometry(vol)
    assert out.array.dtype == np.float32
    assert out.meta["modality"] == "MR"


def test_n4_returns_bias_field_consistent_with_input() -> None:
    vol, uniform = _phantom(1)
    out, bias = n4_bias_correction(vol, return_bias=True, **FAST)
    assert bias.same_geometry(vol)
    assert np.all(bias.array > 0)
    np.testing.assert_allclose(out.array * bias.array, vol.array, rtol=1e-4, atol=1e-3)
    # the estimated field is smooth and follows the true one's trend along y (brighter at high y)
    profile = bias.array[6, :, 32]
    assert profile[55] > profile[10]


def test_n4_with_explicit_mask_and_negative_values() -> None:
    vol, uniform = _phantom(2)
    shifted = vol.with_array(vol.array - 50.0)  # negative background: shifted internally, shifted back after
    mask = otsu_mask(vol)
    out = n4_bias_correction(shifted, mask=mask, **FAST)
    assert _cv(out.array + 50.0, uniform) < 0.5 * _cv(vol.array, uniform)


def test_shrink_factors_keep_thick_axis() -> None:
    assert shrink_factors((4.0, 0.875, 0.875), 4) == (1, 4, 4)
    assert shrink_factors((1.0, 1.0, 1.0), 2) == (2, 2, 2)
    assert shrink_factors((4.0, 1.0, 1.0), (1, 2, 3)) == (1, 2, 3)
    with pytest.raises(InputError):
        shrink_factors((1.0, 1.0, 1.0), 0)


def test_n4_bad_input() -> None:
    vol, _ = _phantom()
    with pytest.raises(InputError):
        n4_bias_correction(vol, mask=np.zeros((3, 3, 3), bool))
    with pytest.raises(InputError):
        n4_bias_correction(vol, mask=np.zeros(vol.shape, bool))
    bad = vol.array.copy()
    bad[0, 0, 0] = np.nan
    with pytest.raises(InputError):
        n4_bias_correction(vol.with_array(bad))
