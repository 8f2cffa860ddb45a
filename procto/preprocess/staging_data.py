"""Staging data on disk: the stage table (``stages.csv``: case → T2/T3), the cases' images and rectum/tumour label
maps, and reading them into preprocessed :class:`~procto.preprocess.staging.StagingSample`\\ s.

Layouts found: nnU-Net raw (``imagesTr/<case>_0000.nii.gz``, ``labelsTr/<case>.nii.gz``), flat or foldered NIfTI
(``images/<case>.nii.gz`` + ``labels/<case>.nii.gz``, ``<case>_image`` + ``<case>_label``, ``<case>/image`` +
``<case>/label``); NRRD/MHA work too — e.g. what ``procto phantom --modality mri --layout nnunet|nifti`` writes.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Sequence

from procto.errors import InputError
from procto.preprocess.staging import StagingPreprocessing, StagingSample, prepare_sample, stage_value

__all__ = ["StagingRecord", "find_staging_cases", "load_staging_samples", "read_stages_csv"]

_CASE_COLUMNS = ("case", "case_id", "id", "name", "subject", "identifier")
_STAGE_COLUMNS = ("t_stage", "stage", "t", "tstage", "label", "t_category")
_IMAGE_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".mha", ".mhd")


@dataclass
class StagingRecord:
    """One case on disk: image, rectum/tumour label map (optional) and T stage."""

    case_id: str
    image: Path
    label: Path | None
    t_stage: str


def read_stages_csv(path: str | Path) -> dict[str, str]:
    """``{case: "T2" | "T3"}`` from a CSV with a case column (case, case_id, id ...) and a stage column (t_stage,
    stage ...); other columns are ignored."""
    path = Path(path)
    try:
        with path.open(newline="") as f:
            rows = list(csv.DictReader(f))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise InputError(f"cannot read stage table: {exc}", path) from None
    if not rows:
        raise InputError("stage table has no rows", path)
    header = {h.strip().lower(): h for h in rows[0].keys() if h}
    case_col = next((header[c] for c in _CASE_COLUMNS if c in header), None)
    stage_col = next((header[c] for c in _STAGE_COLUMNS if c in header), None)
    if case_col is None or stage_col is None:
        raise InputError(f"stage table needs a case and a t_stage column, has {list(rows[0].keys())}", path)
    return {r[case_col].strip(): stage_value(r[stage_col], str(path)) for r in rows if r.get(case_col)}


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


def _stage_table(folder: Path) -> Path:
    """The one ``stages.csv`` in ``folder`` or one level below (e.g. the nnU-Net dataset folder)."""
    if not folder.is_dir():
        raise InputError("data folder not found", folder)
    tables = [folder / "stages.csv"] if (folder / "stages.csv").is_file() else sorted(folder.glob("*/stages.csv"))
    if not tables:
        raise InputError("no stages.csv (case, t_stage) found in the data folder", folder)
    if len(tables) > 1:
        raise InputError(f"several stages.csv below the data folder: {', '.join(str(t) for t in tables)}", folder)
    return tables[0]


def find_staging_cases(folder: str | Path, require_labels: bool = True) -> list[StagingRecord]:
    """Cases of a staging data folder: a ``stages.csv`` (case → T2/T3) next to the images and label maps (layouts in
    the module docstring).  ``stages.csv`` may sit in ``folder`` or one level below (e.g. the nnU-Net dataset folder
    ``procto phantom`` writes)."""
    folder = Path(folder)
    table = _stage_table(folder)
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


def load_staging_samples(
    records: Sequence[StagingRecord], prep: StagingPreprocessing, on_case: Callable[[str], None] | None = None
) -> list[StagingSample]:
    """Read and preprocess every record (``prep``: the preprocessing settings, e.g. a training config)."""
    from procto.io import check_same_geometry, read_image, read_label

    samples = []
    for rec in records:
        image = read_image(rec.image)
        label = read_label(rec.label) if rec.label is not None else None
        if label is not None:
            check_same_geometry(image, label, names=(str(rec.image), str(rec.label)))
        samples.append(prepare_sample(rec.case_id, image, label, rec.t_stage, prep))
        if on_case is not None:
            on_case(rec.case_id)
    return samples
