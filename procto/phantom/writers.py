"""Writing phantom cohorts in the layouts procto's methods read.

* ``"nnunet"`` — nnU-Net v2 raw dataset ``Dataset{ID:03d}_{Name}/``: ``imagesTr/{case}_0000.nii.gz``,
  ``labelsTr/{case}.nii.gz``, ``imagesTs/{case}_0000.nii.gz`` (+ ``labelsTs/`` for evaluation, which nnU-Net
  ignores), ``dataset.json`` (``channel_names`` {"0": "CT"} or {"0": "T2"}, ``labels``, ``numTraining``,
  ``file_ending``), and the extra maps AG-CRC / CoSAM need in ``extrasTr/`` / ``extrasTs/``
  (``{case}_nodes.nii.gz``, ``{case}_organs.nii.gz``, ``{case}_layers.nii.gz``).
* ``"care"`` — CARE / U-SAM 2D slices, as U-SAM's ``RectumDataloader`` reads them: ``{split}/{split}_npz/
  {case}_{slice:03d}.npz`` with ``image`` (224×224, min–max normalised axial slice) and ``label`` (224×224, 0/1/2),
  both stored transposed (display ``image.T``) and float64 like the real CARE files, one file per axial slice that
  contains rectum or tumour; ``{split}/{split}_bbox.csv`` lists the slices with their ``[x1, y1, x2, y2]`` box and
  ``{split}/{split}_cases.json`` the case geometries.  Written by procto's one CARE slice writer
  (:func:`procto.preprocess.care.volume_to_care_slices` + :func:`~procto.preprocess.care.write_care_split`): CT
  slices in the authors' window (−125 … 275 HU), cubic resize; MRI slices are axial reformats of the sagittal volume
  windowed to its 0.5–99.5 percentiles.
* ``"nifti"`` — plain folders ``images/``, ``labels/``, ``nodes/``, ``organs/``, ``layers/`` of ``{case}.nii.gz``.
* ``"meply"`` — CoSAM's Meply layouts (CT only; :mod:`procto.phantom.meply`): 2.5D windows
  ``{split}/{case}_{slice}.npz`` (``img`` int16 HU and ``label`` metastatic nodes, H × W × 15) with
  ``caselist_{split}.txt``, plus the 3D layout ``npz/{case}.npz`` and ``PRLN/prln_target.csv``; unless given, the
  grid is :data:`~procto.phantom.meply.MEPLY_GRID` (96 × 128 × 128 at 1.25 × 0.7 × 0.7 mm, centred on the tumour).
  :func:`write_meply` writes one split.

Every layout also gets ``stages.csv`` (case → split, T stage, N category, node count, ...) and ``phantom.json`` (how
the cohort was generated).  Volumes are written with :func:`procto.io.write_image` (atomic); the npz, CSV and JSON
files are written to a temporary file and renamed into place, too.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from procto.errors import InputError
from procto.io.atomic import write_csv, write_text_atomic
from procto.io.image import write_image
from procto.io.volume import Volume
from procto.phantom.case import PhantomCase, check_benign_nodes, cohort_plan, make_case
from procto.phantom.labels import LABELS
from procto.phantom.meply import STORED_WINDOW, check_meply_args, finish_meply_split, meply_options, write_meply_case

if TYPE_CHECKING:
    from procto.preprocess.care import CareSlices

LAYOUTS = ("nnunet", "care", "nifti", "meply")
STAGE_COLUMNS = ("case_id", "split", "modality", "seed", "t_stage", "n_category", "n_nodes", "tumour_length_mm",
                 "circumference_deg", "extramural_depth_mm", "max_node_short_axis_mm")

Progress = bool | Callable[[int, int, str], None]


# ---------------------------------------------------------------------------------------------------------- helpers
def write_stages_csv(rows: list[dict], path: str | Path) -> None:
    """Write the cohort table (columns :data:`STAGE_COLUMNS`, extra keys appended), atomically."""
    columns = list(STAGE_COLUMNS) + sorted({k for r in rows for k in r} - set(STAGE_COLUMNS))
    write_csv(path, rows, columns)


def read_cohort_table(path: str | Path) -> list[dict]:
    """Read a phantom cohort's ``stages.csv`` back as typed rows (``n_nodes`` and ``seed`` as int, the other numeric
    columns as float).  For just case → T stage use :func:`procto.preprocess.staging_data.read_stages_csv`."""
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    for r in rows:
        for k in ("n_nodes", "seed"):
            if r.get(k, "") != "":
                r[k] = int(r[k])
        for k in ("tumour_length_mm", "circumference_deg", "extramural_depth_mm", "max_node_short_axis_mm"):
            if r.get(k, "") != "":
                r[k] = float(r[k])
    return rows


def _write_json(obj, path: Path) -> None:
    write_text_atomic(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def canonical_axial(volume: Volume) -> np.ndarray:
    """The array of an axis-aligned volume reoriented to (inferior→superior, anterior→posterior, right→left), so that
    ``[k]`` is an axial slice in the usual display orientation (anterior up, patient's right on the left)."""
    d = np.asarray(volume.direction)
    if not (np.all(np.isin(np.round(d, 6), (-1.0, 0.0, 1.0))) and np.all(np.abs(np.round(d)).sum(0) == 1)):
        raise InputError("canonical_axial needs an axis-aligned volume (direction a signed permutation)")
    axes = [int(np.flatnonzero(np.round(d[c]))[0]) for c in range(3)]  # array axis of physical z, y, x
    arr = np.transpose(volume.array, axes)
    for c in range(3):
        if d[c, axes[c]] < 0:
            arr = np.flip(arr, axis=c)
    return arr


def canonical_volume(volume: Volume) -> Volume:
    """:func:`canonical_axial` with its geometry: the reoriented array as a :class:`Volume` (identity direction,
    spacing and origin of the reoriented axes), so that slices cut from it keep their true pixel size."""
    arr = canonical_axial(volume)
    d = np.round(np.asarray(volume.direction))
    axes = [int(np.flatnonzero(d[c])[0]) for c in range(3)]
    corner = [volume.shape[axes[c]] - 1 if d[c, axes[c]] < 0 else 0 for c in range(3)]
    start = [0, 0, 0]
    for c in range(3):
        start[axes[c]] = corner[c]
    return Volume(arr, tuple(volume.spacing[a] for a in axes), tuple(volume.index_to_physical(start)), np.eye(3),
                  dict(volume.meta))


def care_slices(case: PhantomCase, size: int = 224) -> CareSlices:
    """The CARE slices of a case (every axial slice containing rectum or tumour) made by procto's one CARE slice
    writer (:func:`procto.preprocess.care.volume_to_care_slices`): CT in the authors' HU window, MRI windowed to the
    volume's 0.5–99.5 percentiles; axial slices of the canonical orientation (:func:`canonical_axial`)."""
    from procto.preprocess.care import CT_WINDOW, volume_to_care_slices  # torch is imported there: only when needed

    image, label = canonical_volume(case.image), canonical_volume(case.label)
    window = CT_WINDOW if case.modality == "ct" else tuple(float(v) for v in np.percentile(image.array, [0.5, 99.5]))
    return volume_to_care_slices(image, label, window=window, size=size, case_id=case.case_id)


class _Progress:
    """Progress reporting: None, a rich progress bar (``True``) or a callback ``(done, total, case_id)``."""

    def __init__(self, progress: Progress, total: int, description: str):
        self.callback = progress if callable(progress) else None
        self.bar = None
        self.total = total
        self.done = 0
        if progress is True:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress as RichProgress, TextColumn, \
                TimeRemainingColumn

            self.bar = RichProgress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                                    TimeRemainingColumn(), transient=False)
            self.task = self.bar.add_task(description, total=total)

    def __enter__(self):
        if self.bar is not None:
            self.bar.__enter__()
        return self

    def step(self, case_id: str) -> None:
        self.done += 1
        if self.bar is not None:
            self.bar.advance(self.task)
        if self.callback is not None:
            self.callback(self.done, self.total, case_id)

    def __exit__(self, *exc):
        if self.bar is not None:
            self.bar.__exit__(*exc)
        return False


