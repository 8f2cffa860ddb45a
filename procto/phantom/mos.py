"""Multi-organ segmentations (MOS) of CT phantoms for AG-CRC: a WORD-style organ map, imitations of the MOS errors of
the paper's Fig. 1, and AG-CRC cases ready for :func:`procto.preprocess.agcrc.write_agcrc_dataset`.

A phantom's ``organs`` map is a *perfect* TotalSegmentator v2 ``total`` map (colon 20 covers rectum and tumour).

* :func:`word_map` — the same anatomy in WORD ids (0–16) through :data:`TS_TO_WORD`; WORD has a rectum class (13),
  TotalSegmentator has not: colon voxels of the rectum (``label`` 1, and a rectal tumour, ``label`` 2) become 13.
* :func:`delete_tumour` — the tumour left out of the organ map (Fig. 1d: a large tumour does not look like colon).
* :func:`swap_colon_small_bowel` — colon and small bowel confused (Fig. 1b/c); the OOI does not change (both ids are
  organs of interest), the MOS channel does.
* :func:`agcrc_cases` — one CT phantom per seed as an :class:`~procto.preprocess.agcrc.AGCRCCase`.

>>> from procto.phantom import agcrc_cases
>>> from procto.preprocess.agcrc import write_agcrc_dataset
>>> cases = agcrc_cases([0, 1], word=True, mos_errors=("delete_tumour",), shape=(16, 64, 64),
...                     spacing=(5.0, 1.5, 1.5), center="tumour")                    # doctest: +SKIP
>>> write_agcrc_dataset(cases, "nnUNet_raw", 510, tumour_ids=(2,))                  # doctest: +SKIP
"""

from __future__ import annotations

import inspect
from collections.abc import Iterable
from typing import Any

import numpy as np

from procto.errors import InputError
from procto.io import Volume, check_same_geometry
from procto.phantom.case import PhantomCase, make_case
from procto.phantom.labels import ORGAN_IDS, RECTUM, TUMOUR
from procto.preprocess.agcrc import AGCRCCase

__all__ = ["TS_TO_WORD", "WORD_IDS", "COLON_SMALL_BOWEL", "MOS_ERRORS", "word_map", "ts_to_word", "delete_tumour",
           "swap_colon_small_bowel", "agcrc_cases"]

#: WORD label ids (HiLab-git/WORD, labels 0–16).
WORD_IDS: dict[str, int] = {
    "background": 0, "liver": 1, "spleen": 2, "left_kidney": 3, "right_kidney": 4, "stomach": 5, "gallbladder": 6,
    "esophagus": 7, "pancreas": 8, "duodenum": 9, "colon": 10, "intestine": 11, "adrenal": 12, "rectum": 13,
    "bladder": 14, "Head_of_femur_L": 15, "Head_of_femur_R": 16,
}

#: TotalSegmentator v2 ``total`` id → WORD id, by organ (every other TotalSegmentator id → 0).  The phantom draws
#: liver 5, kidneys 3/2, stomach 6, duodenum 19, colon 20, small_bowel 18, bladder 21 and femora 75/76 (the whole
#: femur stands in for WORD's femoral head); spleen 1, gallbladder 4, pancreas 7, adrenals 8/9 and esophagus 15 are
#: listed so that the table also holds for a real TotalSegmentator map.  WORD's rectum 13 has no TotalSegmentator
#: class (see :func:`ts_to_word`).
TS_TO_WORD: dict[int, int] = {
    5: 1, 1: 2, 3: 3, 2: 4, 6: 5, 4: 6, 15: 7, 7: 8, 19: 9, 20: 10, 18: 11, 8: 12, 9: 12, 21: 14, 75: 15, 76: 16,
}

#: (colon, small bowel) ids per id scheme, for :func:`swap_colon_small_bowel`.
COLON_SMALL_BOWEL: dict[str, tuple[int, int]] = {"ts_v2": (20, 18), "ts_v1": (57, 55), "word": (10, 11)}

