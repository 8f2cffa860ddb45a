"""Load Meta's official SAM checkpoints (``sam_vit_b_01ec64.pth``, ``sam_vit_l_0b3195.pth``, ``sam_vit_h_4b8939.pth``)
into procto's 224-input SAM / U-SAM models.

The official files are plain state dicts with ``image_encoder.*``, ``prompt_encoder.*`` and ``mask_decoder.*`` keys of
a 1024-input SAM.  :func:`load_sam_checkpoint` maps them key for key and adapts what differs:

* ``image_encoder.pos_embed`` ``(1, 64, 64, C)`` → ``(1, 14, 14, C)``: bicubic interpolation (antialiased when shrinking);
* ``rel_pos_h`` / ``rel_pos_w`` of the global-attention blocks ``(127, d)`` → ``(27, d)``: linear interpolation (the
  windowed blocks' ``(27, d)`` tables already fit and are copied);
* mask tokens, hypernetwork MLPs and the IoU head's last layer (SAM: 4 tokens; U-SAM: 32; procto's SAM: one per class):
  ``extra_tokens="copy"`` (default) loads the checkpoint's tokens/MLPs/IoU rows into the first ``min(4, T)`` slots and
  leaves the others at their initialisation; ``"tile"`` fills the others cyclically from the checkpoint's
  (token ``i`` ← ``i % 4``); ``"skip"`` loads none of them (the authors' ``load_from``);
* LoRA-wrapped ``qkv`` layers (``...attn.qkv.base.*``) take the checkpoint's ``...attn.qkv.*``.

It never downloads: ``path_or_state_dict`` is a local file or an in-memory state dict.  The returned
:class:`SamCheckpointReport` lists what was loaded, resized, adapted, new (procto's adapter modules, LoRA matrices and
buffers that SAM has no counterpart for), missing, unexpected (e.g. ``mask_decoder.output_upscaling`` for U-SAM, which
replaces it with UP blocks) and shape-mismatched.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

import torch
import torch.nn.functional as F
from torch import nn

SAM_PREFIXES = ("image_encoder.", "prompt_encoder.", "mask_decoder.")
EXTRA_TOKEN_POLICIES = ("copy", "tile", "skip")

_HYPER_RE = re.compile(r"^mask_decoder\.output_hypernetworks_mlps\.(\d+)\.(.+)$")
_IOU_RE = re.compile(r"^mask_decoder\.iou_prediction_head\.layers\.(\d+)\.(weight|bias)$")
_TOKEN_KEY = "mask_decoder.mask_tokens.weight"


@dataclass
class SamCheckpointReport:
    """What :func:`load_sam_checkpoint` did, key by key (model keys unless stated)."""

    source: str = "<state dict>"
    loaded: list[str] = field(default_factory=list)  # copied unchanged
    resized: dict[str, tuple[tuple[int, ...], tuple[int, ...]]] = field(default_factory=dict)  # key: (from, to)
    adapted: dict[str, str] = field(default_factory=dict)  # mask-token machinery (tensor or MLP module) -> what was done
    new: list[str] = field(default_factory=list)  # procto's own modules/buffers: left at init
    missing: list[str] = field(default_factory=list)  # SAM keys the checkpoint lacked: left at init
    unexpected: list[str] = field(default_factory=list)  # checkpoint keys with no place in the model
    mismatched: dict[str, tuple[tuple[int, ...], tuple[int, ...]]] = field(default_factory=dict)  # (ckpt, model)

    @property
    def ok(self) -> bool:
        """True when every SAM key of the model was filled and no shape conflicted."""
        return not self.missing and not self.mismatched

    def summary(self) -> str:
        parts = [
            f"{len(self.loaded)} loaded",
            f"{len(self.resized)} resized",
            f"{len(self.adapted)} adapted",
            f"{len(self.new)} new",
            f"{len(self.missing)} missing",
            f"{len(self.unexpected)} unexpected",
            f"{len(self.mismatched)} mismatched",
        ]
        return f"SAM checkpoint {self.source}: " + ", ".join(parts)

    def __str__(self) -> str:  # pragma: no cover - formatting only
        lines = [self.summary()]
        for title, items in (("resized", self.resized), ("adapted", self.adapted), ("missing", self.missing),
                             ("unexpected", self.unexpected), ("mismatched", self.mismatched)):
            if items:
                shown = list(items)[:8]
                more = f" … (+{len(items) - 8})" if len(items) > 8 else ""
                lines.append(f"  {title}: {', '.join(shown)}{more}")
        return "\n".join(lines)


def read_sam_state_dict(path_or_state_dict) -> tuple[dict[str, torch.Tensor], str]:
    """A SAM state dict from a local file (never downloaded) or a mapping; unwraps ``{"model": …}`` /
    ``{"state_dict": …}`` and strips ``module.`` prefixes.  Returns ``(state_dict, source description)``."""
    if isinstance(path_or_state_dict, Mapping):
        sd, source = dict(path_or_state_dict), "<state dict>"
    else:
        path = os.fspath(path_or_state_dict)
        if re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*://", path):
            raise ValueError(f"load_sam_checkpoint never downloads; give a local file, not {path!r}")
        p = Path(path).expanduser()
        if not p.is_file():
            raise FileNotFoundError(f"SAM checkpoint not found: {p}")
        sd = torch.load(p, map_location="cpu", weights_only=True)
        source = str(p)
    for wrapper in ("model", "state_dict"):
        if wrapper in sd and isinstance(sd[wrapper], Mapping) and not any(torch.is_tensor(v) for v in sd.values()):
            sd = dict(sd[wrapper])
    if sd and all(k.startswith("module.") for k in sd):
        sd = {k[len("module."):]: v for k, v in sd.items()}
    bad = [k for k, v in sd.items() if not torch.is_tensor(v)]
    if bad:
        raise ValueError(f"not a SAM state dict: non-tensor entries {bad[:5]}")
    return sd, source


def resize_pos_embed(pos: torch.Tensor, size: tuple[int, int], mode: str = "bicubic") -> torch.Tensor:
    """``(1, H, W, C)`` absolute position table → ``(1, h, w, C)`` by ``mode`` interpolation (antialiased if shrinking)."""
    if tuple(pos.shape[1:3]) == tuple(size):
        return pos.clone()
    x = pos.float().permute(0, 3, 1, 2)
    antialias = mode in ("bilinear", "bicubic") and (size[0] < pos.shape[1] or size[1] < pos.shape[2])
    x = F.interpolate(x, size=size, mode=mode, align_corners=False, antialias=antialias)
    return x.permute(0, 2, 3, 1).to(pos.dtype).contiguous()


def resize_rel_pos(rel: torch.Tensor, length: int) -> torch.Tensor:
    """``(L, d)`` relative-position table → ``(length, d)`` by linear interpolation (as SAM's ``get_rel_pos``)."""
    if rel.shape[0] == length:
        return rel.clone()
    x = F.interpolate(rel.float().t().unsqueeze(0), size=length, mode="linear", align_corners=False)
    return x[0].t().to(rel.dtype).contiguous()


def _new_prefixes(model: nn.Module) -> tuple[str, ...]:
    return tuple(getattr(model, "new_key_prefixes", ()))


def _is_new(key: str, model: nn.Module, sam_keys_possible: bool) -> bool:
    if ".lora_" in f".{key}":
        return True
    if key.startswith(_new_prefixes(model)):
        return True
    return not sam_keys_possible


def load_sam_checkpoint(model: nn.Module, path_or_state_dict, *, extra_tokens: str = "copy",
                        pos_embed_mode: str = "bicubic", strict: bool = True) -> SamCheckpointReport:
    """Load an official SAM ViT-B/L/H checkpoint (file path or state dict) into a procto SAM/U-SAM ``model``.

    Keys are matched by name; position tables are resized to the model's input size, the mask-token machinery is
    adapted per ``extra_tokens`` (``"copy"``, ``"tile"`` or ``"skip"``, see the module docstring).  With ``strict``
    (default) a SAM key the checkpoint cannot fill, or a shape that cannot be adapted (e.g. a ViT-L checkpoint for a
    ViT-B model), raises ``ValueError`` before anything is written.  Returns a :class:`SamCheckpointReport`.
    """
    if extra_tokens not in EXTRA_TOKEN_POLICIES:
        raise ValueError(f"extra_tokens must be one of {EXTRA_TOKEN_POLICIES}, got {extra_tokens!r}")
    sd, source = read_sam_state_dict(path_or_state_dict)
    report = SamCheckpointReport(source=source)
    target = model.state_dict()
    out = _map_checkpoint(sd, target, extra_tokens, pos_embed_mode, report)
    _report_unfilled(model, sd, target, out, extra_tokens, report)
    if strict and not report.ok:
        raise ValueError(
            f"{report.summary()}; missing: {report.missing[:6]}, mismatched: {dict(list(report.mismatched.items())[:6])}"
        )
    merged = dict(target)
    merged.update({k: v.to(dtype=target[k].dtype) for k, v in out.items()})
    model.load_state_dict(merged, strict=True)
    return report


def _model_key(target: Mapping[str, torch.Tensor], k: str) -> str | None:
    """The model key a checkpoint key fills (LoRA-wrapped ``qkv`` layers: ``...attn.qkv.base.*``), or None."""
    if k in target:
        return k
    alias = k.replace(".attn.qkv.", ".attn.qkv.base.")
    return alias if alias in target else None


def _map_checkpoint(sd: dict[str, torch.Tensor], target: dict[str, torch.Tensor], extra_tokens: str,
                    pos_embed_mode: str, report: SamCheckpointReport) -> dict[str, torch.Tensor]:
    """The checkpoint's tensors by model key, adapted to the model's shapes; records loaded, resized, adapted,
    unexpected and mismatched keys in ``report``."""
    out: dict[str, torch.Tensor] = {}
    n_model_tokens = target[_TOKEN_KEY].shape[0] if _TOKEN_KEY in target else 0
    iou_last = max((int(m.group(1)) for k in target if (m := _IOU_RE.match(k))), default=-1)
    for k, v in sd.items():
        t = _model_key(target, k)
        hyper = _HYPER_RE.match(k)
        iou = _IOU_RE.match(k)
        token_machinery = k == _TOKEN_KEY or hyper is not None or iou is not None
        if extra_tokens == "skip" and token_machinery:
            continue  # the model's token machinery is reported (left at init) by _report_unfilled
        if t is None:
            if hyper is not None and int(hyper.group(1)) >= n_model_tokens:
                report.adapted[_mlp_key(hyper.group(1))] = (
                    f"checkpoint hypernetwork MLP {hyper.group(1)} dropped (model has {n_model_tokens} mask tokens)"
                )
            else:
                report.unexpected.append(k)
            continue
        token_rows = k == _TOKEN_KEY or (iou is not None and int(iou.group(1)) == iou_last)
        _fit_tensor(k, t, v, target[t], token_rows, extra_tokens, pos_embed_mode, out, report)
    return out


def _fit_tensor(k: str, t: str, v: torch.Tensor, dst: torch.Tensor, token_rows: bool, extra_tokens: str,
                pos_embed_mode: str, out: dict[str, torch.Tensor], report: SamCheckpointReport) -> None:
    """Checkpoint tensor ``v`` (key ``k``) into ``out[t]`` for model tensor ``dst``: copied when the shapes agree,
    rows fitted (mask tokens, the IoU head's last layer: ``token_rows``), position tables resized; else mismatched."""
    want = tuple(dst.shape)
    have = tuple(v.shape)
    if token_rows and have != want and have[1:] == want[1:]:
        out[t] = _fit_rows(v, dst, extra_tokens)
        report.adapted[t] = _rows_note("mask tokens" if k == _TOKEN_KEY else "IoU-head rows", have[0], want[0],
                                       extra_tokens)
    elif have == want:
        out[t] = v
        report.loaded.append(t)
    elif t.endswith("image_encoder.pos_embed") and len(have) == 4 and have[0] == want[0] and have[3] == want[3]:
        out[t] = resize_pos_embed(v, want[1:3], pos_embed_mode)
        report.resized[t] = (have, want)
    elif re.search(r"\.rel_pos_[hw]$", t) and len(have) == 2 and have[1] == want[1]:
        out[t] = resize_rel_pos(v, want[0])
        report.resized[t] = (have, want)
    else:
        report.mismatched[t] = (have, want)


def _report_unfilled(model: nn.Module, sd: dict[str, torch.Tensor], target: dict[str, torch.Tensor],
                     out: dict[str, torch.Tensor], extra_tokens: str, report: SamCheckpointReport) -> None:
    """Model keys the checkpoint did not fill: extra mask tokens (tiled into ``out`` with ``"tile"``), skipped token
    machinery, procto's own modules (new) and SAM keys the checkpoint lacked (missing)."""
    n_ckpt_tokens = sd[_TOKEN_KEY].shape[0] if _TOKEN_KEY in sd else 0
    for t in target:
        if t in out or t in report.mismatched:
            continue
        hyper = _HYPER_RE.match(t)
        if hyper is not None and extra_tokens != "skip" and n_ckpt_tokens:
            i, rest = int(hyper.group(1)), hyper.group(2)
            src = f"mask_decoder.output_hypernetworks_mlps.{i % n_ckpt_tokens}.{rest}"
            if extra_tokens == "tile" and src in sd and tuple(sd[src].shape) == tuple(target[t].shape):
                out[t] = sd[src]
                report.adapted[_mlp_key(i)] = f"extra mask token: copied from checkpoint hypernetwork MLP {i % n_ckpt_tokens}"
            else:
                report.adapted[_mlp_key(i)] = "extra mask token: left at init"
            continue
        if extra_tokens == "skip" and (t == _TOKEN_KEY or hyper is not None or _IOU_RE.match(t)):
            key = _mlp_key(hyper.group(1)) if hyper is not None else t
            report.adapted[key] = "mask-token machinery not loaded (extra_tokens='skip'): left at init"
            continue
        sam_like = t.startswith(SAM_PREFIXES)
        if _is_new(t, model, sam_like):
            report.new.append(t)
        else:
            report.missing.append(t)


def _mlp_key(i) -> str:
    return f"mask_decoder.output_hypernetworks_mlps.{int(i)}"


def _fit_rows(src: torch.Tensor, dst: torch.Tensor, policy: str) -> torch.Tensor:
    """``dst``-shaped tensor whose first rows come from ``src`` (the rest: ``dst``'s values or ``src`` tiled)."""
    res = dst.detach().clone()
    n = min(src.shape[0], dst.shape[0])
    res[:n] = src[:n].to(res.dtype)
    if policy == "tile" and dst.shape[0] > src.shape[0]:
        idx = torch.arange(src.shape[0], dst.shape[0]) % src.shape[0]
        res[src.shape[0]:] = src[idx].to(res.dtype)
    return res


def _rows_note(what: str, have: int, want: int, policy: str) -> str:
    if have == want:
        return f"{what}: {have} copied"
    if want < have:
        return f"{what}: first {want} of {have} copied"
    rest = "tiled from the checkpoint's" if policy == "tile" else "left at init"
    return f"{what}: {have} copied, {want - have} extra {rest}"


__all__ = [
    "SamCheckpointReport",
    "load_sam_checkpoint",
    "read_sam_state_dict",
    "resize_pos_embed",
    "resize_rel_pos",
]
