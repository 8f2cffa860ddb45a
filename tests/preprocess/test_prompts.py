"""Prompt generation for U-SAM/SAM: points inside class masks, boxes enclosing them, seeding, user prompt files and
the original-slice → model-input mapping."""

from __future__ import annotations

import json

import numpy as np
import pytest

from procto.errors import InputError
from procto.preprocess.prompts import (
    SliceGeometry,
    batch_prompts,
    box_prompts,
    collate_prompts,
    load_prompt_file,
    merge_prompts,
    point_prompts,
    prompts_from_label,
    prompts_to_json,
    sample_prompts,
)


@pytest.fixture()
def label() -> np.ndarray:
    lab = np.zeros((64, 80), np.uint8)
    yy, xx = np.mgrid[:64, :80]
    lab[(yy - 30) ** 2 + (xx - 40) ** 2 < 15**2] = 1
    lab[(yy - 24) ** 2 + (xx - 46) ** 2 < 6**2] = 2
    return lab


@pytest.mark.parametrize("strategy", ["random", "even", "interior"])
@pytest.mark.parametrize("k", [1, 3, 5])
def test_points_lie_inside_their_class(label, strategy, k):
    coords, labels = point_prompts(label, k, classes=(1, 2), seed=3, strategy=strategy)
    assert coords.shape == (2 * k, 2) and labels.shape == (2 * k,)
    assert (labels == 1).all()
    for i, c in enumerate((1, 2)):
        pts = coords[i * k: (i + 1) * k].astype(int)
        # (x, y) = (column, row)
        assert (label[pts[:, 1], pts[:, 0]] == c).all()


def test_points_are_seeded(label):
    a = point_prompts(label, 3, seed=7)[0]
    b = point_prompts(label, 3, seed=7)[0]
    c = point_prompts(label, 3, seed=8)[0]
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_absent_class_is_padded(label):
    only_normal = np.where(label == 2, 1, label)
    coords, labels = point_prompts(only_normal, 3, classes=(1, 2), seed=0)
    assert labels.tolist() == [1, 1, 1, -1, -1, -1]
    coords, labels = point_prompts(only_normal, 3, classes=(1, 2), seed=0, pad=False)
    assert len(coords) == 3
    assert point_prompts(np.zeros((8, 8)), 2, pad=False)[0].shape == (0, 2)


def test_interior_points_avoid_the_boundary(label):
    from scipy.ndimage import distance_transform_edt

    depth = distance_transform_edt(label == 1)
    coords, _ = point_prompts(label, 20, classes=(1,), seed=0, strategy="interior")
    pts = coords.astype(int)
    assert depth[pts[:, 1], pts[:, 0]].min() >= 0.5 * depth.max() - 1e-9


def test_boxes_enclose_the_masks(label):
    union = box_prompts(label, "union")
    assert union.shape == (1, 4)
    rows, cols = np.nonzero(label)
    np.testing.assert_array_equal(union[0], [cols.min(), rows.min(), cols.max(), rows.max()])
    per_class = box_prompts(label, "class")
    for box, c in zip(per_class, (1, 2)):
        r, cc = np.nonzero(label == c)
        assert box[0] <= cc.min() and box[2] >= cc.max() and box[1] <= r.min() and box[3] >= r.max()
    # jitter only grows the box, by at most `jitter` (+ margin), clipped to the image; seeded
    j1 = box_prompts(label, "union", margin=1, jitter=4, seed=5)[0]
    j2 = box_prompts(label, "union", margin=1, jitter=4, seed=5)[0]
    np.testing.assert_array_equal(j1, j2)
    grow = (j1 - union[0]) * np.array([-1, -1, 1, 1])
    assert (grow >= 1).all() and (grow <= 5).all()
    empty = box_prompts(np.zeros((10, 10)), "class")
    assert np.isnan(empty).all() and empty.shape == (2, 4)


def test_sample_and_collate(label):
    p = sample_prompts(label, "both", 3, seed=0)
    assert p.points.shape == (6, 2) and p.boxes.shape == (1, 4)
    assert sample_prompts(label, "none").empty
    with pytest.raises(InputError):
        sample_prompts(label, "scribbles")
    batch = np.stack([label, np.zeros_like(label), np.where(label == 2, 1, label)])
    kw = batch_prompts(batch, "points", 3, seed=[1, 2, 3])
    assert kw["points"].shape == (3, 6, 2) and kw["point_labels"].shape == (3, 6)
    assert (kw["point_labels"][1] == -1).all() and (kw["point_labels"][2, 3:] == -1).all()
    kw = batch_prompts(batch, "boxes")
    assert kw["boxes"].shape == (3, 1, 4) and np.isnan(kw["boxes"][1]).all()
    assert batch_prompts(batch, "none") == {}
    assert collate_prompts([]) == {}