# ---------------------------------------------------------------------------------------------------------- layouts
def _write_nnunet_case(case: PhantomCase, root: Path, split: str) -> None:
    tag = "Tr" if split == "train" else "Ts"
    write_image(case.image, root / f"images{tag}" / f"{case.case_id}_0000.nii.gz")
    write_image(case.label, root / f"labels{tag}" / f"{case.case_id}.nii.gz")
    for name in ("nodes", "organs", "layers"):
        write_image(getattr(case, name), root / f"extras{tag}" / f"{case.case_id}_{name}.nii.gz")


def _write_nifti_case(case: PhantomCase, root: Path) -> None:
    write_image(case.image, root / "images" / f"{case.case_id}.nii.gz")
    for name, folder in (("label", "labels"), ("nodes", "nodes"), ("organs", "organs"), ("layers", "layers")):
        write_image(getattr(case, name), root / folder / f"{case.case_id}.nii.gz")


def _write_care_case(case: PhantomCase, root: Path, split: str) -> int:
    from procto.preprocess.care import write_care_split

    slices = care_slices(case)
    write_care_split(root / split, split, [slices])
    return len(slices)


def nnunet_dataset_json(modality: str, num_training: int, name: str, extra: dict | None = None) -> dict:
    """The nnU-Net v2 ``dataset.json`` of a phantom dataset."""
    return {
        "channel_names": {"0": "CT" if modality == "ct" else "T2"},
        "labels": dict(LABELS),
        "numTraining": int(num_training),
        "file_ending": ".nii.gz",
        "name": name,
        "description": f"procto synthetic rectal-cancer phantoms ({'CT' if modality == 'ct' else 'T2w MRI'})",
        "reference": "procto.phantom (synthetic data, no patient information)",
        "licence": "CC0-1.0 (synthetic)",
        **(extra or {}),
    }


