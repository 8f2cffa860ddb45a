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
from procto.phantom.case import PhantomCase, cohort_plan, make_case
from procto.phantom.labels import LABELS

if TYPE_CHECKING:
    from procto.preprocess.care import CareSlices

LAYOUTS = ("nnunet", "care", "nifti")
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
        layout: "nnunet" | "care" | "nifti".
        seed: cohort seed (see :func:`procto.phantom.make_cohort`); test cases continue the same series.
        n_test: number of test cases (nnU-Net ``imagesTs``, CARE ``test/``, ``split`` column "test").
        dataset_id: nnU-Net dataset id (1–999).
        name: dataset name (letters, digits, ``_``, ``-``); default ``ProctoPhantomCT`` / ``ProctoPhantomMRI``.
        progress: ``True`` for a rich progress bar, or a callback ``(done, total, case_id)``.
        t_stage, n_nodes: force for every case.
        **options: passed to :func:`~procto.phantom.make_case` (shape, spacing, noise, ...).

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
    if n < 0 or n_test < 0:
        raise InputError(f"case counts must be >= 0, got n={n}, n_test={n_test}")
    name = name or f"ProctoPhantom{modality.upper()}"
    if not name.replace("_", "").replace("-", "").isalnum():
        raise InputError(f"dataset name may hold letters, digits, '_' and '-' only, got {name!r}")
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
            else:
                row["n_slices"] = _write_care_case(case, root, split)
            rows.append(row)
            bar.step(case.case_id)

    meta = {"generator": "procto.phantom", "modality": modality, "layout": layout, "seed": int(seed),
            "n_train": int(n), "n_test": int(n_test), "t_stage": t_stage, "n_nodes": n_nodes,
            "options": {k: (list(v) if isinstance(v, tuple) else v) for k, v in options.items()}}
    if layout == "nnunet":
        _write_json(nnunet_dataset_json(modality, n, name), root / "dataset.json")
    write_stages_csv(rows, root / "stages.csv")
    _write_json(meta, root / "phantom.json")
    return root