def test_model_accepts_collated_prompts(label):
    torch = pytest.importorskip("torch")
    from procto.nets import create_model

    torch.manual_seed(0)
    model = create_model("usam_b", img_size=64, encoder_depth=1, encoder_embed_dim=64,
                         cnn_channels=(8, 8, 16, 16)).eval()
    lab = label[:, 8:72]
    kw = batch_prompts(np.stack([lab, lab]), "both", 3, seed=0)
    with torch.no_grad():
        out = model(torch.rand(2, 3, 64, 64), **{k: torch.as_tensor(v) for k, v in kw.items()})
    assert out.shape == (2, 3, 64, 64) and torch.isfinite(out).all()


def test_slice_geometry_maps_points_and_boxes():
    geo = SliceGeometry(height=100, width=200, size=50, transpose=False)
    # clipped to the image
    np.testing.assert_allclose(geo.points_to_model([[199.5, 99.5], [0, 0]]), [[49, 49], [0, 0]], atol=1e-4)
    p = np.array([[20.0, 60.0], [150.0, 10.0]])
    for transpose in (False, True):
        g = SliceGeometry(100, 200, 224, transpose)
        back = g.points_from_model(g.points_to_model(p))
        np.testing.assert_allclose(back, p, atol=1e-3)
    g = SliceGeometry(100, 200, 224, transpose=True)
    m = g.points_to_model([[150.0, 10.0]])[0]
    # transposed: model x follows the slice's rows, model y its columns
    assert m[0] == pytest.approx((10 + 0.5) * 2.24 - 0.5, abs=1e-4)
    assert m[1] == pytest.approx((150 + 0.5) * 1.12 - 0.5, abs=1e-4)
    box = g.boxes_to_model([[10, 20, 30, 40], [np.nan] * 4])
    assert box[0, 0] < box[0, 2] and box[0, 1] < box[0, 3] and np.isnan(box[1]).all()


def test_prompt_files(tmp_path):
    f = tmp_path / "p.json"
    f.write_text(json.dumps({
        "points": [{"slice": 3, "x": 10, "y": 20, "class": 2}, {"slice": 3, "x": 11, "y": 21, "class": 1},
                   {"slices": [5, 6], "xy": [1, 2], "label": 0}],
        "boxes": [{"slice": 3, "box": [1, 2, 30, 40]}],
    }))
    pr = load_prompt_file(f)
    assert sorted(pr) == [3, 5, 6]
    assert pr[3].points == [(10.0, 20.0), (11.0, 21.0)] and pr[3].point_classes == [2, 1]
    assert pr[5].point_labels == [0] and pr[3].boxes == [[1, 2, 30, 40]]
    m = pr[3].to_model(SliceGeometry(50, 50, 50, transpose=False))
    np.testing.assert_allclose(m.points, [[11, 21], [10, 20]])  # class 1 first
    again = load_prompt_file_roundtrip(tmp_path, pr)
    assert again[3].points == pr[3].points and again[6].point_labels == [0]
    merged = merge_prompts(pr, {3: pr[3]})
    assert len(merged[3].points) == 4
    # a bare list of boxes
    g = tmp_path / "b.json"
    g.write_text(json.dumps([{"slice": 1, "box": [0, 0, 5, 5]}]))
    assert load_prompt_file(g)[1].boxes == [[0, 0, 5, 5]]


def load_prompt_file_roundtrip(tmp_path, prompts):
    p = tmp_path / "round.json"
    p.write_text(json.dumps(prompts_to_json(prompts)))
    return load_prompt_file(p)


@pytest.mark.parametrize("content, message", [
    ("{", "not a readable JSON"),
    ('{"clicks": []}', "'points' and/or 'boxes'"),
    ('{"points": [{"x": 1, "y": 2}]}', "'slice'"),
    ('{"points": [{"slice": 1, "x": 1}]}', "'x' and 'y'"),
    ('{"points": [{"slice": -1, "x": 1, "y": 1}]}', "non-negative"),
    ('{"points": [{"slice": 1, "x": 1, "y": 1, "label": 3}]}', "'label'"),
    ('{"boxes": [{"slice": 1, "box": [5, 5, 1, 1]}]}', "x1 <= x2"),
    ('{"boxes": [{"slice": 1, "box": [5, 5, 1]}]}', "4 finite numbers"),
])
def test_bad_prompt_files(tmp_path, content, message):
    f = tmp_path / "bad.json"
    f.write_text(content)
    with pytest.raises(InputError, match=message):
        load_prompt_file(f)
    with pytest.raises(InputError, match="not found"):
        load_prompt_file(tmp_path / "missing.json")


def test_prompts_from_label_volume(label):
    vol = np.stack([np.zeros_like(label), label, label])
    pr = prompts_from_label(vol, "both", 3, seed=1)
    assert sorted(pr) == [1, 2]
    assert len(pr[1].points) == 6 and pr[1].point_classes == [1, 1, 1, 2, 2, 2] and len(pr[1].boxes) == 1
    for (x, y), c in zip(pr[1].points, pr[1].point_classes):
        assert label[int(y), int(x)] == c
    assert prompts_from_label(vol, "none") == {}
