"""Meply (paper 004): its two file layouts, CT windows for CoSAM's 2.5D detector and per-slice node boxes.

**2.5D layout** (the authors' ``lymph_dataloader.py`` and README)::

    <root>/caselist_{train,test}.txt      # one window name per line, without ".npz"
    <root>/{train,test}/{case}_{slice}.npz  # "img" (H, W, D) and "label" (H, W, D), D = 15 consecutive slices

Each file is one window of ``D`` consecutive axial slices centred on slice ``D // 2`` (Meply: 7 of 15); ``label`` > 0
is a metastatic perirectal node.  :func:`read_meply_window` returns both slice-first, ``(D, H, W)``.  Meply's files
may hold HU or already normalised values (the authors' 2.5D loader applies no HU window); procto's phantom writer
(:mod:`procto.phantom.meply`) stores int16 HU and :class:`MeplyDataset` windows them (``intensity="auto"``: values
already inside [0, 1] are taken as normalised, anything else as HU).

**3D layout** (README of MEPLYv2 and the authors' ``prln_dataset.py``)::

    <root>/npz/{case}.npz                 # "img", "lbl", "spacing" (3,)
    <root>/PRLN/prln_target.csv  # pid, target_index, volume, lower z, lower y, lower x, upper z, upper y, upper x

The README calls ``img`` (H, W, D) while the loader's docstring says D × H × W, and the loader scales array axis ``i``
by ``spacing[i] / target[i]`` with target (1.25, 0.7, 0.7) — so ``spacing`` follows the array's axes.
:func:`read_meply_volume` reads it that way: ``axes="hwd"`` (the README's reading: axis 2 is z, spacing is
(row, column, slice)), ``"dhw"`` (the loader's), or ``"auto"`` (default): the axis whose length differs from two
equal ones is z (512 × 512 × D → ``hwd``), else the axis whose spacing differs from two equal ones, else ``hwd``.
The CSV's boxes are voxel indices of the (z, y, x) volume, upper bounds exclusive (continuous extents, as every
procto box); a header line is optional.

**Windows** (:func:`volume_to_windows`): from any CT :class:`~procto.io.Volume` (array axis 0 = the axial slice axis,
as procto reads a CT) and an optional node instance map of the same geometry: ``window`` consecutive slices centred
on slice ``c`` (centre index ``window // 2``), slices beyond the volume's ends replicated from the border slice, HU
window [−100, 100] → [0, 1] (paper §5.1).  :func:`slice_boxes` gives each instance's 2D box on one slice.

**Dataset** (:class:`MeplyDataset`): the authors' loader (``protocol="paper"``, facts §5) — a centre-slice node
component of ≥ 50 px, a 112-px crop around it (training: random component, random pixel, jitter ±32 px; test: the
first component's centroid), MONAI ``Resized`` to 224 (image ``area``, label ``nearest``), training augmentation
``RandRotate90d`` / ``RandFlipd`` / ``RandAdjustContrastd``, boxes of the centre slice's 8-connected components that
do not touch the crop border, each with a 16-px margin (at 224) — or the whole slice (``protocol="whole"``).
"""

from __future__ import annotations

import csv
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from scipy import ndimage as ndi

from procto.errors import InputError
from procto.io import Volume, check_same_geometry

#: Paper §5.1: CT intensities truncated to [−100, 100] HU, then scaled to [0, 1].
HU_WINDOW = (-100.0, 100.0)
#: Window sizes the detector accepts (Table 3: 5 … 15, odd); the paper's choice and Meply's stored depth.
WINDOW_SIZES = (5, 7, 9, 11, 13, 15)
DEFAULT_WINDOW = 9
STORED_WINDOW = 15
#: The authors' loader: node component ≥ 50 px on the centre slice, 112-px crop jittered ±32 px, resized to 224, boxes
#: with a 16-px margin at 224.
MIN_AREA = 50
CROP = 112
SIZE = 224
JITTER = 32
PAPER_MARGIN = 16.0
PROTOCOLS = ("paper", "whole")
TARGET_COLUMNS = ("pid", "target_index", "volume", "lower z", "lower y", "lower x", "upper z", "upper y", "upper x")
_BAD_NPZ = (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile, zlib.error)


# ------------------------------------------------------------------------------------------------------- helpers
def check_window(window: int) -> int:
    """``window`` as an int; :class:`InputError` unless odd and in 5 … 15."""
    if isinstance(window, bool) or int(window) != window or int(window) not in WINDOW_SIZES:
        raise InputError(f"window must be odd, 5…15, got {window!r}")
    return int(window)


