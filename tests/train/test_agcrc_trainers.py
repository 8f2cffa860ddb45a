"""AG-CRC's network and nnU-Net trainers without training: fact 9 (parameter and layer count), the network is
nnU-Net's own PlainConvUNet, the trainer table and configurations, the patch-centre strategies inside nnU-Net's real
data loader, CT-only intensity augmentation, the AF-loss wiring and the AG-SSL batch."""

from __future__ import annotations

import json
import pickle
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from procto.errors import InputError
from procto.infer.nnunet_env import nnunet_environment
from procto.nets import create_model
from procto.train.agcrc_sampling import PSMSampler

with nnunet_environment():
    from procto.train.nnunet import agcrc_data, trainers
    from procto.train.nnunet.agcrc_trainer import AFTrainingLoss, AGCRCTrainer, ReconstructionLoss
from procto.train.agcrc import CONFIG_TRAINERS, SAMPLING_TRAINERS, pretrained_checkpoint, trainer_key
from procto.train.agcrc_losses import AFDeepSupervisionLoss


# ------------------------------------------------------------------------------------------------------ network
def test_fact9_agcrc_unet_has_32_conv_layers_and_30749130_parameters():
    net = create_model("agcrc_unet", input_channels=3, num_classes=2, spacing=(5.0, 0.78, 0.78),
                       patch_size=(40, 224, 192))
    assert len(net.conv_layers()) == 32
    assert sum(p.numel() for p in net.parameters()) == 30_749_130
    one = create_model("agcrc_unet", input_channels=1, num_classes=2, spacing=(5.0, 0.78, 0.78),
                       patch_size=(40, 224, 192))
    assert sum(p.numel() for p in one.parameters()) == 30_748_554  # facts file §6
    # the facts file's topology: 6 stages, strides (1,1,1),(1,2,2),(1,2,2),(2,2,2)x3, kernels (1,3,3)x2 then (3,3,3)x4
    kw = net.nnunet_arch_kwargs()
    assert kw["strides"] == [[1, 1, 1], [1, 2, 2], [1, 2, 2], [2, 2, 2], [2, 2, 2], [2, 2, 2]]
    assert kw["kernel_sizes"] == [[1, 3, 3]] * 2 + [[3, 3, 3]] * 4
    assert kw["features_per_stage"] == [32, 64, 128, 256, 320, 320]


def test_a_256_wide_patch_adds_a_seventh_stage():
    net = create_model("agcrc_unet", spacing=(5.0, 0.78, 0.78), patch_size=(40, 256, 256))
    assert net.nnunet_arch_kwargs()["n_stages"] == 7 and len(net.conv_layers()) == 38


def test_plans_rebuild_nnunets_own_plain_conv_unet_with_the_same_weights():
    from nnunetv2.utilities.get_network_from_plans import get_network_from_plans

    net = create_model("agcrc_unet", input_channels=3, num_classes=2, spacing=(5.0, 1.5, 1.5), patch_size=(16, 64, 64),
                       deep_supervision=True)
    arch = trainers.network_architecture(net)
    assert arch["network_class_name"] == "dynamic_network_architectures.architectures.unet.PlainConvUNet"
    plain = get_network_from_plans(arch["network_class_name"], json.loads(json.dumps(arch["arch_kwargs"])),
                                   arch["_kw_requires_import"], 3, 2, allow_init=True, deep_supervision=True)
    assert type(plain).__name__ == "PlainConvUNet"
    plain.load_state_dict(net.state_dict(), strict=True)
    x = torch.randn(1, 3, 16, 64, 64)
    net.eval(), plain.eval()
    with torch.no_grad():
        assert torch.equal(net(x)[0], plain(x)[0])


