"""Training protocol of the volumetric T2/T3 staging CNN (f-rMC5 + bilinear encoding + focal/triplet loss).

What the paper says, and what this module does with it:

* Data. "we start our experiment from the x-y localized setting (around the rectum and tumor) and resize along the
  first and second axes to create 256 × 256 × N pixel volumes" — each case is cropped in-plane around its rectum +
  tumour mask (:func:`procto.preprocess.crop_around_mask`, ``margin_mm``, square) and resized to ``size``
  (256 × 256 by default; smaller for tests); ``depth`` slices centred on the mask are kept (the slice axis is array
  axis 0 — the sagittal slices of a rectal MRI).  Slices are never interpolated.  Batches need one ``N``, so volumes
  with fewer slices are zero padded and the padding slices are masked out of the depth aggregation.
* "we apply N4ITK to correct the intensity inhomogeneity" — :func:`procto.preprocess.n4_bias_correction` (``n4``);
  intensities are then clipped to the 0.5–99.5 percentiles of the crop and z-scored (the paper does not say how it
  normalises; this is our choice).
* Augmentation: "elastic transformation, optical distortion, grid distortion, random shift, random scale, random
  rotate, random crop, horizontal flip, CLAHE, random brightness, random contrast, motion blur, median blur, and
  Gaussian blur" — applied here slice-consistently to the whole volume (one in-plane deformation for all slices, so
  the inter-slice relationship the 3D layers model is kept): in-plane affine (shift, scale, rotate, random
  crop-and-resize) + one of elastic / grid / optical distortion as a smooth in-plane displacement field, horizontal
  flip (image columns, array axis 2), brightness, contrast, and one of Gaussian / median / motion blur in-plane.
  CLAHE is left out (a per-slice 8-bit histogram operation with no volumetric counterpart).  Every random draw comes
  from a generator seeded by ``(seed, epoch, position in the epoch)``.
* "we perform oversampling" (T2:T3 = 168:399 in the paper) — every epoch the minority class is resampled with
  replacement up to the majority class count.
* "Stochastic Gradient Descent (SGD) with initial learning rate of 0.01 and applied weight decay with ratio (λ)
  0.01" — :class:`torch.optim.SGD` (lr 0.01, weight decay 0.01).  The paper states no momentum and no schedule; we use
  momentum 0.9 (``momentum``) and cosine decay from the initial rate (``schedule``), both configurable.
* Slice-level then volume-level training.  Feature extractors are trained on slice-level labels: "we assign the
  pathologically confirmed cancer stage of an MR volume to all of its representative slice(s)" and "From the outputted
  slice-wise cancer stage probabilities, we choose only the probabilities for the representative slices to train the
  feature extractor".  Radiologists picked "one to three representative slices"; here the ``representative`` slices
  with the largest tumour area are used.  The depth aggregation is then evaluated "Using the best performing
  objective function" on top of that extractor: volume-level training of the whole network (``slice_epochs`` slice-
  level epochs, then ``epochs`` volume-level epochs).  The bilinear feature gets its own linear classifier; as in
  the bilinear-CNN recipe the paper cites (Lin et al.: classifier first, then end-to-end fine-tuning) it is
  initialised by logistic regression on the training volumes' features when the volume level starts
  (``warm_start_head``) and trained at ``head_lr`` (default 100 × ``lr``): its inputs are l2-normalised 65,536-d
  vectors whose directions differ little between volumes, so from a random start at lr 0.01 it would stay at 0.5.
* Loss: focal (γ = 2) + triplet (margin 0.2, batch-hard online mining) — :class:`~procto.train.staging_losses.
  JointStagingLoss` with ``supplementary`` ``"triplet"`` / ``"center"`` / None and ``loss_weight``; the triplet
  loss acts on the representative slices' features (slice level) or the aggregated volume feature (volume level).
* "to report the final predictions performance, we follow the test-time augmentation procedure from Wu et al." —
  the T3 probability is the mean over the identity and the horizontal flip (``tta``).
* "We perform 10-fold cross-validation ... and report the performance score of hold-out set"; "we report mean and
  standard deviation of average area-under-curve (AUC), accuracy, sensitivity, and specificity over ten folds" —
  :func:`cross_validate_staging` (stratified by T stage, seeded) and :func:`format_cv_table` (Tables 2–4 layout:
  Method, AUC, ACC, Recall(T2), Recall(T3)).

Determinism: the model is initialised from ``seed`` and every epoch's sampling and augmentation depend only on
``(seed, epoch)``, so a run resumed from an epoch checkpoint (model, optimizer, scheduler, epoch) ends with the same
weights as an uninterrupted run.
"""

from __future__ import annotations

import csv
import io
import math
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from procto.errors import InputError
from procto.io import Volume, atomic_output, write_text_atomic

