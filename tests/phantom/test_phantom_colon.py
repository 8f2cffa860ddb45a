"""Colon tumours (``make_case(..., tumour_site="colon")``): in the sigmoid above the rectum, organ colon 20, T2/T3
meaning kept; default (rectal) cases unchanged."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from procto.errors import InputError
from procto.phantom import make_case
from procto.phantom.labels import RECTUM, TUMOUR
from procto.phantom.tissues import Tissue

MAPS = ("image", "label", "nodes", "organs", "layers", "tissue")
CROP = {"shape": (16, 64, 64), "spacing": (5.0, 1.5, 1.5)}


def _digest(case) -> str:
    h = hashlib.sha256()
    for name in MAPS:
        a = np.ascontiguousarray(getattr(case, name).array)
        h.update(name.encode())
        h.update(str(a.dtype).encode())
        h.update(str(a.shape).encode())
        h.update(a.tobytes())
    return h.hexdigest()


@pytest.mark.parametrize("modality", ["ct", "mri"])
def test_rectum_site_is_the_default(modality):
    a = make_case(2, modality, shape=(16, 64, 64))
    b = make_case(2, modality, shape=(16, 64, 64), tumour_site="rectum")
    assert _digest(a) == _digest(b)
    assert a.tumour_info == b.tumour_info and a.tumour_info["site"] == "rectum"


def _colon_and_host(seed: int, t_stage: str):
    """A colon-tumour case (centred on its tumour) and the same patient with its rectal tumour on the same grid."""
    colon = make_case(seed, "ct", t_stage=t_stage, tumour_site="colon", center="tumour", **CROP)
    host = make_case(seed, "ct", t_stage=t_stage, center=tuple(colon.options["center"]), **CROP)
    assert colon.image.same_geometry(host.image)
    return colon, host


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_colon_tumour_is_colon_above_the_rectum(seed):
    case = make_case(seed, "ct", tumour_site="colon", shape=(48, 96, 96), spacing=(5.0, 3.0, 3.0))
    label, organs = case.label.array, case.organs.array
    tumour = label == TUMOUR
    assert tumour.sum() >= 50
    assert np.all(organs[tumour] == 20)
    rectum_z = np.nonzero(label == RECTUM)[0]
    tumour_z = np.nonzero(tumour)[0]
    # the tumour lies above the rectum's top slice (a T3 front may reach down to it), its centroid >= 15 mm higher
    assert (tumour_z > rectum_z.max()).mean() >= 0.99
    assert (tumour_z.mean() - rectum_z.max()) * case.image.spacing[0] >= 15.0
    assert case.tumour_info["site"] == "colon"
    assert case.tumour_info["s_center_mm"] > case.tumour_info["rectum_length_mm"] + 30


@pytest.mark.parametrize("seed", [0, 1])
def test_colon_t2_stays_in_the_wall_t3_reaches_the_fat(seed):
    t2, host2 = _colon_and_host(seed, "T2")
    tumour = t2.label.array == TUMOUR
    assert tumour.sum() >= 200
    # T2: every tumour voxel is host colon (wall or lumen), and it invades the host muscularis
    assert np.all(host2.organs.array[tumour] == 20)
    assert np.any(host2.tissue.array[tumour] == Tissue.MUSCULARIS)
    assert t2.tumour_info["extramural_voxels"] == 0
    t3, host3 = _colon_and_host(seed, "T3")
    tumour3 = t3.label.array == TUMOUR
    fat = tumour3 & (host3.tissue.array == Tissue.VISCERAL_FAT)
    assert fat.sum() > 0  # through the wall into the pericolic fat
    assert t3.tumour_info["extramural_voxels"] == fat.sum()
    assert tumour3.sum() > tumour.sum()
    assert np.all(t3.organs.array[tumour3] == 20)


def test_colon_tumour_is_visible_in_ct():
    case, host = _colon_and_host(0, "T2")
    img = case.image.array.astype(float)
    tumour = case.label.array == TUMOUR
    fat = case.tissue.array == Tissue.VISCERAL_FAT
    lumen = (host.tissue.array == Tissue.GAS) & tumour
    assert lumen.any()  # it fills part of the lumen
    assert img[tumour].mean() - img[fat].mean() > 100
    assert np.median(img[tumour]) > 20


def test_colon_case_keeps_the_patient():
    colon, host = _colon_and_host(3, "T3")
    apart = (colon.label.array != TUMOUR) & (host.label.array != TUMOUR)
    apart &= (colon.nodes.array == 0) & (host.nodes.array == 0)
    assert np.array_equal(colon.organs.array[apart], host.organs.array[apart])
    assert colon.t_stage == host.t_stage and colon.n_nodes == host.n_nodes
    for key in ("length_mm", "circumference_deg"):
        assert colon.tumour_info[key] == host.tumour_info[key]


def test_short_automatic_field_of_view_is_raised_to_the_tumour():
    case = make_case(0, "ct", shape=(32, 96, 96), tumour_site="colon")
    assert (case.label.array == TUMOUR).sum() > 0
    assert (case.label.array == RECTUM).sum() > 0


def test_colon_case_places_all_nodes_in_the_mesorectum():
    case = make_case(1, "ct", tumour_site="colon", n_nodes=6, shape=(32, 64, 64), spacing=(5.0, 3.0, 3.0))
    assert len(case.node_info) == 6
    assert all(n["s_mm"] <= case.tumour_info["rectum_length_mm"] for n in case.node_info)


@pytest.mark.parametrize("kwargs", [{"tumour_site": "caecum"}, {"tumour_site": "colon", "modality": "mri"},
                                    {"tumour_site": None}])
def test_bad_tumour_site(kwargs):
    modality = kwargs.pop("modality", "ct")
    with pytest.raises(InputError):
        make_case(0, modality, shape=(8, 32, 32), **kwargs)
