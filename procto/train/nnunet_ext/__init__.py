"""Folder for nnU-Net's ``nnUNet_extTrainer`` search path (:data:`procto.infer.nnunet_env.TRAINER_DIR`).

nnU-Net imports every module in the folders listed in ``nnUNet_extTrainer`` (by bare module name) and looks for the
requested trainer class there.  The one module here re-exports procto's trainers, so that the classes nnU-Net finds
are the ones defined in :mod:`procto.train.nnunet.trainers`.  See that module's docstring.
"""