def write_cohort(out_dir: str | Path, n: int, modality: str = "ct", layout: str = "nnunet", seed: int = 0, *,
                 n_test: int = 0, dataset_id: int = 501, name: str | None = None, progress: Progress = False,
                 t_stage: str | None = None, n_nodes: int | None = None, **options) -> Path:
    """Generate and write a cohort of ``n`` training (+ ``n_test`` test) phantoms.

    Args:
        out_dir: output folder (created).  For ``"nnunet"`` the dataset goes to
            ``out_dir/Dataset{dataset_id:03d}_{name}``; the other layouts write into ``out_dir`` itself.
        n: number of training cases.
        modality: "ct" | "mri".
        layout: "nnunet" | "care" | "nifti" | "meply" (CT; windows of 15 slices, 2.5D and 3D files).
        seed: cohort seed (see :func:`procto.phantom.make_cohort`); test cases continue the same series.
        n_test: number of test cases (nnU-Net ``imagesTs``, CARE ``test/``, ``split`` column "test").
        dataset_id: nnU-Net dataset id (1–999).
        name: dataset name (letters, digits, ``_``, ``-``); default ``ProctoPhantomCT`` / ``ProctoPhantomMRI``.
        progress: ``True`` for a rich progress bar, or a callback ``(done, total, case_id)``.
        t_stage, n_nodes: force for every case.
        **options: passed to :func:`~procto.phantom.make_case` (shape, spacing, noise, benign_nodes, ...).

    Returns:
        the folder written (the nnU-Net dataset folder, or ``out_dir``).

    Raises:
        InputError: unknown layout / modality, bad dataset id or name, negative counts.
    """
    modality = str(modality).lower()
    if layout not in LAYOUTS:
        raise InputError(f"layout must be one of {', '.join(LAYOUTS)}, got {layout!r}")
    if modality not in ("ct", "mri"):
        raise InputError(f"modality must be 'ct' or 'mri', got {modality!r}")
    if layout == "meply":
        if modality != "ct":
            raise InputError(f"the meply layout is CT only, got modality {modality!r}")
        options = meply_options(options)
    if n < 0 or n_test < 0:
        raise InputError(f"case counts must be >= 0, got n={n}, n_test={n_test}")
    name = name or f"ProctoPhantom{modality.upper()}"
    if not name.replace("_", "").replace("-", "").isalnum():
        raise InputError(f"dataset name may hold letters, digits, '_' and '-' only, got {name!r}")
    check_benign_nodes(options.get("benign_nodes"))
    out_dir = Path(out_dir)
    if layout == "nnunet":
        if not (1 <= int(dataset_id) <= 999):
            raise InputError(f"nnU-Net dataset ids run from 1 to 999, got {dataset_id}")
        root = out_dir / f"Dataset{int(dataset_id):03d}_{name}"
    else:
        root = out_dir
    root.mkdir(parents=True, exist_ok=True)

    plan = cohort_plan(n + n_test, modality, seed, t_stage=t_stage, n_nodes=n_nodes)
    rows: list[dict] = []
    meply: dict[str, list[dict]] = {"train": [], "test": []}
    with _Progress(progress, len(plan), f"phantoms ({modality}, {layout})") as bar:
        for i, entry in enumerate(plan):
            split = "train" if i < n else "test"
            case = make_case(entry.seed, modality, t_stage=entry.t_stage, n_nodes=entry.n_nodes,
                             case_id=entry.case_id, **options)
            row = {**case.summary(), "split": split}
            if layout == "nnunet":
                _write_nnunet_case(case, root, split)
            elif layout == "nifti":
                _write_nifti_case(case, root)
            elif layout == "meply":
                meply[split].append(write_meply_case(case, root, split, STORED_WINDOW, "nodes", volumes=True))
                row["n_windows"] = len(meply[split][-1]["names"])
            else:
                row["n_slices"] = _write_care_case(case, root, split)
            rows.append(row)
            bar.step(case.case_id)

    for split, records in meply.items():
        if records:
            finish_meply_split(root, split, records, volumes=True)
    meta = {"generator": "procto.phantom", "modality": modality, "layout": layout, "seed": int(seed),
            "n_train": int(n), "n_test": int(n_test), "t_stage": t_stage, "n_nodes": n_nodes,
            "options": {k: (list(v) if isinstance(v, tuple) else v) for k, v in options.items()}}
    if layout == "nnunet":
        _write_json(nnunet_dataset_json(modality, n, name), root / "dataset.json")
    write_stages_csv(rows, root / "stages.csv")
    _write_json(meta, root / "phantom.json")
    return root


