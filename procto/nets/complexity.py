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
:func:`paper_complexity` builds the model of a paper's table and counts it as that paper does: thop for the SAM family
(U-SAM Table 5), plain parameter counts for RCSegNeXt (Tables 4 and 8) and the staging CNN (Table 2); see its
docstring for the keys.
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


@register_paper_complexity("agcrc_unet")
def _count_agcrc() -> dict:
    """AG-CRC §IV-C: nnU-Net's U-Net at 5.0 × 0.78 × 0.78 mm, "32 convolution or transposed convolution layers
    (including the auxiliary deep supervision heads) and … 31M parameters" (every parameter counts)."""
    from procto.nets.agcrc import PAPER_TARGET_SPACING, REFERENCE_PATCH
    from procto.nets.registry import create_model

    kwargs = {"input_channels": 3, "num_classes": 2, "spacing": PAPER_TARGET_SPACING, "patch_size": REFERENCE_PATCH}
    model = create_model("agcrc_unet", **kwargs)
    counts = torch_counts(model)
    return {"name": "agcrc_unet", "params": counts["params_torch"], "params_tunable": counts["params_tunable_torch"],
            "macs": None, **counts, "params_text": _millions(counts["params_torch"]),
            "convention": "every parameter, deep-supervision heads included",
            "paper": {"params": 31_000_000, "params_tunable": None, "macs": None,
                      "source": "AG-CRC §IV-C ('31M', 32 conv layers; patch not reported)"},
            "input_size": None, "model_kwargs": kwargs, "conv_layers": len(model.conv_layers()),
            "note": f"patch {REFERENCE_PATCH} (a patch nnU-Net plans at the paper's spacing); the paper gives no MACs"}


def _count_cosam(name: str) -> dict:
    """CoSAM (paper 004): the paper reports no parameter counts; procto's default models counted plainly."""
    from procto.nets.registry import create_model

    model = create_model(name)
    counts = torch_counts(model)
    return {"name": name, "params": counts["params_torch"], "params_tunable": counts["params_tunable_torch"],
            "macs": None, **counts, "params_text": _millions(counts["params_torch"]),
            "convention": "every parameter (torch count)", "paper": None, "input_size": None, "model_kwargs": {},
            "note": "CoSAM's paper gives no parameter or MAC counts (window-size ablation only, Table 3)"}


register_paper_complexity("cosam")(lambda: _count_cosam("cosam"))
register_paper_complexity("cosam_detector")(lambda: _count_cosam("cosam_detector"))


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


# ------------------------------------------------------------------------------- RCSegNeXt and the staging CNN

#: RCSegNeXt paper, Table 8 (model scaling): #Para(M) of RCSegNeXt-B (also Table 1's "Ours") and RCSegNeXt-L.  The
#: Table 4 ablation rows are :data:`procto.nets.rcsegnext.ABLATION_VARIANTS`.
RCSEGNEXT_TABLE8: dict[str, float] = {"rcsegnext_b": 2.76, "rcsegnext_l": 10.77}

_RCSEGNEXT_CONVENTION = ("every parameter except the deep-supervision heads (RCSegNeXt.paper_num_parameters), "
                         "default construction (1 input channel, 3 classes, Dataset A spacing)")
_STAGING_CONVENTION = "every parameter of the slice feature extractor and its shared slice FC (sum of p.numel())"


def _rcsegnext_rows() -> dict[str, tuple[float | None, str]]:
    """RCSegNeXt registry names → (the paper's #Para in M or None, where the figure comes from)."""
    from procto.nets.rcsegnext import ABLATION_VARIANTS, GROUPED_VARIANT

    rows: dict[str, tuple[float | None, str]] = {
        name: (m, "RCSegNeXt Table 4 (ablation)") for name, (_, _, m) in ABLATION_VARIANTS.items()
    }
    rows.update({name: (m, "RCSegNeXt Table 8 (model scaling)") for name, m in RCSEGNEXT_TABLE8.items()})
    rows[GROUPED_VARIANT[0]] = (None, "not in the paper (IsoNeXt with grouped convolutions but no regrouping)")
    return rows


def _staging_rows() -> dict[str, tuple[int, str]]:
    """Staging registry names → (Table 2's exact parameter count, the paper's variant name)."""
    from procto.nets.staging import PAPER_NAMES, PAPER_PARAMS

    return {f"staging_f_{v}": (n, PAPER_NAMES[v]) for v, n in PAPER_PARAMS.items()}


def _millions(n: int) -> str:
    return f"{n / 1e6:.2f} M"


def _count_rcsegnext(name: str) -> dict:
    from procto.nets.registry import create_model

    model = create_model(name)
    heads = [p for m in model.deep_supervision_heads() for p in m.parameters()]
    params = model.paper_num_parameters()
    tunable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    tunable -= sum(p.numel() for p in heads if p.requires_grad)
    m, source = _rcsegnext_rows()[name]
    paper = None if m is None else {"params": round(m * 1e6), "params_tunable": None, "macs": None, "source": source}
    return {"params": params, "params_tunable": tunable, "macs": None, **torch_counts(model), "paper": paper,
            "convention": _RCSEGNEXT_CONVENTION,
            "note": f"{source}; the paper gives #Para(M) only (no MACs): macs is None"}


