"""Label conventions of the phantom's maps.

* ``label``: the segmentation target of RCSegNeXt / U-SAM (CARE convention): 0 background, 1 rectum (normal wall and
  lumen), 2 tumour.
* ``organs``: a multi-organ map whose ids are TotalSegmentator v2 ``total`` class ids (as in
  ``shared/data/real/totalseg-ct-abdpelvis/labels.json``).  TotalSegmentator has no rectum class and its colon label
  runs into the rectum, so :data:`ORGAN_IDS` ``["colon"]`` covers the whole large bowel *including* the rectum and
  the tumour.
* ``layers``: the host rectal wall as it is *without* the tumour (the tumour is drawn over it): 1 mucosa/submucosa,
  2 muscularis propria, 3 mesorectal fat.  A tumour voxel with ``layers == 3`` lies outside the muscularis: T3.
* ``nodes``: lymph-node instances 1..K (0 elsewhere).
"""

from __future__ import annotations

# the N category of a metastatic-node count has one definition (re-exported here for procto.phantom)
from procto.metrics.nodes import n_category

#: Segmentation labels (nnU-Net ``dataset.json`` ``labels`` and CARE npz ``label`` values).
LABELS: dict[str, int] = {"background": 0, "rectum": 1, "tumour": 2}
RECTUM = 1
TUMOUR = 2

#: Host-wall layers of the ``layers`` map.
LAYERS: dict[str, int] = {"background": 0, "mucosa_submucosa": 1, "muscularis_propria": 2, "mesorectal_fat": 3}
MUCOSA = 1
MUSCULARIS = 2
MESORECTUM = 3

#: TotalSegmentator v2 ``total`` ids of the organs the phantom draws.
ORGAN_IDS: dict[str, int] = {
    "kidney_right": 2,
    "kidney_left": 3,
    "liver": 5,
    "stomach": 6,
    "small_bowel": 18,
    "duodenum": 19,
    "colon": 20,
    "urinary_bladder": 21,
    "prostate": 22,
    "sacrum": 25,
    "vertebrae_L5": 27,
    "vertebrae_L4": 28,
    "vertebrae_L3": 29,
    "vertebrae_L2": 30,
    "vertebrae_L1": 31,
    "aorta": 52,
    "inferior_vena_cava": 63,
    "iliac_artery_left": 65,
    "iliac_artery_right": 66,
    "iliac_vena_left": 67,
    "iliac_vena_right": 68,
    "femur_left": 75,
    "femur_right": 76,
    "hip_left": 77,
    "hip_right": 78,
    "iliopsoas_left": 88,
    "iliopsoas_right": 89,
}

#: Organ ids that are bone (used by intensity checks).
BONE_ORGANS = ("sacrum", "vertebrae_L5", "vertebrae_L4", "vertebrae_L3", "vertebrae_L2", "vertebrae_L1",
               "femur_left", "femur_right", "hip_left", "hip_right")

#: T stages the generator draws, and N categories by metastatic node count.
T_STAGES = ("T2", "T3")
N_CATEGORIES = ("N0", "N1", "N2")
MAX_NODES = 6