def test_patch_of_the_plans_is_kept_and_an_override_is_padded_like_nnunet():
    cfg = {"spacing": [5.0, 1.5, 1.5], "patch_size": [16, 64, 64]}
    assert trainers.choose_patch_size(cfg["spacing"], cfg["patch_size"], None, "agcrc_unet") == [16, 64, 64]
    padded = trainers.choose_patch_size(cfg["spacing"], cfg["patch_size"], (15, 60, 60), "agcrc_unet")
    assert all(p >= q for p, q in zip(padded, (15, 60, 60)))
    assert create_model("agcrc_unet", spacing=cfg["spacing"], patch_size=padded)  # a valid topology


# ------------------------------------------------------------------------------------------------------ table
def test_every_configuration_and_sampling_has_its_trainer():
    assert trainer_key("M") == ("agcrc_m", False) and trainer_key("M+P+S+F") == ("agcrc_mpsf", True)
    assert trainer_key("MPS") == ("agcrc_mps", True) and trainer_key("MPF") == ("agcrc_mpf", False)
    for sampling, key in SAMPLING_TRAINERS.items():
        assert trainer_key("M", sampling) == (key, False)
        assert trainers.TRAINERS[key].sampling == sampling
    with pytest.raises(InputError, match="configuration"):
        trainer_key("XYZ")
    with pytest.raises(InputError, match="Table VI"):
        trainer_key("MPSF", "uniform")
    cls = {k: trainers.TRAINERS[v] for k, (v, _) in CONFIG_TRAINERS.items()}
    assert cls["M"].__name__ == "nnUNetTrainerAGCRC_Default" and not cls["M"].af_loss
    assert cls["MP"].__name__ == "nnUNetTrainerAGCRC_NoAF" and cls["MP"].sampling == "ag" and not cls["MP"].af_loss
    assert cls["MPF"].__name__ == "nnUNetTrainerAGCRC" and cls["MPF"].af_loss and not cls["MPF"].from_ssl
    assert cls["MPSF"].__name__ == "nnUNetTrainerAGCRC_FromSSL" and cls["MPSF"].af_loss and cls["MPSF"].from_ssl
    assert cls["MPS"].sampling == "ag" and not cls["MPS"].af_loss and cls["MPS"].from_ssl
    ssl = trainers.TRAINERS["agcrc_ssl"]
    assert ssl.__name__ == "nnUNetTrainerAGCRC_SSL" and ssl.ssl and not ssl.af_loss
    assert all(issubclass(c, AGCRCTrainer) for c in cls.values())


def test_agcrc_trainers_default_to_1000_epochs(monkeypatch):
    from procto.train.nnunet.options import ENV_EPOCHS, model_defaults, trainer_settings

    monkeypatch.delenv(ENV_EPOCHS, raising=False)
    assert trainer_settings(model_defaults("agcrc_unet"))["num_epochs"] == 1000
    assert trainer_settings(model_defaults("rcsegnext_b"))["num_epochs"] == 100


def test_pretrained_checkpoint_is_found_in_a_model_folder(tmp_path):
    fold = tmp_path / "model" / "fold_all"
    fold.mkdir(parents=True)
    (fold / "checkpoint_final.pth").write_bytes(b"x")
    assert pretrained_checkpoint(tmp_path / "model") == fold / "checkpoint_final.pth"
    assert pretrained_checkpoint(fold / "checkpoint_final.pth") == fold / "checkpoint_final.pth"
    with pytest.raises(InputError, match="pretrain"):
        pretrained_checkpoint(tmp_path)


# ------------------------------------------------------------------------------------------------------ sampling
class _FakeDataset:
    """What nnU-Net's loader uses of a data set: identifiers and load_case (data, seg, seg_prev, properties)."""

    def __init__(self, data: np.ndarray, seg: np.ndarray):
        self.identifiers = ["c0"]
        self.data, self.seg = data, seg
        tumour = np.argwhere(seg[0] == 1)
        self.properties = {"class_locations": {1: np.concatenate([np.zeros((len(tumour), 1), int), tumour], 1)}}

    def __len__(self):
        return 1

    def load_case(self, identifier):
        return self.data, self.seg, None, dict(self.properties)