__all__ = [
    "CHECKPOINT_FORMAT",
    "CV_COLUMNS",
    "StagingConfig",
    "StagingRecord",
    "StagingSample",
    "augment_volume",
    "build_staging_model",
    "cross_validate_staging",
    "find_staging_cases",
    "format_cv_table",
    "load_checkpoint",
    "load_staging_samples",
    "method_name",
    "predict_probabilities",
    "prepare_sample",
    "prepare_volume",
    "read_stages_csv",
    "representative_slices",
    "save_checkpoint",
    "staging_metrics",
    "train_staging",
]

CHECKPOINT_FORMAT = "procto-staging-1"
#: Columns of the paper's Tables 2–4.
CV_COLUMNS = ("Method", "AUC", "ACC", "Recall(T2)", "Recall(T3)")
STAGES = ("T2", "T3")  # index = target (T3 is the positive class)


# ---------------------------------------------------------------------------------------------------- configuration
@dataclass
class StagingConfig:
    """Everything that defines a staging run (saved in checkpoints; inference reuses the preprocessing part)."""

    # model
    variant: str = "rmc5"
    aggregation: str = "bilinear"
    # preprocessing
    size: tuple[int, int] = (256, 256)
    depth: int = 16
    margin_mm: float = 10.0
    crop_on: str = "rectum"
    n4: bool = True
    n4_shrink: int = 4
    # training
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
    representative: int = 3
    oversample: bool = True
    augment: bool = True
    tta: bool = True
    warm_start_head: bool = True
    threshold: float = 0.5
    seed: int = 0
    tumour_label: int = 2

    def __post_init__(self) -> None:
        self.size = tuple(int(s) for s in self.size)  # type: ignore[assignment]
        if len(self.size) != 2 or min(self.size) < 32:
            raise InputError(f"size must be two integers >= 32 (the network strides by 32), got {self.size}")
        if self.depth < 1:
            raise InputError(f"depth must be >= 1, got {self.depth}")
        if self.slice_epochs < 0 or self.epochs < 0:
            raise InputError("epochs must be >= 0")
        if self.batch_size < 2:
            raise InputError("batch_size must be >= 2 (BatchNorm and the triplet loss need pairs)")
        if self.schedule not in ("cosine", "constant"):
            raise InputError(f"schedule must be 'cosine' or 'constant', got {self.schedule!r}")
        if self.crop_on not in ("rectum", "tumour"):
            raise InputError(f"crop_on must be 'rectum' or 'tumour', got {self.crop_on!r}")
        if self.supplementary in ("none", ""):
            self.supplementary = None
        if self.supplementary not in (None, "triplet", "center"):
            raise InputError(f"supplementary must be 'triplet', 'center' or None, got {self.supplementary!r}")

    @property
    def total_epochs(self) -> int:
        return self.slice_epochs + self.epochs

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["size"] = list(self.size)
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "StagingConfig":
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


def method_name(config: StagingConfig) -> str:
    """Row label of the paper's tables, e.g. ``"f-rMC5+Bilinear+Triplet"``."""
    from procto.nets.aggregation import canonical_aggregation
    from procto.nets.staging import PAPER_NAMES, canonical_variant

    agg = {"avg": "AVP", "max": "MXP", "attention": "Att", "bilinear": "Bilinear"}[canonical_aggregation(config.aggregation)]
    loss = {"triplet": "+Triplet", "center": "+Center", None: ""}[config.supplementary]
    return f"{PAPER_NAMES[canonical_variant(config.variant)]}+{agg}{loss}"


# ---------------------------------------------------------------------------------------------------- data
@dataclass
class StagingRecord:
    """One case on disk: image, rectum/tumour label map (optional) and T stage."""

    case_id: str
    image: Path
    label: Path | None
    t_stage: str


@dataclass
class StagingSample:
    """One preprocessed case, ready for the network.

    ``image`` ``(depth, H, W)`` float32; ``valid`` ``(depth,)`` real (True) vs padding slices; ``representative``
    ``(depth,)`` the slices trained at slice level; ``target`` 1 = T3, 0 = T2.
    """

    case_id: str
    image: np.ndarray
    valid: np.ndarray
    representative: np.ndarray
    target: int

    @property
    def t_stage(self) -> str:
        return STAGES[self.target]


_CASE_COLUMNS = ("case", "case_id", "id", "name", "subject", "identifier")
_STAGE_COLUMNS = ("t_stage", "stage", "t", "tstage", "label", "t_category")
_IMAGE_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".mha", ".mhd")


def _stage_value(text: str, where: str) -> str:
    t = str(text).strip().upper()
    if t in ("T2", "2", "0"):
        return "T2"
    if t in ("T3", "3", "1"):
        return "T3"
    raise InputError(f"T stage must be T2 or T3, got {text!r}", where)


def read_stages_csv(path: str | Path) -> dict[str, str]:
    """``{case: "T2" | "T3"}`` from a CSV with a case column (case, case_id, id ...) and a stage column (t_stage,
    stage ...)."""
    path = Path(path)
    try:
        rows = list(csv.DictReader(path.open(newline="")))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise InputError(f"cannot read stage table: {exc}", path) from None
    if not rows:
        raise InputError("stage table has no rows", path)
    header = {h.strip().lower(): h for h in rows[0].keys() if h}
    case_col = next((header[c] for c in _CASE_COLUMNS if c in header), None)
    stage_col = next((header[c] for c in _STAGE_COLUMNS if c in header), None)
    if case_col is None or stage_col is None:
        raise InputError(f"stage table needs a case and a t_stage column, has {list(rows[0].keys())}", path)
    return {r[case_col].strip(): _stage_value(r[stage_col], str(path)) for r in rows if r.get(case_col)}