#: The MOS errors :func:`agcrc_cases` can inject.
MOS_ERRORS = ("delete_tumour", "swap")


def _lookup(table: dict[int, int]) -> np.ndarray:
    lut = np.zeros(256, np.uint8)
    for src, dst in table.items():
        lut[src] = dst
    return lut


def _label_map(volume: Volume, what: str) -> np.ndarray:
    """The integer array of a label Volume in 0..255 (InputError otherwise)."""
    if not isinstance(volume, Volume):
        raise InputError(f"{what} must be a procto.io.Volume, got {type(volume).__name__}")
    arr = np.asarray(volume.array)
    if arr.dtype.kind not in "biu" or (arr.size and (arr.min() < 0 or arr.max() > 255)):
        raise InputError(f"{what} must hold integer ids 0..255")
    return arr


def ts_to_word(organs: Volume, rectum: Volume | np.ndarray) -> Volume:
    """A WORD map of a TotalSegmentator v2 ``total`` map: ids through :data:`TS_TO_WORD`, then the colon voxels inside
    ``rectum`` (a mask on the same grid) set to WORD rectum 13.

    Raises:
        InputError: not a label map, or ``rectum`` of another geometry.
    """
    arr = _label_map(organs, "organ map")
    mask = rectum
    if isinstance(rectum, Volume):
        check_same_geometry(organs, rectum, names=("organ map", "rectum mask"))
        mask = rectum.array
    mask = np.asarray(mask, dtype=bool)
    if mask.shape != arr.shape:
        raise InputError(f"rectum mask shape {mask.shape} differs from the organ map's {arr.shape}")
    word = _lookup(TS_TO_WORD)[arr]
    word[(arr == ORGAN_IDS["colon"]) & mask] = WORD_IDS["rectum"]
    return organs.with_array(word, label_scheme="WORD", labels=dict(WORD_IDS))


def word_map(case: PhantomCase) -> Volume:
    """A WORD-style organ map of a phantom (same grid as its image).

    TotalSegmentator v2 ids → WORD ids (:data:`TS_TO_WORD`); WORD rectum 13 = colon ∧ rectum, the rectum being the
    phantom's ``label`` 1 (rectal wall and lumen) plus a rectal tumour (``label`` 2).  A colon tumour
    (``tumour_site="colon"``) stays WORD colon 10.  So 13 lies only where colon 20 ∧ ``label`` > 0, and every other
    colon voxel is 10.
    """
    if not isinstance(case, PhantomCase):
        raise InputError(f"word_map needs a PhantomCase, got {type(case).__name__}")
    label = np.asarray(case.label.array)
    rectum = label == RECTUM
    if case.options.get("tumour_site", "rectum") == "rectum":
        rectum |= label == TUMOUR
    return ts_to_word(case.organs, rectum)


def delete_tumour(organs: Volume, label: Volume, tumour_label: int = TUMOUR) -> Volume:
    """The organ map with the tumour voxels (``label == tumour_label``) set to 0: the tumour left out of the MOS
    (paper Fig. 1d).  Works on any id scheme; ``organs`` is not changed.

    Raises:
        InputError: not label maps, or of different geometry.
    """
    arr = _label_map(organs, "organ map")
    lab = _label_map(label, "label map")
    check_same_geometry(organs, label, names=("organ map", "label map"))
    out = arr.copy()
    out[lab == int(tumour_label)] = 0
    return organs.with_array(out)