def hu_window(x: Any, lo: float = HU_WINDOW[0], hi: float = HU_WINDOW[1]) -> np.ndarray:
    """Clip ``x`` (HU) to [lo, hi] and scale to [0, 1], float32."""
    if not hi > lo:
        raise InputError(f"the HU window needs lo < hi, got ({lo}, {hi})")
    x = np.asarray(x, dtype=np.float32)
    return ((np.clip(x, lo, hi) - np.float32(lo)) / np.float32(hi - lo)).astype(np.float32)


def slice_boxes(instances: Any, margin: float = 0.0, shape: Sequence[int] | None = None
                ) -> tuple[np.ndarray, np.ndarray]:
    """Each instance's box on one slice: ``(boxes (N, 4) float64 [x1, y1, x2, y2], ids (N,))``, ids ascending.

    Continuous coordinates: ``x1`` = the instance's first column, ``x2`` = its last column + 1 (likewise rows), so a
    one-pixel node at (row 3, column 5) is [5, 3, 6, 4].  ``margin`` (pixels) is added on every side and the box
    clamped to the image: ``shape`` (H, W), default the map's own shape.
    """
    inst = np.asarray(instances)
    if inst.ndim != 2:
        raise InputError(f"slice_boxes needs a 2D instance map, got shape {inst.shape}")
    if inst.size and (not np.issubdtype(inst.dtype, np.integer) or inst.min() < 0):
        raise InputError("slice_boxes needs non-negative integer instance ids")
    h, w = (int(s) for s in (shape if shape is not None else inst.shape))
    boxes, ids = [], []
    if inst.size and inst.max() > 0:
        for i, sl in enumerate(ndi.find_objects(inst.astype(np.int64, copy=False)), start=1):
            if sl is None:
                continue
            ys, xs = sl
            boxes.append([xs.start - margin, ys.start - margin, xs.stop + margin, ys.stop + margin])
            ids.append(i)
    out = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    out[:, 0::2] = np.clip(out[:, 0::2], 0, w)
    out[:, 1::2] = np.clip(out[:, 1::2], 0, h)
    return out, np.asarray(ids, dtype=np.int64)


def components(mask: Any) -> np.ndarray:
    """8-connected components of a 2D mask (``mask > 0``), ids 1…N in raster order (skimage's ``label``), int32."""
    from skimage.measure import label

    return label(np.asarray(mask) > 0, connectivity=2).astype(np.int32)


# ------------------------------------------------------------------------------------------------------- windows
@dataclass
class SliceWindow:
    """One window of :func:`volume_to_windows`.

    Attributes:
        index: the centre slice (array axis 0 of the volume).
        image: (L, H, W) float32 in [0, 1] (or the raw values when ``hu=None``); ``image[L // 2]`` is slice ``index``.
        instances: (H, W) node instance map of the centre slice (the node map's ids), or None without a node map.
        slices: (L,) the volume slice each window slice was taken from (border slices repeat at the volume's ends).
    """

    index: int
    image: np.ndarray
    instances: np.ndarray | None
    slices: np.ndarray


def window_slices(center: int, window: int, n_slices: int) -> np.ndarray:
    """Indices of a ``window`` centred on ``center``, clamped to 0 … n_slices − 1 (border slices replicated)."""
    half = window // 2
    return np.clip(np.arange(center - half, center + half + 1), 0, n_slices - 1)