def _find_file(folder: Path, stems: Iterable[str]) -> Path | None:
    for stem in stems:
        for suffix in _IMAGE_SUFFIXES:
            p = folder / f"{stem}{suffix}"
            if p.is_file():
                return p
    return None


def _locate(root: Path, case: str, kind: str) -> Path | None:
    if kind == "image":
        places = [("imagesTr", [f"{case}_0000", case]), ("imagesTs", [f"{case}_0000", case]),
                  ("images", [case, f"{case}_0000"]), ("", [f"{case}_image", f"{case}_0000", f"{case}_img", case]),
                  (case, ["image", "img", "t2", case])]
    else:
        places = [("labelsTr", [case]), ("labelsTs", [case]), ("labels", [case]), ("masks", [case]),
                  ("", [f"{case}_label", f"{case}_seg", f"{case}_mask"]), (case, ["label", "seg", "mask"])]
    for sub, stems in places:
        folder = root / sub if sub else root
        if folder.is_dir():
            found = _find_file(folder, stems)
            if found is not None:
                return found
    return None


def find_staging_cases(folder: str | Path, require_labels: bool = True) -> list[StagingRecord]:
    """Cases of a staging data folder: a ``stages.csv`` (case → T2/T3) next to the images and label maps.

    Layouts found: nnU-Net raw (``imagesTr/<case>_0000.nii.gz``, ``labelsTr/<case>.nii.gz``), flat or foldered NIfTI
    (``images/<case>.nii.gz`` + ``labels/<case>.nii.gz``, ``<case>_image`` + ``<case>_label``, ``<case>/image`` +
    ``<case>/label``); NRRD/MHA work too.  ``stages.csv`` may sit in ``folder`` or one level below (e.g. the
    nnU-Net dataset folder ``procto phantom`` writes).
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError("data folder not found", folder)
    tables = [folder / "stages.csv"] if (folder / "stages.csv").is_file() else sorted(folder.glob("*/stages.csv"))
    if not tables:
        raise InputError("no stages.csv (case, t_stage) found in the data folder", folder)
    if len(tables) > 1:
        raise InputError(f"several stages.csv below the data folder: {', '.join(str(t) for t in tables)}", folder)
    table = tables[0]
    stages = read_stages_csv(table)
    roots = [table.parent] + ([folder] if folder != table.parent else [])
    records = []
    for case, stage in stages.items():
        image = next((p for r in roots if (p := _locate(r, case, "image")) is not None), None)
        if image is None:
            raise InputError(f"no image found for case {case!r}", folder)
        label = next((p for r in roots if (p := _locate(r, case, "label")) is not None), None)
        if label is None and require_labels:
            raise InputError(f"no rectum/tumour label map found for case {case!r} (needed to localise the rectum)",
                             folder)
        records.append(StagingRecord(case, image, label, stage))
    return records


def representative_slices(label: np.ndarray | None, valid: np.ndarray, k: int = 3, tumour_label: int = 2) -> np.ndarray:
    """The ``k`` slices (axis 0) with the largest tumour area — "one to three representative slices that best
    reflect the clinical state"; without tumour voxels the slices with the largest mask area; without a label map
    the central real slice."""
    depth = valid.shape[0]
    chosen = np.zeros(depth, dtype=bool)
    if label is not None:
        for mask in (label == tumour_label, label != 0):
            area = mask.reshape(depth, -1).sum(axis=1) * valid
            if area.max() > 0:
                order = np.argsort(-area, kind="stable")
                chosen[[i for i in order[:k] if area[i] > 0]] = True
                return chosen
    real = np.flatnonzero(valid)
    chosen[real[len(real) // 2]] = True
    return chosen


def _normalise(array: np.ndarray) -> np.ndarray:
    lo, hi = np.percentile(array, [0.5, 99.5])
    x = np.clip(array.astype(np.float32), lo, hi)
    sd = float(x.std())
    return ((x - float(x.mean())) / (sd if sd > 1e-6 else 1.0)).astype(np.float32)


def prepare_volume(
    image: Volume, mask: Volume | np.ndarray | None, config: StagingConfig, label: Volume | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Preprocess one volume as in training: N4 (``config.n4``), in-plane crop around ``mask`` (whole field of view
    when None), resize to ``config.size``, ``config.depth`` slices (zero padded), intensity normalisation.

    Returns ``(image (depth, H, W) float32, valid (depth,) bool, label (depth, H, W) or None)``; ``label`` (same grid
    as ``image``) is cropped the same way, with nearest-neighbour resizing.
    """
    from procto.io import check_same_geometry
    from procto.preprocess.crop import crop_around_mask, crop_box, depth_window, resize_volume
    from procto.preprocess.n4 import n4_bias_correction

    if config.n4:
        image = n4_bias_correction(image, shrink_factor=config.n4_shrink)  # type: ignore[assignment]
    depth = int(config.depth)
    n = image.shape[0]
    if mask is not None:
        mask_arr = np.asarray(mask.array if isinstance(mask, Volume) else mask)
        if config.crop_on == "tumour" and np.any(mask_arr == config.tumour_label):
            mask_arr = mask_arr == config.tumour_label
        else:
            mask_arr = mask_arr != 0
        if isinstance(mask, Volume):
            check_same_geometry(image, mask, names=("image", "mask"))
        crop = lambda v, pad: crop_around_mask(v, mask_arr, config.margin_mm, square=True, depth=depth, pad_value=pad)
        zs = np.flatnonzero(mask_arr.reshape(n, -1).any(axis=1)) if mask_arr.any() else np.array([0])
        start, _ = depth_window(n, depth, (zs[0] + zs[-1]) / 2.0)
    else:  # no localisation: the whole field of view, squared, central slices
        h, w = image.shape[1:]
        side = max(h, w)
        y0, x0 = (h - side) // 2, (w - side) // 2
        start, stop = depth_window(n, depth, (n - 1) / 2.0)
        crop = lambda v, pad: crop_box(v, (start, y0, x0), (stop, y0 + side, x0 + side), pad)
    valid = np.zeros(depth, dtype=bool)
    valid[max(0, -start):min(depth, n - start)] = True
    img = crop(image.with_array(image.array.astype(np.float32, copy=False)), 0.0)
    img = resize_volume(img, config.size, interpolation="linear")
    arr = img.array.astype(np.float32)
    norm = _normalise(arr[valid]) if valid.any() else arr
    out = np.zeros_like(arr)
    out[valid] = norm
    lab = None
    if label is not None:
        lab = resize_volume(crop(label, 0), config.size, interpolation="nearest").array
    return out, valid, lab


