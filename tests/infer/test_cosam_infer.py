"""CoSAM inference (procto.infer.cosam) around a stand-in model: windows with replicated borders, HU window, masks
linked across slices into 3D nodes in the CT's geometry, node measurements, the N category, bad input."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

from procto.errors import InputError
from procto.infer.cosam import CoSAMPredictor
from procto.metrics import n_category
from procto.preprocess.meply import hu_window, window_slices
from procto.io import Volume


class _Threshold(nn.Module):
    """Stand-in CoSAM: the centre slice's bright pixels (unit value > 0.8, i.e. > 60 HU) are the mask; one box per
    window scoring 0.9 when anything is bright, else no box."""

    window = 5

    def __init__(self, size: int = 32):
        super().__init__()
        self.segmenter = SimpleNamespace(img_size=size)
        self.seen: list[torch.Tensor] = []

    def forward(self, windows):
        self.seen.append(windows.clone())
        out = []
        for w in windows:
            mask = w[w.shape[0] // 2] > 0.8
            if mask.any():
                ys, xs = torch.nonzero(mask, as_tuple=True)
                boxes = torch.tensor([[xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]], dtype=torch.float32)
                scores = torch.tensor([0.9])
            else:
                boxes, scores = torch.zeros((0, 4)), torch.zeros(0)
            out.append({"boxes": boxes, "scores": scores, "det_scores": scores, "mask": mask})
        return out


def _ct(shape=(12, 32, 32)) -> tuple[Volume, np.ndarray]:
    hu = np.full(shape, -90.0, np.float32)
    truth = np.zeros(shape, np.uint8)
    truth[3:7, 5:11, 6:10] = 1  # node 1: 4 slices, 6 × 4 px
    truth[8:10, 20:24, 20:30] = 2  # node 2
    hu[truth > 0] = 90.0
    direction = np.array([[1.0, 0, 0], [0, -1.0, 0], [0, 0, 1.0]])
    return Volume(hu, (2.0, 0.5, 0.75), (10.0, 20.0, -5.0), direction), truth


def test_windows_replicate_the_border_slices():
    assert window_slices(0, 5, 10).tolist() == [0, 0, 0, 1, 2]
    assert window_slices(9, 5, 10).tolist() == [7, 8, 9, 9, 9]
    assert window_slices(2, 9, 10).tolist() == [0, 0, 0, 1, 2, 3, 4, 5, 6]


def test_hu_window_and_n_category():
    assert hu_window(np.array([-500.0, -100.0, 0.0, 100.0, 900.0])).tolist() == [0.0, 0.0, 0.5, 1.0, 1.0]
    assert [n_category(n) for n in (0, 1, 3, 4, 9)] == ["N0", "N1", "N1", "N2", "N2"]
    with pytest.raises(ValueError):  # InputError is a ValueError
        n_category(-1)


def test_volume_prediction_links_slices_into_nodes_in_the_ct_geometry():
    ct, truth = _ct()
    model = _Threshold()
    result = CoSAMPredictor(model, device="cpu", batch_size=5).predict_volume(ct)
    inst = result.instances
    assert inst.same_geometry(ct) and np.allclose(inst.direction, ct.direction)
    assert inst.array.max() == 2 and set(np.unique(inst.array)) == {0, 1, 2}
    for node_id in (1, 2):  # each true node is exactly one predicted instance
        ids = np.unique(inst.array[truth == node_id])
        assert len(ids) == 1 and ids[0] > 0 and ((inst.array == ids[0]) == (truth == node_id)).all()
    assert result.n_category == "N1" and len(result.nodes) == 2
    node = next(n for n in result.nodes if n["volume_ml"] == pytest.approx(4 * 6 * 4 * 2.0 * 0.5 * 0.75 / 1000))
    # the node's axial section is a 6 × 4 px = 3 × 3 mm square: RECIST's long axis (largest diameter) is its diagonal
    assert node["long_axis_mm"] == pytest.approx(3.0 * np.sqrt(2), rel=1e-3)
    assert node["short_axis_mm"] == pytest.approx(node["long_axis_mm"], rel=1e-3) and node["score"] == pytest.approx(0.9) and node["metastatic"]
    zc, yc, xc = 4.5, 7.5, 7.5  # the node's voxel centre → physical via the CT's geometry
    assert np.allclose(node["centre_mm"], ct.index_to_physical((zc, yc, xc)))
    assert len(result.detections) == 12 and all(d["slice"] == i for i, d in enumerate(result.detections))
    # every window the model saw: L = 5 slices, unit range
    seen = torch.cat(model.seen)
    assert seen.shape[1:] == (5, 32, 32) and float(seen.min()) >= 0 and float(seen.max()) <= 1


def test_low_scores_give_no_nodes():
    ct, _ = _ct()
    result = CoSAMPredictor(_Threshold(), device="cpu", score_threshold=0.95).predict_volume(ct)
    assert result.instances.array.max() == 0 and result.nodes == [] and result.n_category == "N0"


def test_bad_input_is_one_clear_error():
    p = CoSAMPredictor(_Threshold(), device="cpu")
    with pytest.raises(InputError, match="fewer than"):
        p.predict_volume(Volume(np.zeros((3, 32, 32), np.float32)))
    with pytest.raises(InputError, match="non-empty 3D"):
        p.predict_volume(Volume(np.zeros((0, 32, 32), np.float32)))
    with pytest.raises(InputError, match="window"):
        p.predict_window(np.zeros((4, 32, 32)))
    with pytest.raises(InputError, match="not a CoSAM"):
        CoSAMPredictor(object(), device="cpu")


def test_node_descriptions_equal_those_measured_on_the_whole_volume():
    """describe_nodes measures each node on its bounding box: the same centres, axes and volumes as on full-volume
    masks, on an oblique grid."""
    from scipy.spatial.transform import Rotation

    from procto.infer.cosam import describe_nodes
    from procto.metrics.shape import physical_points, slab_axes

    rng = np.random.default_rng(3)
    inst = np.zeros((12, 40, 40), np.uint8)
    for k, (z, y, x) in enumerate([(3, 8, 9), (7, 25, 20), (5, 30, 33)], start=1):
        zz, yy, xx = np.ogrid[:12, :40, :40]
        r = rng.uniform(2.5, 4.5, 3)
        inst[((zz - z) / (r[0] / 2)) ** 2 + ((yy - y) / r[1]) ** 2 + ((xx - x) / r[2]) ** 2 <= 1] = k
    direction = Rotation.from_euler("xyz", [8, -5, 12], degrees=True).as_matrix()
    ct = Volume(np.zeros(inst.shape, np.int16), (2.5, 0.8, 0.9), (-30.0, 12.0, 40.0), direction)
    scores = {1: 0.9, 2: 0.3, 3: 0.7}
    nodes = describe_nodes(inst, ct, scores, 0.5)
    assert [n["id"] for n in nodes] == [1, 2, 3] and [n["metastatic"] for n in nodes] == [True, False, True]
    full = ct.with_array(inst)
    for n in nodes:
        mask = inst == n["id"]
        pts, axes = physical_points(full, mask), slab_axes(full, mask)
        np.testing.assert_allclose(n["centre_mm"], pts.mean(axis=0), atol=1e-9)
        assert n["long_axis_mm"] == pytest.approx(axes["long_axis_mm"], abs=1e-9)
        assert n["short_axis_mm"] == pytest.approx(axes["short_axis_mm"], abs=1e-9)
        assert n["volume_ml"] == pytest.approx(mask.sum() * ct.voxel_volume_mm3 / 1000.0)
