"""The training engine: exact resume, per-group schedules, clipping, the run budget (max_steps) and interruptions
(stop_after), checkpoints in the one format (weights_only-loadable, rebuilt through the registry), log.csv,
callbacks, is_main, and one-line errors."""

from __future__ import annotations

import csv
import math

import numpy as np
import pytest
import torch
from torch import nn

from procto.errors import InputError
from procto.nets import list_models
from procto.nets.checkpoint import FORMAT, load_checkpoint, read_checkpoint
from procto.train.engine import Engine, EpochStats, LoopConfig, StepOutput, TrainTask
from procto.train.schedules import constant_factor, cosine_factor, poly_factor, schedule

MODEL = "engine_test_mlp"


class TinyNet(nn.Module):
    def __init__(self, width: int = 8, dropout: float = 0.2) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(4, width), nn.ReLU(), nn.Dropout(dropout))  # dropout: global RNG
        self.head = nn.Linear(width, 1)

    def forward(self, x):
        return self.head(self.body(x)).squeeze(-1)


@pytest.fixture(autouse=True)
def _tiny_model_registered(monkeypatch):
    """The toy network is in the registry during each test only (other tests see the real registry)."""
    from procto.nets import registry

    list_models()  # load the real architectures first
    monkeypatch.setitem(registry._REGISTRY, MODEL, lambda **kw: TinyNet(**kw))


class RegressionTask(TrainTask):
    """y = x·w + noise; batches drawn from (seed, epoch); two parameter groups (body, head)."""

    name, title = "toy", "toy"

    def __init__(self, seed: int = 0, n: int = 24, batch: int = 6, head_lr: float = 0.05, sched: str = "cosine"):
        self.model_name, self.model_kwargs = MODEL, {"width": 8}
        self.seed, self.batch, self.head_lr, self.sched = seed, batch, head_lr, sched
        rng = np.random.default_rng(123)
        self.x = torch.tensor(rng.normal(size=(n, 4)), dtype=torch.float32)
        self.y = self.x @ torch.tensor([1.0, -2.0, 0.5, 3.0]) + 0.1 * torch.tensor(rng.normal(size=n)).float()
        self.hooks: list[int] = []
        self.extra_state = nn.Parameter(torch.zeros(2))  # task-owned trainable state (like a centre loss)

    def config_dict(self) -> dict:
        return {"seed": self.seed, "batch": self.batch, "head_lr": self.head_lr, "schedule": self.sched}

    def param_groups(self, model):
        return [{"name": "body", "params": list(model.body.parameters()) + [self.extra_state], "lr": 0.01},
                {"name": "head", "params": list(model.head.parameters()), "lr": self.head_lr}]

    def optimizer(self, groups):
        return torch.optim.SGD(groups, lr=0.01, momentum=0.9)

    def steps_per_epoch(self) -> int:
        return len(self.x) // self.batch

    def lr_factor(self, step: int, total: int) -> float:
        return schedule(self.sched)(step, total)

    def start_epoch(self, model, epoch: int) -> None:
        self.hooks.append(epoch)

    def batches(self, epoch: int):
        order = np.random.default_rng([self.seed, epoch]).permutation(len(self.x))
        for i in range(self.steps_per_epoch()):
            ids = order[i * self.batch:(i + 1) * self.batch]
            yield self.x[ids], self.y[ids]

    def step(self, model, batch, epoch: int) -> StepOutput:
        x, y = batch
        loss = ((model(x) - y) ** 2).mean() + (self.extra_state ** 2).sum()
        return StepOutput(loss, {"loss": float(loss.detach()), "mse": float(loss.detach())}, weight=len(x))

    def log_row(self, stats: EpochStats) -> dict:
        return {"epoch": stats.epoch + 1, "loss": stats.means["loss"], "lr_body": stats.lrs["body"],
                "lr_head": stats.lrs["head"], "steps": stats.steps, "last": stats.last}

    def state_dict(self) -> dict:
        return {"extra": self.extra_state.detach().clone()}

    def load_state_dict(self, state: dict) -> None:
        with torch.no_grad():
            self.extra_state.copy_(state["extra"])


def _run(out=None, resume=False, **loop):
    task = RegressionTask()
    cfg = LoopConfig(**{"epochs": 4, "seed": 7, "threads": 1, "device": "cpu", **loop})
    return task, Engine(task, cfg, out).run(resume)


def _same_weights(a, b) -> None:
    for (k, va), vb in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(va, vb), k


# ------------------------------------------------------------------------------------------------------ schedules
def test_schedules():
    assert poly_factor(0, 10) == 1.0 and poly_factor(10, 10) == 0.0
    assert poly_factor(5, 10, power=1.0) == pytest.approx(0.5)
    assert cosine_factor(0, 8) == 1.0 and cosine_factor(4, 8) == pytest.approx(0.5) and cosine_factor(9, 8) == 0.0
    assert constant_factor(3, 8) == 1.0
    assert schedule("poly", power=1.0)(5, 10) == pytest.approx(0.5)
    with pytest.raises(InputError, match="schedule"):
        schedule("step")