def prepare_sample(
    case_id: str, image: Volume, label: Volume | None, t_stage: str, config: StagingConfig
) -> StagingSample:
    """A :class:`StagingSample` from an image, its rectum/tumour label map (localisation + representative slices)
    and its T stage."""
    arr, valid, lab = prepare_volume(image, label, config, label=label)
    rep = representative_slices(lab, valid, config.representative, config.tumour_label)
    return StagingSample(case_id, arr, valid, rep, STAGES.index(_stage_value(t_stage, case_id)))


def load_staging_samples(
    records: Sequence[StagingRecord], config: StagingConfig, on_case: Callable[[str], None] | None = None
) -> list[StagingSample]:
    """Read and preprocess every record."""
    from procto.io import check_same_geometry, read_image, read_label

    samples = []
    for rec in records:
        image = read_image(rec.image)
        label = read_label(rec.label) if rec.label is not None else None
        if label is not None:
            check_same_geometry(image, label, names=(str(rec.image), str(rec.label)))
        samples.append(prepare_sample(rec.case_id, image, label, rec.t_stage, config))
        if on_case is not None:
            on_case(rec.case_id)
    return samples


# ---------------------------------------------------------------------------------------------------- augmentation
def _uniform(g, lo: float, hi: float) -> float:
    import torch

    return lo + (hi - lo) * float(torch.rand((), generator=g))


def _chance(g, p: float) -> bool:
    import torch

    return float(torch.rand((), generator=g)) < p


def _displacement(g, h: int, w: int):
    """A smooth in-plane displacement field ``(H, W, 2)`` in normalised coordinates: one of elastic (fine random
    field), grid distortion (coarse random grid) or optical (radial barrel/pincushion) distortion."""
    import torch
    import torch.nn.functional as F

    kind = int(torch.randint(0, 3, (), generator=g))
    if kind == 2:  # optical distortion: r' = r (1 + k r²)
        k = _uniform(g, -0.1, 0.1)
        ys = torch.linspace(-1, 1, h)
        xs = torch.linspace(-1, 1, w)
        yy, xx = torch.meshgrid(ys, xs, indexing="ij")
        r2 = xx ** 2 + yy ** 2
        return torch.stack((xx * k * r2, yy * k * r2), dim=-1)
    cells, limit = (8, 0.03) if kind == 0 else (4, 0.05)  # elastic: fine and small; grid: coarse and larger
    coarse = (torch.rand(1, 2, cells, cells, generator=g) * 2 - 1) * limit
    field_ = F.interpolate(coarse, size=(h, w), mode="bicubic", align_corners=True)
    return field_[0].permute(1, 2, 0)


