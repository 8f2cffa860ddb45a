"""Intensity sanity of the CT (HU) and T2w MRI models."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage as ndi

from procto.phantom import ORGAN_IDS, Tissue, make_case
from procto.phantom.labels import BONE_ORGANS


def _core(mask: np.ndarray) -> np.ndarray:
    eroded = ndi.binary_erosion(mask)
    return eroded if eroded.sum() >= 20 else mask


def _mean(case, tissue) -> float:
    return float(case.image.array[_core(case.tissue.array == tissue)].mean())


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_ct_hounsfield_ranges(seed, small_cases):
    case = small_cases("ct", seed)
    img = case.image.array.astype(float)
    for fat in (Tissue.SUBCUT_FAT, Tissue.VISCERAL_FAT, Tissue.MESO_FAT):
        assert -130 <= _mean(case, fat) <= -70
    assert _mean(case, Tissue.AIR) < -950
    bone = np.isin(case.organs.array, [ORGAN_IDS[b] for b in BONE_ORGANS])
    assert img[bone].mean() >= 400
    tumour = np.median(img[case.label.array == 2])
    assert tumour > _mean(case, Tissue.MESO_FAT) + 100
    assert 40 <= tumour <= 130
    assert 20 <= _mean(case, Tissue.MUSCLE) <= 80


def test_ct_fine_grid_wall_and_tumour_enhance():
    case = make_case(0, "ct", shape=(24, 128, 128), spacing=(2.5, 0.78, 0.78), noise=0.5, center="tumour")
    img = case.image.array.astype(float)
    tumour = img[_core(case.label.array == 2)]
    assert 60 <= np.median(tumour) <= 120


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_mri_t2_contrast(seed, small_cases):
    case = small_cases("mri", seed)
    img = case.image.array
    fat = _mean(case, Tissue.MESO_FAT)
    musc = float(np.median(img[case.tissue.array == Tissue.MUSCULARIS]))
    tumour = float(np.median(img[case.label.array == 2]))
    assert fat > tumour > musc
    # intermediate: clearly away from both
    assert tumour - musc > 0.1 * (fat - musc)
    assert fat - tumour > 0.2 * (fat - musc)
    assert _mean(case, Tissue.URINE) > fat


def test_noise_option():
    quiet = make_case(1, "ct", shape=(16, 64, 64), noise=0.0)
    loud = make_case(1, "ct", shape=(16, 64, 64), noise=2.0)
    fat = _core(quiet.tissue.array == Tissue.SUBCUT_FAT)
    assert quiet.image.array[fat].std() < loud.image.array[fat].std()


def test_mri_rician_noise_floor_is_positive():
    case = make_case(1, "mri", shape=(16, 64, 64))
    assert case.image.array.min() >= 0
    dark = np.isin(case.tissue.array, [Tissue.AIR, Tissue.CORTEX, Tissue.GAS, Tissue.VESSEL])
    assert dark.any() and case.image.array[dark].mean() > 0
