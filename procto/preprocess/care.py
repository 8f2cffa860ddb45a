"""The CARE 2D slice format of U-SAM (Zhang et al., Commun. Med. 2025): reading it as a torch Dataset, and making it
from 3D CT volumes with label maps.

CARE layout (the authors' ``dataset/rectum_dataloader.py``)::

    <root>/{split}_npz/<name>.npz        # keys "image" (224×224 float, min–max normalised CT) and "label" (0/1/2)
    <root>/{split}_bbox.csv              # name, foreground box (optional here)

(``<root>/{split}/{split}_npz`` — the authors' own nesting — and a folder holding the ``.npz`` files directly are
accepted too.)  **Arrays are stored transposed**: ``image.T`` is the axial slice as displayed (rows anterior →
posterior), so ``image[i, j]`` is the pixel at column ``i``, row ``j`` of the slice.  Models trained on CARE see the
stored arrays as they are; procto keeps that orientation everywhere (``transpose=True``) so that CARE-trained
weights and procto-made slices agree.  Label values above 2 are read as 2 (as the authors do).

procto writes slices named ``{case}_{z:03d}.npz`` (``z`` = index of the axial slice in the (z, y, x) volume) plus
``{split}_cases.json`` with each case's geometry, so per-slice predictions can be put back into 3D
(:func:`procto.infer.usam.assemble_volume`).  CT slices are made the way the CARE files look: HU window (default
−125 … 275 HU, the authors' window, which reproduces the CARE intensity statistics), min–max normalisation of the
window to [0, 1], cubic resize to 224 × 224 (whose overshoot gives CARE's −0.15 … 1.2 range), labels resized with
nearest neighbour, rectum-containing slices only; the files hold ``image`` and ``label`` as float64, like the real
CARE files.  This is procto's one CARE slice writer (:func:`volume_to_care_slices` + :func:`write_care_split`): the
converter and ``procto phantom --layout care`` (:mod:`procto.phantom.writers`) both write through it.
"""

from __future__ import annotations

import csv
import io
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np
import torch
from scipy import ndimage as ndi

from procto.errors import InputError
from procto.io import Volume, atomic_output, write_csv, write_text_atomic

CARE_SIZE = 224
#: The authors' abdominal soft-tissue window (HU) of CARE slices (mean ≈ 0.14 like the CARE normalisation stats).
CT_WINDOW = (-125.0, 275.0)
#: dtype of ``image`` and ``label`` in the CARE files (the real release stores both as float64).
CARE_DTYPE = np.float64
CLASSES = (1, 2)
_NAME_RE = re.compile(r"^(?P<case>.+?)_(?P<z>\d+)$")


