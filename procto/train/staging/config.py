"""The settings of a staging training run (:class:`StagingConfig`, saved in every checkpoint) and the row label of
the paper's tables (:func:`method_name`)."""

from __future__ import annotations

from dataclasses import dataclass

from procto.errors import InputError
from procto.infer.staging import StagingModelConfig

__all__ = ["StagingConfig", "method_name"]


@dataclass
class StagingConfig(StagingModelConfig):
    """Everything that defines a staging run: the model's settings (network, preprocessing, TTA, threshold — the
    fields of :class:`~procto.infer.staging.StagingModelConfig`, which inference reads back from the checkpoint) and
    the training protocol's (:mod:`procto.train.staging`)."""

    slice_epochs: int = 10
    epochs: int = 20
    batch_size: int = 8
    lr: float = 0.01
    head_lr: float | None = None
    momentum: float = 0.9
    weight_decay: float = 0.01
    schedule: str = "cosine"
    supplementary: str | None = "triplet"
    loss_weight: float | None = None
    gamma: float = 2.0
    oversample: bool = True
    augment: bool = True
    warm_start_head: bool = True
    seed: int = 0

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.slice_epochs < 0 or self.epochs < 0:
            raise InputError("epochs must be >= 0")
        if self.batch_size < 2:
            raise InputError("batch_size must be >= 2 (BatchNorm and the triplet loss need pairs)")
        if self.schedule not in ("cosine", "constant"):
            raise InputError(f"schedule must be 'cosine' or 'constant', got {self.schedule!r}")
        if self.supplementary in ("none", ""):
            self.supplementary = None
        if self.supplementary not in (None, "triplet", "center"):
            raise InputError(f"supplementary must be 'triplet', 'center' or None, got {self.supplementary!r}")

    @property
    def total_epochs(self) -> int:
        return self.slice_epochs + self.epochs


def method_name(config: StagingConfig) -> str:
    """Row label of the paper's tables, e.g. ``"f-rMC5+Bilinear+Triplet"``."""
    from procto.nets.aggregation import canonical_aggregation
    from procto.nets.staging import PAPER_NAMES, canonical_variant

    short = {"avg": "AVP", "max": "MXP", "attention": "Att", "bilinear": "Bilinear"}
    agg = short[canonical_aggregation(config.aggregation)]
    loss = {"triplet": "+Triplet", "center": "+Center", None: ""}[config.supplementary]
    return f"{PAPER_NAMES[canonical_variant(config.variant)]}+{agg}{loss}"
