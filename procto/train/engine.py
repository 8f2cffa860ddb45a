"""The training engine of the models procto trains itself (U-SAM, staging, CoSAM): one loop, one checkpoint
format (:mod:`procto.nets.checkpoint`), one log writer.

The split is Lightning's Trainer/Module split made small: :class:`Engine` owns what every model shares — device
(:func:`procto.util.resolve_device`), seeding, optimiser steps with per-group learning rates and a per-iteration
schedule, gradient clipping, mixed precision on CUDA, atomic checkpoints (``last.pt`` after every epoch with
model/optimizer/scheduler/epoch/iteration/history/task state; ``model.pt`` when the run is finished) with exact resume,
``log.csv`` and ``config.json``, callbacks; a :class:`TrainTask` supplies only what is its model's own: the network
(a registry name), data batches, loss, parameter groups, schedule, per-epoch hook and validation, the log row.

Exact resume: the engine seeds torch with ``(seed, epoch)`` at the start of every epoch and tasks draw every epoch's
randomness (order, augmentation, prompts) from ``(seed, epoch)`` only, so a run resumed from ``last.pt`` ends with the
weights of the uninterrupted run.

Ready for data parallelism: only the ``is_main`` process writes files and messages, and :meth:`TrainTask.start_epoch`
is where a distributed sampler's ``set_epoch`` goes.

>>> result = Engine(task, LoopConfig(epochs=10, seed=0, clip_max_norm=0.1), "runs/x").run()   # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import json
import math
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import numpy as np

from procto.errors import InputError, OutputError

__all__ = ["EpochStats", "Engine", "LoopConfig", "LoopResult", "StepOutput", "TrainTask", "epoch_seed",
           "seed_everything"]

StepCallback = Callable[[int, int, dict], None]


@dataclass
class LoopConfig:
    """Settings of the loop itself (the task has its own)."""

    epochs: int
    seed: int = 0
    device: Any = None  # "auto" (None): CUDA when available
    deterministic: bool = True  # deterministic cuDNN kernels (CPU: bit-identical with one thread)
    clip_max_norm: float | None = None  # gradient clipping over all optimised parameters (None or 0: off)
    amp: bool = False  # float16 autocast + gradient scaling, on CUDA only
    max_steps: int | None = None  # the run ends after this many optimisation steps in total (and is finished)
    stop_after: int | None = None  # interrupt after this many epochs in total (last.pt only, no model.pt)
    threads: int | None = None  # torch intra-op threads for this run
    is_main: bool = True  # the process that writes files and messages (data parallelism: rank 0)

    def __post_init__(self) -> None:
        if int(self.epochs) < 0:
            raise InputError(f"epochs must be >= 0, got {self.epochs}")
        if self.max_steps is not None and int(self.max_steps) < 1:
            raise InputError(f"max_steps must be >= 1, got {self.max_steps}")
        if self.clip_max_norm is not None and not self.clip_max_norm >= 0:
            raise InputError(f"gradient clipping max-norm must be >= 0 (0 = off), got {self.clip_max_norm}")


@dataclass
class StepOutput:
    """What :meth:`TrainTask.step` returns: the loss to back-propagate, float metrics for the log (averaged over the
    epoch with ``weight``, e.g. the batch size) — ``metrics["loss"]`` is the loss reported to callbacks."""

    loss: Any
    metrics: dict[str, float]
    weight: float = 1.0


@dataclass
class EpochStats:
    """One epoch as the engine saw it; :meth:`TrainTask.log_row` makes the log row from it."""

    epoch: int  # 0-based
    iteration: int  # optimisation steps done in the run so far (resumed runs included)
    means: dict[str, float]
    lrs: dict[str, float]  # learning rate of the last step, per parameter group name (or index)
    steps: int
    seconds: float  # this epoch
    elapsed: float  # since this run's first epoch started
    last: bool  # the last epoch of this run


class TrainTask:
    """What one model brings to the :class:`Engine`; override what differs from these defaults.

    Required: :attr:`name`, :attr:`model_name`, :attr:`model_kwargs`, :meth:`optimizer`, :meth:`steps_per_epoch`,
    :meth:`batches`, :meth:`step`.
    """

    name: str = "task"  # checkpoint "task" tag ("usam", "staging"); `procto train <name>`
    title: str | None = None  # how messages name the model ("U-SAM")
    model_name: str
    model_kwargs: dict
    log_fields: list[str] | None = None  # log.csv columns (default: the rows' keys)
    log_float_format: str | None = None  # e.g. ".6g"

    def config_dict(self) -> dict:
        """The task's settings (plain types): ``config.json`` and the checkpoint's ``config``."""
        return {}

    def record_extra(self) -> dict:
        """What inference needs besides weights and config (the checkpoint's ``extra``)."""
        return {}

    def build_model(self):
        from procto.nets.checkpoint import build_model

        return build_model(self.model_name, self.model_kwargs)

    def prepare(self, model, device, resume: bool, log: Callable[[str], None]) -> None:
        """Called once before training with the new (CPU) model: data, losses, pretrained weights."""

    def param_groups(self, model) -> list[dict]:
        """Optimiser parameter groups (``params``, ``lr``, optional ``name``)."""
        return [{"params": [p for p in model.parameters() if p.requires_grad]}]

    def optimizer(self, groups: list[dict]):
        raise NotImplementedError

    def steps_per_epoch(self) -> int:
        raise NotImplementedError

    def lr_factor(self, step: int, total: int) -> float:
        """Factor of every group's base rate at optimisation step ``step`` of ``total`` (:mod:`.schedules`)."""
        return 1.0

    def check_resume(self, record: dict, path: Path) -> None:
        """Refuse a checkpoint written with incompatible settings (raise :class:`InputError`)."""

    def start_epoch(self, model, epoch: int) -> None:
        """Per-epoch hook before the batches (phase switches, warm starts, a distributed sampler's ``set_epoch``)."""

    def batches(self, epoch: int) -> Iterable:
        """The batches of ``epoch``, a function of ``(seed, epoch)`` only."""
        raise NotImplementedError

    def step(self, model, batch, epoch: int) -> StepOutput:
        """Forward pass and loss of one batch (the engine does backward, clipping and the optimiser step)."""
        raise NotImplementedError

    def log_row(self, stats: EpochStats) -> dict:
        return {"epoch": stats.epoch + 1, "iteration": stats.iteration, **stats.means, "seconds": stats.seconds}

    def end_epoch(self, model, stats: EpochStats, row: dict, engine: "Engine") -> None:
        """After the epoch's steps: validation (may add to ``row``, save ``best.pt`` with ``engine.save``)."""

    def epoch_message(self, row: dict) -> str | None:
        return None

    def state_dict(self) -> dict:
        """Task state that resume must restore (e.g. loss-module weights, the best validation score)."""
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


@dataclass
class LoopResult:
    model: Any
    history: list[dict] = field(default_factory=list)
    epochs: int = 0  # epochs done (resumed ones included)
    iterations: int = 0
    seconds: float = 0.0
    last_loss: float = math.nan
    checkpoint: Path | None = None  # model.pt, when the run finished and had an out_dir
    finished: bool = False


def epoch_seed(seed: int, epoch: int) -> int:
    """The torch seed of ``epoch``: every epoch's global randomness depends on ``(seed, epoch)`` only."""
    return int(seed) * 100003 + int(epoch)


def seed_everything(seed: int) -> None:
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


@contextlib.contextmanager
def _determinism(on: bool) -> Iterator[None]:
    import torch

    old = (torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark)
    if on:
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
    try:
        yield
    finally:
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = old


class Engine:
    """Train ``task`` with ``config`` into ``out_dir`` (None: nothing written).

    Callbacks (arguments, never globals): ``on_step(iteration, total, {"epoch", "loss"})`` after every step,
    ``on_epoch(row)`` after every epoch, ``log(message)`` for one-line reports.
    """

    def __init__(self, task: TrainTask, config: LoopConfig, out_dir: str | Path | None = None, *,
                 on_step: StepCallback | None = None, on_epoch: Callable[[dict], None] | None = None,
                 log: Callable[[str], None] | None = None) -> None:
        self.task, self.config = task, config
        self.out_dir = Path(out_dir) if out_dir is not None else None
        self.on_step, self.on_epoch = on_step, on_epoch
        self.log = log if (log is not None and config.is_main) else (lambda _msg: None)
        self.model = self.optimizer = self.scaler = self.device = None
        self.history: list[dict] = []
        self.epochs_done = self.iteration = 0
        self.total_steps = self.budget = 1
        self.last_loss = math.nan
        self.params: list = []

    # ------------------------------------------------------------------------------------------------ public
    def run(self, resume: bool | str | Path = False) -> LoopResult:
        """Train (``resume``: True continues from ``out_dir/last.pt``, or give a checkpoint path)."""
        from procto.util import torch_threads

        with torch_threads(self.config.threads), _determinism(self.config.deterministic):
            self._setup(resume)
            t0 = time.perf_counter()
            self._loop(t0)
            finished = self.epochs_done >= self.config.epochs or self.iteration >= self.budget
            checkpoint = self.save("model.pt") if finished else None
            self.model.eval()
            return LoopResult(self.model, self.history, self.epochs_done, self.iteration,
                              time.perf_counter() - t0, self.last_loss, checkpoint, finished)

    def record(self, training: bool = False, extra: dict | None = None) -> dict:
        """The checkpoint record of the current state (:mod:`procto.nets.checkpoint`)."""
        from procto.nets.checkpoint import make_record

        state = None
        if training:
            state = {"optimizer": self.optimizer.state_dict(), "task_state": self.task.state_dict(),
                     "scheduler": {"step": self.iteration, "total": self.total_steps},
                     "scaler": self.scaler.state_dict() if self.scaler is not None else None}
        return make_record(self.task.model_name, self.task.model_kwargs, self.model.state_dict(),
                           task=self.task.name, config=self.task.config_dict(),
                           extra={**self.task.record_extra(), **(extra or {})}, epoch=self.epochs_done,
                           iteration=self.iteration, history=self.history, training=state)

    def save(self, name: str, training: bool = False, extra: dict | None = None) -> Path | None:
        """Write ``out_dir/name`` atomically (main process with an ``out_dir`` only); its path or None."""
        if self.out_dir is None or not self.config.is_main:
            return None
        from procto.nets.checkpoint import save_checkpoint

        return save_checkpoint(self.out_dir / name, self.record(training, extra))

    # ------------------------------------------------------------------------------------------------ steps
    def _setup(self, resume: bool | str | Path) -> None:
        from procto.util import resolve_device

        task, cfg = self.task, self.config
        self.device = resolve_device(cfg.device)
        resume_path = self._resume_path(resume)
        seed_everything(cfg.seed)  # the model is initialised from the seed
        model = task.build_model()
        task.prepare(model, self.device, resume_path is not None, self.log)
        self.model = model.to(self.device)
        groups = [g for g in task.param_groups(model) if g["params"]]
        for g in groups:
            g.setdefault("initial_lr", g["lr"])
        self.optimizer = task.optimizer(groups)
        self.params = [p for g in self.optimizer.param_groups for p in g["params"]]
        if cfg.amp and self.device.type == "cuda":
            import torch

            self.scaler = torch.amp.GradScaler("cuda")
        self.total_steps = max(1, int(cfg.epochs) * int(task.steps_per_epoch()))
        self.budget = self.total_steps if cfg.max_steps is None else min(self.total_steps, int(cfg.max_steps))
        if resume_path is not None:
            self._load(resume_path)
        if self.out_dir is not None and cfg.is_main:  # inputs are valid: now create the output folder
            from procto.io import write_text_atomic

            try:
                self.out_dir.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise OutputError(f"cannot create the output folder ({exc.strerror or exc})", self.out_dir) from None
            write_text_atomic(self.out_dir / "config.json", json.dumps(task.config_dict(), indent=1, default=str))

    def _resume_path(self, resume: bool | str | Path) -> Path | None:
        if resume is False or resume is None:
            return None
        if resume is True:
            if self.out_dir is None:
                raise InputError("resume=True needs an output folder")
            path = self.out_dir / "last.pt"
            if not path.is_file():
                raise InputError("nothing to resume: no last.pt", self.out_dir)
            return path
        return Path(resume)

    def _load(self, path: Path) -> None:
        from procto.nets.checkpoint import read_checkpoint

        record = read_checkpoint(path, self.task.name, title=self.task.title)
        self.task.check_resume(record, path)
        training = record.get("training")
        if not training:
            raise InputError("a final model.pt holds no optimizer state; resume from last.pt", path)
        self.model.load_state_dict(record["state_dict"])
        self.optimizer.load_state_dict(training["optimizer"])
        self.task.load_state_dict(training.get("task_state") or {})
        if self.scaler is not None and training.get("scaler"):
            self.scaler.load_state_dict(training["scaler"])
        self.epochs_done, self.iteration = int(record["epoch"]), int(record["iteration"])
        self.history = list(record.get("history", []))
        self.log(f"resumed from {path} at epoch {self.epochs_done}, iteration {self.iteration}")

    def _loop(self, t0: float) -> None:
        cfg = self.config
        last = cfg.epochs if cfg.stop_after is None else min(cfg.epochs, int(cfg.stop_after))
        for epoch in range(self.epochs_done, last):
            if self.iteration >= self.budget:
                break
            stats = self._epoch(epoch, last, t0)
            row = self.task.log_row(stats)
            self.task.end_epoch(self.model, stats, row, self)
            self.history.append(row)
            self.epochs_done = epoch + 1
            message = self.task.epoch_message(row)
            if message:
                self.log(message)
            if self.out_dir is not None and cfg.is_main:
                from procto.io import write_csv

                self.save("last.pt", training=True)
                write_csv(self.out_dir / "log.csv", self.history, self.task.log_fields,
                          float_format=self.task.log_float_format)
            if self.on_epoch is not None:
                self.on_epoch(row)

    def _epoch(self, epoch: int, last: int, t0: float) -> EpochStats:
        import torch

        torch.manual_seed(epoch_seed(self.config.seed, epoch))
        self.task.start_epoch(self.model, epoch)
        self.model.train()
        t_epoch = time.perf_counter()
        sums: dict[str, float] = {}
        weight, steps = 0.0, 0
        for batch in self.task.batches(epoch):
            out = self._step(batch, epoch)
            self.iteration += 1
            steps += 1
            for k, v in out.metrics.items():
                sums[k] = sums.get(k, 0.0) + float(v) * out.weight
            weight += out.weight
            self.last_loss = float(out.metrics.get("loss", out.loss.detach()))
            if self.on_step is not None:
                self.on_step(self.iteration, self.budget, {"epoch": epoch, "loss": self.last_loss})
            if self.iteration >= self.budget:
                break
        lrs = {str(g.get("name", i)): g["lr"] for i, g in enumerate(self.optimizer.param_groups)}
        now = time.perf_counter()
        return EpochStats(epoch, self.iteration, {k: v / max(weight, 1.0) for k, v in sums.items()}, lrs, steps,
                          now - t_epoch, now - t0, self.iteration >= self.budget or epoch + 1 == last)

    def _step(self, batch, epoch: int) -> StepOutput:
        import torch

        factor = self.task.lr_factor(self.iteration, self.total_steps)
        for g in self.optimizer.param_groups:
            g["lr"] = g["initial_lr"] * factor
        amp = torch.autocast("cuda", dtype=torch.float16) if self.scaler is not None else contextlib.nullcontext()
        with amp:
            out = self.task.step(self.model, batch, epoch)
        self.optimizer.zero_grad(set_to_none=True)
        if self.scaler is None:
            out.loss.backward()
        else:
            self.scaler.scale(out.loss).backward()
            self.scaler.unscale_(self.optimizer)
        if self.config.clip_max_norm is not None and self.config.clip_max_norm > 0:
            torch.nn.utils.clip_grad_norm_(self.params, self.config.clip_max_norm)
        if self.scaler is None:
            self.optimizer.step()
        else:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        return out