# ------------------------------------------------------------------------------------------------------ reading
def read_care_npz(path: str | Path, *, display: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Read one CARE slice: ``(image float32 (H, W), label uint8 (H, W))`` as stored (transposed); ``display=True``
    transposes both back to the displayed orientation (rows = anterior → posterior)."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as npz:
            if "image" not in npz or "label" not in npz:
                raise InputError(f"a CARE slice needs the keys 'image' and 'label', found {sorted(npz.files)}", path)
            image = np.asarray(npz["image"], dtype=np.float32)
            label = np.asarray(npz["label"])
    except FileNotFoundError:
        raise InputError("file not found", path) from None
    except (OSError, ValueError, EOFError) as exc:
        raise InputError(f"not a readable .npz file ({exc.__class__.__name__}: {exc})", path) from None
    if image.ndim != 2 or label.shape != image.shape:
        raise InputError(f"expected 2D 'image' and 'label' of the same shape, got {image.shape} and {label.shape}", path)
    if not np.isfinite(image).all():
        raise InputError("'image' holds NaN or infinite values", path)
    if not np.isfinite(label).all() or (label < 0).any() or (np.round(label) != label).any():
        raise InputError("'label' must hold non-negative integer class ids", path)
    label = np.minimum(label, 2).astype(np.uint8)  # the authors' 3-class reading: >2 -> 2
    if display:
        return image.T.copy(), label.T.copy()
    return image, label


def parse_slice_name(stem: str) -> tuple[str, int]:
    """``"case7_012"`` → ``("case7", 12)``; a name without a ``_<digits>`` suffix is its own case, slice 0."""
    m = _NAME_RE.match(stem)
    return (m["case"], int(m["z"])) if m else (stem, 0)


def find_care_split(root: str | Path, split: str | None = "train") -> Path:
    """The folder holding the ``.npz`` slices of ``split`` under a CARE ``root`` (see the module docstring)."""
    root = Path(root)
    if not root.is_dir():
        raise InputError("CARE folder not found", root)
    candidates = [root / f"{split}_npz", root / split / f"{split}_npz"] if split else []
    candidates.append(root)
    for c in candidates:
        if c.is_dir() and any(c.glob("*.npz")):
            return c
    where = f"{split}_npz/ or " if split else ""
    raise InputError(f"no CARE slices found (expected {where}.npz files)", root)


def care_splits(root: str | Path) -> list[str]:
    """The splits present under a CARE root (``train``, ``test``, ``val`` … from ``{split}_npz`` folders)."""
    root = Path(root)
    return sorted(p.name[: -len("_npz")] for p in root.glob("*_npz") if p.is_dir() and any(p.glob("*.npz")))


def read_case_geometry(folder: str | Path) -> dict[str, dict]:
    """Case geometries from the ``{split}_cases.json`` written by :func:`write_care_split` next to (or inside) the
    slice folder; ``{}`` if there is none (e.g. the real CARE release)."""
    folder = Path(folder)
    split = folder.name[: -len("_npz")] if folder.name.endswith("_npz") else None
    names = [f"{split}_cases.json"] if split else []
    names.append("cases.json")
    for base in (folder.parent, folder):
        for name in names:
            p = base / name
            if p.is_file():
                try:
                    return json.loads(p.read_text())
                except json.JSONDecodeError as exc:
                    raise InputError(f"not valid JSON ({exc})", p) from None
    return {}


def _random_rot_flip(image, label, rng):
    k = int(rng.integers(0, 4))
    axis = int(rng.integers(0, 2))
    image = np.flip(np.rot90(image, k), axis=axis)
    label = np.flip(np.rot90(label, k), axis=axis)
    return np.ascontiguousarray(image), np.ascontiguousarray(label)


def _random_rotate(image, label, rng, max_degrees: float = 20.0):
    angle = float(rng.uniform(-max_degrees, max_degrees))
    image = ndi.rotate(image, angle, order=1, reshape=False, mode="nearest")
    label = ndi.rotate(label, angle, order=0, reshape=False, mode="constant", cval=0)
    return image, label


def augment_slice(image: np.ndarray, label: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """The authors' online augmentation: with p = 0.5 a random 90° rotation plus a random flip, otherwise with
    p = 0.5 a random rotation by −20 … 20° (image bilinear, label nearest)."""
    if rng.uniform() > 0.5:
        return _random_rot_flip(image, label, rng)
    if rng.uniform() > 0.5:
        return _random_rotate(image, label, rng)
    return image, label


def resize_slice(array: np.ndarray, size: int | Sequence[int], order: int) -> np.ndarray:
    """Resize a 2D array to ``size`` (int = square) with spline ``order`` (3 images, 0 labels), as CARE does."""
    shape = (int(size), int(size)) if np.isscalar(size) else tuple(int(s) for s in size)
    if tuple(array.shape) == shape:
        return array
    factors = (shape[0] / array.shape[0], shape[1] / array.shape[1])
    out = ndi.zoom(array, factors, order=order, grid_mode=False)
    if out.shape != shape:  # rounding of zoom's output shape
        out = out[: shape[0], : shape[1]]
        out = np.pad(out, [(0, shape[0] - out.shape[0]), (0, shape[1] - out.shape[1])], mode="edge")
    return out


def _bbox_table(folder: Path) -> dict[str, bool]:
    """``{slice name: has foreground}`` from the split's ``{split}_bbox.csv`` (next to or above the npz folder);
    empty when there is none or it cannot be read."""
    split = folder.name[: -len("_npz")] if folder.name.endswith("_npz") else None
    if not split:
        return {}
    for base in (folder.parent, folder):
        p = base / f"{split}_bbox.csv"
        if p.is_file():
            try:
                with p.open(newline="") as f:
                    rows = list(csv.reader(f))[1:]
                return {r[0]: r[1].strip() not in ("", "[]") for r in rows if len(r) >= 2}
            except (OSError, UnicodeDecodeError, csv.Error):
                return {}
    return {}


@dataclass(frozen=True)
class CareItem:
    """One slice of a :class:`CareDataset`."""

    path: Path
    case: str
    z: int


class CareDataset(torch.utils.data.Dataset):
    """CARE slices as a torch ``Dataset``.

    Items are dicts: ``image`` float32 ``(3, S, S)`` (the stored slice, repeated to 3 channels, CARE orientation),
    ``label`` int64 ``(S, S)``, ``case`` (str), ``z`` (slice index, from ``{case}_{z}.npz``; 0 otherwise),
    ``index`` (position in the dataset).  Prompts are not made here: the training loop samples them per batch from
    ``label`` (:func:`procto.preprocess.prompts.batch_prompts`).

    Args:
        root: CARE root (``{split}_npz`` inside) or a folder of ``.npz`` files.
        split: "train", "test", … or None for a plain folder.
        img_size: model input size; slices of another size are resized (cubic image, nearest label).
        augment: the authors' random rotation/flip (training).
        skip_empty: drop slices without foreground (the authors' training set has none).
        cases: only these case ids.
        seed: seed of the augmentation (per item, combined with torch's per-worker seed).
    """

    def __init__(self, root: str | Path, split: str | None = "train", *, img_size: int = CARE_SIZE,
                 augment: bool = False, skip_empty: bool = False, cases: Iterable[str] | None = None,
                 seed: int = 0) -> None:
        self.folder = find_care_split(root, split)
        self.split = split
        self.img_size = int(img_size)
        self.augment = bool(augment)
        self.seed = int(seed)
        wanted = None if cases is None else {str(c) for c in cases}
        items = []
        for p in sorted(self.folder.glob("*.npz")):
            case, z = parse_slice_name(p.stem)
            if wanted is not None and case not in wanted:
                continue
            items.append(CareItem(p, case, z))
        if skip_empty:
            boxes = _bbox_table(self.folder)  # the split's box CSV says which slices are empty without reading them
            items = [it for it in items if (boxes[it.path.stem] if it.path.stem in boxes
                                            else bool(read_care_npz(it.path)[1].any()))]
        if not items:
            raise InputError("no usable CARE slices" + (" with foreground" if skip_empty else ""), self.folder)
        items.sort(key=lambda it: (it.case, it.z, it.path.name))
        self.items = items
        self.geometry = read_case_geometry(self.folder)

    def __len__(self) -> int:
        return len(self.items)

    @property
    def cases(self) -> list[str]:
        return sorted({it.case for it in self.items})

    def load(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """The stored ``(image, label)`` of item ``index`` resized to ``img_size`` (no augmentation)."""
        image, label = read_care_npz(self.items[index].path)
        return resize_slice(image, self.img_size, 3), resize_slice(label, self.img_size, 0)

    def __getitem__(self, index: int) -> dict:
        item = self.items[index]
        image, label = read_care_npz(item.path)
        if self.augment:
            rng = np.random.default_rng([self.seed, int(torch.randint(0, 2**31 - 1, ()).item()), index])
            image, label = augment_slice(image, label, rng)
        image = resize_slice(image, self.img_size, 3)
        label = resize_slice(label, self.img_size, 0)
        img = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32))[None].expand(3, -1, -1).contiguous()
        return {"image": img, "label": torch.from_numpy(label.astype(np.int64)), "case": item.case, "z": item.z,
                "index": index}

    def pixel_mm(self, case: str) -> tuple[float, float] | None:
        """In-plane pixel size (mm) of ``case`` at ``img_size`` in the stored orientation, when the case geometry is
        known (``{split}_cases.json``); None otherwise (the real CARE release has no spacing)."""
        g = self.geometry.get(case)
        if not g:
            return None
        _, sy, sx = g["spacing"]
        h, w = g["shape"][1:]
        py, px = sy * h / self.img_size, sx * w / self.img_size
        return (px, py) if g.get("transpose", True) else (py, px)


# ------------------------------------------------------------------------------------- 3D volumes → CARE slices
def window_ct(array: np.ndarray, window: Sequence[float] = CT_WINDOW) -> np.ndarray:
    """Clip HU to ``window`` and min–max normalise the window to [0, 1] (float32)."""
    lo, hi = float(window[0]), float(window[1])
    if not hi > lo:
        raise InputError(f"the HU window needs low < high, got {tuple(window)}")
    return ((np.clip(np.asarray(array, dtype=np.float32), lo, hi) - lo) / (hi - lo)).astype(np.float32)


def rectum_slices(label: np.ndarray, classes: Sequence[int] = CLASSES) -> np.ndarray:
    """Indices of the axial slices (axis 0) of a (z, y, x) label map holding any of ``classes``."""
    lab = np.asarray(label)
    return np.flatnonzero(np.isin(lab, list(classes)).reshape(lab.shape[0], -1).any(axis=1))


@dataclass
class CareSlices:
    """CARE-style slice pairs cut from one volume, with what is needed to put results back into 3D.

    ``images`` float32 ``(N, S, S)`` and ``labels`` uint8 ``(N, S, S)`` (or None) are in the stored CARE orientation
    (``transpose=True``: the transposed axial slices); ``z`` holds the volume slice index of each pair.
    """

    case_id: str
    images: np.ndarray
    labels: np.ndarray | None
    z: np.ndarray
    shape: tuple[int, int, int]  # of the volume (z, y, x)
    spacing: tuple[float, float, float]
    origin: tuple[float, float, float] = (0.0, 0.0, 0.0)
    direction: np.ndarray = field(default_factory=lambda: np.eye(3))
    window: tuple[float, float] = CT_WINDOW
    size: int = CARE_SIZE
    transpose: bool = True

    def __len__(self) -> int:
        return int(len(self.z))

    @property
    def pixel_mm(self) -> tuple[float, float]:
        """Pixel size (mm) of the slices along their stored axes (rows, columns)."""
        _, sy, sx = self.spacing
        py, px = sy * self.shape[1] / self.size, sx * self.shape[2] / self.size
        return (px, py) if self.transpose else (py, px)

    def geometry(self) -> dict:
        """The JSON-able geometry record written to ``{split}_cases.json``."""
        return {"shape": list(self.shape), "spacing": list(self.spacing), "origin": list(self.origin),
                "direction": np.asarray(self.direction).reshape(-1).tolist(), "slices": [int(z) for z in self.z],
                "window": list(self.window), "size": self.size, "transpose": self.transpose}


def prepare_slice(slice_2d: np.ndarray, size: int = CARE_SIZE, window: Sequence[float] | None = CT_WINDOW,
                  transpose: bool = True) -> np.ndarray:
    """One (y, x) axial slice → the CARE-style model input ``(size, size)`` float32: HU window + min–max (skipped
    with ``window=None`` for slices already in [0, 1]), cubic resize, transposition."""
    arr = np.asarray(slice_2d, dtype=np.float32)
    if arr.ndim != 2:
        raise InputError(f"expected a 2D slice, got shape {arr.shape}")
    if window is not None:
        arr = window_ct(arr, window)
    out = resize_slice(arr, size, 3).astype(np.float32)
    return np.ascontiguousarray(out.T) if transpose else out


def volume_to_care_slices(image: Volume, label: Volume | None = None, *, slices: str | Sequence[int] = "rectum",
                          window: Sequence[float] = CT_WINDOW, size: int = CARE_SIZE, transpose: bool = True,
                          classes: Sequence[int] = CLASSES, case_id: str | None = None) -> CareSlices:
    """Cut a (z, y, x) CT volume (HU) and its label map into CARE-style slice pairs.

    Args:
        image: CT volume in HU; axial slices along array axis 0.
        label: label map (0 background, 1 normal rectum, 2 tumour) on the same grid, or None.
        slices: ``"rectum"`` (slices holding ``classes``; needs ``label``), ``"all"``, or explicit indices.
        window: HU window, min–max normalised to [0, 1].
        size: output size (224 in CARE).
        transpose: store the slices transposed, as CARE does.
    """
    arr = np.asarray(image.array)
    lab = None
    if label is not None:
        lab = np.asarray(label.array)
        if lab.shape != arr.shape:
            raise InputError(f"label shape {lab.shape} differs from the image's {arr.shape}")
    if isinstance(slices, str):
        if slices == "rectum":
            if lab is None:
                raise InputError("slices='rectum' needs a label map")
            zs = rectum_slices(lab, classes)
        elif slices == "all":
            zs = np.arange(arr.shape[0])
        else:
            raise InputError(f"slices must be 'rectum', 'all' or a list of indices, got {slices!r}")
    else:
        zs = np.asarray(list(slices), dtype=np.int64)
        if zs.size and (zs.min() < 0 or zs.max() >= arr.shape[0]):
            raise InputError(f"slice indices must lie in 0 … {arr.shape[0] - 1}")
    images = np.zeros((len(zs), size, size), np.float32)
    labels = None if lab is None else np.zeros((len(zs), size, size), np.uint8)
    for i, z in enumerate(zs):
        images[i] = prepare_slice(arr[z], size, window, transpose)
        if labels is not None:
            lz = resize_slice(np.minimum(lab[z], 2).astype(np.uint8), size, 0)
            labels[i] = lz.T if transpose else lz
    return CareSlices(case_id=case_id or str(image.meta.get("case_id", "case")), images=images, labels=labels,
                      z=np.asarray(zs, dtype=np.int64), shape=tuple(arr.shape), spacing=tuple(image.spacing),
                      origin=tuple(image.origin), direction=np.asarray(image.direction), window=tuple(window),
                      size=int(size), transpose=bool(transpose))


def iter_care_npz(slices: CareSlices) -> Iterator[tuple[str, bytes]]:
    """``(file name, npz bytes)`` of each pair: ``{case}_{z:03d}.npz`` with ``image`` and ``label`` as
    :data:`CARE_DTYPE` (float64, like the real CARE files)."""
    for i, z in enumerate(slices.z):
        buf = io.BytesIO()
        lab = slices.labels[i] if slices.labels is not None else np.zeros(slices.images[i].shape, np.uint8)
        np.savez_compressed(buf, image=slices.images[i].astype(CARE_DTYPE), label=lab.astype(CARE_DTYPE))
        yield f"{slices.case_id}_{int(z):03d}.npz", buf.getvalue()


def _box_text(label: np.ndarray) -> str:
    rows = np.flatnonzero(label.any(axis=1))
    if rows.size == 0:
        return "[]"
    cols = np.flatnonzero(label.any(axis=0))
    return f"[{cols[0]}, {rows[0]}, {cols[-1]}, {rows[-1]}]"


def write_care_split(root: str | Path, split: str, cases: Iterable[CareSlices]) -> Path:
    """Write slice pairs to ``root/{split}_npz/`` with ``root/{split}_bbox.csv`` (name, foreground box [x1, y1, x2, y2]
    in stored coordinates, as the authors' loader reads it) and ``root/{split}_cases.json`` (case geometries).
    Existing case records in the JSON are kept (cases can be added in several calls).  Returns the npz folder."""
    root = Path(root)
    folder = root / f"{split}_npz"
    folder.mkdir(parents=True, exist_ok=True)
    geo_path = root / f"{split}_cases.json"
    geometry = json.loads(geo_path.read_text()) if geo_path.is_file() else {}
    csv_path = root / f"{split}_bbox.csv"
    rows = {}
    if csv_path.is_file():
        with csv_path.open(newline="") as f:
            rows = {r[0]: r[1] for r in list(csv.reader(f))[1:] if len(r) >= 2}
    for cs in cases:
        for i, (name, data) in enumerate(iter_care_npz(cs)):
            with atomic_output(folder / name, suffix=".npz") as tmp:
                tmp.write_bytes(data)
            rows[name[: -len(".npz")]] = _box_text(cs.labels[i] > 0) if cs.labels is not None else "[]"
        geometry[cs.case_id] = cs.geometry()
    write_csv(csv_path, ({"name": name, "bbox": rows[name]} for name in sorted(rows)), ["name", "bbox"])
    write_text_atomic(geo_path, json.dumps(geometry, indent=1))
    return folder


def volumes_to_care(root: str | Path, split: str, pairs: Iterable[tuple[str, Volume, Volume]], **options) -> Path:
    """Convert ``(case_id, CT volume, label map)`` triples to CARE slices under ``root`` (rectum slices by default;
    ``options`` go to :func:`volume_to_care_slices`)."""
    return write_care_split(root, split, (volume_to_care_slices(img, lab, case_id=cid, **options)
                                          for cid, img, lab in pairs))


__all__ = [
    "CARE_SIZE",
    "CARE_DTYPE",
    "CT_WINDOW",
    "read_care_npz",
    "parse_slice_name",
    "find_care_split",
    "care_splits",
    "read_case_geometry",
    "augment_slice",
    "resize_slice",
    "CareDataset",
    "window_ct",
    "rectum_slices",
    "CareSlices",
    "prepare_slice",
    "volume_to_care_slices",
    "iter_care_npz",
    "write_care_split",
    "volumes_to_care",
]
