"""Model complexity counted the way the papers count it.

:func:`thop_counts` reproduces ``thop.profile`` (v0.1.1, the counter behind U-SAM's Table 5) with procto's own forward
hooks, so that thop is not needed at run time:

* a module counts only if its *exact* type is one of thop's standard types (``nn.Linear``, ``nn.Conv*``,
  ``nn.ConvTranspose*``, ``nn.BatchNorm*``, ``nn.LayerNorm``, ``nn.InstanceNorm*``, activations, pooling, …) **and** it
  runs in the forward pass; its parameters are counted once however often it runs;
* other modules are transparent: their children are visited, their own parameters are not counted — so position
  embeddings, relative-position tables, ``nn.Embedding`` tokens, SAM's ``LayerNorm2d`` and modules that never run
  (an unused ``PatchEmbed``, ``mask_downscaling`` without mask prompts) are left out;
* "FLOPs" are thop's operation counts: multiply–accumulates of convolutions (``out.numel() · C_in/groups · k``) and
  linear layers (``out.numel() · in_features``), ``2 · numel`` for normalisation layers with affine parameters (``numel``
  without), softmax/pooling/upsampling as thop has them, and nothing for functional ops (attention matmuls, the
  hypernetwork product, ``F.interpolate``).

:func:`torch_counts` gives the plain counts beside them (every ``nn.Parameter``; those with ``requires_grad``).
:func:`paper_complexity` builds the model of a paper's table and returns both (see its docstring for the keys).
"""

from __future__ import annotations

import copy
from functools import lru_cache
from typing import Callable

import torch
from torch import nn

# ------------------------------------------------------------------------------------------------- thop's op rules


def _zero(m, x, y) -> float:
    return 0.0


