"""The staging augmentation (MONAI 2D random transforms on the volume's slices as channels): slice-consistent,
seeded, padding kept at zero, the paper's list, and the hand-written pieces MONAI has no transform for."""

from __future__ import annotations

import pytest
import torch
from monai.transforms import (
    MedianSmooth,
    Rand2DElastic,
    RandAffine,
    RandFlip,
    RandGaussianSmooth,
    RandGridDistortion,
    RandScaleIntensityFixedMean,
    RandShiftIntensity,
    RandSpatialCrop,
)

from procto.preprocess.augment import (
    RandMedianSmooth,
    RandMotionBlur,
    RandOpticalDistortion,
    StagingAugmentation,
    augment_volume,
)


pytestmark = pytest.mark.usefixtures("single_thread")  # deterministic results (tests/conftest.py)


def _image(d: int = 4, size: int = 64) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    base = ((yy - size / 2) ** 2 + (xx - size / 3) ** 2 < (size / 4) ** 2).float() + 0.1 * torch.randn(size, size,
                                                                                                      generator=g)
    return base.expand(d, size, size).clone()


def _flatten(transform) -> list:
    """Every transform inside a MONAI Compose / OneOf tree."""
    inner = getattr(transform, "transforms", None)
    if inner is None:
        return [transform]
    return [t for child in inner for t in _flatten(child)]


def test_one_deformation_for_all_slices() -> None:
    """Identical slices stay identical: every draw (flip, affine, crop, distortion, intensity, blur) is shared."""
    x = _image(5, 64)
    aug = StagingAugmentation((64, 64))
    valid = torch.ones(5, dtype=torch.bool)
    changed = 0
    for seed in range(40):
        y = aug(x, valid, seed)
        assert torch.isfinite(y).all() and y.shape == x.shape
        for k in range(1, 5):
            assert torch.allclose(y[k], y[0], atol=1e-5), seed
        changed += int(not torch.allclose(y, x))
    assert changed >= 30


def test_seeded_and_prebuilt_equals_fresh() -> None:
    x, valid = _image(4, 48), torch.tensor([True, True, True, False])
    aug = StagingAugmentation((48, 48))
    a = aug(x, valid, 7)
    assert torch.equal(a, aug(x, valid, 7))
    assert torch.equal(a, augment_volume(x, valid, 7))  # a fresh pipeline, the same seed
    assert not torch.equal(a, aug(x, valid, 8))
    assert torch.all(a[3] == 0)  # the padding slice stays zero
    # a torch.Generator gives one seed drawn from it
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    assert torch.equal(augment_volume(x, valid, g1), augment_volume(x, valid, g2))
    with pytest.raises(ValueError):
        aug(_image(4, 32), valid, 0)


def test_padding_slices_do_not_change_the_real_ones() -> None:
    """Padding is left out of the pipeline: the real slices get what they would get without padding."""
    x = _image(3, 48)
    padded = torch.cat([torch.zeros(1, 48, 48), x, torch.zeros(2, 48, 48)])
    valid = torch.tensor([False, True, True, True, False, False])
    aug = StagingAugmentation((48, 48))
    for seed in range(5):
        out = aug(padded, valid, seed)
        assert torch.equal(out[1:4], aug(x, torch.ones(3, dtype=torch.bool), seed))
        assert torch.all(out[~valid] == 0)


def test_the_papers_list_is_monai_transforms() -> None:
    kinds = {type(t) for t in _flatten(StagingAugmentation((256, 256)).pipeline)}
    for monai_transform in (RandFlip, RandAffine, RandSpatialCrop, Rand2DElastic, RandGridDistortion,
                            RandShiftIntensity, RandScaleIntensityFixedMean, RandGaussianSmooth):
        assert monai_transform in kinds, monai_transform.__name__
    assert {RandOpticalDistortion, RandMotionBlur, RandMedianSmooth} <= kinds
    # at small crops the paper's 0.5–1.5 px Gaussian (scaled to the crop) is below a pixel and left out
    assert RandGaussianSmooth not in {type(t) for t in _flatten(StagingAugmentation((32, 32)).pipeline)}


def test_hand_written_pieces() -> None:
    x = _image(2, 64)
    for transform in (RandOpticalDistortion(), RandMotionBlur(), RandMedianSmooth()):
        transform.set_random_state(0)
        a = transform(x)
        transform.set_random_state(0)
        assert torch.equal(a, transform(x)) and a.shape == x.shape and not torch.allclose(a, x)
        assert torch.allclose(a[0], a[1])
    # the median blur is MONAI's MedianSmooth with the drawn kernel
    median = RandMedianSmooth(sizes=(5.0,))
    median.set_random_state(0)
    assert torch.allclose(median(x), torch.as_tensor(MedianSmooth(radius=2)(x)))
    # kernels below a pixel leave the image alone; probability 0 never transforms
    assert torch.equal(RandMotionBlur(length_range=(1.0, 1.5))(x), x)
    assert torch.equal(RandMedianSmooth(sizes=(1.0,))(x), x)
    assert torch.equal(RandOpticalDistortion(prob=0.0)(x), x)
    # the motion kernel is a normalised line
    blur = RandMotionBlur(length_range=(5.0, 5.0))
    blur.set_random_state(1)
    blur.randomize()
    kernel = blur.kernel()
    assert kernel.sum() == pytest.approx(1.0) and int((kernel > 0).sum()) >= 4
