"""Re-exports procto's RCSegNeXt nnU-Net trainers for nnU-Net's ``nnUNet_extTrainer`` lookup (do not import directly;
use :mod:`procto.train.nnunet_rcsegnext`)."""

from procto.train.nnunet_rcsegnext import (  # noqa: F401
    nnUNetTrainerRCSegNeXt,
    nnUNetTrainerRCSegNeXt_Conv,
    nnUNetTrainerRCSegNeXt_ConvNeXt,
    nnUNetTrainerRCSegNeXt_Grouped,
    nnUNetTrainerRCSegNeXt_Plain,
    nnUNetTrainerRCSegNeXt_Res2Net,
    nnUNetTrainerRCSegNeXt_Res2NeXt,
    nnUNetTrainerRCSegNeXtL,
)