def _conv(m, x, y) -> float:
    return float(y.numel() * (x[0].shape[1] // m.groups) * int(torch.tensor(m.weight.shape[2:]).prod()))


def _norm(m, x, y) -> float:
    n = 2.0 * x[0].numel()
    if getattr(m, "affine", False) or getattr(m, "elementwise_affine", False):
        n *= 2
    return n


def _linear(m, x, y) -> float:
    return float(m.in_features * y.numel())


def _softmax(m, x, y) -> float:
    nfeat = x[0].shape[m.dim]
    return float((x[0].numel() // nfeat) * (3 * nfeat - 1))


def _avgpool(m, x, y) -> float:
    return float(y.numel())


def _adaptive_avgpool(m, x, y) -> float:
    k = 1.0
    for a, b in zip(x[0].shape[2:], y.shape[2:]):
        k *= a / b
    return float(int((k + 1) * y.numel()))


def _upsample(m, x, y) -> float:
    factor = {"nearest": 1, "linear": 5, "bilinear": 11, "bicubic": 259}.get(m.mode, 0)
    return float(y.numel() * factor)


def _prelu(m, x, y) -> float:
    return 0.0 if m.training else float(x[0].numel())


#: thop 0.1.1's ``register_hooks`` (types matched exactly, as thop does).
THOP_RULES: dict[type, Callable] = {
    nn.ZeroPad2d: _zero,
    nn.Conv1d: _conv, nn.Conv2d: _conv, nn.Conv3d: _conv,
    nn.ConvTranspose1d: _conv, nn.ConvTranspose2d: _conv, nn.ConvTranspose3d: _conv,
    nn.BatchNorm1d: _norm, nn.BatchNorm2d: _norm, nn.BatchNorm3d: _norm, nn.SyncBatchNorm: _norm,
    nn.LayerNorm: _norm,
    nn.InstanceNorm1d: _norm, nn.InstanceNorm2d: _norm, nn.InstanceNorm3d: _norm,
    nn.PReLU: _prelu, nn.Softmax: _softmax,
    nn.ReLU: _zero, nn.ReLU6: _zero, nn.LeakyReLU: _zero,
    nn.MaxPool1d: _zero, nn.MaxPool2d: _zero, nn.MaxPool3d: _zero,
    nn.AdaptiveMaxPool1d: _zero, nn.AdaptiveMaxPool2d: _zero, nn.AdaptiveMaxPool3d: _zero,
    nn.AvgPool1d: _avgpool, nn.AvgPool2d: _avgpool, nn.AvgPool3d: _avgpool,
    nn.AdaptiveAvgPool1d: _adaptive_avgpool, nn.AdaptiveAvgPool2d: _adaptive_avgpool,
    nn.AdaptiveAvgPool3d: _adaptive_avgpool,
    nn.Linear: _linear, nn.Dropout: _zero,
    nn.Upsample: _upsample, nn.UpsamplingBilinear2d: _upsample, nn.UpsamplingNearest2d: _upsample,
    nn.Sequential: _zero, nn.PixelShuffle: _zero,
}


def thop_counts(model: nn.Module, inputs: tuple, **forward_kwargs) -> dict:
    """``thop.profile``'s ``(macs, params)`` convention, plus the tunable share of the counted parameters.

    Runs ``model(*inputs, **forward_kwargs)`` once in eval mode without gradients (the training flag is restored).
    Returns ``{"params", "params_tunable", "macs", "per_type"}`` (``per_type``: MACs by module type name).
    """
    ops: dict[nn.Module, float] = {}
    ran: set[nn.Module] = set()
    handles = []

    def hook(rule):
        def fn(m, x, y):
            ops[m] = ops.get(m, 0.0) + rule(m, x, y)
            ran.add(m)
        return fn

    hooked: set[nn.Module] = set()
    for m in model.modules():
        rule = THOP_RULES.get(type(m))
        if rule is not None:
            handles.append(m.register_forward_hook(hook(rule)))
            hooked.add(m)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(*inputs, **forward_kwargs)
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()

    totals = {"params": 0, "params_tunable": 0, "macs": 0.0}
    per_type: dict[str, float] = {}

    def visit(module: nn.Module) -> None:  # thop's dfs_count
        totals["macs"] += ops.get(module, 0.0)
        for child in module.children():
            if child in hooked and not isinstance(child, (nn.Sequential, nn.ModuleList)):
                if child in ran:
                    totals["macs"] += ops.get(child, 0.0)
                    per_type[type(child).__name__] = per_type.get(type(child).__name__, 0.0) + ops.get(child, 0.0)
                    for p in child.parameters():
                        totals["params"] += p.numel()
                        totals["params_tunable"] += p.numel() if p.requires_grad else 0
            else:
                visit(child)

    visit(model)
    return {
        "params": int(totals["params"]),
        "params_tunable": int(totals["params_tunable"]),
        "macs": int(round(totals["macs"])),
        "per_type": per_type,
    }


def torch_counts(model: nn.Module) -> dict:
    """Plain counts: every parameter, and those with ``requires_grad``."""
    return {
        "params_torch": sum(p.numel() for p in model.parameters()),
        "params_tunable_torch": sum(p.numel() for p in model.parameters() if p.requires_grad),
    }


# ------------------------------------------------------------------------------------------------- paper tables

#: U-SAM Table 5 (Param M, TParam M, GFLOPs) for the SAM family, counted with thop at 224×224 input.
USAM_TABLE5: dict[str, tuple[float, float, float]] = {
    "sam_b": (90.21, 90.21, 17.08),
    "sam_b_lora": (90.36, 3.93, 17.11),
    "usam_b": (103.36, 103.36, 25.07),
    "usam_b_lora": (103.51, 17.68, 25.10),
    "sam_l": (307.87, 307.87, 59.74),
    "sam_l_lora": (308.26, 4.32, 59.82),
    "usam_l": (325.40, 325.40, 68.60),
    "usam_l_lora": (325.79, 22.64, 68.65),
    "sam_h": (635.35, 635.35, 123.90),
    "sam_h_lora": (636.01, 4.44, 124.03),
    "usam_h": (658.73, 658.73, 133.88),
    "usam_h_lora": (659.69, 28.81, 134.02),
}

#: How each Table 5 row is built for counting: ``create_model`` kwargs, and why they differ from the defaults.
#: The paper's SAM rows count SAM with its own 2-token mask decoder (``num_multimask_outputs=1``); procto's 3-class
#: SAM baseline has one token per class (3), i.e. one more hypernetwork MLP (+139,808 params, +257 in the IoU head).
_PAPER_KWARGS: dict[str, dict] = {name: ({"num_classes": 2} if name.startswith("sam_") else {}) for name in USAM_TABLE5}
_PAPER_NOTES: dict[str, str] = {
    name: (
        "counted as Table 5 does: SAM with its 2-token mask decoder (num_multimask_outputs=1, i.e. "
        "create_model(name, num_classes=2)); the default 3-class model adds one mask token: see 'default_model'"
        if name.startswith("sam_")
        else "counted on create_model(name) (3 classes, 32 mask tokens)"
    )
    for name in USAM_TABLE5
}

_COUNTERS: dict[str, Callable[[], dict]] = {}


def register_paper_complexity(name: str) -> Callable:
    """Register ``fn() -> dict`` as the paper count of model ``name`` (for architectures counted another way)."""

    def deco(fn: Callable[[], dict]) -> Callable[[], dict]:
        _COUNTERS[name] = fn
        return fn

    return deco


def _count_sam_family(name: str, **kwargs) -> dict:
    from procto.nets.registry import create_model

    model = create_model(name, **kwargs)
    x = torch.zeros(1, 3, model.img_size, model.img_size)
    thop = thop_counts(model, (x,))
    counts = {"params": thop["params"], "macs": thop["macs"], "params_tunable_thop": thop["params_tunable"]}
    counts.update(torch_counts(model))
    # Table 5's TParam: the whole count where every counted parameter trains (TParam = Param in the table); with a
    # frozen encoder, what the authors' code prints: sum(p.numel() for p in model.parameters() if p.requires_grad).
    full = thop["params_tunable"] == thop["params"]
    counts["params_tunable"] = thop["params"] if full else counts["params_tunable_torch"]
    return counts


@lru_cache(maxsize=None)
def _paper_complexity_cached(name: str, with_default: bool) -> dict:
    if name in _COUNTERS:
        return _COUNTERS[name]()
    if name not in USAM_TABLE5:
        known = sorted(set(USAM_TABLE5) | set(_COUNTERS))
        raise ValueError(f"no paper complexity for {name!r}; known: {', '.join(known)}")
    kwargs = _PAPER_KWARGS[name]
    res = _count_sam_family(name, **kwargs)
    p, tp, g = USAM_TABLE5[name]
    res.update(
        name=name,
        input_size=(1, 3, 224, 224),
        convention="thop 0.1.1 at 224x224, no prompt: params of standard modules that run; conv/linear MACs (+ norm ops)",
        model_kwargs=dict(kwargs),
        paper={"params": round(p * 1e6), "params_tunable": round(tp * 1e6), "macs": round(g * 1e9)},
        note=_PAPER_NOTES[name],
    )
    if with_default and kwargs:
        res["default_model"] = _count_sam_family(name)
    return res


def paper_complexity(name: str, with_default: bool = False) -> dict:
    """Parameters, tunable parameters and MACs of model ``name`` counted the way its paper counts them.

    For the SAM family (U-SAM Table 5: ``sam_b``, ``sam_b_lora``, ``usam_b``, ``usam_b_lora`` and the ``_l``/``_h``
    rows) the count is thop's at 224×224 with no prompt (:func:`thop_counts`).  Keys: ``params`` and ``macs`` (that
    convention), ``params_tunable`` (Table 5's TParam: ``params`` when everything counted trains, else the plain count
    of parameters with ``requires_grad``, as the authors' code prints it — the LoRA rows' 3.93 M / 17.68 M),
    ``params_tunable_thop`` (the trainable share of ``params``), ``params_torch``, ``params_tunable_torch`` (plain
    torch counts of the same model),
    ``paper`` (the table's figures), ``model_kwargs`` (the ``create_model`` arguments counted), ``note``; with
    ``with_default=True`` also ``default_model`` (the counts of ``create_model(name)`` where the paper's construction
    differs from procto's default).  Results are cached; a fresh dict is returned each call.
    """
    return copy.deepcopy(_paper_complexity_cached(name, bool(with_default)))


__all__ = [
    "THOP_RULES",
    "thop_counts",
    "torch_counts",
    "USAM_TABLE5",
    "paper_complexity",
    "register_paper_complexity",
]