def write_meply(out_dir: str | Path, n_cases: int, seed: int = 0, split: str = "train", window: int = STORED_WINDOW,
                *, start: int = 0, slices: str = "nodes", volumes: bool = False, progress: Progress = False,
                t_stage: str | None = None, n_nodes: int | None = None, **options) -> Path:
    """Write ``n_cases`` CT phantoms as one split of Meply's 2.5D layout (and, with ``volumes``, its 3D layout)
    into ``out_dir`` (see :mod:`procto.phantom.meply` for the files).

    Args:
        out_dir: the Meply root (created); case lists, target CSV, ``annotations.json`` and ``stages.csv`` are merged
            with what it holds.
        n_cases: number of cases, the cohort series ``cohort_plan(n_cases, "ct", seed, start=start)``: give a test
            split ``start`` = the number of training cases so its patients differ.
        seed: cohort seed.
        split: folder name of the split ("train", "test", ...).
        window: stored slices per window (odd, 5 … 15; Meply 15).
        slices: "nodes" (slices with a node, metastatic or benign) or "all".
        volumes: also write ``npz/{case}.npz`` and ``PRLN/prln_target.csv``.
        progress: ``True`` for a rich progress bar, or a callback ``(done, total, case_id)``.
        t_stage, n_nodes: force for every case.
        **options: :func:`~procto.phantom.make_case` options (``benign_nodes``, ``noise``, ...); the grid defaults to
            :data:`~procto.phantom.meply.MEPLY_GRID`.

    Returns:
        ``out_dir`` as a Path.

    Raises:
        InputError: a bad window, ``slices``, split name or count (checked before anything is written).
    """
    check_meply_args(window, slices)
    if not split or not split.replace("_", "").replace("-", "").isalnum():
        raise InputError(f"split names may hold letters, digits, '_' and '-' only, got {split!r}")
    if n_cases < 0 or start < 0:
        raise InputError(f"n_cases and start must be >= 0, got {n_cases} and {start}")
    check_benign_nodes(options.get("benign_nodes"))
    options = meply_options(options)
    root = Path(out_dir)
    root.mkdir(parents=True, exist_ok=True)
    plan = cohort_plan(n_cases, "ct", seed, t_stage=t_stage, n_nodes=n_nodes, start=start)
    records, rows = [], []
    with _Progress(progress, len(plan), f"phantoms (ct, meply {split})") as bar:
        for entry in plan:
            case = make_case(entry.seed, "ct", t_stage=entry.t_stage, n_nodes=entry.n_nodes, case_id=entry.case_id,
                             **options)
            records.append(write_meply_case(case, root, split, window, slices, volumes))
            rows.append({**case.summary(), "split": split, "n_windows": len(records[-1]["names"])})
            bar.step(case.case_id)
    finish_meply_split(root, split, records, volumes)
    ids = {r["case_id"] for r in rows}
    old = read_cohort_table(root / "stages.csv") if (root / "stages.csv").is_file() else []
    write_stages_csv([r for r in old if r.get("case_id") not in ids] + rows, root / "stages.csv")
    meta = {"generator": "procto.phantom", "modality": "ct", "layout": "meply", "seed": int(seed), "split": split,
            "n_cases": int(n_cases), "start": int(start), "window": int(window), "slices": slices,
            "volumes": bool(volumes), "t_stage": t_stage, "n_nodes": n_nodes,
            "options": {k: (list(v) if isinstance(v, tuple) else v) for k, v in options.items()}}
    _write_json(meta, root / f"phantom_{split}.json")
    return root
