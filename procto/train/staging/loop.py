"""The staging training loop as a task of procto's training engine (:mod:`procto.train.engine`): the network from
the registry, two-level training (slice level, then volume level, with the warm start of the bilinear head),
SGD with per-group learning rates and a cosine schedule, oversampling, checkpoints in procto's one format
(:mod:`procto.nets.checkpoint`) with exact resume, the CSV log (protocol in :mod:`procto.train.staging`).

Determinism: the model is initialised from ``seed`` and every epoch's sampling and augmentation depend only on
``(seed, epoch)``, so a run resumed from an epoch checkpoint (model, optimizer, schedule, losses, epoch) ends with the
same weights as an uninterrupted run.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from procto.errors import InputError
from procto.infer.staging import TASK, load_staging_model, read_staging_checkpoint, staging_network, staging_network_name
from procto.nets.checkpoint import FORMAT as CHECKPOINT_FORMAT
from procto.nets.checkpoint import save_checkpoint
from procto.preprocess.staging import StagingSample
from procto.train.engine import Engine, EpochStats, LoopConfig, StepOutput, TrainTask
from procto.train.schedules import schedule
from procto.train.staging.config import StagingConfig

__all__ = [
    "CHECKPOINT_FORMAT",
    "StagingTask",
    "TrainResult",
    "build_staging_model",
    "load_checkpoint",
    "save_checkpoint",
    "train_staging",
    "volume_features",
    "warm_start_head",
]


# ---------------------------------------------------------------------------------------------------- model, checkpoint
def build_staging_model(config: StagingConfig):
    """The :class:`~procto.nets.staging.StagingNet` of ``config`` from the registry (``staging_f_<variant>`` with
    ``aggregation``), initialised from ``config.seed``."""
    import torch

    torch.manual_seed(int(config.seed))
    return staging_network(config)


def load_checkpoint(path: str | Path):
    """``(model in eval mode, training config, checkpoint record)`` of a checkpoint written by :func:`train_staging`
    (``record["epoch"]``: epochs done)."""
    record = read_staging_checkpoint(path)
    config = StagingConfig.from_dict(record["config"])
    model, _ = load_staging_model(path, config)
    return model, config, record


# ---------------------------------------------------------------------------------------------------- sampling
def _seed_for(*keys: int) -> int:
    return int(np.random.SeedSequence([int(k) for k in keys]).generate_state(1)[0])


def _epoch_order(targets: np.ndarray, seed: int, epoch: int, oversample: bool) -> np.ndarray:
    """Indices of one epoch: every case once, the minority class oversampled with replacement to the majority's
    count, shuffled."""
    rng = np.random.default_rng(_seed_for(seed, epoch, 1))
    idx = np.arange(len(targets))
    if oversample:
        groups = [idx[targets == c] for c in (0, 1)]
        groups = [g for g in groups if len(g)]
        most = max(len(g) for g in groups)
        parts = [np.concatenate([g, rng.choice(g, most - len(g), replace=True)]) if len(g) < most else g
                 for g in groups]
        idx = np.concatenate(parts)
    return rng.permutation(idx)


def _batch(samples: Sequence[StagingSample], ids: Sequence[int], augmentation, seed: int, epoch: int, pos: int):
    """``(x (B, 1, D, H, W), valid (B, D), representative (B, D), target (B,))``; with an ``augmentation``
    (:class:`~procto.preprocess.augment.StagingAugmentation`, or None) each volume is augmented with the seed
    ``(seed, epoch, position in the epoch)``."""
    import torch

    xs, valids = [], []
    for j, i in enumerate(ids):
        x = torch.from_numpy(samples[i].image)
        v = torch.from_numpy(samples[i].valid)
        if augmentation is not None:
            x = augmentation(x, v, _seed_for(seed, epoch, 2, pos + j))
        xs.append(x)
        valids.append(v)
    rep = torch.stack([torch.from_numpy(samples[i].representative) for i in ids])
    y = torch.tensor([samples[i].target for i in ids], dtype=torch.float32)
    return torch.stack(xs)[:, None], torch.stack(valids), rep, y


def _steps_per_epoch(targets: np.ndarray, config: StagingConfig) -> int:
    n = len(_epoch_order(targets, config.seed, 0, config.oversample))
    full, rest = divmod(n, config.batch_size)
    return full + (1 if rest >= 2 else 0)


# ---------------------------------------------------------------------------------------------------- head, losses
def volume_features(model, samples: Sequence[StagingSample], batch_size: int = 8) -> np.ndarray:
    """Aggregated volume features ``(N, F)`` of un-augmented samples, BatchNorm in training mode (batch statistics,
    as the classifier sees them during training) without touching the running statistics."""
    import torch

    bns = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    saved = [m.momentum for m in bns]
    for m in bns:
        m.momentum = 0.0  # running = (1 - 0)·running + 0·batch: unchanged
    dev = next(model.parameters()).device
    model.train()
    feats = []
    try:
        with torch.no_grad():
            for pos in range(0, len(samples), batch_size):
                chunk = samples[pos:pos + batch_size]
                x = torch.stack([torch.from_numpy(s.image) for s in chunk])[:, None].to(dev)
                v = torch.stack([torch.from_numpy(s.valid) for s in chunk]).to(dev)
                feats.append(model(x, v).feature.double().cpu().numpy())
    finally:
        for m, momentum in zip(bns, saved):
            m.momentum = momentum
    return np.concatenate(feats)


def warm_start_head(model, samples: Sequence[StagingSample], batch_size: int = 8, C: float = 1.0) -> None:
    """Initialise the volume classifier on the bilinear feature by logistic regression on the training volumes'
    features — the bilinear-CNN recipe of Lin et al. (the paper's [12]: train the linear classifier on the bilinear
    features first, then fine-tune end to end).  A freshly initialised ``Linear(C², 1)`` on l2-normalised features
    whose directions differ little between volumes would otherwise output ≈ 0 for a long time."""
    import torch
    from sklearn.linear_model import LogisticRegression

    y = np.array([s.target for s in samples])
    if len(np.unique(y)) < 2:
        return
    x = volume_features(model, samples, batch_size)
    clf = LogisticRegression(C=C, max_iter=2000)
    clf.fit(x, y)
    with torch.no_grad():
        model.head.weight.copy_(torch.as_tensor(clf.coef_, dtype=model.head.weight.dtype))
        model.head.bias.copy_(torch.as_tensor(clf.intercept_, dtype=model.head.bias.dtype))


def _losses(config: StagingConfig, model):
    """Focal + supplementary loss of the slice level (features ``C``) and of the volume level (aggregated features,
    ``C²`` for bilinear encoding) — separate modules because the center loss learns one centre per class in its
    feature space."""
    from procto.train.staging_losses import JointStagingLoss

    common = dict(supplementary=config.supplementary, weight=config.loss_weight, gamma=config.gamma)
    return (JointStagingLoss(**common, feature_dim=model.extractor.out_channels),
            JointStagingLoss(**common, feature_dim=model.feature_dim))


def _head_lr(config: StagingConfig) -> float:
    """Learning rate of the volume classifier on the bilinear feature: ``head_lr``, by default 100 × ``lr`` (1.0 for
    the paper's 0.01) — Lin et al.'s bilinear-CNN recipe trains the classifier on the l2-normalised ``C²`` feature
    with learning rate 1.0: its inputs have unit norm (entries ≈ 1/C), so at 0.01 its logit moves by about 0.005 per
    step and the volume classifier would not leave 0.5 within any practical schedule."""
    return float(config.head_lr) if config.head_lr is not None else 100.0 * config.lr


# ---------------------------------------------------------------------------------------------------- the task
class StagingTask(TrainTask):
    """The staging protocol for the :class:`~procto.train.engine.Engine`: ``slice_epochs`` slice-level epochs (the
    representative slices' logits and features), then volume-level epochs (the aggregated volume logit), the bilinear
    head warm-started by logistic regression when the volume level starts and trained at its own rate."""

    name, title = TASK, "staging"

    def __init__(self, samples: Sequence[StagingSample], config: StagingConfig) -> None:
        self.samples, self.config = samples, config
        self.targets = np.array([s.target for s in samples])
        self.model_name, self.model_kwargs = staging_network_name(config)
        self.aux_name = config.supplementary or "supplementary"
        self.phase = "slice"

    def config_dict(self) -> dict:
        return self.config.to_dict()

    def prepare(self, model, device, resume: bool, log: Callable[[str], None]) -> None:
        from procto.preprocess.augment import StagingAugmentation

        self.device = device
        # one augmentation for the run (every draw is seeded per volume): the samples share the in-plane size
        self.augmentation = StagingAugmentation(self.samples[0].image.shape[-2:]) if self.config.augment else None
        self.slice_loss, self.volume_loss = (loss.to(device) for loss in _losses(self.config, model))

    def param_groups(self, model) -> list[dict]:
        head = list(model.head.parameters()) if model.head is not None else []
        head_ids = {id(p) for p in head}
        body = [p for p in model.parameters() if id(p) not in head_ids]
        body += list(self.slice_loss.parameters()) + list(self.volume_loss.parameters())
        return [{"name": "body", "params": body, "lr": self.config.lr},
                {"name": "head", "params": head, "lr": _head_lr(self.config)}]

    def optimizer(self, groups: list[dict]):
        import torch

        c = self.config
        return torch.optim.SGD(groups, lr=c.lr, momentum=c.momentum, weight_decay=c.weight_decay)

    def steps_per_epoch(self) -> int:
        return _steps_per_epoch(self.targets, self.config)

    def lr_factor(self, step: int, total: int) -> float:
        return schedule(self.config.schedule)(step, total)

    def check_resume(self, record: dict, path: Path) -> None:
        if StagingConfig.from_dict(record["config"]).to_dict() != self.config.to_dict():
            raise InputError("the checkpoint was written with different settings; resume with the same ones", path)

    def start_epoch(self, model, epoch: int) -> None:
        c = self.config
        self.phase = "slice" if epoch < c.slice_epochs else "volume"
        if self.phase == "volume" and epoch == c.slice_epochs and c.warm_start_head and model.head is not None:
            warm_start_head(model, self.samples, c.batch_size)

    def batches(self, epoch: int):
        c = self.config
        order = _epoch_order(self.targets, c.seed, epoch, c.oversample)
        for pos in range(0, len(order), c.batch_size):
            ids = order[pos:pos + c.batch_size]
            if len(ids) >= 2:  # a single-case batch: BatchNorm and the triplet miner need two
                yield _batch(self.samples, ids, self.augmentation, c.seed, epoch, pos)

    def step(self, model, batch, epoch: int) -> StepOutput:
        x, valid, rep, y = (t.to(self.device) for t in batch)
        output = model(x, valid)
        if self.phase == "slice":  # only the representative slices' probabilities train the extractor
            sel = rep & valid
            logits, feats = output.slice_logits[sel], output.slice_features[sel]
            tgt = y[:, None].expand_as(sel)[sel]
            loss_fn = self.slice_loss
        else:
            logits, feats, tgt, loss_fn = output.logit, output.feature, y, self.volume_loss
        total, parts = loss_fn(logits, tgt, feats, return_parts=True)
        metrics = {"loss": float(total.detach()), "focal": float(parts["focal"]),
                   "aux": float(parts.get(self.aux_name, 0.0)),
                   "correct": float(((logits.detach() > 0).float() == tgt).float().mean())}
        return StepOutput(total, metrics, weight=float(len(y)))

    def log_row(self, stats: EpochStats) -> dict:
        m = stats.means
        return {"epoch": stats.epoch + 1, "phase": self.phase, "lr": round(stats.lrs["body"], 8),
                "loss": round(m.get("loss", 0.0), 6), "focal": round(m.get("focal", 0.0), 6),
                self.aux_name: round(m.get("aux", 0.0), 6), "train_acc": round(m.get("correct", 0.0), 4),
                "seconds": round(stats.seconds, 2)}

    def state_dict(self) -> dict:
        return {"slice_loss": self.slice_loss.state_dict(), "volume_loss": self.volume_loss.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.slice_loss.load_state_dict(state["slice_loss"])
        self.volume_loss.load_state_dict(state["volume_loss"])


# ---------------------------------------------------------------------------------------------------- training
@dataclass
class TrainResult:
    """What :func:`train_staging` returns: the trained model (eval mode), its config and the per-epoch history."""

    model: Any
    config: StagingConfig
    history: list[dict[str, Any]] = field(default_factory=list)
    checkpoint: Path | None = None


def train_staging(
    samples: Sequence[StagingSample],
    config: StagingConfig,
    out_dir: str | Path | None = None,
    *,
    resume: bool | str | Path = False,
    stop_after: int | None = None,
    device: str | None = None,
    on_epoch: Callable[[dict[str, Any]], None] | None = None,
    on_step: Callable[[], None] | None = None,
) -> TrainResult:
    """Train a staging network on ``samples`` with the paper's protocol (:mod:`procto.train.staging`).

    Args:
        samples: preprocessed cases (:func:`procto.preprocess.staging_data.load_staging_samples`).
        config: the run's settings.
        out_dir: where ``last.pt`` (checkpoint after every epoch), ``model.pt`` (final), ``log.csv`` and
            ``config.json`` go; None keeps everything in memory.
        resume: True continues from ``out_dir/last.pt`` (or give the checkpoint path); the run then ends exactly
            where an uninterrupted run would.  The settings must be the same.
        stop_after: stop after this many epochs in total (an interruption; the checkpoint is written).
        device: torch device (default CPU).
        on_epoch: called with each epoch's log row.
        on_step: called after every optimisation step (progress bars).

    Reproducibility: same seed, data and settings give bit-identical weights on CPU with one intra-op thread
    (``torch.set_num_threads(1)``); with several threads oneDNN's convolution backward sums in a varying order, so
    results agree only to float rounding.
    """
    if len(samples) < 2:
        raise InputError("training needs at least two cases")
    loop = LoopConfig(epochs=config.total_epochs, seed=config.seed, device=device or "cpu", stop_after=stop_after)
    step = (lambda _i, _total, _info: on_step()) if on_step is not None else None
    result = Engine(StagingTask(samples, config), loop, out_dir, on_step=step, on_epoch=on_epoch).run(resume)
    return TrainResult(result.model, config, result.history, result.checkpoint)
