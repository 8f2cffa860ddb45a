"""procto.report's measurements against analytic truth, on axial, sagittal and oblique volumes.

The objects are defined in the patient frame (a rectal tube, a tumour occupying a known arc of its wall over a
known craniocaudal range, elliptic nodes of known axes) and rasterised by evaluating them at each voxel centre's
physical position, so the truth does not depend on the code under test.  Lengths are checked within one voxel
(the voxel's diagonal), angles within one voxel's angular size at the wall, volumes exactly.
"""

from __future__ import annotations

import numpy as np
import pytest

from procto.errors import InputError
from procto.io import Volume
from procto.report import measure_nodes, measure_tumour, n_category


def _rotation(axis: int, deg: float) -> np.ndarray:
    c, s = np.cos(np.radians(deg)), np.sin(np.radians(deg))
    i, j = [k for k in range(3) if k != axis]
    r = np.eye(3)
    r[i, i], r[i, j], r[j, i], r[j, j] = c, -s, s, c
    return r


# physical (z, y, x) = (inferior→superior, anterior→posterior, right→left); columns: array axes
AXIAL = (np.eye(3), (2.0, 0.8, 0.8), (48, 96, 96))
SAGITTAL = (np.array([[0.0, -1.0, 0.0], [0.0, 0.0, 1.0], [1.0, 0.0, 0.0]]), (3.0, 0.7, 0.7), (24, 140, 110))
OBLIQUE = (_rotation(1, 20.0) @ _rotation(2, 15.0), (1.5, 0.9, 0.9), (80, 110, 110))
GEOMETRIES = {"axial": AXIAL, "sagittal": SAGITTAL, "oblique": OBLIQUE}

CENTRE = np.array([120.0, -30.0, 10.0])  # patient position of the rectal axis at z = 0 (arbitrary)
TUMOUR_ARC = (60.0, 200.0)  # clock degrees (0 = 12 o'clock anterior, 90 = the patient's left)
TUMOUR_Z = (-10.0, 22.0)
RECTUM_Z = (-40.0, 40.0)
R_LUMEN, R_WALL = 10.0, 15.0
#: nodes: centre offset (z, y, x) mm, in-plane semi-axes (a ≥ b), in-plane rotation (deg), craniocaudal semi-axis
NODES = [((5.0, 28.0, -24.0), (6.0, 3.5), 30.0, 4.0), ((-20.0, -25.0, 26.0), (4.5, 4.5), 0.0, 3.0),
         ((15.0, 30.0, 25.0), (5.0, 2.5), -50.0, 6.0)]


def _grid(geometry) -> tuple[Volume, np.ndarray]:
    direction, spacing, shape = geometry
    half = (np.asarray(shape) - 1) / 2 * np.asarray(spacing)
    origin = CENTRE - direction @ half
    vol = Volume(np.zeros(shape, np.uint8), spacing=spacing, origin=origin, direction=direction)
    idx = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"), axis=-1).reshape(-1, 3)
    phys = origin + (idx * np.asarray(spacing)) @ direction.T
    return vol, (phys - CENTRE).reshape(*shape, 3)


def _phantom(geometry) -> tuple[Volume, Volume]:
    vol, p = _grid(geometry)
    z, y, x = p[..., 0], p[..., 1], p[..., 2]
    r = np.hypot(y, x)
    clock = np.degrees(np.arctan2(x, -y)) % 360.0
    label = np.zeros(vol.shape, np.uint8)
    label[(r <= R_WALL) & (z >= RECTUM_Z[0]) & (z <= RECTUM_Z[1])] = 1
    tumour = ((r >= R_LUMEN) & (r <= R_WALL) & (clock >= TUMOUR_ARC[0]) & (clock <= TUMOUR_ARC[1])
              & (z >= TUMOUR_Z[0]) & (z <= TUMOUR_Z[1]))
    label[tumour] = 2
    nodes = np.zeros(vol.shape, np.uint8)
    for k, (offset, (a, b), rot, c) in enumerate(NODES, start=1):
        d = p - np.asarray(offset)
        t = np.radians(rot)
        u = d[..., 1] * np.cos(t) + d[..., 2] * np.sin(t)
        v = -d[..., 1] * np.sin(t) + d[..., 2] * np.cos(t)
        nodes[(u / a) ** 2 + (v / b) ** 2 + (d[..., 0] / c) ** 2 <= 1.0] = k
    return vol.with_array(label), vol.with_array(nodes)


@pytest.fixture(scope="module", params=sorted(GEOMETRIES))
def phantom(request):
    geometry = GEOMETRIES[request.param]
    label, nodes = _phantom(geometry)
    return request.param, label, nodes, float(np.linalg.norm(geometry[1]))


