"""CT phantoms in Meply's layouts (paper 004), for CoSAM: the files :mod:`procto.preprocess.meply` reads.

* **2.5D windows** — ``{split}/{case}_{slice:03d}.npz`` with ``img`` (H, W, D) int16 **HU** (not windowed; the reader
  windows [−100, 100] → [0, 1]) and ``label`` (H, W, D) uint8, 1 = a *metastatic* node (benign nodes are in the image
  but not in the label, as Meply labels metastatic nodes only), ``D = window`` (default 15, Meply's) consecutive axial
  slices centred on slice ``slice`` (index ``D // 2``; slices beyond the volume's ends repeat the border slice), H × W
  the volume's (y, x) axes as stored (no transposition); one file per slice where any node, metastatic or benign, is
  present (``slices="nodes"``: Meply's node-bearing samples plus benign-only hard negatives) or per slice
  (``"all"``).  ``caselist_{split}.txt`` lists the file names without ".npz".
* **3D volumes** (optional, MEPLYv2's layout) — ``npz/{case}.npz`` with ``img`` (H, W, D) int16 HU, ``lbl`` (H, W, D)
  uint8 metastatic node instances (ids 1..n_nodes), ``spacing`` in the same (row, column, slice) order;
  ``PRLN/prln_target.csv`` (``pid, target_index, volume, lower z, lower y, lower x, upper z, upper y, upper x`` with a
  header; voxel indices of the (z, y, x) volume, upper bounds exclusive; one row per metastatic node inside the field
  of view) and ``PRLN/annotations.json`` (``{split}_both``: cases with metastatic nodes, ``{split}_normal``: cases
  without — procto's reading of the authors' unexplained keys).

Case lists, the target CSV and ``annotations.json`` are merged with what the folder already holds (the rows of the
cases written now replace their old rows; case lists sorted by case and slice), so train and test splits can be written
by separate calls.  Every file
is written atomically.  Default grid (:data:`MEPLY_GRID`): the facts file's (96, 128, 128) at (1.25, 0.7, 0.7) mm
centred on the tumour (nodes span 2–9 slices there).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi

from procto.errors import InputError
from procto.io.atomic import atomic_output, write_csv, write_text_atomic
from procto.phantom.case import PhantomCase
from procto.preprocess.meply import STORED_WINDOW, TARGET_COLUMNS, read_meply_targets, volume_to_windows

#: make_case options a Meply phantom gets unless given: the facts file's fine, tumour-centred CT grid.
MEPLY_GRID = {"shape": (96, 128, 128), "spacing": (1.25, 0.7, 0.7), "center": "tumour"}
MEPLY_SLICES = ("nodes", "all")


def meply_options(options: dict) -> dict:
    """``options`` for :func:`~procto.phantom.make_case` with :data:`MEPLY_GRID`'s values where none are given."""
    return {**{k: v for k, v in MEPLY_GRID.items() if k not in options}, **options}


def _save_npz(path: Path, **arrays: np.ndarray) -> None:
    with atomic_output(path, suffix=".npz") as tmp:
        np.savez_compressed(tmp, **arrays)


def check_meply_args(window: int, slices: str) -> None:
    """:class:`InputError` for a stored window that is not odd in 5 … 15, or an unknown ``slices``."""
    from procto.preprocess.meply import check_window

    check_window(window)
    if slices not in MEPLY_SLICES:
        raise InputError(f"slices must be one of {', '.join(MEPLY_SLICES)}, got {slices!r}")


def meply_case_windows(case: PhantomCase, window: int = STORED_WINDOW, slices: str = "nodes"
                       ) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """The 2.5D files of one CT phantom: ``(name, img (H, W, D) int16 HU, label (H, W, D) uint8)``."""
    if case.modality != "ct":
        raise InputError(f"the Meply layout is CT; case {case.case_id} is {case.modality}")
    check_meply_args(window, slices)
    metastatic = case.metastatic_nodes().array > 0
    out = []
    for w in volume_to_windows(case.image, case.nodes, window, slices, hu=None):
        img = np.moveaxis(np.rint(w.image), 0, 2).astype(np.int16)
        label = np.moveaxis(metastatic[w.slices], 0, 2).astype(np.uint8)
        out.append((f"{case.case_id}_{w.index:03d}", img, label))
    return out