def volume_to_windows(image: Volume, nodes: Volume | None = None, window: int = DEFAULT_WINDOW, slices: str = "nodes",
                      hu: tuple[float, float] | None = HU_WINDOW) -> list[SliceWindow]:
    """Windows of ``window`` consecutive axial slices of ``image``, one per selected centre slice.

    Args:
        image: a CT volume (array axis 0 = slices).
        nodes: node instance map on the same geometry (or None, then ``slices`` must be "all").
        window: odd, 5 … 15; the centre is at ``window // 2``.  Slices beyond either end of the volume repeat the
            border slice.
        slices: "nodes" = every slice where ``nodes`` > 0 (Meply's samples: node-bearing slices), "all" = every slice.
        hu: the HU window mapped to [0, 1]; None keeps the stored values (as float32).

    Raises:
        InputError: an empty volume, a node map of another geometry, a window larger than the volume's slice count
            or not odd in 5 … 15, an unknown ``slices``.
    """
    window = check_window(window)
    if slices not in ("nodes", "all"):
        raise InputError(f"slices must be 'nodes' or 'all', got {slices!r}")
    if image.array.size == 0:
        raise InputError(f"the CT volume is empty (shape {image.shape})")
    n = image.shape[0]
    if window > n:
        raise InputError(f"window of {window} slices is larger than the volume's {n} slices")
    if nodes is not None:
        check_same_geometry(image, nodes, names=("CT", "node map"))
    elif slices == "nodes":
        raise InputError("slices='nodes' needs a node map")
    arr = np.asarray(image.array)
    values = hu_window(arr, *hu) if hu is not None else arr.astype(np.float32)
    node_arr = None if nodes is None else np.asarray(nodes.array)
    centres = range(n) if slices == "all" else np.flatnonzero(node_arr.reshape(n, -1).max(axis=1) > 0)
    out = []
    for c in centres:
        idx = window_slices(int(c), window, n)
        out.append(SliceWindow(int(c), values[idx], None if node_arr is None else node_arr[int(c)].copy(), idx))
    return out


# ------------------------------------------------------------------------------------------------------- readers
def _load_npz(path: Path, keys: Sequence[str]) -> dict[str, np.ndarray]:
    if not path.is_file():
        raise InputError("file not found", path)
    try:
        with np.load(path, allow_pickle=False) as npz:
            missing = [k for k in keys if k not in npz.files]
            if missing:
                found = ", ".join(sorted(npz.files)) or "none"
                raise InputError(f"missing key(s) {', '.join(missing)} (found {found})", path)
            return {k: np.asarray(npz[k]) for k in keys}
    except InputError:
        raise
    except _BAD_NPZ as exc:
        raise InputError(f"not a readable .npz file ({exc.__class__.__name__}: {exc})", path) from None


def _check_label(label: np.ndarray, path: Path, key: str) -> None:
    if label.size and (not np.isfinite(label).all() or label.min() < 0 or (np.round(label) != label).any()):
        raise InputError(f"'{key}' must hold non-negative integers", path)


