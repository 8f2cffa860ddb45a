"""Tissue classes: the intermediate map the anatomy is drawn into before an intensity model (CT or MRI) turns it into
an image.  Each class has one mean intensity per modality (see :mod:`procto.phantom.ct`, :mod:`procto.phantom.mri`).
"""

from __future__ import annotations

from enum import IntEnum


class Tissue(IntEnum):
    """Tissue class ids of the ``tissue`` map (uint8)."""

    AIR = 0  #: outside the body
    SUBCUT_FAT = 1  #: subcutaneous fat
    MUSCLE = 2  #: skeletal muscle (body wall, gluteal, pelvic side wall, psoas)
    VISCERAL_FAT = 3  #: pelvic / abdominal fat
    MESO_FAT = 4  #: mesorectal fat
    FASCIA = 5  #: mesorectal fascia
    MUCOSA = 6  #: rectal / colonic mucosa + submucosa
    MUSCULARIS = 7  #: muscularis propria
    GAS = 8  #: bowel gas
    LUMEN_FLUID = 9  #: fluid or rectal gel in the lumen
    FAECES = 10  #: mottled stool
    TUMOUR = 11
    NODE = 12  #: metastatic lymph node (textured, enhancing)
    BLADDER_WALL = 13
    URINE = 14
    CORTEX = 15  #: cortical bone
    MARROW = 16  #: cancellous bone / marrow
    BOWEL_WALL = 17  #: small-bowel / stomach / duodenum wall
    BOWEL_FLUID = 18  #: small-bowel contents
    GLAND = 19  #: prostate or uterus
    LIVER = 20
    KIDNEY = 21
    VESSEL = 22  #: contrast-filled artery / vein (CT) or flow void (MRI)
    CSF = 23  #: spinal canal
    DISC = 24  #: intervertebral disc
    TABLE = 25  #: CT couch
    BENIGN_NODE = 26  #: benign (reactive / normal) lymph node: small, round, homogeneous


N_TISSUES = len(Tissue)
