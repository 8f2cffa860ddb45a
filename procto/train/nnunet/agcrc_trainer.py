"""AG-CRC's nnU-Net trainers (paper 001): one base class whose generated subclasses (see
:data:`procto.train.nnunet.models.TRAINER_TABLE`) differ only in these options:

* ``sampling`` — the patch-centre strategy (:mod:`procto.train.nnunet.agcrc_data`; ``ag`` = AG-sampling, "P");
* ``af_loss`` — the anatomy-focalised loss ("F", :class:`procto.train.agcrc_losses.AFDeepSupervisionLoss` with the
  batch's OOI = input channel 2 > 0.5, at every deep-supervision scale);
* ``from_ssl`` — only recorded: the trainer is started from AG-SSL weights ("S"; loaded by nnU-Net's
  ``load_pretrained_weights``, which :func:`procto.train.agcrc.train_agcrc` calls);
* ``ssl`` — AG-SSL pre-training ("S"): the CT channel inside the bowel wall (the data set's label 1, written by
  ``write_agcrc_dataset(..., wall=True)``) is replaced by N(0, 1) noise (:func:`procto.train.agcrc_losses.
  mask_bowel_wall`), the network has a 1-channel output and learns to reconstruct the clean (normalised, augmented) CT
  with an L1 loss on the full-resolution output (deep-supervision heads get no loss); validation logs −L1 as the
  "pseudo Dice" so that nnU-Net's best checkpoint is the lowest validation L1; there is no final validation.

Every AG-CRC trainer applies nnU-Net's intensity augmentations to the CT channel only (MOS and OOI keep their
meaning; spatial transforms move all channels); the network is nnU-Net's own planned U-Net
(``create_model("agcrc_unet", ...)``), 1000 epochs by default.  Fine-tuning from AG-SSL weights is nnU-Net's
``load_pretrained_weights`` (every key but ``.seg_layers.``), see :func:`procto.train.agcrc.train_agcrc`.
The trained configuration in ``plans.json`` records the options as ``procto_agcrc`` (the predictor reads ``af_loss``).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
from torch import nn

from procto.train.agcrc_losses import AFDeepSupervisionLoss, AFLoss, deep_supervision_weights, mask_bowel_wall
from procto.train.nnunet.agcrc_data import COLON_IDS, CENTRE_STRATEGIES, CentreDataset, ct_only_intensity, \
    foreground_fraction
from procto.train.nnunet.base import ProctoNNUNetTrainer, build_for_configuration

#: Input channel of the OOI (CT, MOS, OOI).
OOI_CHANNEL = 2


class AFTrainingLoss(nn.Module):
    """The AF-loss as nnU-Net's trainer calls a loss, ``loss(output, target)``: the batch's OOI is set on it before
    each step (``ooi``: (B, 1, ...) at full resolution; resampled to every deep-supervision scale)."""

    def __init__(self, weights: tuple[float, ...] | None, batch_dice: bool, ddp: bool = False):
        super().__init__()
        self.deep_supervision = weights is not None
        self.loss = AFDeepSupervisionLoss(weights, batch_dice, ddp) if weights is not None else AFLoss(batch_dice, ddp)
        self.ooi: torch.Tensor | None = None

    def forward(self, output, target) -> torch.Tensor:
        if self.ooi is None:
            raise RuntimeError("AF-loss called without the batch's OOI")
        ooi = self.ooi.to(output[0].device if self.deep_supervision else output.device)
        return self.loss(output, target, ooi)


class ReconstructionLoss(nn.Module):
    """AG-SSL's loss: L1 between the full-resolution output (the first output under deep supervision) and the clean
    CT channel."""

    def forward(self, output, target: torch.Tensor) -> torch.Tensor:
        out = output[0] if isinstance(output, (list, tuple)) else output
        return F.l1_loss(out, target.to(out.dtype))


class AGCRCTrainer(ProctoNNUNetTrainer):
    """Base of AG-CRC's nnU-Net trainers (see the module docstring); generated subclasses set the options."""

    model_name = "agcrc_unet"
    trainer_key: str = ""
    sampling: str = "hybrid_uniform"
    af_loss: bool = False
    ssl: bool = False
    from_ssl: bool = False

    def plans_extras(self) -> dict:
        return {"procto_agcrc": {"trainer": self.trainer_key, "sampling": self.sampling, "af_loss": bool(self.af_loss),
                                 "ssl": bool(self.ssl), "from_ssl": bool(self.from_ssl),
                                 "ooi_channel": OOI_CHANNEL}}

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda")):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.oversample_foreground_percent = foreground_fraction(self.sampling)
        self._noise: torch.Generator | None = None
        record = dataset_json.get("procto_agcrc", {})
        self.mos_scale = float(record.get("mos_scale", 117))
        self.colon_id = COLON_IDS.get(record.get("mos_scheme", "ts_v2"), COLON_IDS["ts_v2"])

    @classmethod
    def build_network_architecture(cls, plans_manager, configuration_manager, num_input_channels: int,
                                   num_output_channels: int, enable_deep_supervision: bool = True) -> nn.Module:
        outputs = 1 if cls.ssl else num_output_channels
        return build_for_configuration(configuration_manager, num_input_channels, outputs, cls.model_name,
                                       enable_deep_supervision)

    # -------------------------------------------------------------------------------------------- data
    def get_tr_and_val_datasets(self):
        dataset_tr, dataset_val = super().get_tr_and_val_datasets()
        if self.sampling in CENTRE_STRATEGIES:
            dataset_tr = CentreDataset(dataset_tr, self.sampling, self.configuration_manager.patch_size,
                                       self.mos_scale, self.colon_id)
        return dataset_tr, dataset_val

    @staticmethod
    def get_training_transforms(*args, **kwargs):
        return ct_only_intensity(nnUNetTrainer.get_training_transforms(*args, **kwargs))

    # -------------------------------------------------------------------------------------------- loss
    def _build_loss(self):
        if self.ssl:
            return ReconstructionLoss()
        if not self.af_loss:
            return super()._build_loss()
        weights = None
        if self.enable_deep_supervision:
            weights = deep_supervision_weights(len(self._get_deep_supervision_scales()))
        return AFTrainingLoss(weights, self.configuration_manager.batch_dice, self.is_ddp)

    def _set_ooi(self, batch: dict) -> None:
        if self.af_loss:
            self.loss.ooi = batch["data"][:, OOI_CHANNEL:OOI_CHANNEL + 1] > 0.5

    def _noise_generator(self) -> torch.Generator:
        if self._noise is None:
            self._noise = torch.Generator().manual_seed(int(np.random.randint(0, 2 ** 31 - 1)))
        return self._noise

    def _ssl_batch(self, batch: dict) -> dict:
        """The AG-SSL batch: input with the bowel wall noised, target the clean CT channel."""
        data = batch["data"]
        target = batch["target"]
        wall = (target[0] if isinstance(target, (list, tuple)) else target) > 0
        return {"data": mask_bowel_wall(data, wall, self._noise_generator()), "target": data[:, :1].clone()}

    def train_step(self, batch: dict) -> dict:
        if self.ssl:
            return super().train_step(self._ssl_batch(batch))
        self._set_ooi(batch)
        return super().train_step(batch)

    def validation_step(self, batch: dict) -> dict:
        if not self.ssl:
            self._set_ooi(batch)
            return super().validation_step(batch)
        ssl = self._ssl_batch(batch)
        output = self.network(ssl["data"].to(self.device, non_blocking=True))
        loss = self.loss(output, ssl["target"].to(self.device, non_blocking=True))
        return {"loss": loss.detach().cpu().numpy()}

    def on_validation_epoch_end(self, val_outputs: list[dict]):
        if not self.ssl:
            return super().on_validation_epoch_end(val_outputs)
        loss = float(np.mean([np.asarray(o["loss"]) for o in val_outputs]))
        self.logger.log("mean_fg_dice", -loss, self.current_epoch)
        self.logger.log("dice_per_class_or_region", [-loss], self.current_epoch)
        self.logger.log("val_losses", loss, self.current_epoch)

    def perform_actual_validation(self, save_probabilities: bool = False):
        if self.ssl:
            self.print_to_log_file("AG-SSL pre-training: no segmentation to validate")
            return
        super().perform_actual_validation(save_probabilities)


__all__ = ["AGCRCTrainer", "AFTrainingLoss", "ReconstructionLoss", "OOI_CHANNEL"]