def _count_staging(name: str) -> dict:
    from procto.nets.registry import create_model

    model = create_model(name)
    counts = torch_counts(model)
    n, paper_name = _staging_rows()[name]
    return {"params": counts["params_torch"], "params_tunable": counts["params_tunable_torch"], "macs": None,
            **counts, "convention": _STAGING_CONVENTION,
            "paper": {"params": n, "params_tunable": None, "macs": None, "source": f"staging Table 2 ({paper_name})"},
            "note": f"{paper_name}: the staging paper's Table 2 gives '# params' only (no MACs): macs is None"}


def _count_usam_table5(name: str, with_default: bool) -> dict:
    kwargs = _PAPER_KWARGS[name]
    res = _count_sam_family(name, **kwargs)
    p, tp, g = USAM_TABLE5[name]
    res.update(
        input_size=(1, 3, 224, 224),
        convention=("thop 0.1.1 at 224x224, no prompt: params of standard modules that run; "
                    "conv/linear MACs (+ norm ops)"),
        model_kwargs=dict(kwargs),
        paper={"params": round(p * 1e6), "params_tunable": round(tp * 1e6), "macs": round(g * 1e9),
               "source": "U-SAM Table 5"},
        note=_PAPER_NOTES[name],
    )
    if with_default and kwargs:
        res["default_model"] = _count_sam_family(name)
    return res


def paper_complexity_names() -> list[str]:
    """Sorted names :func:`paper_complexity` answers for."""
    return sorted(set(USAM_TABLE5) | set(_rcsegnext_rows()) | set(_staging_rows()) | set(_COUNTERS))


@lru_cache(maxsize=None)
def _paper_complexity_cached(name: str, with_default: bool) -> dict:
    if name in _COUNTERS:
        return _COUNTERS[name]()
    if name in USAM_TABLE5:
        res = _count_usam_table5(name, with_default)
    elif name in _rcsegnext_rows():
        res = _count_rcsegnext(name)
    elif name in _staging_rows():
        res = _count_staging(name)
    else:
        raise ValueError(f"no paper complexity for {name!r}; known: {', '.join(paper_complexity_names())}")
    res.setdefault("input_size", None)
    res.setdefault("model_kwargs", {})
    return {"name": name, **res, "params_text": _millions(res["params"])}


def paper_complexity(name: str, with_default: bool = False) -> dict:
    """Parameters, tunable parameters and MACs of model ``name`` counted the way its paper counts them.

    Every registered paper model answers (:func:`paper_complexity_names`):

    * the SAM family (U-SAM Table 5: ``sam_b``, ``sam_b_lora``, ``usam_b``, ``usam_b_lora`` and the ``_l``/``_h`` rows):
      thop's count at 224×224 with no prompt (:func:`thop_counts`).  ``params`` and ``macs`` follow that convention,
      ``params_tunable`` is Table 5's TParam (``params`` when everything counted trains, else the plain count of
      parameters with ``requires_grad``, as the authors' code prints it — the LoRA rows' 3.93 M / 17.68 M), and
      ``params_tunable_thop`` is the trainable share of ``params``;
    * RCSegNeXt (``rcsegnext_b`` 2,759,363 → 2.76 M and ``rcsegnext_l`` 10,767,651 → 10.77 M, Table 8; the Table 4
      ablation rows ``rcsegnext_b_plain`` … ``rcsegnext_b_res2next``; ``rcsegnext_b_grouped``, not in the paper, with
      ``paper`` None): every parameter except the deep-supervision heads
      (:meth:`~procto.nets.rcsegnext.RCSegNeXt.paper_num_parameters`);
    * the T2/T3 staging CNN (the eleven ``staging_f_*`` variants of Table 2, e.g. f-R2D 2,796,001, f-rMC5 6,924,769):
      every parameter of the slice feature extractor and its shared slice FC.

    ``macs`` is None for RCSegNeXt and the staging CNN: their papers give parameter counts only.

    Keys: ``name``, ``params``, ``params_tunable``, ``macs``, ``params_text`` (``params`` in millions, two decimals,
    as the papers print it: "2.76 M"), ``params_torch`` and ``params_tunable_torch`` (plain torch counts of the same
    model), ``paper`` (the table's figures: ``params``, ``params_tunable``, ``macs`` — None where the table has no
    such column — and ``source``; None for a model in no table), ``convention``, ``input_size`` (None where no forward pass
    is counted), ``model_kwargs`` (the ``create_model`` arguments counted), ``note``; with ``with_default=True`` also
    ``default_model`` (the counts of ``create_model(name)`` where the paper's construction differs from procto's
    default: the SAM rows).  Results are cached; a fresh dict is returned each call.

    Raises:
        ValueError: ``name`` is not a model with a paper count.
    """
    return copy.deepcopy(_paper_complexity_cached(name, bool(with_default)))


__all__ = [
    "THOP_RULES",
    "thop_counts",
    "torch_counts",
    "USAM_TABLE5",
    "RCSEGNEXT_TABLE8",
    "paper_complexity",
    "paper_complexity_names",
    "register_paper_complexity",
]
