"""Prompts for SAM-style models (U-SAM, the SAM baseline): points and boxes from reference masks, user prompts read
from JSON files, and the mapping of user prompts from the original slice to the model input.

Conventions (SAM's): a point is ``(x, y)`` = (column, row) in pixels of the array it refers to; a box is
``[x1, y1, x2, y2]`` with the corners at the centres of the first and last foreground pixels (inclusive bounds).
Point labels are SAM's: 1 positive, 0 negative, -1 padding (ignored by the model).  A box with NaN coordinates is
padding.

Automatic prompts (training and evaluation, from a reference label map with classes 1 … C):

* :func:`point_prompts` — ``k`` positive points per class inside that class's mask (seeded), padding for a class
  that is absent, so every slice of a batch has ``k · C`` points;
* :func:`box_prompts` — the bounding box of all foreground (``mode="union"``, the authors' single box) or one box
  per class (``mode="class"``), with a fixed ``margin`` and/or a random ``jitter`` of each side (pixels);
* :func:`sample_prompts` / :func:`batch_prompts` — the prompts of a prompt mode (``none``, ``points``, ``boxes``,
  ``both``) for one slice / a batch, ready for ``model(images, points=…, point_labels=…, boxes=…)``.

The authors' code (kanydao/U-SAM) samples points uniformly in each class mask during training and takes evenly
spaced pixels (in raster order) at test time, labels every point positive, and gives one box around the whole
rectum (random 0–4 px margins in training, 2 px at test); these are the defaults here.

User prompts: :func:`load_prompt_file` reads points/boxes given in pixel coordinates of the *original* slices of a
volume; :class:`SliceGeometry` maps them to the model input (resize to ``size`` and, for CARE-oriented models, the
transposition CARE stores its slices with).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import numpy as np

from procto.errors import InputError

PROMPT_MODES = ("none", "points", "boxes", "both")
POINT_STRATEGIES = ("random", "even", "interior")
POINT_LABEL_MODES = ("positive", "class")
BOX_MODES = ("union", "class")


# ------------------------------------------------------------------------------------------------- automatic prompts
def _rng(seed) -> np.random.Generator:
    return seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)


def _check_label(label) -> np.ndarray:
    label = np.asarray(label)
    if label.ndim != 2:
        raise InputError(f"prompts need a 2D label map, got shape {label.shape}")
    return label


def _pick(rows: np.ndarray, cols: np.ndarray, k: int, strategy: str, rng: np.random.Generator,
          mask: np.ndarray | None = None) -> np.ndarray:
    """``k`` (x, y) points among the pixels ``(rows, cols)`` (raster order)."""
    n = rows.size
    if strategy == "even":  # the authors' test-time points: evenly spaced in raster order
        idx = (np.arange(k) * n) // k + n // (2 * k)
        idx = np.minimum(idx, n - 1)
    elif strategy == "interior":  # like a user's clicks: away from the boundary
        from scipy.ndimage import distance_transform_edt

        dist = distance_transform_edt(np.pad(mask, 1))[1:-1, 1:-1][rows, cols]
        keep = np.flatnonzero(dist >= 0.5 * dist.max())
        idx = rng.choice(keep, size=k, replace=keep.size < k)
    else:
        idx = rng.choice(n, size=k, replace=n < k)
    return np.stack([cols[idx], rows[idx]], axis=1).astype(np.float32)


def class_point_label(cls: int, classes: Sequence[int] = (1, 2)) -> int:
    """SAM point label of a point of class ``cls`` in ``"class"`` label mode: the first class's points use SAM's
    label 0 embedding, the second class's label 1 (SAM has two point types), so the model can tell a normal-rectum
    click from a tumour click."""
    classes = tuple(classes)
    if len(classes) > 2:
        raise InputError(f"class-coded point labels support 2 classes (SAM has 2 point types), got {classes}")
    if cls not in classes:
        raise InputError(f"point class must be one of {', '.join(map(str, classes))}, got {cls!r}")
    return classes.index(cls)


def point_prompts(label, n_points: int = 3, classes: Sequence[int] = (1, 2), seed=None, strategy: str = "random",
                  pad: bool = True, label_mode: str = "positive") -> tuple[np.ndarray, np.ndarray]:
    """``n_points`` positive points inside each class of ``label`` (a 2D label map).

    Args:
        label: 2D integer label map.
        n_points: points per class (``k``).
        classes: the classes to prompt, in output order.
        seed: int, None or a ``numpy.random.Generator`` (same seed → same points).
        strategy: ``"random"`` (uniform in the mask, the authors' training prompts), ``"even"`` (evenly spaced in
            raster order, the authors' test prompts, no randomness) or ``"interior"`` (uniform among the pixels at
            least half the mask's maximal depth from its border — clicks near the middle).
        pad: an absent class gets ``k`` padding points (label -1) so the output always has ``k · len(classes)``
            points; ``pad=False`` leaves absent classes out.
        label_mode: ``"positive"`` — every point is a positive click (SAM label 1; the authors' prompts);
            ``"class"`` — the label says the class (:func:`class_point_label`: 0 for the first class, 1 for the
            second), procto's option for 2-class interactive models.

    Returns:
        ``coords`` float32 ``(N, 2)`` as (x, y) = (column, row) and ``labels`` int64 ``(N,)`` (SAM labels; -1 padding).
    """
    if label_mode not in POINT_LABEL_MODES:
        raise InputError(f"point label mode must be one of {', '.join(POINT_LABEL_MODES)}, got {label_mode!r}")
    label = _check_label(label)
    if strategy not in POINT_STRATEGIES:
        raise InputError(f"point strategy must be one of {', '.join(POINT_STRATEGIES)}, got {strategy!r}")
    if n_points < 1:
        raise InputError(f"n_points must be >= 1, got {n_points}")
    rng = _rng(seed)
    coords, labels = [], []
    for c in classes:
        mask = label == c
        rows, cols = np.nonzero(mask)
        if rows.size:
            coords.append(_pick(rows, cols, n_points, strategy, rng, mask))
            value = class_point_label(c, classes) if label_mode == "class" else 1
            labels.append(np.full(n_points, value, dtype=np.int64))
        elif pad:
            coords.append(np.zeros((n_points, 2), dtype=np.float32))
            labels.append(-np.ones(n_points, dtype=np.int64))
    if not coords:
        return np.zeros((0, 2), np.float32), np.zeros((0,), np.int64)
    return np.concatenate(coords), np.concatenate(labels)


def _bbox(mask: np.ndarray) -> np.ndarray | None:
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(mask.any(axis=0))
    return np.array([cols[0], rows[0], cols[-1], rows[-1]], dtype=np.float32)


def box_prompts(label, mode: str = "union", classes: Sequence[int] = (1, 2), margin: float = 0.0,
                jitter: float = 0.0, seed=None) -> np.ndarray:
    """Bounding boxes of ``label``'s foreground as ``[x1, y1, x2, y2]`` (pixel centres, inclusive).

    Args:
        mode: ``"union"`` — one box around every class in ``classes`` (the authors' box prompt); ``"class"`` — one
            box per class, in ``classes`` order, NaN rows for absent classes.
        margin: pixels added on every side.
        jitter: each side moves outwards by a random 0 … ``jitter`` pixels (the authors train with 0–4).
        seed: int, None or ``numpy.random.Generator`` for the jitter.

    Returns:
        float32 ``(K, 4)`` — ``K = 1`` for ``"union"`` (NaN when there is no foreground), ``len(classes)`` for
        ``"class"``.  Boxes are clipped to the image.
    """
    label = _check_label(label)
    if mode not in BOX_MODES:
        raise InputError(f"box mode must be one of {', '.join(BOX_MODES)}, got {mode!r}")
    rng = _rng(seed)
    masks = [np.isin(label, list(classes))] if mode == "union" else [label == c for c in classes]
    h, w = label.shape
    out = np.full((len(masks), 4), np.nan, dtype=np.float32)
    for i, m in enumerate(masks):
        box = _bbox(m)
        if box is None:
            continue
        grow = np.full(4, float(margin))
        if jitter > 0:
            grow += rng.uniform(0.0, float(jitter), size=4)
        box = box + np.array([-1, -1, 1, 1]) * grow
        out[i] = np.clip(box, 0, [w - 1, h - 1, w - 1, h - 1])
    return out


@dataclass
class Prompts:
    """The prompts of one image (model-input pixel coordinates); ``None`` where a kind is unused."""

    points: np.ndarray | None = None  # (N, 2) float32 (x, y)
    point_labels: np.ndarray | None = None  # (N,) int64
    boxes: np.ndarray | None = None  # (K, 4) float32

    @property
    def empty(self) -> bool:
        return self.points is None and self.boxes is None


def check_prompt_mode(mode: str) -> str:
    mode = str(mode).lower()
    if mode not in PROMPT_MODES:
        raise InputError(f"prompt mode must be one of {', '.join(PROMPT_MODES)}, got {mode!r}")
    return mode


def sample_prompts(label, mode: str = "points", n_points: int = 3, classes: Sequence[int] = (1, 2), seed=None,
                   training: bool = False, point_strategy: str | None = None, box_mode: str = "union",
                   box_margin: float | None = None, box_jitter: float | None = None,
                   point_label_mode: str = "positive") -> Prompts:
    """The prompts of prompt ``mode`` for one slice with reference ``label``.

    ``training=True`` uses the authors' training settings (random points, boxes with 0–4 px random margins),
    ``False`` their test settings (seeded random points unless ``point_strategy`` says otherwise; fixed 2 px box
    margin).  Modes: ``none``, ``points``, ``boxes``, ``both`` (the authors' prompt modes 0, 2, 1, 3).
    """
    mode = check_prompt_mode(mode)
    rng = _rng(seed)
    out = Prompts()
    if mode in ("points", "both"):
        out.points, out.point_labels = point_prompts(label, n_points, classes, rng, point_strategy or "random",
                                                     label_mode=point_label_mode)
    if mode in ("boxes", "both"):
        margin = box_margin if box_margin is not None else (0.0 if training else 2.0)
        jitter = box_jitter if box_jitter is not None else (4.0 if training else 0.0)
        out.boxes = box_prompts(label, box_mode, classes, margin, jitter, rng)
    return out


def collate_prompts(prompts: Sequence[Prompts]) -> dict:
    """Stack per-image :class:`Prompts` into the keyword arguments of the SAM/U-SAM ``forward`` (numpy arrays).

    Images with fewer points are padded with label -1; fewer boxes with NaN boxes.  Kinds that no image uses are
    left out (``{}`` = no prompts).
    """
    out: dict = {}
    b = len(prompts)
    n_pts = max((0 if p.points is None else len(p.points)) for p in prompts) if prompts else 0
    if n_pts:
        coords = np.zeros((b, n_pts, 2), np.float32)
        labels = -np.ones((b, n_pts), np.int64)
        for i, p in enumerate(prompts):
            if p.points is not None and len(p.points):
                n = len(p.points)
                coords[i, :n] = p.points
                labels[i, :n] = 1 if p.point_labels is None else p.point_labels
        out["points"], out["point_labels"] = coords, labels
    n_box = max((0 if p.boxes is None else len(p.boxes)) for p in prompts) if prompts else 0
    if n_box:
        boxes = np.full((b, n_box, 4), np.nan, np.float32)
        for i, p in enumerate(prompts):
            if p.boxes is not None and len(p.boxes):
                boxes[i, : len(p.boxes)] = p.boxes
        out["boxes"] = boxes
    return out


def batch_prompts(labels, mode: str = "points", n_points: int = 3, classes: Sequence[int] = (1, 2), seed=None,
                  training: bool = False, **options) -> dict:
    """:func:`sample_prompts` for each label map of ``labels`` ``(B, H, W)`` (numpy or torch), collated with
    :func:`collate_prompts`.  ``seed``: one generator for the batch (int/None/Generator) or a sequence of per-image
    seeds (deterministic evaluation)."""
    labels = labels.detach().cpu().numpy() if hasattr(labels, "detach") else np.asarray(labels)
    if check_prompt_mode(mode) == "none":
        return {}
    if isinstance(seed, (list, tuple, np.ndarray)):
        seeds = list(seed)
        if len(seeds) != len(labels):
            raise InputError(f"got {len(seeds)} seeds for {len(labels)} images")
    else:
        rng = _rng(seed)
        seeds = [rng] * len(labels)
    return collate_prompts([sample_prompts(lab, mode, n_points, classes, s, training, **options)
                            for lab, s in zip(labels, seeds)])


# ---------------------------------------------------------------------------------------- original slice ↔ model input
@dataclass(frozen=True)
class SliceGeometry:
    """How an original 2D slice of shape ``(height, width)`` becomes the ``size × size`` model input.

    The slice is resized (pixel centres mapped linearly: ``u = (x + 0.5) · size / width − 0.5``) and, with
    ``transpose=True`` (CARE orientation: the CARE files store every slice transposed, so models trained on them
    see ``slice.T``), transposed.  Points and boxes are (x, y) = (column, row) of the original slice.
    """

    height: int
    width: int
    size: int = 224
    transpose: bool = True

    @property
    def scale(self) -> tuple[float, float]:
        """(sx, sy): model pixels per original pixel along x (columns) and y (rows)."""
        return self.size / self.width, self.size / self.height

    def points_to_model(self, points) -> np.ndarray:
        """``(N, 2)`` (x, y) original-slice points → model-input (x, y)."""
        p = np.asarray(points, dtype=np.float64).reshape(-1, 2)
        sx, sy = self.scale
        u = (p[:, 0] + 0.5) * sx - 0.5
        v = (p[:, 1] + 0.5) * sy - 0.5
        out = np.stack([v, u], axis=1) if self.transpose else np.stack([u, v], axis=1)
        return np.clip(out, 0, self.size - 1).astype(np.float32)

    def boxes_to_model(self, boxes) -> np.ndarray:
        """``(K, 4)`` [x1, y1, x2, y2] original-slice boxes → model-input boxes (NaN rows stay NaN)."""
        b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        lo = self.points_to_model(b[:, :2])
        hi = self.points_to_model(b[:, 2:])
        out = np.concatenate([np.minimum(lo, hi), np.maximum(lo, hi)], axis=1)
        out[np.isnan(b).any(axis=1)] = np.nan
        return out.astype(np.float32)

    def points_from_model(self, points) -> np.ndarray:
        """Inverse of :meth:`points_to_model` (without the clipping)."""
        p = np.asarray(points, dtype=np.float64).reshape(-1, 2)
        if self.transpose:
            p = p[:, ::-1]
        sx, sy = self.scale
        return np.stack([(p[:, 0] + 0.5) / sx - 0.5, (p[:, 1] + 0.5) / sy - 0.5], axis=1).astype(np.float32)


# ------------------------------------------------------------------------------------------------- user prompt files
@dataclass
class SlicePrompts:
    """User prompts of one slice in original-slice pixel coordinates."""

    points: list = field(default_factory=list)  # [(x, y)]
    point_labels: list = field(default_factory=list)  # SAM labels (1 positive, 0 negative)
    point_classes: list = field(default_factory=list)  # class of each point (informational; 0 = unspecified)
    boxes: list = field(default_factory=list)  # [[x1, y1, x2, y2]]

    def to_model(self, geometry: SliceGeometry, label_mode: str = "positive",
                 classes: Sequence[int] = (1, 2)) -> Prompts:
        """These prompts in the model input's coordinates (points ordered by class, as in training).

        ``label_mode="class"`` (models trained with class-coded points): each point's SAM label comes from its
        class (:func:`class_point_label`), so every point needs a class; ``"positive"`` keeps the given labels."""
        out = Prompts()
        if self.points:
            order = np.argsort(np.asarray(self.point_classes, dtype=np.int64), kind="stable")
            out.points = geometry.points_to_model(np.asarray(self.points, np.float64)[order])
            if label_mode == "class":
                if any(int(c) not in tuple(classes) for c in self.point_classes):
                    raise InputError("this model reads the class of every point: give \"class\": "
                                     f"{' or '.join(map(str, classes))} for each point")
                out.point_labels = np.asarray([class_point_label(int(c), classes) for c in self.point_classes],
                                              dtype=np.int64)[order]
            else:
                out.point_labels = np.asarray(self.point_labels, dtype=np.int64)[order]
        if self.boxes:
            out.boxes = geometry.boxes_to_model(np.asarray(self.boxes, np.float64))
        return out


_EXAMPLE = ('{"points": [{"slice": 12, "x": 140, "y": 201, "class": 2}], '
            '"boxes": [{"slice": 12, "box": [120, 180, 170, 230]}, {"slices": [10, 14], "box": [118, 178, 172, 232]}]}')


def _number_list(value, n: int, what: str, path) -> list[float]:
    try:
        values = [float(v) for v in value]
    except (TypeError, ValueError):
        values = []
    if len(values) != n or not all(np.isfinite(values)):
        raise InputError(f"{what} must be {n} finite numbers, got {value!r}", path)
    return values


def _slices_of(item: Mapping, path) -> list[int]:
    if "slice" in item:
        z = item["slice"]
        if isinstance(z, bool) or not isinstance(z, (int, float)) or int(z) != z or z < 0:
            raise InputError(f"'slice' must be a non-negative integer, got {z!r}", path)
        return [int(z)]
    if "slices" in item:
        lo, hi = _number_list(item["slices"], 2, "'slices' ([first, last])", path)
        if lo < 0 or hi < lo or int(lo) != lo or int(hi) != hi:
            raise InputError(f"'slices' must be [first, last] slice indices, got {item['slices']!r}", path)
        return list(range(int(lo), int(hi) + 1))
    raise InputError(f"every prompt needs 'slice' (or 'slices': [first, last]); e.g. {_EXAMPLE}", path)


def parse_prompts(data, path=None) -> dict[int, SlicePrompts]:
    """Prompts per slice index from the JSON structure documented in :func:`load_prompt_file`."""
    if isinstance(data, list):  # a bare list: points, or boxes when items have "box"
        data = {"boxes" if data and isinstance(data[0], Mapping) and "box" in data[0] else "points": data}
    if not isinstance(data, Mapping) or not set(data) & {"points", "boxes"}:
        raise InputError(f"expected a JSON object with 'points' and/or 'boxes', e.g. {_EXAMPLE}", path)
    out: dict[int, SlicePrompts] = {}
    for item in data.get("points", []) or []:
        if not isinstance(item, Mapping):
            raise InputError(f"each point must be an object like {{\"slice\": 12, \"x\": 140, \"y\": 201}}, got {item!r}",
                             path)
        if "xy" in item:
            x, y = _number_list(item["xy"], 2, "'xy'", path)
        else:
            x, y = _number_list([item.get("x"), item.get("y")], 2, "a point's 'x' and 'y'", path)
        lab = item.get("label", 1)
        if lab not in (0, 1):
            raise InputError(f"a point's 'label' must be 1 (positive) or 0 (negative), got {lab!r}", path)
        cls = item.get("class", 0)
        if isinstance(cls, bool) or not isinstance(cls, int) or cls < 0:
            raise InputError(f"a point's 'class' must be a non-negative integer, got {cls!r}", path)
        for z in _slices_of(item, path):
            sp = out.setdefault(z, SlicePrompts())
            sp.points.append((x, y))
            sp.point_labels.append(int(lab))
            sp.point_classes.append(int(cls))
    for item in data.get("boxes", []) or []:
        if not isinstance(item, Mapping) or "box" not in item:
            raise InputError(f"each box must be an object like {{\"slice\": 12, \"box\": [x1, y1, x2, y2]}}, got {item!r}",
                             path)
        x1, y1, x2, y2 = _number_list(item["box"], 4, "'box' ([x1, y1, x2, y2])", path)
        if x2 < x1 or y2 < y1:
            raise InputError(f"a box needs x1 <= x2 and y1 <= y2, got {item['box']!r}", path)
        for z in _slices_of(item, path):
            out.setdefault(z, SlicePrompts()).boxes.append([x1, y1, x2, y2])
    return out


def load_prompt_file(path: str | Path) -> dict[int, SlicePrompts]:
    """Read user prompts for a volume from a JSON file, in pixel coordinates of the original axial slices.

    Format (``x`` = column, ``y`` = row of the slice ``array[slice]`` of the (z, y, x) volume)::

        {"points": [{"slice": 12, "x": 140, "y": 201, "class": 2, "label": 1}, ...],
         "boxes":  [{"slice": 12, "box": [x1, y1, x2, y2]},
                    {"slices": [10, 14], "box": [x1, y1, x2, y2]}, ...]}

    ``class`` (optional) orders the points as in training (class 1 first); ``label`` defaults to 1 (positive);
    ``slices: [first, last]`` repeats a prompt on a range of slices.  A bare JSON list is read as points (or boxes
    when its items have ``box``).  Returns ``{slice index: SlicePrompts}``.
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise InputError("prompt file not found", path) from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"not a readable JSON prompt file ({exc.__class__.__name__}: {exc})", path) from None
    return parse_prompts(data, path)


def merge_prompts(*sources: Mapping[int, SlicePrompts]) -> dict[int, SlicePrompts]:
    """Merge per-slice prompt dicts (e.g. a points file and a boxes file)."""
    out: dict[int, SlicePrompts] = {}
    for src in sources:
        for z, sp in src.items():
            dst = out.setdefault(int(z), SlicePrompts())
            dst.points += list(sp.points)
            dst.point_labels += list(sp.point_labels)
            dst.point_classes += list(sp.point_classes)
            dst.boxes += list(sp.boxes)
    return out


def prompts_to_json(prompts: Mapping[int, SlicePrompts]) -> dict:
    """The JSON structure of :func:`load_prompt_file` for ``prompts`` (round trip)."""
    points, boxes = [], []
    for z in sorted(prompts):
        sp = prompts[z]
        for (x, y), lab, cls in zip(sp.points, sp.point_labels, sp.point_classes):
            points.append({"slice": int(z), "x": float(x), "y": float(y), "class": int(cls), "label": int(lab)})
        for b in sp.boxes:
            boxes.append({"slice": int(z), "box": [float(v) for v in b]})
    return {"points": points, "boxes": boxes}


def prompts_from_label(label_volume: np.ndarray, mode: str = "points", n_points: int = 3,
                       classes: Iterable[int] = (1, 2), seed: int = 0, slices: Iterable[int] | None = None,
                       box_margin: float = 2.0) -> dict[int, SlicePrompts]:
    """Simulated user prompts for a (z, y, x) label volume, in original-slice coordinates: per slice with
    foreground, ``n_points`` points per class (seeded) and/or the union box with ``box_margin`` — what a user
    would click; used by tests and evaluation of volume inference."""
    mode = check_prompt_mode(mode)
    classes = tuple(classes)
    vol = np.asarray(label_volume)
    zs = range(vol.shape[0]) if slices is None else slices
    out: dict[int, SlicePrompts] = {}
    for z in zs:
        lab = vol[z]
        if mode == "none" or not np.isin(lab, classes).any():
            continue
        p = sample_prompts(lab, mode, n_points, classes, seed=(int(seed), int(z)), box_margin=box_margin)
        sp = SlicePrompts()
        if p.points is not None:
            keep = p.point_labels >= 0
            sp.points = [tuple(map(float, q)) for q in p.points[keep]]
            sp.point_labels = [1] * int(keep.sum())
            cls_of = np.repeat(np.asarray(classes), n_points)
            sp.point_classes = [int(c) for c in cls_of[keep]]
        if p.boxes is not None:
            sp.boxes = [list(map(float, b)) for b in p.boxes if not np.isnan(b).any()]
        out[int(z)] = sp
    return out


__all__ = [
    "PROMPT_MODES",
    "POINT_STRATEGIES",
    "POINT_LABEL_MODES",
    "BOX_MODES",
    "class_point_label",
    "point_prompts",
    "box_prompts",
    "Prompts",
    "check_prompt_mode",
    "sample_prompts",
    "collate_prompts",
    "batch_prompts",
    "SliceGeometry",
    "SlicePrompts",
    "parse_prompts",
    "load_prompt_file",
    "merge_prompts",
    "prompts_to_json",
    "prompts_from_label",
]