def swap_colon_small_bowel(organs: Volume, scheme: str = "ts_v2", where: Volume | np.ndarray | None = None) -> Volume:
    """The organ map with colon and small-bowel ids exchanged (paper Fig. 1b/c): ``ts_v2`` 20 ↔ 18, ``ts_v1``
    57 ↔ 55, ``word`` 10 ↔ 11; only inside the mask ``where`` if given.  ``organs`` is not changed.

    Raises:
        InputError: unknown scheme, not a label map, or ``where`` of another shape / geometry.
    """
    if scheme not in COLON_SMALL_BOWEL:
        raise InputError(f"scheme must be one of {', '.join(COLON_SMALL_BOWEL)}, got {scheme!r}")
    arr = _label_map(organs, "organ map")
    colon, small = COLON_SMALL_BOWEL[scheme]
    region = np.ones(arr.shape, bool)
    if where is not None:
        if isinstance(where, Volume):
            check_same_geometry(organs, where, names=("organ map", "swap region"))
            where = where.array
        region = np.asarray(where, dtype=bool)
        if region.shape != arr.shape:
            raise InputError(f"swap region shape {region.shape} differs from the organ map's {arr.shape}")
    out = arr.copy()
    out[region & (arr == colon)] = small
    out[region & (arr == small)] = colon
    return organs.with_array(out)


def _check_case_options(mos_errors, options: dict[str, Any]) -> tuple[str, ...]:
    """The MOS error names as a tuple; InputError on an unknown error or :func:`make_case` option."""
    errors = (mos_errors,) if isinstance(mos_errors, str) else tuple(mos_errors)
    bad = [e for e in errors if e not in MOS_ERRORS]
    if bad:
        raise InputError(f"unknown MOS error {bad[0]!r}; choose from {', '.join(MOS_ERRORS)}")
    allowed = set(inspect.signature(make_case).parameters) - {"seed", "modality", "case_id"}
    unknown = sorted(set(options) - allowed)
    if unknown:
        raise InputError(f"unknown phantom option {unknown[0]!r}; choose from {', '.join(sorted(allowed))}")
    return errors


def agcrc_cases(seeds: Iterable[int], *, word: bool = False, mos_errors: Iterable[str] | str = (),
                **make_case_options) -> list[AGCRCCase]:
    """One CT phantom per seed as an AG-CRC case ``(case_id, CT, TotalSegmentator map, WORD map or None, label)``,
    ready for ``write_agcrc_dataset(cases, out, dataset_id, tumour_ids=(2,))`` (the label is the phantom's 0 / 1
    rectum / 2 tumour).

    Args:
        seeds: phantom seeds; case ids ``phantom_ct_<seed>``.
        word: add a WORD map (:func:`word_map`).
        mos_errors: errors injected into the organ maps, any of :data:`MOS_ERRORS`: ``"delete_tumour"``
            (:func:`delete_tumour`) and ``"swap"`` (:func:`swap_colon_small_bowel`, whole map).  The WORD map is
            derived from the phantom's perfect map first and then gets the same errors in its own ids (tumour deleted;
            colon 10 ↔ intestine 11, rectum 13 kept): both MOS models miss the same tumour, so the OOI covers a
            deleted tumour only through dilation.  The swap never changes the OOI; it changes the TotalSegmentator
            (MOS) channel.
        make_case_options: options of :func:`~procto.phantom.make_case` (``shape``, ``spacing``, ``center``,
            ``t_stage``, ``tumour_site``, ``noise``, ...); the modality is CT.

    Raises:
        InputError: an unknown MOS error or phantom option, or a bad option value.
    """
    errors = _check_case_options(mos_errors, make_case_options)
    cases = []
    for seed in seeds:
        case = make_case(seed, "ct", **make_case_options)
        ts = case.organs
        wd = word_map(case) if word else None
        if "delete_tumour" in errors:
            ts = delete_tumour(ts, case.label)
            wd = delete_tumour(wd, case.label) if wd is not None else None
        if "swap" in errors:
            ts = swap_colon_small_bowel(ts, "ts_v2")
            wd = swap_colon_small_bowel(wd, "word") if wd is not None else None
        cases.append(AGCRCCase(case.case_id, case.image, ts, wd, case.label))
    return cases