def _blur(x, g):
    """One of Gaussian, median or motion blur, in-plane, on ``(D, H, W)``.

    Kernel sizes are those of the paper's 256 × 256 crops (albumentations-like: Gaussian σ 0.5–1.5 px, median 3 or
    5 px, motion 3–7 px) scaled to the crop size actually used, so a blur removes the same physical detail at any
    ``size``; one that shrinks below a pixel is skipped (e.g. at 48 × 48 a 3-px median would erase 5-px structures).
    """
    import torch
    import torch.nn.functional as F

    d, h, w = x.shape
    scale = min(h, w) / 256.0
    kind = int(torch.randint(0, 3, (), generator=g))
    sigma = _uniform(g, 0.5, 1.5) * scale
    median = (3, 5)[int(torch.randint(0, 2, (), generator=g))] * scale
    length = _uniform(g, 3.0, 7.0) * scale
    angle = _uniform(g, 0, math.pi)
    if kind == 1:  # median
        k = int(round(median)) // 2 * 2 + 1
        if k < 3:
            return x
        patches = F.unfold(F.pad(x[:, None], (k // 2,) * 4, mode="replicate"), k)
        return patches.median(dim=1).values.view(d, h, w)
    if kind == 0:  # Gaussian
        if sigma < 0.3:
            return x
        radius = max(1, int(math.ceil(3 * sigma)))
        r = torch.arange(-radius, radius + 1, dtype=torch.float32)
        k1 = torch.exp(-(r ** 2) / (2 * sigma ** 2))
        kernel = torch.outer(k1, k1)
    else:  # motion blur: a line of ``length`` pixels at a random angle
        if length < 2:
            return x
        radius = int(math.ceil((length - 1) / 2))
        kernel = torch.zeros(2 * radius + 1, 2 * radius + 1)
        for t in torch.linspace(-(length - 1) / 2, (length - 1) / 2, int(math.ceil(length)) * 2):
            kernel[int(round(radius + float(t) * math.sin(angle))), int(round(radius + float(t) * math.cos(angle)))] = 1.0
    kernel = (kernel / kernel.sum())[None, None]
    pad = kernel.shape[-1] // 2
    return F.conv2d(F.pad(x[:, None], (pad,) * 4, mode="replicate"), kernel)[:, 0]


def augment_volume(x, valid, g):
    """The paper's training augmentations on one ``(D, H, W)`` float tensor (z-scored), slice-consistent.

    Spatial (one bilinear resampling): horizontal flip (p 0.5), shift ±6.25 % / scale ±10 % / rotate ±15° (p 0.5),
    random crop of 85–100 % of the side resized back (p 0.3), one of elastic / grid / optical distortion (p 0.3).
    Intensity: brightness ±0.2 sd (p 0.5), contrast ×[0.8, 1.2] (p 0.5), one of Gaussian / median / motion blur
    (p 0.2).  ``valid`` marks real slices (padding stays zero).  ``g``: a seeded ``torch.Generator``.
    """
    import torch
    import torch.nn.functional as F

    d, h, w = x.shape
    theta = torch.eye(3)
    spatial = False
    if _chance(g, 0.5):  # horizontal flip
        theta = theta @ torch.diag(torch.tensor([-1.0, 1.0, 1.0]))
        spatial = True
    if _chance(g, 0.5):  # shift, scale, rotate
        a = math.radians(_uniform(g, -15, 15))
        s = _uniform(g, 0.9, 1.1)
        tx, ty = _uniform(g, -0.125, 0.125), _uniform(g, -0.125, 0.125)  # ±6.25 % of the side (coords span 2)
        m = torch.tensor([[math.cos(a) / s, -math.sin(a) / s, tx], [math.sin(a) / s, math.cos(a) / s, ty], [0, 0, 1.0]])
        theta = theta @ m
        spatial = True
    if _chance(g, 0.3):  # random crop, resized back to the full size
        c = _uniform(g, 0.85, 1.0)
        cx, cy = _uniform(g, -(1 - c), 1 - c), _uniform(g, -(1 - c), 1 - c)
        theta = theta @ torch.tensor([[c, 0, cx], [0, c, cy], [0, 0, 1.0]])
        spatial = True
    disp = None
    if _chance(g, 0.3):
        disp = _displacement(g, h, w)
        spatial = True
    if spatial:
        grid = F.affine_grid(theta[:2][None], [1, 1, h, w], align_corners=False)
        if disp is not None:
            grid = grid + disp[None]
        x = F.grid_sample(x[:, None], grid.expand(d, h, w, 2), mode="bilinear", padding_mode="reflection",
                          align_corners=False)[:, 0]
    if _chance(g, 0.5):  # brightness
        x = x + _uniform(g, -0.2, 0.2)
    if _chance(g, 0.5):  # contrast
        mean = x[valid].mean() if bool(valid.any()) else x.mean()
        x = (x - mean) * _uniform(g, 0.8, 1.2) + mean
    if _chance(g, 0.2):
        x = _blur(x, g)
    return x * valid.to(x.dtype)[:, None, None]


# ---------------------------------------------------------------------------------------------------- model, checkpoint
def build_staging_model(config: StagingConfig):
    """The :class:`~procto.nets.staging.StagingNet` of ``config`` (initialised from ``config.seed``)."""
    import torch

    from procto.nets.staging import StagingNet

    torch.manual_seed(int(config.seed))
    model = StagingNet(config.variant, config.aggregation)
    model.staging_config = config  # type: ignore[attr-defined]  # used by procto.infer.staging
    return model


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> None:
    """``torch.save`` atomically (a crash never leaves a half-written checkpoint)."""
    import torch

    with atomic_output(path, suffix=".pt") as tmp:
        torch.save(state, tmp)


def load_checkpoint(path: str | Path, map_location: str = "cpu"):
    """``(model in eval mode, config, state dict)`` from a staging checkpoint written by :func:`train_staging`."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise InputError("checkpoint not found", path)
    try:
        state = torch.load(path, map_location=map_location, weights_only=False)
    except Exception as exc:  # noqa: BLE001 — any unpickling problem is a bad input file
        raise InputError(f"not a readable checkpoint ({type(exc).__name__}: {exc})", path) from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise InputError(f"not a procto staging checkpoint (expected format {CHECKPOINT_FORMAT!r})", path)
    config = StagingConfig.from_dict(state["config"])
    model = build_staging_model(config)
    model.load_state_dict(state["model"])
    model.eval()
    return model, config, state


# ---------------------------------------------------------------------------------------------------- training
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
        parts = [np.concatenate([g, rng.choice(g, most - len(g), replace=True)]) if len(g) < most else g for g in groups]
        idx = np.concatenate(parts)
    return rng.permutation(idx)


def _batch(samples: Sequence[StagingSample], ids: Sequence[int], augment: bool, seed: int, epoch: int, pos: int):
    import torch

    xs, valids = [], []
    for j, i in enumerate(ids):
        x = torch.from_numpy(samples[i].image)
        v = torch.from_numpy(samples[i].valid)
        if augment:
            g = torch.Generator().manual_seed(_seed_for(seed, epoch, 2, pos + j))
            x = augment_volume(x, v, g)
        xs.append(x)
        valids.append(v)
    rep = torch.stack([torch.from_numpy(samples[i].representative) for i in ids])
    y = torch.tensor([samples[i].target for i in ids], dtype=torch.float32)
    return torch.stack(xs)[:, None], torch.stack(valids), rep, y


def _write_log(path: Path, history: list[dict[str, Any]]) -> None:
    if not history:
        return
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(history[0]))
    writer.writeheader()
    writer.writerows(history)
    write_text_atomic(path, buf.getvalue())


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
    """Train a staging network on ``samples`` with the paper's protocol (module docstring).

    Args:
        samples: preprocessed cases (:func:`load_staging_samples`).
        config: the run's settings.
        out_dir: where ``last.pt`` (checkpoint after every epoch), ``model.pt`` (final) and ``log.csv`` go; None
            keeps everything in memory.
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
    import torch

    if len(samples) < 2:
        raise InputError("training needs at least two cases")
    dev = torch.device(device or "cpu")
    targets = np.array([s.target for s in samples])
    model = build_staging_model(config).to(dev)
    slice_loss, volume_loss = _losses(config, model)
    slice_loss.to(dev)
    volume_loss.to(dev)
    head = list(model.head.parameters()) if model.head is not None else []
    head_ids = {id(p) for p in head}
    body = [p for p in model.parameters() if id(p) not in head_ids]
    body += list(slice_loss.parameters()) + list(volume_loss.parameters())
    groups = [{"params": body, "lr": config.lr}]
    if head:
        groups.append({"params": head, "lr": _head_lr(config)})
    optimizer = torch.optim.SGD(groups, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay)
    total_steps = max(1, config.total_epochs * _steps_per_epoch(targets, config))
    if config.schedule == "cosine":
        factor = lambda step: 0.5 * (1 + math.cos(math.pi * min(step, total_steps) / total_steps))  # noqa: E731
    else:
        factor = lambda step: 1.0  # noqa: E731
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)

    out = Path(out_dir) if out_dir is not None else None
    history: list[dict[str, Any]] = []
    start_epoch = 0
    if resume:
        ckpt_path = Path(resume) if not isinstance(resume, bool) else (out / "last.pt" if out else None)
        if ckpt_path is None:
            raise InputError("resume=True needs out_dir")
        _, saved_config, state = load_checkpoint(ckpt_path)
        if saved_config.to_dict() != config.to_dict():
            raise InputError("the checkpoint was written with different settings; resume with the same ones", ckpt_path)
        if "optimizer" not in state:
            raise InputError("a final model.pt holds no optimizer state; resume from last.pt", ckpt_path)
        model.load_state_dict(state["model"])
        slice_loss.load_state_dict(state["slice_loss"])
        volume_loss.load_state_dict(state["volume_loss"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        start_epoch = int(state["epoch"])
        history = list(state.get("history", []))

    def snapshot(epoch: int, with_optimizer: bool) -> dict[str, Any]:
        state = {
            "format": CHECKPOINT_FORMAT, "config": config.to_dict(), "epoch": epoch, "history": list(history),
            "model": model.state_dict(), "slice_loss": slice_loss.state_dict(), "volume_loss": volume_loss.state_dict(),
        }
        if with_optimizer:
            state["optimizer"] = optimizer.state_dict()
            state["scheduler"] = scheduler.state_dict()
        return state

    last = config.total_epochs if stop_after is None else min(config.total_epochs, int(stop_after))
    aux_name = config.supplementary or "supplementary"
    for epoch in range(start_epoch, last):
        phase = "slice" if epoch < config.slice_epochs else "volume"
        loss_fn = slice_loss if phase == "slice" else volume_loss
        if phase == "volume" and epoch == config.slice_epochs and config.warm_start_head and model.head is not None:
            warm_start_head(model, samples, config.batch_size)
        model.train()
        order = _epoch_order(targets, config.seed, epoch, config.oversample)
        t0 = time.perf_counter()
        sums = {"loss": 0.0, "focal": 0.0, "aux": 0.0, "correct": 0.0, "n": 0.0}
        for pos in range(0, len(order), config.batch_size):
            ids = order[pos:pos + config.batch_size]
            if len(ids) < 2:  # a single-case batch: BatchNorm and the triplet miner need two
                continue
            x, valid, rep, y = (t.to(dev) for t in _batch(samples, ids, config.augment, config.seed, epoch, pos))
            output = model(x, valid)
            if phase == "slice":  # only the representative slices' probabilities train the extractor
                sel = rep & valid
                logits, feats = output.slice_logits[sel], output.slice_features[sel]
                tgt = y[:, None].expand_as(sel)[sel]
            else:
                logits, feats, tgt = output.logit, output.feature, y
            total, parts = loss_fn(logits, tgt, feats, return_parts=True)
            optimizer.zero_grad(set_to_none=True)
            total.backward()
            optimizer.step()
            scheduler.step()
            k = float(len(ids))
            sums["loss"] += float(total.detach()) * k
            sums["focal"] += float(parts["focal"]) * k
            sums["aux"] += float(parts.get(aux_name, 0.0)) * k
            sums["correct"] += float(((logits.detach() > 0).float() == tgt).float().mean()) * k
            sums["n"] += k
            if on_step is not None:
                on_step()
        n = max(sums["n"], 1.0)
        row = {
            "epoch": epoch + 1, "phase": phase, "lr": round(optimizer.param_groups[0]["lr"], 8),
            "loss": round(sums["loss"] / n, 6), "focal": round(sums["focal"] / n, 6),
            aux_name: round(sums["aux"] / n, 6), "train_acc": round(sums["correct"] / n, 4),
            "seconds": round(time.perf_counter() - t0, 2),
        }
        history.append(row)
        if out is not None:
            save_checkpoint(out / "last.pt", snapshot(epoch + 1, True))
            _write_log(out / "log.csv", history)
        if on_epoch is not None:
            on_epoch(row)

    checkpoint = None
    if out is not None and last == config.total_epochs:
        checkpoint = out / "model.pt"
        save_checkpoint(checkpoint, snapshot(last, False))
    model.eval()
    return TrainResult(model, config, history, checkpoint)


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


def _steps_per_epoch(targets: np.ndarray, config: StagingConfig) -> int:
    n = len(_epoch_order(targets, config.seed, 0, config.oversample))
    full, rest = divmod(n, config.batch_size)
    return full + (1 if rest >= 2 else 0)


# ---------------------------------------------------------------------------------------------------- prediction
def predict_probabilities(
    model, images: Sequence[np.ndarray], valids: Sequence[np.ndarray], *, tta: bool = True, batch_size: int = 8
) -> np.ndarray:
    """T3 probabilities of preprocessed volumes ``(D, H, W)``; with ``tta`` the mean over the identity and the
    horizontal flip (array axis 2 — the augmentation used in training)."""
    import torch

    model.eval()
    dev = next(model.parameters()).device
    probs = []
    with torch.no_grad():
        for pos in range(0, len(images), batch_size):
            x = torch.stack([torch.from_numpy(np.asarray(a, dtype=np.float32)) for a in images[pos:pos + batch_size]])
            v = torch.stack([torch.from_numpy(np.asarray(m, dtype=bool)) for m in valids[pos:pos + batch_size]])
            x, v = x[:, None].to(dev), v.to(dev)
            p = torch.sigmoid(model(x, v).logit)
            if tta:
                p = (p + torch.sigmoid(model(torch.flip(x, dims=[-1]), v).logit)) / 2
            probs.append(p.double().cpu().numpy())
    return np.concatenate(probs) if probs else np.zeros(0)


# ---------------------------------------------------------------------------------------------------- cross-validation
def staging_metrics(y_true: Sequence[int], t3_probability: Sequence[float], threshold: float = 0.5) -> dict[str, float]:
    """AUC, accuracy, recall(T2) (specificity) and recall(T3) (sensitivity) of one hold-out set."""
    from procto.metrics import accuracy, per_class_sensitivity, roc_auc

    y = np.asarray(y_true, dtype=int)
    p = np.asarray(t3_probability, dtype=float)
    pred = (p >= threshold).astype(int)
    recalls = per_class_sensitivity(y, pred, labels=[0, 1])
    auc = roc_auc(y, p) if len(np.unique(y)) == 2 else float("nan")
    return {"auc": auc, "acc": accuracy(y, pred), "recall_t2": recalls[0], "recall_t3": recalls[1]}


@dataclass
class CVResult:
    """Per-fold metrics (``folds``: list of dicts with fold, n_train, n_test, auc, acc, recall_t2, recall_t3),
    hold-out predictions (``predictions``: case, fold, t_stage, t3_probability) and the table row (``row``)."""

    method: str
    folds: list[dict[str, Any]]
    predictions: list[dict[str, Any]]
    row: dict[str, str]
    summary: dict[str, Any]


def cross_validate_staging(
    samples: Sequence[StagingSample],
    config: StagingConfig,
    folds: int = 10,
    *,
    out_dir: str | Path | None = None,
    device: str | None = None,
    on_fold: Callable[[dict[str, Any]], None] | None = None,
    on_epoch: Callable[[dict[str, Any]], None] | None = None,
    on_step: Callable[[], None] | None = None,
) -> CVResult:
    """``folds``-fold cross-validation stratified by T stage (seeded by ``config.seed``): train on the other folds,
    predict the hold-out fold (with TTA), report mean ± sd over folds of AUC, accuracy, recall(T2), recall(T3).

    ``out_dir``: writes ``cv_folds.csv``, ``cv_predictions.csv``, ``cv_table.md`` and each fold's ``log.csv``.
    """
    from sklearn.model_selection import StratifiedKFold

    from procto.metrics import mean_sd

    targets = np.array([s.target for s in samples])
    counts = np.bincount(targets, minlength=2)
    if folds < 2:
        raise InputError(f"folds must be >= 2, got {folds}")
    if counts.min() < folds:
        raise InputError(f"{folds}-fold stratified cross-validation needs at least {folds} cases of each stage, "
                         f"got T2={counts[0]}, T3={counts[1]}")
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=int(config.seed))
    out = Path(out_dir) if out_dir is not None else None
    fold_rows: list[dict[str, Any]] = []
    predictions: list[dict[str, Any]] = []
    for k, (train_idx, test_idx) in enumerate(splitter.split(np.zeros(len(targets)), targets)):
        fold_dir = out / f"fold_{k}" if out is not None else None
        result = train_staging([samples[i] for i in train_idx], config, device=device, on_epoch=on_epoch,
                               on_step=on_step)
        if fold_dir is not None:
            _write_log(fold_dir / "log.csv", result.history)
        test = [samples[i] for i in test_idx]
        probs = predict_probabilities(result.model, [s.image for s in test], [s.valid for s in test],
                                      tta=config.tta, batch_size=config.batch_size)
        metrics = staging_metrics([s.target for s in test], probs, config.threshold)
        row = {"fold": k, "n_train": len(train_idx), "n_test": len(test_idx), **metrics}
        fold_rows.append(row)
        predictions += [{"case": s.case_id, "fold": k, "t_stage": s.t_stage, "t3_probability": round(float(p), 6)}
                        for s, p in zip(test, probs)]
        if on_fold is not None:
            on_fold(row)
    summary = {m: mean_sd([r[m] for r in fold_rows]) for m in ("auc", "acc", "recall_t2", "recall_t3")}
    method = method_name(config)
    table_row = {
        "Method": method,
        "AUC": _fmt(summary["auc"], 1.0, 3),
        "ACC": _fmt(summary["acc"], 100.0, 1),
        "Recall(T2)": _fmt(summary["recall_t2"], 100.0, 1),
        "Recall(T3)": _fmt(summary["recall_t3"], 100.0, 1),
    }
    result = CVResult(method, fold_rows, predictions, table_row, summary)
    if out is not None:
        _write_rows(out / "cv_folds.csv", fold_rows)
        _write_rows(out / "cv_predictions.csv", predictions)
        write_text_atomic(out / "cv_table.md", format_cv_table([table_row]) + "\n")
    return result


def _fmt(value, scale: float, digits: int) -> str:
    """``0.831±0.062`` (AUC) or ``79.3±6.2`` (percentages) as in the paper's tables."""
    if value.mean != value.mean:  # NaN
        return "n/a"
    if value.sd != value.sd:
        return f"{value.mean * scale:.{digits}f}"
    return f"{value.mean * scale:.{digits}f}±{value.sd * scale:.{digits}f}"


def _write_rows(path: Path, rows: list[dict[str, Any]]) -> None:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    write_text_atomic(path, buf.getvalue())


def format_cv_table(rows: Sequence[dict[str, str]]) -> str:
    """Markdown table with the paper's columns (Method, AUC, ACC, Recall(T2), Recall(T3))."""
    lines = ["| " + " | ".join(CV_COLUMNS) + " |", "|" + "---|" * len(CV_COLUMNS)]
    for r in rows:
        lines.append("| " + " | ".join(str(r[c]) for c in CV_COLUMNS) + " |")
    return "\n".join(lines)
