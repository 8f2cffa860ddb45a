"""AG-CRC anatomy inputs (paper 001, Algorithm 1 and §III-D): OOI and bowel-wall masks, the 3-channel input and the
nnU-Net v2 raw data set writer, with a reader for the MSD Task10_Colon layout.

* :func:`ooi_mask` — the organs-of-interest mask of Algorithm 1: per multi-organ (MOS) label map the voxels whose id
  is in that map's GI id set, ``dilation`` times dilated with the 6-connected cross (on the CT's own grid), OR over
  the maps.  Dilation distributes over OR, so the result is the dilation of the union of the undilated masks.
* :func:`bowel_wall_mask` — the AG-SSL bowel wall: dilate XOR erode (6-connected, ``iterations`` each) of the
  *undilated* OOI.
* :func:`agcrc_inputs` — the three channels ``[CT HU, MOS id / max id, OOI]``; the MOS channel is the whole
  TotalSegmentator map (all classes) scaled to [0, 1] (``id / 117`` for TotalSegmentator v2).  A WORD map only enters
  through the OOI.
* :func:`write_agcrc_dataset` — an nnU-Net v2 raw data set (channels ``CT``, ``noNorm``, ``noNorm``; labels background
  0 / tumour 1, or the bowel wall for pre-training) recording the id scheme in ``dataset.json`` under
  ``"procto_agcrc"``; built in a hidden staging folder and renamed into place, so a failure leaves nothing behind.
* :func:`read_msd_colon` — the cases of an MSD ``Task10_Colon`` folder paired with TotalSegmentator outputs.

Id schemes (:data:`ID_SCHEMES`): TotalSegmentator v2 ``total`` (ids 0–117, GI ids :data:`TS_GI` = stomach 6,
small_bowel 18, duodenum 19, colon 20 — the colon runs into the rectum), TotalSegmentator v1 (0–104,
:data:`TS_V1_GI` = {6, 55, 56, 57}) and WORD (0–16, :data:`WORD_GI` = stomach 5, duodenum 9, colon 10, intestine 11,
rectum 13).  A label map holding an id outside its scheme's range is one :class:`~procto.errors.InputError`.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, NamedTuple, Sequence, Union

import numpy as np
from scipy import ndimage

from procto.errors import InputError, OutputError
from procto.io import (Volume, check_output, check_same_geometry, image_suffix, read_image, strip_image_suffix,
                       write_image, write_text_atomic)

__all__ = ["TS_GI", "TS_V1_GI", "WORD_GI", "IdScheme", "ID_SCHEMES", "AGCRCCase", "check_label_ids", "ooi_mask",
           "bowel_wall_mask", "agcrc_inputs", "agcrc_dataset_json", "write_agcrc_dataset", "read_msd_colon"]

#: TotalSegmentator v2 ``total`` ids of the gastrointestinal organs: stomach, small_bowel, duodenum, colon.
TS_GI = frozenset({6, 18, 19, 20})
#: The same organs in TotalSegmentator v1 (``total_v1``, 104 classes).
TS_V1_GI = frozenset({6, 55, 56, 57})
#: WORD ids of the gastrointestinal organs: stomach, duodenum, colon, intestine, rectum.
WORD_GI = frozenset({5, 9, 10, 11, 13})

#: nnU-Net channel names of the three inputs: CT normalisation for the CT, none for the two masks.
CHANNEL_NAMES = ("CT", "noNorm", "noNorm")

ImageSource = Union[Volume, str, Path]


@dataclass(frozen=True)
class IdScheme:
    """A label-id scheme: its name (recorded in dataset.json), the largest valid id and the GI ids of the OOI."""

    key: str
    name: str
    max_id: int
    gi_ids: frozenset


#: The id schemes by key; ``ts_v2`` and ``ts_v1`` can be the MOS map's, ``word`` is the optional second map's.
ID_SCHEMES: dict[str, IdScheme] = {
    "ts_v2": IdScheme("ts_v2", "TotalSegmentator v2 total", 117, TS_GI),
    "ts_v1": IdScheme("ts_v1", "TotalSegmentator v1 total_v1", 104, TS_V1_GI),
    "word": IdScheme("word", "WORD", 16, WORD_GI),
}


class AGCRCCase(NamedTuple):
    """One case for :func:`write_agcrc_dataset`: each image a :class:`~procto.io.Volume` or a path.

    ``mos_word`` is optional; ``label`` (the tumour label map) may be None only when writing bowel walls."""

    case_id: str
    ct: ImageSource
    mos_ts: ImageSource
    mos_word: ImageSource | None = None
    label: ImageSource | None = None


def _cross() -> np.ndarray:
    """The 6-connected 3-D structuring element (scipy's default for binary morphology)."""
    return ndimage.generate_binary_structure(3, 1)


def _scheme(key: str) -> IdScheme:
    if key not in ID_SCHEMES or key == "word":
        raise InputError(f"MOS id scheme must be 'ts_v2' or 'ts_v1', got {key!r}")
    return ID_SCHEMES[key]


def _check_count(value: int, what: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise InputError(f"{what} must be an integer >= {minimum}, got {value!r}")
    return int(value)


# ---------------------------------------------------------------------------------------------------------- masks
def ooi_mask(maps: Sequence[tuple[Volume, Iterable[int]]], dilation: int = 3) -> Volume:
    """The organs-of-interest mask of Algorithm 1.

    Args:
        maps: ``[(label map, ids)]``; every map must share one geometry.
        dilation: number of 6-connected binary dilations of each map's mask (0: none).

    Returns:
        uint8 0/1 Volume in the maps' geometry: OR over the maps of ``dilate^t(isin(map, ids))``.

    Raises:
        InputError: no maps, a negative dilation, or maps of different geometry (one error).
    """
    dilation = _check_count(dilation, "dilation", 0)
    if not maps:
        raise InputError("ooi_mask needs at least one (label map, ids) pair")
    first = maps[0][0]
    out = np.zeros(first.shape, dtype=bool)
    for i, (volume, ids) in enumerate(maps):
        if i:
            check_same_geometry(first, volume, names=("organ map 0", f"organ map {i}"))
        mask = np.isin(volume.array, np.fromiter((int(v) for v in ids), dtype=np.int64))
        if dilation:
            mask = ndimage.binary_dilation(mask, structure=_cross(), iterations=dilation)
        out |= mask
    return first.with_array(out.astype(np.uint8), description="AG-CRC OOI mask")


def bowel_wall_mask(ooi0: Volume, iterations: int = 2) -> Volume:
    """The bowel wall of AG-SSL: ``dilate(O) XOR erode(O)`` of the undilated OOI ``O`` (non-zero voxels of
    ``ooi0``), each ``iterations`` times with the 6-connected cross (outside the grid counts as background).

    Returns a uint8 0/1 Volume in ``ooi0``'s geometry."""
    iterations = _check_count(iterations, "iterations", 1)
    mask = np.asarray(ooi0.array) != 0
    grown = ndimage.binary_dilation(mask, structure=_cross(), iterations=iterations)
    shrunk = ndimage.binary_erosion(mask, structure=_cross(), iterations=iterations)
    return ooi0.with_array((grown ^ shrunk).astype(np.uint8), description="AG-CRC bowel wall")


# ---------------------------------------------------------------------------------------------------------- checks
def check_label_ids(volume: Volume, scheme: IdScheme | str, name: str | Path | None = None) -> None:
    """Raise one :class:`InputError` (naming ``name``) unless ``volume`` holds integer ids in ``0..scheme.max_id``."""
    if isinstance(scheme, str):
        if scheme not in ID_SCHEMES:
            raise InputError(f"unknown id scheme {scheme!r}; use one of {', '.join(ID_SCHEMES)}")
        scheme = ID_SCHEMES[scheme]
    arr = np.asarray(volume.array)
    if arr.dtype.kind == "f":
        if not np.all(np.isfinite(arr)) or not np.array_equal(arr, np.round(arr)):
            raise InputError(f"{scheme.name} label map holds non-integer values", name)
    elif arr.dtype.kind not in "biu":
        raise InputError(f"{scheme.name} label map has non-numeric type {arr.dtype}", name)
    if arr.size and (arr.min() < 0 or arr.max() > scheme.max_id):
        bad = np.unique(arr[(arr < 0) | (arr > scheme.max_id)])
        shown = ", ".join(str(int(v)) for v in bad[:5]) + (", …" if bad.size > 5 else "")
        raise InputError(f"label ids {shown} outside the {scheme.name} scheme (0–{scheme.max_id}); "
                         f"wrong id scheme or not a {scheme.name} map?", name)


def _load(item: ImageSource, role: str) -> tuple[Volume, str]:
    """``(volume, name)``: a Volume as given (named by its role) or the image read from a path (named by the path)."""
    if isinstance(item, Volume):
        return item, role
    if isinstance(item, (str, Path)):
        return read_image(item), str(item)
    raise InputError(f"expected a Volume or an image path, got {type(item).__name__}", role)


def _same_geometry(ct: Volume, other: Volume, name: str, what: str) -> None:
    """One :class:`InputError` naming ``name`` (the file, or the role of an in-memory Volume) unless ``other`` lies
    on the CT's grid."""
    try:
        check_same_geometry(ct, other, names=("CT", what))
    except InputError as exc:
        raise InputError(exc.problem, name) from None


def _checked_maps(ct: ImageSource, mos_ts: ImageSource, mos_word: ImageSource | None, scheme: IdScheme,
                  prefix: str) -> tuple[Volume, list[tuple[Volume, frozenset]]]:
    """The CT and ``[(map, GI ids)]`` (TotalSegmentator first), every map checked against the CT and its scheme."""
    ct_vol, ct_name = _load(ct, f"{prefix}CT")
    if ct_vol.array.dtype.kind not in "biuf":
        raise InputError(f"CT has non-numeric type {ct_vol.array.dtype}", ct_name)
    if ct_vol.array.dtype.kind == "f" and not np.all(np.isfinite(ct_vol.array)):
        n_bad = int((~np.isfinite(ct_vol.array)).sum())
        raise InputError(f"CT contains {n_bad} NaN/Inf voxels", ct_name)
    maps = []
    for item, sch, what in ((mos_ts, scheme, f"{scheme.name} map"), (mos_word, ID_SCHEMES["word"], "WORD map")):
        if item is None:
            continue
        vol, name = _load(item, f"{prefix}{what}")
        _same_geometry(ct_vol, vol, name, what)
        check_label_ids(vol, sch, name)
        maps.append((vol, sch.gi_ids))
    return ct_vol, maps


def _channels(ct: Volume, maps: list[tuple[Volume, frozenset]], scheme: IdScheme, dilation: int) -> list[Volume]:
    ooi = ooi_mask(maps, dilation)
    mos = np.asarray(maps[0][0].array, dtype=np.float32) / np.float32(scheme.max_id)
    return [ct, ct.with_array(mos, description=f"MOS ({scheme.name} id / {scheme.max_id})"),
            ct.with_array(ooi.array, description="AG-CRC OOI mask")]


def agcrc_inputs(ct: ImageSource, mos_ts: ImageSource, mos_word: ImageSource | None = None, *,
                 scheme: str = "ts_v2", dilation: int = 3, case_id: str | None = None) -> list[Volume]:
    """The three AG-CRC input channels of one case, all in the CT's geometry.

    Args:
        ct: the CT (HU) as a Volume or an image path.
        mos_ts: the TotalSegmentator label map (all classes) of that CT.
        mos_word: optional WORD-model label map; it only enters through the OOI.
        scheme: id scheme of ``mos_ts``: ``"ts_v2"`` (default, ids 0–117) or ``"ts_v1"`` (0–104).
        dilation: OOI dilation count (see :func:`ooi_mask`).
        case_id: named in errors about in-memory Volumes.

    Returns:
        ``[CT unchanged, float32 MOS id / max id (117 for v2), uint8 OOI]``.

    Raises:
        InputError: naming the file (or role): an organ map of another geometry than the CT, a CT with NaN/Inf,
            ids outside the declared scheme, an unreadable or non-3D file.
    """
    sch = _scheme(scheme)
    prefix = f"case {case_id} " if case_id else ""
    ct_vol, maps = _checked_maps(ct, mos_ts, mos_word, sch, prefix)
    return _channels(ct_vol, maps, sch, dilation)


# ---------------------------------------------------------------------------------------------------------- dataset
def agcrc_dataset_json(name: str, num_training: int, *, scheme: str = "ts_v2", wall: bool = False,
                       dilation: int = 3, wall_iterations: int = 2, n_word: int = 0) -> dict:
    """The ``dataset.json`` of an AG-CRC raw data set; ``"procto_agcrc"`` records the channels and the id scheme."""
    sch = _scheme(scheme)
    target = "bowel_wall" if wall else "tumour"
    record = {
        "channels": {"0": "CT (HU)", "1": f"MOS: {sch.name} id / {sch.max_id}", "2": "OOI (0/1)"},
        "mos_scheme": sch.key, "mos_scheme_name": sch.name, "mos_scale": sch.max_id,
        "ooi_ids": {sch.key: sorted(sch.gi_ids), "word": sorted(WORD_GI)}, "word_maps": int(n_word),
        "dilation": int(dilation), "connectivity": 6, "target": target,
    }
    if wall:
        record["wall_iterations"] = int(wall_iterations)
    return {
        "channel_names": {str(i): c for i, c in enumerate(CHANNEL_NAMES)},
        "labels": {"background": 0, target: 1},
        "numTraining": int(num_training),
        "file_ending": ".nii.gz",
        "name": name,
        "description": "AG-CRC inputs (CT, multi-organ map, organs-of-interest mask) written by procto",
        "procto_agcrc": record,
    }


def _target(case: AGCRCCase, ct: Volume, maps: list, wall: bool, wall_iterations: int,
            tumour_ids: frozenset) -> Volume:
    """The label of one case: the bowel wall of the undilated OOI, or the tumour ids of its label map as 1."""
    if wall:
        return bowel_wall_mask(ooi_mask(maps, 0), wall_iterations)
    if case.label is None:
        raise InputError(f"case {case.case_id} has no tumour label map")
    label, name = _load(case.label, f"case {case.case_id} tumour label")
    _same_geometry(ct, label, name, "tumour label")
    arr = np.asarray(label.array)
    if arr.dtype.kind not in "biuf" or (arr.dtype.kind == "f" and not np.array_equal(arr, np.round(arr))):
        raise InputError("tumour label map holds non-integer values", name)
    tumour = np.isin(arr, np.fromiter(tumour_ids, dtype=np.int64)).astype(np.uint8)
    return ct.with_array(tumour, description="tumour")


def _check_cases(src: Iterable, wall: bool) -> list[AGCRCCase]:
    """The cases as :class:`AGCRCCase` tuples, checked without reading any file: shape of each tuple, unique
    file-name-safe ids, a tumour label unless ``wall``."""
    cases = []
    seen: set[str] = set()
    for case in src:
        if not isinstance(case, (tuple, list)) or not 3 <= len(case) <= 5:
            raise InputError(f"a case is (case_id, ct, mos_ts[, mos_word[, label]]), got {case!r:.80}")
        case = AGCRCCase(str(case[0]), *case[1:])
        cid = case.case_id
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_\-.]*", cid):
            raise InputError(f"case id {cid!r} is not file-name safe (letters, digits, '_', '-', '.')")
        if cid in seen:
            raise InputError(f"case id {cid!r} appears twice")
        seen.add(cid)
        if not wall and case.label is None:
            raise InputError(f"case {cid} has no tumour label map (needed unless wall=True)")
        cases.append(case)
    if not cases:
        raise InputError("no cases to write")
    return cases


def _dataset_root(out: str | Path, dataset_id: int, name: str) -> Path:
    if isinstance(dataset_id, bool) or not isinstance(dataset_id, (int, np.integer)) or not 1 <= dataset_id <= 999:
        raise InputError(f"nnU-Net dataset ids run from 1 to 999, got {dataset_id!r}")
    if not re.fullmatch(r"[A-Za-z0-9_\-]+", name):
        raise InputError(f"dataset name may hold letters, digits, '_' and '-' only, got {name!r}")
    out = check_output(out, kind="folder")
    root = out / f"Dataset{int(dataset_id):03d}_{name}"
    if root.exists():
        raise OutputError("already exists; remove it or choose another dataset id or name", root)
    return root


def _make_dirs(folder: Path) -> list[Path]:
    """Create ``folder`` and its missing parents; return the folders created (deepest first)."""
    created = []
    p = folder
    while not p.exists():
        created.append(p)
        p = p.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create it ({exc.strerror or exc})", folder) from None
    return created


def _write_case(case: AGCRCCase, stage: Path, *, scheme: IdScheme, dilation: int, wall: bool,
                wall_iterations: int, tumour_ids: frozenset) -> bool:
    """Write one case's three channels and label into ``stage``; return whether it had a WORD map."""
    ct, maps = _checked_maps(case.ct, case.mos_ts, case.mos_word, scheme, f"case {case.case_id} ")
    channels = _channels(ct, maps, scheme, dilation)
    target = _target(case, ct, maps, wall, wall_iterations, tumour_ids)
    if channels[0].array.dtype == np.float64:  # nnU-Net reads float32; half the disk
        channels[0] = ct.with_array(ct.array.astype(np.float32))
    for i, channel in enumerate(channels):
        write_image(channel, stage / "imagesTr" / f"{case.case_id}_{i:04d}.nii.gz")
    write_image(target, stage / "labelsTr" / f"{case.case_id}.nii.gz")
    return case.mos_word is not None


def write_agcrc_dataset(src: Iterable[AGCRCCase | tuple], out: str | Path, dataset_id: int, wall: bool = False, *,
                        name: str | None = None, scheme: str = "ts_v2", dilation: int = 3, wall_iterations: int = 2,
                        tumour_ids: Iterable[int] = (1,),
                        progress: Callable[[int, int, str], None] | None = None) -> Path:
    """Write an nnU-Net v2 raw data set ``out/DatasetXXX_<name>`` of AG-CRC inputs.

    Args:
        src: cases ``(case_id, ct, mos_ts, mos_word or None, tumour label or None)`` (:class:`AGCRCCase`), each image
            a Volume or a path (e.g. from :func:`read_msd_colon`).
        out: the ``nnUNet_raw`` folder the data set folder goes into.
        dataset_id: nnU-Net data set id (1–999).
        wall: write the bowel wall (:func:`bowel_wall_mask` of the undilated OOI) as label 1, for AG-SSL
            pre-training; tumour labels are then not needed.
        name: data set name; default ``AGCRC`` (``AGCRCWall`` with ``wall``).
        scheme: id scheme of the TotalSegmentator maps (``ts_v2`` or ``ts_v1``); recorded in dataset.json.
        dilation, wall_iterations: see :func:`ooi_mask` and :func:`bowel_wall_mask`.
        tumour_ids: label-map values that are tumour (MSD-Colon: 1; procto phantoms: 2); everything else is background.
        progress: called as ``progress(done, total, case_id)`` after each case.

    Images ``imagesTr/<case>_000{0,1,2}.nii.gz`` (CT, MOS, OOI) and ``labelsTr/<case>.nii.gz`` keep the CT's
    geometry.  The data set is built in a hidden folder next to it and renamed into place when complete: a failure
    leaves nothing behind.

    Raises:
        OutputError: ``out`` cannot be written or the data set folder exists.
        InputError: bad arguments or a bad case (see :func:`agcrc_inputs`), naming the file or the case.
    """
    sch = _scheme(scheme)
    dilation = _check_count(dilation, "dilation", 0)
    wall_iterations = _check_count(wall_iterations, "wall_iterations", 1)
    cases = _check_cases(src, wall)
    tumour = frozenset(_check_count(t, "a tumour id", 1) for t in tumour_ids)
    if not tumour:
        raise InputError("tumour_ids is empty")
    name = name or ("AGCRCWall" if wall else "AGCRC")
    root = _dataset_root(out, dataset_id, name)
    created = _make_dirs(root.parent)
    stage = Path(tempfile.mkdtemp(prefix=f".{root.name}.", suffix=".partial", dir=root.parent))
    try:
        n_word = 0
        for done, case in enumerate(cases, start=1):
            n_word += _write_case(case, stage, scheme=sch, dilation=dilation, wall=wall,
                                  wall_iterations=wall_iterations, tumour_ids=tumour)
            if progress is not None:
                progress(done, len(cases), case.case_id)
        meta = agcrc_dataset_json(name, len(cases), scheme=sch.key, wall=wall, dilation=dilation,
                                  wall_iterations=wall_iterations, n_word=n_word)
        write_text_atomic(stage / "dataset.json", json.dumps(meta, indent=2) + "\n")
        os.rename(stage, root)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        for folder in created:  # deepest first; only the empty folders this call created
            if folder.is_dir() and not any(folder.iterdir()):
                folder.rmdir()
        raise
    return root


# ---------------------------------------------------------------------------------------------------------- MSD
def _read_msd_json(msd: Path) -> list[dict]:
    path = msd / "dataset.json"
    if not msd.is_dir():
        raise InputError("not a folder (expected an MSD task folder such as Task10_Colon)", msd)
    if not path.is_file():
        raise InputError("no dataset.json (expected an MSD task folder with imagesTr, labelsTr, dataset.json)", msd)
    try:
        meta = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise InputError(f"dataset.json is not readable JSON ({exc})", path) from None
    modality = meta.get("modality", {"0": "CT"}) if isinstance(meta, dict) else None
    if not isinstance(meta, dict) or not isinstance(meta.get("training"), list) or not meta["training"]:
        raise InputError("dataset.json lists no training cases (\"training\")", path)
    if not isinstance(modality, dict) or len(modality) != 1:
        raise InputError(f"expected a one-channel (CT) MSD task, dataset.json lists modalities {modality!r}", path)
    return meta["training"]


def _msd_file(msd: Path, entry: dict, key: str) -> Path:
    rel = entry.get(key) if isinstance(entry, dict) else None
    if not isinstance(rel, str) or not rel:
        raise InputError(f"a training entry has no {key!r}: {entry!r:.80}", msd / "dataset.json")
    path = msd / rel
    if not path.is_file():
        raise InputError(f"listed in dataset.json but missing ({key})", path)
    return path


def _organ_map(folder: Path, case_id: str, what: str) -> Path | None:
    """``folder/<case_id>.nii.gz`` (or another image suffix); None when absent."""
    if (folder / case_id).is_dir():
        raise InputError(f"is a folder of per-organ masks; run {what} with --ml to write one label map per case "
                         f"({case_id}.nii.gz)", folder / case_id)
    for path in sorted(folder.glob(f"{case_id}.*")):
        if path.is_file() and image_suffix(path) and strip_image_suffix(path) == case_id:
            return path
    return None


def read_msd_colon(msd: str | Path, ts_dir: str | Path, word_dir: str | Path | None = None) -> list[AGCRCCase]:
    """The training cases of an MSD task folder (``Task10_Colon``: ``imagesTr``, ``labelsTr``, MSD ``dataset.json``)
    paired with TotalSegmentator outputs ``ts_dir/<case>.nii.gz`` (one multi-label map per case, ``--ml``) and,
    optionally, WORD-model outputs ``word_dir/<case>.nii.gz``.

    Returns :class:`AGCRCCase` tuples of paths (MSD label 1 is the tumour), ready for :func:`write_agcrc_dataset`.
    Nothing is read but ``dataset.json`` and the folder listings.

    Raises:
        InputError: no such folder, no or broken dataset.json, a listed file missing, or organ maps missing for some
            cases (one error naming the folder, how many and the first missing file).
    """
    msd = Path(msd)
    entries = _read_msd_json(msd)
    folders = [(Path(ts_dir), "TotalSegmentator")] + ([(Path(word_dir), "the WORD model")] if word_dir else [])
    for folder, _ in folders:
        if not folder.is_dir():
            raise InputError("organ-map folder not found", folder)
    cases = []
    for entry in entries:
        image, label = _msd_file(msd, entry, "image"), _msd_file(msd, entry, "label")
        cid = strip_image_suffix(image)
        maps = [_organ_map(folder, cid, what) for folder, what in folders]
        cases.append((cid, image, label, maps))
    for k, (folder, what) in enumerate(folders):
        missing = [cid for cid, _, _, maps in cases if maps[k] is None]
        if missing:
            raise InputError(f"no {what} label map for {len(missing)} of {len(cases)} cases (e.g. {missing[0]}.nii.gz)",
                             folder)
    return [AGCRCCase(cid, image, maps[0], maps[1] if len(maps) > 1 else None, label)
            for cid, image, label, maps in cases]