def _case(shape=(12, 40, 40)):
    rng = np.random.default_rng(0)
    data = np.zeros((3, *shape), np.float32)
    data[0] = rng.normal(size=shape)
    data[1, 3:9, 10:30, 10:20] = 20 / 117  # colon
    data[1, 3:9, 10:30, 20:30] = 18 / 117  # small bowel
    data[2, 2:10, 8:32, 8:32] = 1.0  # OOI
    seg = np.zeros((1, *shape), np.int16)
    seg[0, 5:7, 14:18, 12:16] = 1
    return data, seg


@pytest.mark.parametrize("strategy", ["uniform_ooi", "uniform_colon"])
def test_uniform_region_centres_stay_in_the_region(strategy):
    data, seg = _case()
    ds = agcrc_data.CentreDataset(_FakeDataset(data, seg), strategy, (8, 16, 16))
    region = data[2] > 0.5 if strategy == "uniform_ooi" else np.abs(data[1] * 117 - 20) < 0.5
    centres = [ds.load_case("c0")[3]["class_locations"][1][0, 1:] for _ in range(300)]
    assert all(region[tuple(c)] for c in centres)
    assert len({tuple(c) for c in centres}) > 100  # spread over the region, not one voxel


@pytest.mark.parametrize("strategy", ["hybrid_ooi", "hybrid_colon"])
def test_hybrid_centres_are_tumour_a_third_of_the_time(strategy):
    data, seg = _case()
    np.random.seed(1)
    ds = agcrc_data.CentreDataset(_FakeDataset(data, seg), strategy, (8, 16, 16))
    on_tumour = [seg[0][tuple(ds.load_case("c0")[3]["class_locations"][1][0, 1:])] == 1 for _ in range(3000)]
    # region draws can hit tumour voxels too: P = 0.33 + 0.67·|tumour ∩ region| / |region|
    region = data[2] > 0.5 if strategy == "hybrid_ooi" else np.abs(data[1] * 117 - 20) < 0.5
    expected = 0.33 + 0.67 * (region & (seg[0] == 1)).sum() / region.sum()
    assert abs(np.mean(on_tumour) - expected) < 0.03


def test_ag_centres_follow_the_psm_sampler_and_the_wrapper_pickles():
    data, seg = _case()
    np.random.seed(3)
    ds = agcrc_data.CentreDataset(_FakeDataset(data, seg), "ag", (8, 16, 16))
    got = np.array([ds.load_case("c0")[3]["class_locations"][1][0, 1:] for _ in range(4000)])
    ref = PSMSampler(data[2] > 0.5, seg[0] == 1, (8, 16, 16), seed=7).sample(4000)
    for axis in range(3):  # same marginal distribution per axis (two-sample KS)
        from scipy.stats import ks_2samp

        assert ks_2samp(got[:, axis], ref[:, axis]).pvalue > 1e-3
    clone = pickle.loads(pickle.dumps(ds))
    assert clone.strategy == "ag" and clone._cases == {} and clone.identifiers == ["c0"]


