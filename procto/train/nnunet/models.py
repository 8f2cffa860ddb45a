"""The table of procto's nnU-Net v2 trainers: trainer key → class name, network and family (:class:`TrainerSpec`).

:mod:`procto.train.nnunet.trainers` generates one trainer class per entry (nnU-Net finds it by that class name:
``nnUNetv2_train ... -tr nnUNetTrainerRCSegNeXt``); each builds its network with
``procto.nets.create_model(<model name>, input_channels=..., num_classes=..., spacing=..., deep_supervision=...)``.
Adding a model or a variant is one entry here, given a ``procto.nets`` registry builder that takes those arguments and
returns a network with a ``nnunet_arch_kwargs()`` method (see :class:`procto.nets.rcsegnext.RCSegNeXt`).

This module imports nothing heavy, so the names are known without importing nnU-Net.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

from procto.errors import InputError

#: nnU-Net configuration and plans procto trains.
CONFIGURATION = "3d_fullres"
PLANS = "nnUNetPlans"

class TrainerSpec(NamedTuple):
    """One nnU-Net trainer procto generates (see :mod:`procto.train.nnunet.trainers`)."""

    #: nnU-Net trainer class name (``-tr``).
    class_name: str
    #: What the trainer trains (its docstring).
    description: str
    #: ``procto.nets`` registry name of the network.
    model: str
    #: Trainer family: ``"procto"`` (network + paper settings only) or ``"agcrc"`` (AG-CRC's sampling, loss, SSL).
    family: str = "procto"
    #: Family options as (name, value) pairs, e.g. ``(("sampling", "ag"), ("af_loss", True))``.
    options: tuple = ()


def _rcsegnext(class_name: str, description: str, model: str) -> TrainerSpec:
    return TrainerSpec(class_name, description, model)


def _agcrc(class_name: str, description: str, sampling: str, af_loss: bool = False, ssl: bool = False,
           from_ssl: bool = False) -> TrainerSpec:
    return TrainerSpec(class_name, description, "agcrc_unet", "agcrc",
                       (("sampling", sampling), ("af_loss", af_loss), ("ssl", ssl), ("from_ssl", from_ssl)))


#: Trainer key → :class:`TrainerSpec`.  RCSegNeXt's keys are its model names; AG-CRC's name the Table IX
#: configuration or the Table VI sampling (``procto.train.agcrc`` maps configurations to these keys).  The ``FromSSL``
#: trainers train exactly as the ones without, from the weights ``procto.train.agcrc.train_agcrc`` loads
#: (``nnUNetTrainerAGCRC`` with nnU-Net's own ``-pretrained_weights`` is M+P+S+F as well).
TRAINER_TABLE: dict[str, TrainerSpec] = {
    "rcsegnext_b": _rcsegnext("nnUNetTrainerRCSegNeXt", "RCSegNeXt-B (2.76 M parameters)", "rcsegnext_b"),
    "rcsegnext_l": _rcsegnext("nnUNetTrainerRCSegNeXtL", "RCSegNeXt-L (10.77 M parameters)", "rcsegnext_l"),
    "rcsegnext_b_plain": _rcsegnext("nnUNetTrainerRCSegNeXt_Plain",
                                    "Table 4 baseline: plain convolution blocks everywhere (3D U-Net with anisotropic "
                                    "kernels and IN)", "rcsegnext_b_plain"),
    "rcsegnext_b_conv": _rcsegnext("nnUNetTrainerRCSegNeXt_Conv",
                                   "Table 4: AniNeXt in anisotropic stages, plain convolutions in isotropic ones",
                                   "rcsegnext_b_conv"),
    "rcsegnext_b_convnext": _rcsegnext("nnUNetTrainerRCSegNeXt_ConvNeXt", "Table 4: AniNeXt + ConvNeXt blocks",
                                       "rcsegnext_b_convnext"),
    "rcsegnext_b_res2net": _rcsegnext("nnUNetTrainerRCSegNeXt_Res2Net", "Table 4: AniNeXt + Res2Net blocks",
                                      "rcsegnext_b_res2net"),
    "rcsegnext_b_res2next": _rcsegnext("nnUNetTrainerRCSegNeXt_Res2NeXt", "Table 4: AniNeXt + Res2NeXt blocks",
                                       "rcsegnext_b_res2next"),
    "rcsegnext_b_grouped": _rcsegnext("nnUNetTrainerRCSegNeXt_Grouped",
                                      "not in Table 4: IsoNeXt with SAIM's grouped convolutions but no channel "
                                      "regrouping", "rcsegnext_b_grouped"),
    # AG-CRC (paper 001), Table IX configurations and Table VIII's M+P+F
    "agcrc_m": _agcrc("nnUNetTrainerAGCRC_Default",
                      "AG-CRC M: CT + MOS + OOI input, nnU-Net's default sampling (= Table VI 'Hybrid uniform'; "
                      "nnU-Net forces 1 of 2 samples to foreground at batch 2, not 33 %)", "hybrid_uniform"),
    "agcrc_mp": _agcrc("nnUNetTrainerAGCRC_NoAF", "AG-CRC M+P: anatomy-guided patch sampling, Dice + CE", "ag"),
    "agcrc_mpf": _agcrc("nnUNetTrainerAGCRC", "AG-CRC M+P+F: anatomy-guided sampling and the AF-loss", "ag",
                        af_loss=True),
    # the same two trainers started from AG-SSL weights (own classes, so their results folders differ)
    "agcrc_mps": _agcrc("nnUNetTrainerAGCRC_NoAF_FromSSL",
                        "AG-CRC M+P+S: anatomy-guided sampling, Dice + CE, started from AG-SSL weights", "ag",
                        from_ssl=True),
    "agcrc_mpsf": _agcrc("nnUNetTrainerAGCRC_FromSSL",
                         "AG-CRC M+P+S+F: anatomy-guided sampling and the AF-loss, started from AG-SSL weights", "ag",
                         af_loss=True, from_ssl=True),
    "agcrc_ssl": _agcrc("nnUNetTrainerAGCRC_SSL",
                        "AG-SSL pre-training: CT inside the bowel wall replaced by N(0, 1), 1-channel "
                        "reconstruction head, L1", "hybrid_uniform", ssl=True),
    # Table VI sampling alternatives (M input, Dice + CE); 'Hybrid uniform' is agcrc_m, 'AG sampling' agcrc_mp
    "agcrc_uniform": _agcrc("nnUNetTrainerAGCRC_Uniform", "AG-CRC Table VI: patch centres uniform over the image",
                            "uniform"),
    "agcrc_uniform_colon": _agcrc("nnUNetTrainerAGCRC_UniformColon",
                                  "AG-CRC Table VI: patch centres uniform over the colon mask", "uniform_colon"),
    "agcrc_uniform_ooi": _agcrc("nnUNetTrainerAGCRC_UniformOOI",
                                "AG-CRC Table VI: patch centres uniform over the OOI", "uniform_ooi"),
    "agcrc_hybrid_colon": _agcrc("nnUNetTrainerAGCRC_HybridColon",
                                 "AG-CRC Table VI: each centre a tumour voxel with probability 0.33, else uniform over "
                                 "the colon mask", "hybrid_colon"),
    "agcrc_hybrid_ooi": _agcrc("nnUNetTrainerAGCRC_HybridOOI",
                               "AG-CRC Table VI: each centre a tumour voxel with probability 0.33, else uniform over "
                               "the OOI", "hybrid_ooi"),
}

#: Trainer key → nnU-Net trainer class name (``-tr``).
TRAINER_NAMES: dict[str, str] = {key: spec.class_name for key, spec in TRAINER_TABLE.items()}


def trainer_name_for(model: str) -> str:
    """The nnU-Net trainer class name of trainer key ``model`` (a model name for RCSegNeXt)."""
    if model not in TRAINER_NAMES:
        raise InputError(f"no nnU-Net trainer {model!r}; known: {', '.join(TRAINER_NAMES)}")
    return TRAINER_NAMES[model]


def model_dir_for(results, dataset_name: str, model: str = "rcsegnext_b") -> Path:
    """nnU-Net's results folder of ``model`` trained on ``dataset_name`` (``plans.json``, ``dataset.json``, folds);
    ``results``: nnU-Net's results folder, or a :class:`procto.infer.nnunet_env.NNUNetFolders`."""
    folder = f"{trainer_name_for(model)}__{PLANS}__{CONFIGURATION}"
    return Path(getattr(results, "results", results)) / dataset_name / folder


__all__ = ["CONFIGURATION", "PLANS", "TrainerSpec", "TRAINER_TABLE", "TRAINER_NAMES", "trainer_name_for", "model_dir_for"]