def test_tumour_measurements_match_the_analytic_truth(phantom) -> None:
    name, label, _, voxel = phantom
    m = measure_tumour(label)
    n = int((label.array == 2).sum())
    assert n > 200, name
    assert m["volume_ml"] == pytest.approx(n * np.prod(label.spacing) / 1000.0, rel=1e-12)
    assert m["craniocaudal_length_mm"] == pytest.approx(TUMOUR_Z[1] - TUMOUR_Z[0], abs=voxel)
    arc = TUMOUR_ARC[1] - TUMOUR_ARC[0]
    chord = 2 * R_WALL * np.sin(np.radians(arc / 2))  # the arc's end points on the outer wall (arc < 180°)
    assert m["max_axial_diameter_mm"] == pytest.approx(chord, abs=voxel)
    arc_tol = np.degrees(voxel / R_LUMEN)
    assert m["circumferential_extent_deg"] == pytest.approx(arc, abs=arc_tol)
    start, end = m["clock_face"]
    assert start == pytest.approx(TUMOUR_ARC[0] / 30, abs=arc_tol / 30)
    assert end == pytest.approx(TUMOUR_ARC[1] / 30, abs=arc_tol / 30)
    assert m["distance_to_anorectal_junction_mm"] == pytest.approx(TUMOUR_Z[0] - RECTUM_Z[0], abs=voxel)
    assert m["height_class"] == "low"


def test_node_axes_centres_and_volumes_match_the_analytic_truth(phantom) -> None:
    name, _, nodes, voxel = phantom
    found = measure_nodes(nodes, scores={1: 0.9, 3: 0.2})
    assert [f["id"] for f in found] == [1, 2, 3]
    for f, (offset, (a, b), _, _) in zip(found, NODES):
        mask = nodes.array == f["id"]
        assert f["volume_ml"] == pytest.approx(mask.sum() * np.prod(nodes.spacing) / 1000.0, rel=1e-12)
        np.testing.assert_allclose(f["centre_mm"], CENTRE + np.asarray(offset), atol=voxel / 2)
        assert f["long_axis_mm"] == pytest.approx(2 * a, abs=voxel), name
        assert f["short_axis_mm"] == pytest.approx(2 * b, abs=voxel), name
    assert [f["score"] for f in found] == [0.9, None, 0.2]
    assert [f["score"] for f in measure_nodes(nodes, scores=[0.1, 0.5, 0.7])] == [0.1, 0.5, 0.7]


def test_measurements_agree_across_orientations() -> None:
    """The same anatomy measured in three acquisitions: lengths agree within the coarser voxel."""
    results = {name: measure_tumour(_phantom(g)[0]) for name, g in GEOMETRIES.items()}
    tol = max(np.linalg.norm(g[1]) for g in GEOMETRIES.values())
    for key in ("craniocaudal_length_mm", "max_axial_diameter_mm", "distance_to_anorectal_junction_mm"):
        values = [r[key] for r in results.values()]
        assert max(values) - min(values) <= tol, (key, values)


def test_a_full_ring_tumour_covers_the_whole_circumference() -> None:
    label, _ = _phantom(AXIAL)
    arr = label.array.copy()
    vol, p = _grid(AXIAL)
    r = np.hypot(p[..., 1], p[..., 2])
    arr[(r >= R_LUMEN) & (r <= R_WALL) & (np.abs(p[..., 0]) <= 4.0)] = 2
    m = measure_tumour(label.with_array(arr))
    assert m["circumferential_extent_deg"] == pytest.approx(360.0)
    assert m["clock_face"] == (12.0, 12.0)


def test_no_tumour_gives_empty_lengths_and_no_rectum_no_distance() -> None:
    label, _ = _phantom(AXIAL)
    rectum_only = label.with_array(np.where(label.array == 2, 1, label.array).astype(np.uint8))
    m = measure_tumour(rectum_only)
    assert m["volume_ml"] == 0.0
    assert m["craniocaudal_length_mm"] is None and m["max_axial_diameter_mm"] is None
    assert m["circumferential_extent_deg"] is None and m["distance_to_anorectal_junction_mm"] is None
    tumour_only = label.with_array(np.where(label.array == 1, 0, label.array).astype(np.uint8))
    assert measure_tumour(tumour_only)["distance_to_anorectal_junction_mm"] is None
    assert measure_nodes(label.with_array(np.zeros(label.shape, np.uint8))) == []


def test_custom_label_values_and_bad_input() -> None:
    label, _ = _phantom(AXIAL)
    swapped = label.with_array(np.choose(label.array, [0, 7, 3]).astype(np.uint8))
    assert measure_tumour(swapped, rectum_label=7, tumour_label=3) == measure_tumour(label)
    with pytest.raises(InputError, match="Volume"):
        measure_tumour(label.array)
    with pytest.raises(InputError, match="non-integer"):
        measure_tumour(label.with_array(label.array + 0.5))
    with pytest.raises(InputError, match="negative"):
        measure_nodes(label.with_array(-label.array.astype(np.int16)))


@pytest.mark.parametrize("count, category", [(0, "N0"), (1, "N1"), (3, "N1"), (4, "N2"), (7, "N2")])
def test_n_category_counts_metastatic_nodes(count: int, category: str) -> None:
    assert n_category(count) == category


def test_n_category_refuses_bad_counts() -> None:
    for bad in (-1, 1.5, "two", True):
        with pytest.raises(InputError):
            n_category(bad)