def case_targets(case: PhantomCase) -> list[dict]:
    """One target CSV row per metastatic node inside the field of view (boxes in (z, y, x) voxels, exclusive)."""
    arr = case.metastatic_nodes().array
    rows = []
    for i, sl in enumerate(ndi.find_objects(arr.astype(np.int64)), start=1):
        if sl is None:
            continue
        lo, hi = [s.start for s in sl], [s.stop for s in sl]
        rows.append(dict(zip(TARGET_COLUMNS, [case.case_id, i, int((arr == i).sum()), *lo, *hi])))
    return rows


def write_meply_case(case: PhantomCase, root: str | Path, split: str, window: int = STORED_WINDOW,
                     slices: str = "nodes", volumes: bool = False) -> dict:
    """Write one case's 2.5D windows (and, with ``volumes``, its 3D npz) under ``root``.  Returns what
    :func:`finish_meply_split` needs: ``case_id``, window ``names``, target rows ``targets``, ``n_nodes``."""
    root = Path(root)
    names = []
    for name, img, label in meply_case_windows(case, window, slices):
        _save_npz(root / split / f"{name}.npz", img=img, label=label)
        names.append(name)
    if volumes:
        order = (1, 2, 0)  # (z, y, x) -> (H, W, D), the README's layout; spacing in the same order
        spacing = np.asarray(case.image.spacing, dtype=np.float64)[list(order)]
        _save_npz(root / "npz" / f"{case.case_id}.npz", img=np.transpose(case.image.array, order).astype(np.int16),
                  lbl=np.transpose(case.metastatic_nodes().array, order).astype(np.uint8), spacing=spacing)
    return {"case_id": case.case_id, "names": names, "targets": case_targets(case) if volumes else [],
            "n_nodes": case.n_nodes}


def _window_key(name: str) -> tuple[str, int]:
    case, _, z = name.rpartition("_")
    return (case, int(z)) if z.isdigit() else (name, -1)


def _merge_lines(path: Path, cases: set[str], new: list[str]) -> list[str]:
    """The case list's names of other cases plus ``new``, sorted by case and slice."""
    old = [ln.strip() for ln in path.read_text().splitlines() if ln.strip()] if path.is_file() else []
    return sorted([ln for ln in old if _window_key(ln)[0] not in cases] + new, key=_window_key)


def finish_meply_split(root: str | Path, split: str, records: list[dict], volumes: bool = False) -> None:
    """Write ``caselist_{split}.txt`` for the cases of ``records`` (from :func:`write_meply_case`) and, with
    ``volumes``, ``PRLN/prln_target.csv`` and ``PRLN/annotations.json``, each merged with the folder's earlier
    content (rows of these cases replaced)."""
    root = Path(root)
    ids = {r["case_id"] for r in records}
    lines = _merge_lines(root / f"caselist_{split}.txt", ids, [n for r in records for n in r["names"]])
    write_text_atomic(root / f"caselist_{split}.txt", "".join(f"{n}\n" for n in lines))
    if not volumes:
        return
    csv_path = root / "PRLN" / "prln_target.csv"
    old = read_meply_targets(csv_path) if csv_path.is_file() else []
    rows = [dict(zip(TARGET_COLUMNS, [t["pid"], t["target_index"], int(t["volume"]), *(int(v) for v in t["box"])]))
            for t in old if t["pid"] not in ids]
    write_csv(csv_path, rows + [row for r in records for row in r["targets"]], TARGET_COLUMNS)
    ann_path = root / "PRLN" / "annotations.json"
    try:
        ann = json.loads(ann_path.read_text()) if ann_path.is_file() else {}
    except (ValueError, UnicodeDecodeError):
        raise InputError("not a readable JSON file", ann_path) from None
    for key in (f"{split}_both", f"{split}_normal"):
        ann[key] = [c for c in ann.get(key, []) if c not in ids]
    for r in records:
        ann[f"{split}_{'both' if r['n_nodes'] else 'normal'}"].append(r["case_id"])
    write_text_atomic(ann_path, json.dumps(ann, indent=1) + "\n")