# ------------------------------------------------------------------------------------------------------ the loop
def test_resume_is_exact_and_checkpoints_are_the_one_format(tmp_path):
    _, full = _run(tmp_path / "full")
    task_a, part = _run(tmp_path / "part", stop_after=2)
    assert not part.finished and part.checkpoint is None and not (tmp_path / "part" / "model.pt").exists()
    assert (tmp_path / "part" / "last.pt").is_file() and task_a.hooks == [0, 1]
    task_b, resumed = _run(tmp_path / "part", resume=True)
    assert task_b.hooks == [2, 3]  # the per-epoch hook runs for the resumed epochs only
    assert resumed.finished and resumed.checkpoint == tmp_path / "part" / "model.pt"
    assert resumed.epochs == full.epochs == 4 and resumed.iterations == full.iterations == 16
    _same_weights(full.model, resumed.model)
    assert [r["loss"] for r in resumed.history] == [r["loss"] for r in full.history]
    assert torch.equal(task_b.extra_state, _run()[0].extra_state)

    # the record: plain types + tensors, loadable with weights_only=True, rebuilt through the registry
    raw = torch.load(tmp_path / "part" / "last.pt", weights_only=True)
    assert raw["format"] == FORMAT and raw["task"] == "toy" and raw["model"] == MODEL
    assert raw["epoch"] == 4 and raw["iteration"] == 16 and len(raw["history"]) == 4
    assert {"optimizer", "scheduler", "task_state"} <= set(raw["training"])
    assert raw["config"] == RegressionTask().config_dict()
    final = torch.load(tmp_path / "part" / "model.pt", weights_only=True)
    assert "training" not in final
    model, record = load_checkpoint(tmp_path / "part" / "model.pt", "toy")
    assert isinstance(model, TinyNet) and not model.training and record["model_kwargs"] == {"width": 8}
    _same_weights(model, full.model)

    # log.csv: one row per epoch, the task's columns; config.json
    rows = list(csv.DictReader((tmp_path / "part" / "log.csv").open()))
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3, 4] and set(rows[0]) == set(full.history[0])
    assert (tmp_path / "part" / "config.json").is_file()


def test_per_group_learning_rates_follow_the_schedule():
    _, result = _run(epochs=2)
    total = 8
    for row in result.history:  # the rate of the epoch's last step
        step = 4 * row["epoch"] - 1
        assert row["lr_body"] == pytest.approx(0.01 * cosine_factor(step, total))
        assert row["lr_head"] == pytest.approx(0.05 * cosine_factor(step, total))
    assert [r["last"] for r in result.history] == [False, True]


def test_max_steps_ends_the_run_and_callbacks_are_arguments(tmp_path):
    steps, epochs, messages = [], [], []
    task = RegressionTask()
    engine = Engine(task, LoopConfig(epochs=4, seed=1, max_steps=6, device="cpu"), tmp_path,
                    on_step=lambda i, total, info: steps.append((i, total, info["epoch"])),
                    on_epoch=epochs.append, log=messages.append)
    result = engine.run()
    assert steps == [(1, 6, 0), (2, 6, 0), (3, 6, 0), (4, 6, 0), (5, 6, 1), (6, 6, 1)]
    assert [r["steps"] for r in epochs] == [4, 2] and epochs[-1]["last"]
    assert result.finished and result.iterations == 6 and (tmp_path / "model.pt").is_file()
    assert math.isfinite(result.last_loss)
    # resuming a spent budget without one continues with the next epoch (the epoch cut short counts as done)
    engine = Engine(RegressionTask(), LoopConfig(epochs=4, seed=1, device="cpu"), tmp_path, log=messages.append)
    assert engine.run(resume=True).iterations == 6 + 2 * 4
    assert any(m.startswith("resumed from") for m in messages)


def test_gradient_clipping_bounds_the_update():
    class Big(RegressionTask):
        def optimizer(self, groups):
            return torch.optim.SGD(groups, lr=1.0)

        def lr_factor(self, step, total):
            return 1.0

        def param_groups(self, model):
            return [{"name": "body", "params": list(model.parameters()), "lr": 1.0},
                    {"name": "head", "params": [self.extra_state], "lr": 1.0}]

        def prepare(self, model, device, resume, log):
            self.before = [p.detach().clone() for p in model.parameters()]

        def step(self, model, batch, epoch):
            x, y = batch
            loss = ((model(x) - 1000 * y) ** 2).mean()
            return StepOutput(loss, {"loss": float(loss.detach())})

    for clip, bound in ((0.1, 0.1 + 1e-6), (None, math.inf)):
        task = Big()
        result = Engine(task, LoopConfig(epochs=1, seed=0, clip_max_norm=clip, max_steps=1, device="cpu")).run()
        change = torch.sqrt(sum(((p.detach() - b) ** 2).sum() for p, b in zip(result.model.parameters(), task.before)))
        assert 0.0 < float(change) <= bound
        if clip is None:
            assert float(change) > 1.0  # without clipping the same step is large


def test_only_the_main_process_writes(tmp_path):
    task, result = _run(tmp_path / "rank1", is_main=False, epochs=1)
    assert not (tmp_path / "rank1").exists() and result.checkpoint is None and len(result.history) == 1


def test_resume_errors(tmp_path):
    with pytest.raises(InputError, match="nothing to resume"):
        _run(tmp_path / "none", resume=True)
    _run(tmp_path / "done", epochs=1)
    with pytest.raises(InputError, match="no optimizer state"):
        _run(tmp_path / "done", resume=tmp_path / "done" / "model.pt")
    torch.save({"weights": 1}, tmp_path / "foreign.pt")
    with pytest.raises(InputError, match="not a procto toy checkpoint"):
        _run(tmp_path / "x", resume=tmp_path / "foreign.pt")
    (tmp_path / "text.pt").write_text("garbage")
    with pytest.raises(InputError, match="not a readable model checkpoint"):
        read_checkpoint(tmp_path / "text.pt")
    with pytest.raises(InputError, match="not a procto U-SAM checkpoint: it holds a toy model"):
        read_checkpoint(tmp_path / "done" / "model.pt", "usam", title="U-SAM")
    with pytest.raises(InputError, match="checkpoint not found"):
        load_checkpoint(tmp_path / "missing.pt")
