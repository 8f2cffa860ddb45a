"""Re-exports procto's nnU-Net trainers for nnU-Net's ``nnUNet_extTrainer`` lookup (do not import directly; use
:mod:`procto.train.nnunet.trainers`).  Every class generated from the trainer table comes along."""

from procto.train.nnunet.trainers import *  # noqa: F401,F403
