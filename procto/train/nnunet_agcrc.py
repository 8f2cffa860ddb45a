"""AG-CRC's nnU-Net trainers under the module name of the contract (``../shared/spec/agcrc.md``): the generated
classes ``nnUNetTrainerAGCRC_Default`` (M), ``nnUNetTrainerAGCRC_NoAF`` (M+P; +S with AG-SSL weights),
``nnUNetTrainerAGCRC`` (M+P+F; +S with AG-SSL weights), ``nnUNetTrainerAGCRC_SSL`` and the Table VI sampling
variants.  They live in :mod:`procto.train.nnunet.trainers` (generated from one table); nnU-Net finds them through
``nnUNet_extTrainer`` (:func:`procto.infer.nnunet_env.register_trainer_path`)."""

from procto.train.nnunet.agcrc_trainer import AFTrainingLoss, AGCRCTrainer, ReconstructionLoss
from procto.train.nnunet.models import TRAINER_TABLE
from procto.train.nnunet.trainers import TRAINERS

#: AG-CRC trainer key → class.
AGCRC_TRAINERS = {key: cls for key, cls in TRAINERS.items() if TRAINER_TABLE[key].family == "agcrc"}
globals().update({cls.__name__: cls for cls in AGCRC_TRAINERS.values()})

__all__ = ["AGCRCTrainer", "AFTrainingLoss", "ReconstructionLoss", "AGCRC_TRAINERS",
           *(cls.__name__ for cls in AGCRC_TRAINERS.values())]