def test_nnunet_loader_centres_the_patch_on_the_drawn_voxel():
    """The real nnUNetDataLoader with the wrapper: every sample forced, bbox lower corner = max(lbs, centre − p//2)."""
    from nnunetv2.training.dataloading.data_loader import nnUNetDataLoader

    data, seg = _case()
    ds = agcrc_data.CentreDataset(_FakeDataset(data, seg), "uniform_ooi", (8, 16, 16))
    lm = SimpleNamespace(all_labels=[0, 1], has_ignore_label=False)
    loader = nnUNetDataLoader(ds, 2, (8, 16, 16), (8, 16, 16), lm, agcrc_data.foreground_fraction("uniform_ooi"))
    assert loader.get_do_oversample(0) and loader.get_do_oversample(1)  # every sample takes the drawn centre
    for _ in range(50):
        _, _, _, props = ds.load_case("c0")
        centre = props["class_locations"][1][0, 1:]
        lbs, _ = loader.get_bbox(data.shape[1:], True, props["class_locations"])
        assert list(lbs) == [max(0, int(c) - p // 2) for c, p in zip(centre, (8, 16, 16))]


def test_nnunet_strategies_set_the_foreground_fraction():
    assert agcrc_data.foreground_fraction("uniform") == 0.0
    assert agcrc_data.foreground_fraction("hybrid_uniform") == 0.33
    assert all(agcrc_data.foreground_fraction(s) == 1.0 for s in agcrc_data.CENTRE_STRATEGIES)


# ------------------------------------------------------------------------------------------------------ augmentation
def test_intensity_augmentation_touches_the_ct_channel_only():
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

    compose = AGCRCTrainer.get_training_transforms((8, 16, 16), (0, 0), None, (0, 1, 2), False)
    wrapped = [t for t in compose.transforms if isinstance(t, agcrc_data.FirstChannelsOnly)]
    assert len(wrapped) == 7  # noise, blur, brightness, contrast, low resolution, two gammas
    plain = nnUNetTrainer.get_training_transforms((8, 16, 16), (0, 0), None, (0, 1, 2), False)
    assert len(plain.transforms) == len(compose.transforms)
    from batchgeneratorsv2.transforms.intensity.gaussian_noise import GaussianNoiseTransform
    from batchgeneratorsv2.transforms.utils.random import RandomTransform

    noise = agcrc_data.FirstChannelsOnly(RandomTransform(GaussianNoiseTransform((0.5, 0.5)), 1.0))
    image = torch.randn(3, 8, 16, 16)
    out = noise(image=image.clone(), segmentation=torch.zeros(1, 8, 16, 16))
    assert not torch.equal(out["image"][0], image[0])
    assert torch.equal(out["image"][1:], image[1:])


# ------------------------------------------------------------------------------------------------------ losses
def test_af_training_loss_reads_the_batch_ooi_and_equals_the_af_loss():
    torch.manual_seed(0)
    logits = [torch.randn(2, 2, 8, 16, 16, requires_grad=True), torch.randn(2, 2, 4, 8, 8, requires_grad=True)]
    target = [torch.randint(0, 2, (2, 1, 8, 16, 16)), torch.randint(0, 2, (2, 1, 4, 8, 8))]
    ooi = torch.rand(2, 1, 8, 16, 16) > 0.5
    loss = AFTrainingLoss((2 / 3, 1 / 3), batch_dice=False)
    with pytest.raises(RuntimeError, match="OOI"):
        loss(logits, target)
    loss.ooi = ooi
    assert torch.allclose(loss(logits, target), AFDeepSupervisionLoss((2 / 3, 1 / 3))(logits, target, ooi))


def test_ssl_batch_noises_the_ct_inside_the_wall_and_targets_the_clean_ct():
    data = torch.randn(2, 3, 8, 16, 16)
    wall = torch.zeros(2, 1, 8, 16, 16, dtype=torch.int16)
    wall[:, :, 2:6, 4:12, 4:12] = 1
    fake = SimpleNamespace(_noise_generator=lambda: torch.Generator().manual_seed(0))
    batch = AGCRCTrainer._ssl_batch(fake, {"data": data, "target": [wall, wall[:, :, ::2, ::2, ::2]]})
    inside = wall[:, 0].bool()
    assert torch.equal(batch["target"], data[:, :1])
    assert torch.equal(batch["data"][:, 0][~inside], data[:, 0][~inside])
    assert not torch.equal(batch["data"][:, 0][inside], data[:, 0][inside])
    assert torch.equal(batch["data"][:, 1:], data[:, 1:])  # MOS and OOI unmasked
    out = [torch.zeros(2, 1, 8, 16, 16), torch.ones(2, 1, 4, 8, 8)]
    assert ReconstructionLoss()(out, batch["target"]) == pytest.approx(data[:, :1].abs().mean().item(), rel=1e-6)


def test_paper_complexity_counts_the_papers_31m():
    from procto.nets import paper_complexity

    c = paper_complexity("agcrc_unet")
    assert c["params"] == 30_749_130 and c["conv_layers"] == 32
    assert round(c["params"] / 1e6) == c["paper"]["params"] / 1e6 == 31