def read_meply_window(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """One 2.5D Meply file → ``(image (D, H, W) float32, label (D, H, W) uint8)``, slice-first (stored H × W × D).

    Raises:
        InputError (naming the file): missing or unreadable file, a missing ``img`` / ``label`` key, arrays that are
            not 3D with the same shape, NaN / Inf, negative or fractional labels.
    """
    path = Path(path)
    data = _load_npz(path, ("img", "label"))
    img, label = data["img"], data["label"]
    if img.ndim != 3 or label.shape != img.shape or img.size == 0:
        raise InputError(f"expected 'img' and 'label' of one shape (H, W, D), got {img.shape} and {label.shape}", path)
    if not np.issubdtype(img.dtype, np.number) or not np.isfinite(img).all():
        raise InputError("'img' must hold finite numbers", path)
    _check_label(label, path, "label")
    return np.moveaxis(img, 2, 0).astype(np.float32), np.moveaxis(label, 2, 0).astype(np.uint8)


def _volume_axes(shape: tuple[int, ...], spacing: np.ndarray, axes: str) -> str:
    if axes in ("hwd", "dhw"):
        return axes
    if axes != "auto":
        raise InputError(f"axes must be 'auto', 'hwd' or 'dhw', got {axes!r}")
    for values in (shape, tuple(np.round(spacing, 6))):
        if values[0] == values[1] != values[2]:
            return "hwd"
        if values[1] == values[2] != values[0]:
            return "dhw"
    return "hwd"


def read_meply_targets(path: str | Path, pid: str | None = None) -> list[dict]:
    """Rows of a Meply target CSV (columns :data:`TARGET_COLUMNS`; a header line is optional) as dicts: ``pid``,
    ``target_index`` (int), ``volume`` (voxels), ``box`` (z1, y1, x1, z2, y2, x2) voxel indices; only ``pid``'s
    rows when given.  Raises :class:`InputError` naming the file on a missing file or a malformed row."""
    path = Path(path)
    if not path.is_file():
        raise InputError("file not found", path)
    try:
        with open(path, newline="") as f:
            rows = [[c.strip() for c in r] for r in csv.reader(f) if any(c.strip() for c in r)]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise InputError(f"not a readable CSV file ({exc.__class__.__name__})", path) from None
    out = []
    for line, row in enumerate(rows, start=1):
        if line == 1 and row and row[0].lower() == "pid":
            continue
        try:
            if len(row) < 9:
                raise ValueError
            box = tuple(float(v) for v in row[3:9])
            target = {"pid": row[0], "target_index": int(row[1]), "volume": float(row[2]), "box": box}
        except ValueError:
            raise InputError(f"line {line}: expected {', '.join(TARGET_COLUMNS)}", path) from None
        if pid is None or target["pid"] == pid:
            out.append(target)
    return out


def read_meply_volume(npz: str | Path, csv_path: str | Path | None = None, *, axes: str = "auto"
                      ) -> tuple[Volume, Volume, list[dict]]:
    """One 3D Meply CT → ``(image Volume, label Volume, targets)`` in procto's (z, y, x) order.

    Args:
        npz: ``npz/{case}.npz`` with ``img``, ``lbl`` and ``spacing`` (3,) in the order of the array's axes.
        csv_path: the target CSV (``PRLN/prln_target.csv``); its rows whose ``pid`` is the file's stem become
            ``targets`` (see :func:`read_meply_targets`).  None: no targets.
        axes: how ``img`` is laid out — see the module docstring ("auto", "hwd" as the README says, "dhw").

    Returns:
        the image (stored dtype) and label map (uint8, or uint16 above 255) as :class:`Volume` objects with spacing
        (z, y, x), origin 0 and identity direction, and the case's targets.

    Raises:
        InputError (naming the file): unreadable file, missing key, ``img`` / ``lbl`` not 3D of one shape, a bad
            spacing, NaN / Inf, negative or fractional labels.
    """
    path = Path(npz)
    data = _load_npz(path, ("img", "lbl", "spacing"))
    img, lbl, spacing = data["img"], data["lbl"], np.asarray(data["spacing"], dtype=np.float64).reshape(-1)
    if img.ndim != 3 or lbl.shape != img.shape or img.size == 0:
        raise InputError(f"expected 'img' and 'lbl' of one 3D shape, got {img.shape} and {lbl.shape}", path)
    if spacing.shape != (3,) or not np.isfinite(spacing).all() or (spacing <= 0).any():
        raise InputError(f"'spacing' must hold 3 positive numbers, got {data['spacing'].tolist()}", path)
    if not np.issubdtype(img.dtype, np.number) or not np.isfinite(img).all():
        raise InputError("'img' must hold finite numbers", path)
    _check_label(lbl, path, "lbl")
    order = (2, 0, 1) if _volume_axes(img.shape, spacing, axes) == "hwd" else (0, 1, 2)
    label = np.transpose(lbl, order)
    label = label.astype(np.uint8 if label.size == 0 or label.max() < 256 else np.uint16)
    meta = {"case_id": path.stem, "source_format": "meply npz"}
    image_vol = Volume(np.ascontiguousarray(np.transpose(img, order)), spacing[list(order)], meta=meta)
    label_vol = image_vol.with_array(np.ascontiguousarray(label))
    targets = read_meply_targets(csv_path, path.stem) if csv_path is not None else []
    return image_vol, label_vol, targets


# ------------------------------------------------------------------------------------------------------- dataset
def _parse_name(stem: str) -> tuple[str, int]:
    case, sep, z = stem.rpartition("_")
    return (case, int(z)) if sep and z.isdigit() else (stem, -1)


def _as_unit(img: np.ndarray, intensity: str) -> np.ndarray:
    """A stored window in [0, 1]: HU windowed, or values already normalised kept (``intensity`` auto / hu / unit)."""
    if intensity == "auto":
        intensity = "unit" if img.size and img.min() >= 0.0 and img.max() <= 1.0 else "hu"
    return hu_window(img) if intensity == "hu" else np.clip(img, 0.0, 1.0).astype(np.float32)


def _crop_box(cy: int, cx: int, crop: int, h: int, w: int) -> tuple[int, int, int, int]:
    """The authors' crop of side ``crop`` centred on (cy, cx), shifted to stay inside an (h, w) image."""
    y1 = min(h - crop, max(0, cy - crop // 2))
    x1 = min(w - crop, max(0, cx - crop // 2))
    return y1, x1, y1 + crop, x1 + crop


class MeplyDataset:
    """CoSAM's training / evaluation windows from a 2.5D Meply-layout folder (a torch-style map dataset).

    Args:
        root: the folder with ``caselist_{split}.txt`` and ``{split}/*.npz`` (without a case list: every npz of the
            split folder, sorted).
        split: "train" | "test" (any name with such a folder).
        window: slices per window (odd, 5 … 15), taken around the stored window's centre slice.
        crop: side of the node-centred crop (paper protocol), pixels of the stored slices.
        size: output side (MONAI ``Resized``: image ``area``, label ``nearest``).
        protocol: "paper" — only windows whose centre slice holds a node component of ≥ ``min_area`` px; a ``crop``
            around one (training: a random component, a random pixel in it, the centre jittered ±``jitter`` px and
            redrawn until the component's box lies strictly inside, at most 100 draws, then unjittered; test: the
            first component, its centroid); boxes of the components that do not touch the crop border.  "whole" —
            every window, the full slice, every component's box.
        train: random crops and MONAI augmentation (``RandRotate90d`` p .5 k ≤ 3, ``RandFlipd`` p .5 both axes,
            ``RandAdjustContrastd`` p .5 γ ∈ (0.5, 1.5)); otherwise deterministic.
        seed: seed of that randomness (:meth:`reseed` resets it, e.g. per training step for exact resume).
        margin: box margin in output pixels; default the protocol's (paper 16 px at 224, scaled with ``size``;
            whole 0).
        min_area, jitter: the authors' 50 px and 32 px.
        intensity: "auto" | "hu" | "unit" — how stored values become [0, 1] (module docstring).

    Items (dicts): ``image`` (L, size, size) float32 in [0, 1]; ``label`` (size, size) uint8, the centre slice's nodes
    (binary); ``instances`` (size, size) int32, its 8-connected components; ``boxes`` (N, 4) float32 xyxy at ``size``
    scale with the margin; ``box_ids`` (N,) their component ids; ``case``, ``slice`` (centre slice, from the file
    name ``{case}_{slice}``), ``name``, ``crop`` (y1, x1, y2, x2) in stored pixels.

    Raises:
        InputError: a missing folder or empty split, a bad window / protocol; unreadable files (naming the file).
    """

    def __init__(self, root: str | Path, split: str = "train", window: int = DEFAULT_WINDOW, crop: int = CROP,
                 size: int = SIZE, protocol: str = "paper", train: bool = False, seed: int = 0,
                 margin: float | None = None, min_area: int = MIN_AREA, jitter: int = JITTER,
                 intensity: str = "auto") -> None:
        self.window = check_window(window)
        if protocol not in PROTOCOLS:
            raise InputError(f"protocol must be one of {', '.join(PROTOCOLS)}, got {protocol!r}")
        if intensity not in ("auto", "hu", "unit"):
            raise InputError(f"intensity must be 'auto', 'hu' or 'unit', got {intensity!r}")
        if int(crop) < 1 or int(size) < 1:
            raise InputError(f"crop and size must be positive, got {crop} and {size}")
        self.root, self.split, self.protocol, self.train = Path(root), split, protocol, bool(train)
        self.crop, self.size, self.min_area, self.jitter, self.intensity = int(crop), int(size), int(min_area), \
            int(jitter), intensity
        self.margin = float(margin) if margin is not None else (
            PAPER_MARGIN * self.size / SIZE if protocol == "paper" else 0.0)
        self.files = [f for f in self._list_files() if protocol == "whole" or self._has_node(f)]
        self._aug = self._augmentation() if self.train else None
        self.reseed(seed)

    def _list_files(self) -> list[Path]:
        folder = self.root / self.split
        if not folder.is_dir():
            raise InputError(f"no '{self.split}' folder (Meply layout: {self.split}/*.npz)", self.root)
        caselist = self.root / f"caselist_{self.split}.txt"
        if caselist.is_file():
            names = [ln.strip() for ln in caselist.read_text().splitlines() if ln.strip()]
            return [folder / (n if n.endswith(".npz") else f"{n}.npz") for n in names]
        return sorted(folder.glob("*.npz"))

    def _has_node(self, path: Path) -> bool:
        """Whether the stored window's centre slice holds a node component of >= ``min_area`` px (reads ``label``)."""
        label = _load_npz(path, ("label",))["label"]
        if label.ndim != 3 or label.size == 0:
            raise InputError(f"expected 'label' of shape (H, W, D), got {label.shape}", path)
        _check_label(label, path, "label")
        areas = np.bincount(components(label[..., label.shape[2] // 2]).ravel())[1:]
        return bool((areas >= self.min_area).any())

    @staticmethod
    def _augmentation():
        from monai.transforms import Compose, RandAdjustContrastd, RandFlipd, RandRotate90d

        return Compose([
            RandRotate90d(keys=["image", "label"], prob=0.5, max_k=3),
            RandFlipd(keys=["image", "label"], prob=0.5, spatial_axis=[0, 1]),
            RandAdjustContrastd(keys="image", prob=0.5, gamma=1.5),
        ])

    def reseed(self, seed: int) -> None:
        """Reset the crop and augmentation randomness to ``seed``."""
        self._rng = np.random.default_rng(int(seed))
        if self._aug is not None:
            self._aug.set_random_state(seed=int(seed) % 2 ** 32)

    def __len__(self) -> int:
        return len(self.files)

    def _choose_crop(self, label_c: np.ndarray) -> tuple[int, int, int, int]:
        comp = components(label_c)
        areas = np.bincount(comp.ravel())[1:]
        ids = np.flatnonzero(areas >= self.min_area) + 1
        h, w = label_c.shape
        if self.train:
            k = int(ids[self._rng.integers(len(ids))])
            ys, xs = np.nonzero(comp == k)
            p = int(self._rng.integers(len(ys)))
            cy, cx = int(ys[p]), int(xs[p])
            (by1, bx1), (by2, bx2) = (ys.min(), xs.min()), (ys.max() + 1, xs.max() + 1)
            for _ in range(100):
                dy, dx = (int(v) for v in self._rng.integers(-self.jitter, self.jitter + 1, size=2))
                y1, x1, y2, x2 = _crop_box(cy + dy, cx + dx, self.crop, h, w)
                if by1 > y1 and bx1 > x1 and by2 < y2 and bx2 < x2:
                    return y1, x1, y2, x2
            return _crop_box(cy, cx, self.crop, h, w)
        ys, xs = np.nonzero(comp == int(ids[0]))
        return _crop_box(int(ys.mean()), int(xs.mean()), self.crop, h, w)

    def __getitem__(self, index: int) -> dict:
        if not -len(self) <= index < len(self):
            raise IndexError(index)
        path = self.files[index]
        img, label = read_meply_window(path)
        depth = img.shape[0]
        if depth % 2 == 0 or depth < self.window:
            raise InputError(f"holds {depth} slices; a window of {self.window} needs an odd count >= it", path)
        c = depth // 2
        img = _as_unit(img[c - self.window // 2:c + self.window // 2 + 1], self.intensity)
        label_c = (label[c] > 0).astype(np.uint8)
        if self.protocol == "paper":
            h, w = label_c.shape
            if h < self.crop or w < self.crop:  # pad small slices (0 = the window's floor) so the crop fits
                pad = ((0, max(0, self.crop - h)), (0, max(0, self.crop - w)))
                img, label_c = np.pad(img, ((0, 0), *pad)), np.pad(label_c, pad)
            y1, x1, y2, x2 = self._choose_crop(label_c)
            img, label_c = img[:, y1:y2, x1:x2], label_c[y1:y2, x1:x2]
        else:
            y1, x1, (y2, x2) = 0, 0, label_c.shape
        image, label_out = self._resize_augment(img, label_c)
        instances = components(label_out)
        boxes, ids = slice_boxes(instances, 0.0)
        if self.protocol == "paper":  # components touching the crop border are not references (the authors' rule)
            s = self.size
            keep = (boxes[:, 0] > 0) & (boxes[:, 1] > 0) & (boxes[:, 2] < s) & (boxes[:, 3] < s)
            boxes, ids = boxes[keep], ids[keep]
        boxes[:, :2] = np.maximum(boxes[:, :2] - self.margin, 0)
        boxes[:, 2:] = np.minimum(boxes[:, 2:] + self.margin, self.size)
        case, z = _parse_name(path.stem)
        return {"image": image, "label": label_out, "instances": instances, "boxes": boxes.astype(np.float32),
                "box_ids": ids, "case": case, "slice": z, "name": path.stem, "crop": (y1, x1, y2, x2)}

    def _resize_augment(self, img: np.ndarray, label_c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        from monai.transforms import Resized

        sample = {"image": img, "label": label_c[None].astype(np.float32)}
        if img.shape[1:] != (self.size, self.size):
            sample = Resized(keys=["image", "label"], spatial_size=(self.size, self.size),
                             mode=["area", "nearest"])(sample)
        if self._aug is not None:
            sample = self._aug(sample)
        image = np.clip(np.asarray(sample["image"], dtype=np.float32), 0.0, 1.0)
        label = (np.asarray(sample["label"])[0] > 0.5).astype(np.uint8)
        return np.ascontiguousarray(image), np.ascontiguousarray(label)
