"""Synthetic rectal-cancer patients for training and testing every procto method.

A seeded, deterministic generator of pelvic / abdomino-pelvic phantoms: a curved rectum with a layered wall
(mucosa/submucosa, muscularis propria) in its mesorectal fat, continuing into the sigmoid and colon; small-bowel
loops, bladder, prostate or uterus, vessels, sacrum, lumbar spine, hips and femora in a body outline with
subcutaneous fat; a T2 (confined to the muscularis) or T3 (through it into the mesorectal fat) tumour; 0–6
metastatic mesorectal lymph nodes, and on request (``benign_nodes=``) small, round, homogeneous benign ones.  Cases
render as axial contrast CT (Hounsfield units) or as sagittal, thick-slice T2-weighted MRI (Rician noise, bias
field).

>>> from procto.phantom import make_case, make_cohort, write_cohort
>>> case = make_case(0, "ct", shape=(32, 96, 96))          # doctest: +SKIP
>>> case.t_stage, case.n_category, case.label.array.max()  # doctest: +SKIP
('T2', 'N1', 2)
>>> write_cohort("raw", 20, "mri", layout="nnunet", dataset_id=502)   # doctest: +SKIP

Maps per case: ``label`` (0 background, 1 rectum, 2 tumour), ``nodes`` (instances 1..K: metastatic nodes first, then
benign ones, flagged in ``node_info``; :meth:`PhantomCase.metastatic_nodes`), ``organs``
(TotalSegmentator v2 ids, :data:`ORGAN_IDS`), ``layers`` (1 mucosa/submucosa, 2 muscularis, 3 mesorectal fat),
``tissue`` (:class:`Tissue`).

``make_case(..., tumour_site="colon")`` puts the tumour in the sigmoid colon above the rectum (CT).  For AG-CRC
(:mod:`procto.phantom.mos`): :func:`word_map` (WORD ids, rectum 13), the MOS errors :func:`delete_tumour` and
:func:`swap_colon_small_bowel`, and :func:`agcrc_cases` for :func:`procto.preprocess.agcrc.write_agcrc_dataset`.
For CoSAM: :func:`write_meply` (and ``write_cohort(..., layout="meply")``) writes Meply's 2.5D windows and 3D volumes
(:mod:`procto.phantom.meply`).
"""

from procto.phantom.case import CohortEntry, PhantomCase, cohort_plan, make_case, make_cohort
from procto.phantom.grid import Grid, default_grid
from procto.phantom.labels import LABELS, LAYERS, ORGAN_IDS, n_category
from procto.phantom.meply import MEPLY_GRID
from procto.phantom.mos import (
    MOS_ERRORS,
    TS_TO_WORD,
    WORD_IDS,
    agcrc_cases,
    delete_tumour,
    swap_colon_small_bowel,
    ts_to_word,
    word_map,
)
from procto.phantom.tissues import Tissue
from procto.phantom.tumour import TUMOUR_SITES
from procto.phantom.writers import (
    LAYOUTS,
    canonical_axial,
    care_slices,
    nnunet_dataset_json,
    read_cohort_table,
    write_cohort,
    write_meply,
    write_stages_csv,
)

__all__ = [
    "PhantomCase",
    "CohortEntry",
    "make_case",
    "make_cohort",
    "cohort_plan",
    "write_cohort",
    "write_meply",
    "MEPLY_GRID",
    "write_stages_csv",
    "read_cohort_table",
    "care_slices",
    "canonical_axial",
    "nnunet_dataset_json",
    "Grid",
    "default_grid",
    "LABELS",
    "LAYERS",
    "ORGAN_IDS",
    "LAYOUTS",
    "Tissue",
    "n_category",
    "TUMOUR_SITES",
    "WORD_IDS",
    "TS_TO_WORD",
    "MOS_ERRORS",
    "word_map",
    "ts_to_word",
    "delete_tumour",
    "swap_colon_small_bowel",
    "agcrc_cases",
]
