"""Evaluation of U-SAM / SAM models on CARE-layout slices in the layout of the paper's Tables 2 and 4.

For each prompt *setting* — ``none`` (no prompt), ``points1`` / ``points3`` / ``points5`` (1, 3, 5 points per class,
Table 4) and ``boxes`` (the box prompt, Table 2's U-SAM/B) — the model segments every slice, the prompts being made
from the reference label (seeded: the same slice gets the same points in every run and setting seed).

Two aggregations are reported:

* **pooled** (the authors' code): per class, Dice = 2 Σ|P∩G| / (Σ|P| + Σ|G|) and IoU = Σ|P∩G| / Σ|P∪G| with the
  sums over *all* slices of the test set; NSD likewise pools the boundary: (Σ ref boundary within τ of pred +
  Σ pred boundary within τ of ref) / (Σ boundary lengths), the DeepMind surface-distance definition per slice
  (procto.metrics.surface_distances) summed over slices.  "Mean" is the mean over the foreground classes (normal
  rectum, tumour).
* **per case**: the same pooling within each case (its slices), then mean ± sd over cases (a class absent from a
  case's reference and prediction is left out of that class's mean).

NSD needs the pixel size: it is read from ``{split}_cases.json`` (procto-made slices) or taken from ``pixel_mm``
(default 1 mm, the real CARE release has no spacing); tolerance ``tolerance_mm`` (default 2 mm).  The tables' text
layout is :func:`procto.metrics.tables.usam_table`.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np

from procto.errors import InputError

CLASS_NAMES = {1: "normal", 2: "tumour"}
DEFAULT_SETTINGS = ("none", "points1", "points3", "points5", "boxes")
_SETTING_RE = re.compile(r"^(none|boxes|both(\d*)|points(\d*))$")


def parse_setting(setting: str) -> tuple[str, int]:
    """``"points3"`` → ``("points", 3)``; ``"boxes"`` → ``("boxes", 0)``; ``"both3"`` → boxes + 3 points;
    ``"none"``.  ``points`` alone means 3 points (the paper's U-SAM/P)."""
    s = str(setting).strip().lower().replace(" ", "").replace("_", "")
    m = _SETTING_RE.match(s)
    if not m:
        raise InputError(f"unknown prompt setting {setting!r}; use none, points1, points3, points5, boxes or both3")
    if s in ("none", "boxes"):
        return s, 0
    digits = m.group(2) if s.startswith("both") else m.group(3)
    k = int(digits) if digits else 3
    if k < 1:
        raise InputError(f"a point setting needs at least 1 point per class, got {setting!r}")
    return ("both" if s.startswith("both") else "points"), k


def parse_settings(text: str | Sequence[str]) -> list[str]:
    """``"none,points3,boxes"`` (or a sequence) → checked, lower-case prompt settings."""
    from procto.util import parse_list

    items = [str(t).strip().lower() for t in (text if not isinstance(text, str) else [text]) if str(t).strip()]
    settings = parse_list(",".join(items), str.lower, what="prompt settings", example="none,points3,boxes")
    if settings is None:
        raise InputError("no prompt settings given")
    for t in settings:
        parse_setting(t)
    return list(settings)


def setting_title(setting: str) -> str:
    mode, k = parse_setting(setting)
    return {"none": "no prompt", "boxes": "box"}.get(mode, f"{k} point{'s' if k > 1 else ''}/class" +
                                                    (" + box" if mode == "both" else ""))


# ---------------------------------------------------------------------------------------------- accumulation
@dataclass
class _Acc:
    """Pooled sums for one class."""

    tp: float = 0.0
    pred: float = 0.0
    ref: float = 0.0
    nsd_num: float = 0.0
    nsd_den: float = 0.0

    def add(self, pred: np.ndarray, ref: np.ndarray, spacing, tolerance: float) -> None:
        if not pred.any() and not ref.any():
            return
        self.tp += float(np.count_nonzero(pred & ref))
        self.pred += float(np.count_nonzero(pred))
        self.ref += float(np.count_nonzero(ref))
        from procto.metrics import surface_distances

        sd = surface_distances(pred, ref, spacing, workers=1)
        self.nsd_num += float(sd.areas_ref[sd.distances_ref_to_pred <= tolerance].sum())
        self.nsd_num += float(sd.areas_pred[sd.distances_pred_to_ref <= tolerance].sum())
        self.nsd_den += float(sd.areas_ref.sum() + sd.areas_pred.sum())

    def scores(self) -> dict[str, float]:
        den = self.pred + self.ref
        if den == 0:
            return {"dice": math.nan, "iou": math.nan, "nsd": math.nan}
        return {"dice": 2 * self.tp / den, "iou": self.tp / (den - self.tp),
                "nsd": self.nsd_num / self.nsd_den if self.nsd_den else math.nan}


@dataclass
class SettingResult:
    """Results of one prompt setting."""

    setting: str
    pooled: dict[int, dict[str, float]]  # class -> dice/iou/nsd
    per_case: dict[str, dict[int, dict[str, float]]]  # case -> class -> dice/iou/nsd
    n_slices: int = 0

    def mean(self, metric: str) -> float:
        vals = [v[metric] for v in self.pooled.values() if not math.isnan(v[metric])]
        return float(np.mean(vals)) if vals else math.nan

    def case_values(self, cls: int | str, metric: str) -> list[float]:
        """Per-case values of ``metric`` for class ``cls`` (an id, or ``"mean"``: the case's foreground mean)."""
        out = []
        for per_class in self.per_case.values():
            if cls == "mean":
                vals = [v[metric] for v in per_class.values() if not math.isnan(v[metric])]
                out.append(float(np.mean(vals)) if vals else math.nan)
            else:
                out.append(per_class.get(cls, {}).get(metric, math.nan))
        return out


@dataclass
class USamEvaluation:
    """All settings' results; :meth:`table` prints Tables 2/4's layout."""

    results: dict[str, SettingResult]
    classes: tuple[int, ...] = (1, 2)
    tolerance_mm: float = 2.0
    n_cases: int = 0
    n_slices: int = 0
    seconds: float = 0.0
    class_names: dict[int, str] = field(default_factory=lambda: dict(CLASS_NAMES))

    def __getitem__(self, setting: str) -> SettingResult:
        return self.results[setting]

    def mean_dice(self, setting: str) -> float:
        return self.results[setting].mean("dice")

    def rows(self) -> list[dict]:
        """Pooled results: one row per setting with ``<class>_<metric>`` and ``mean_<metric>`` columns (0–1)."""
        rows = []
        for s, r in self.results.items():
            row = {"setting": s, "slices": r.n_slices}
            for c in self.classes:
                for m in ("dice", "iou", "nsd"):
                    row[f"{self.class_names.get(c, c)}_{m}"] = r.pooled[c][m]
            for m in ("dice", "iou", "nsd"):
                row[f"mean_{m}"] = r.mean(m)
            rows.append(row)
        return rows

    def case_rows(self) -> list[dict]:
        """Per-case results: one row per setting, case and class (plus the case's foreground mean)."""
        rows = []
        for s, r in self.results.items():
            for case, per_class in r.per_case.items():
                for c in self.classes:
                    v = per_class.get(c, {"dice": math.nan, "iou": math.nan, "nsd": math.nan})
                    rows.append({"setting": s, "case": case, "class": self.class_names.get(c, c), **v})
                vals = {m: [per_class[c][m] for c in self.classes if c in per_class] for m in ("dice", "iou", "nsd")}
                rows.append({"setting": s, "case": case, "class": "mean",
                             **{m: (float(np.nanmean(v)) if v and not np.all(np.isnan(v)) else math.nan)
                                for m, v in vals.items()}})
        return rows

    def _values(self, result: SettingResult, per_case: bool) -> list[tuple[float, float | None]]:
        """Dice/IoU/NSD per class then of the mean: pooled ``(value, None)`` or over cases ``(mean, sd)``."""
        from procto.metrics import mean_sd

        values = []
        for key in (*self.classes, "mean"):
            for m in ("dice", "iou", "nsd"):
                if per_case:
                    ms = mean_sd(result.case_values(key, m))
                    values.append((ms.mean, ms.sd))
                else:
                    values.append((result.mean(m) if key == "mean" else result.pooled[key][m], None))
        return values

    def table(self, per_case: bool = False) -> str:
        """Text table in the layout of Tables 2/4: per setting, Dice/IoU/NSD (%) for normal, tumour and their mean.
        ``per_case=True``: mean ± sd over cases instead of the pooled values."""
        from procto.metrics.tables import usam_table

        groups = [*(self.class_names.get(c, str(c)).capitalize() for c in self.classes), "Mean"]
        rows = [(setting_title(s), self._values(r, per_case)) for s, r in self.results.items()]
        kind = "mean ± sd over cases" if per_case else "pooled over all slices per class (authors' aggregation)"
        footer = f"{self.n_slices} slices, {self.n_cases} cases; {kind}; NSD tolerance {self.tolerance_mm:g} mm"
        return usam_table(groups, rows, footer, per_case)

    def write_csv(self, path: str | Path) -> tuple[Path, Path]:
        """Write the pooled table to ``path`` and the per-case rows next to it (``<stem>_per_case.csv``)."""
        from procto.io import write_csv

        path = Path(path)
        case_path = path.with_name(path.stem + "_per_case" + (path.suffix or ".csv"))
        for p, rows in ((path, self.rows()), (case_path, self.case_rows())):
            write_csv(p, rows, float_format=".6f")
        return path, case_path


# ---------------------------------------------------------------------------------------------- running a model
def predict_dataset(model, dataset, setting: str = "none", *, batch_size: int = 8, seed: int = 0, device=None,
                    box_mode: str = "union", point_strategy: str = "random", point_label_mode: str = "positive",
                    on_batch: Callable[[int], None] | None = None):
    """Yield ``(index, prediction (S, S) uint8, reference (S, S) uint8)`` for every slice of a
    :class:`procto.preprocess.care.CareDataset`, with prompts of ``setting`` made from the reference
    (slice ``i``'s prompts are seeded by ``(seed, i)``)."""
    import torch

    from procto.preprocess.prompts import batch_prompts
    from procto.util import resolve_device

    mode, k = parse_setting(setting)
    device = resolve_device(device) if device is not None else next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        n = len(dataset)
        for start in range(0, n, batch_size):
            idx = list(range(start, min(n, start + batch_size)))
            items = [dataset[i] for i in idx]
            images = torch.stack([it["image"] for it in items]).to(device)
            labels = torch.stack([it["label"] for it in items])
            prompts = batch_prompts(labels, mode, max(k, 1), seed=[(int(seed), i) for i in idx],
                                    box_mode=box_mode, point_strategy=point_strategy,
                                    point_label_mode=point_label_mode)
            prompts = {key: torch.as_tensor(v, device=device) for key, v in prompts.items()}
            with torch.no_grad():
                logits = model(images, **prompts)
            pred = logits.argmax(dim=1).to(torch.uint8).cpu().numpy()
            for j, i in enumerate(idx):
                yield i, pred[j], labels[j].numpy().astype(np.uint8)
            if on_batch is not None:
                on_batch(len(idx))
    finally:
        model.train(was_training)


def evaluate_usam(model, dataset, settings: Iterable[str] = DEFAULT_SETTINGS, *, classes: Sequence[int] = (1, 2),
                  tolerance_mm: float = 2.0, pixel_mm: Sequence[float] | None = None, seed: int = 0,
                  batch_size: int = 8, device=None, box_mode: str = "union", point_strategy: str = "random",
                  point_label_mode: str | None = None,
                  progress: Callable[[int], None] | None = None) -> USamEvaluation:
    """Evaluate ``model`` on a :class:`~procto.preprocess.care.CareDataset` for each prompt setting.

    Args:
        settings: prompt settings (:func:`parse_setting`): ``none``, ``points1``, ``points3``, ``points5``, ``boxes``.
        classes: foreground classes (1 normal rectum, 2 tumour).
        tolerance_mm: NSD tolerance.
        pixel_mm: in-plane pixel size for NSD when the dataset has no case geometry (default 1 mm).
        seed: prompt seed.
        box_mode, point_strategy: how boxes / points are made (:func:`procto.preprocess.prompts.sample_prompts`).
        point_label_mode: ``"positive"`` (default, the authors') or ``"class"`` — what the model was trained with
            (:attr:`procto.infer.usam.USamPredictor.point_label_mode`, from the checkpoint).
        progress: called with the number of slices done after every batch.
    """
    import time

    t0 = time.perf_counter()
    settings = parse_settings(list(settings))
    point_label_mode = point_label_mode or "positive"
    fallback = tuple(float(v) for v in (pixel_mm or (1.0, 1.0)))
    if len(fallback) == 1:
        fallback = fallback * 2
    results = {}
    for s in settings:
        pooled = {c: _Acc() for c in classes}
        cases: dict[str, dict[int, _Acc]] = {}
        n = 0
        for i, pred, ref in predict_dataset(model, dataset, s, batch_size=batch_size, seed=seed, device=device,
                                            box_mode=box_mode, point_strategy=point_strategy,
                                            point_label_mode=point_label_mode, on_batch=progress):
            item = dataset.items[i]
            spacing = dataset.pixel_mm(item.case) if hasattr(dataset, "pixel_mm") else None
            spacing = spacing or fallback
            per_case = cases.setdefault(item.case, {c: _Acc() for c in classes})
            for c in classes:
                p, r = pred == c, ref == c
                pooled[c].add(p, r, spacing, tolerance_mm)
                per_case[c].add(p, r, spacing, tolerance_mm)
            n += 1
        per_case_scores = {}
        for case, accs in cases.items():
            per_case_scores[case] = {c: a.scores() for c, a in accs.items() if a.pred + a.ref > 0}
        results[s] = SettingResult(s, {c: a.scores() for c, a in pooled.items()}, per_case_scores, n)
    n_cases = len({it.case for it in dataset.items})
    return USamEvaluation(results, tuple(classes), float(tolerance_mm), n_cases, len(dataset),
                          time.perf_counter() - t0)


__all__ = [
    "CLASS_NAMES",
    "DEFAULT_SETTINGS",
    "parse_setting",
    "parse_settings",
    "setting_title",
    "SettingResult",
    "USamEvaluation",
    "predict_dataset",
    "evaluate_usam",
]
