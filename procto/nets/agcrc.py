"""AG-CRC's network: nnU-Net v2's own 3d_fullres ``PlainConvUNet``, with the topology nnU-Net's planner gives a
target spacing and a patch size (paper 001, §IV-C: "automatically determined by the nnUNet framework given our dataset
and a specified target spacing 5.0 × 0.78 × 0.78 mm, resulting in a deep UNet with 32 convolution or transposed
convolution layers (including the auxiliary deep supervision heads) and consists of 31M parameters").

>>> from procto.nets import create_model
>>> net = create_model("agcrc_unet", input_channels=3, num_classes=2, spacing=(5.0, 0.78, 0.78),
...                    patch_size=(40, 224, 192))                                     # doctest: +SKIP
>>> sum(p.numel() for p in net.parameters())                                        # doctest: +SKIP
30749130

The topology is nnU-Net 2.8.1's ``get_pool_and_conv_props(spacing, patch, 4, 999999)`` (what
``ExperimentPlanner.get_plans_for_configuration`` calls), features ``min(32·2^i, 320)``, two convolutions per stage in
the encoder and the decoder, instance norm (eps 1e-5, affine), LeakyReLU, conv bias, no dropout: nnU-Net's
``nnUNetPlans`` ``arch_kwargs``, so a network built here and the one nnU-Net builds from its plans have the same
state-dict keys and shapes.  :meth:`AGCRCUNet.nnunet_arch_kwargs` gives those kwargs in plans style.
"""

from __future__ import annotations

from typing import Sequence

import torch
from dynamic_network_architectures.architectures.unet import PlainConvUNet
from torch import nn

from procto.nets.registry import register_model

#: The paper's target spacing (z, y, x) in mm.
PAPER_TARGET_SPACING = (5.0, 0.78, 0.78)
#: A patch nnU-Net plans at that spacing (the paper does not report its patch; facts file §6).
REFERENCE_PATCH = (40, 224, 192)
#: nnU-Net's planner constants (``ExperimentPlanner.__init__``).
BASE_FEATURES = 32
MAX_FEATURES_3D = 320
MIN_FEATURE_MAP_EDGE = 4
CONV_PER_STAGE = 2
#: The class nnU-Net's plans name; procto's subclass adds only methods, so the weights are interchangeable.
PLANS_NETWORK_CLASS = "dynamic_network_architectures.architectures.unet.PlainConvUNet"


def nnunet_topology(spacing: Sequence[float], patch_size: Sequence[int]) -> dict:
    """nnU-Net's network topology for ``spacing`` and ``patch_size`` (z, y, x): ``strides`` and ``kernel_sizes`` per
    stage (the first stride all ones), ``patch_size`` (nnU-Net's, padded to a multiple of the total stride) and
    ``n_stages``."""
    from nnunetv2.experiment_planning.experiment_planners.network_topology import get_pool_and_conv_props

    spacing = [float(s) for s in spacing]
    patch = [int(p) for p in patch_size]
    if len(spacing) != 3 or len(patch) != 3 or min(spacing) <= 0 or min(patch) < 1:
        raise ValueError(f"agcrc_unet needs a positive 3-D spacing and patch size, got {spacing} and {patch}")
    _, strides, kernels, patch_out, _ = get_pool_and_conv_props(spacing, patch, MIN_FEATURE_MAP_EDGE, 999999)
    return {"strides": [list(map(int, s)) for s in strides], "kernel_sizes": [list(map(int, k)) for k in kernels],
            "patch_size": [int(p) for p in patch_out], "n_stages": len(strides)}


class AGCRCUNet(PlainConvUNet):
    """nnU-Net's ``PlainConvUNet`` (weights interchangeable with it) that knows its plans-style construction."""

    def __init__(self, input_channels: int, num_classes: int, strides: Sequence[Sequence[int]],
                 kernel_sizes: Sequence[Sequence[int]], deep_supervision: bool = False):
        n_stages = len(strides)
        self._plans_kwargs = {
            "n_stages": n_stages,
            "features_per_stage": [min(MAX_FEATURES_3D, BASE_FEATURES * 2 ** i) for i in range(n_stages)],
            "conv_op": "torch.nn.modules.conv.Conv3d",
            "kernel_sizes": [list(map(int, k)) for k in kernel_sizes],
            "strides": [list(map(int, s)) for s in strides],
            "n_conv_per_stage": [CONV_PER_STAGE] * n_stages,
            "n_conv_per_stage_decoder": [CONV_PER_STAGE] * (n_stages - 1),
            "conv_bias": True,
            "norm_op": "torch.nn.modules.instancenorm.InstanceNorm3d",
            "norm_op_kwargs": {"eps": 1e-5, "affine": True},
            "dropout_op": None,
            "dropout_op_kwargs": None,
            "nonlin": "torch.nn.LeakyReLU",
            "nonlin_kwargs": {"inplace": True},
        }
        kw = dict(self._plans_kwargs)
        kw.update(conv_op=nn.Conv3d, norm_op=nn.InstanceNorm3d, nonlin=nn.LeakyReLU)
        super().__init__(input_channels=int(input_channels), num_classes=int(num_classes),
                         deep_supervision=bool(deep_supervision), **kw)

    def nnunet_arch_kwargs(self) -> dict:
        """``arch_kwargs`` of nnU-Net's plans for this network (``PlainConvUNet(in, classes, ds, **kwargs)`` after
        importing the ``_kw_requires_import`` names rebuilds it)."""
        return {k: (list(v) if isinstance(v, list) else v) for k, v in self._plans_kwargs.items()}

    @staticmethod
    def nnunet_network_class_name() -> str:
        """The class the plans name: nnU-Net's own, so that any nnU-Net tool can rebuild the network."""
        return PLANS_NETWORK_CLASS

    def conv_layers(self) -> list[nn.Module]:
        """Every convolution and transposed convolution, deep-supervision heads included (the paper's "32 layers")."""
        return [m for m in self.modules() if isinstance(m, (nn.Conv3d, nn.ConvTranspose3d))]


@register_model("agcrc_unet")
def agcrc_unet(input_channels: int = 3, num_classes: int = 2, spacing: Sequence[float] = PAPER_TARGET_SPACING,
               patch_size: Sequence[int] = REFERENCE_PATCH, deep_supervision: bool = False) -> AGCRCUNet:
    """AG-CRC's U-Net (nnU-Net's PlainConvUNet) for ``spacing`` and ``patch_size``; input channels CT, MOS, OOI."""
    topo = nnunet_topology(spacing, patch_size)
    return AGCRCUNet(input_channels, num_classes, topo["strides"], topo["kernel_sizes"], deep_supervision)


def count_parameters(net: torch.nn.Module) -> int:
    """All parameters, deep-supervision heads included (as the paper counts)."""
    return sum(p.numel() for p in net.parameters())


__all__ = ["AGCRCUNet", "agcrc_unet", "nnunet_topology", "count_parameters", "PAPER_TARGET_SPACING",
           "REFERENCE_PATCH", "PLANS_NETWORK_CLASS"]
