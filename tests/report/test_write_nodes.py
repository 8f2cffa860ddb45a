"""The SEG/SR node policy of ``procto report``: the :data:`MAX_NODE_SEGMENTS` highest-scoring nodes get their own
segment (and SR group), the rest share one "other candidates" segment; the quality section flags an implausible
node count."""

from __future__ import annotations

import numpy as np

from procto.io import Volume
from procto.report import quality
from procto.report.write import MAX_NODE_SEGMENTS, NODE_BASE, OTHER_NODES, _combined, _findings, _top_nodes


def _nodes(n: int) -> tuple[Volume, dict]:
    arr = np.zeros((4, 40, 40), np.uint16)
    for k in range(1, n + 1):  # node k: one voxel column, k-th in raster order
        arr[:, (k - 1) // 40, (k - 1) % 40] = k
    items = [{"id": k, "score": (k * 37 % n) / n, "volume_ml": 0.1, "long_axis_mm": 5.0, "short_axis_mm": 4.0}
             for k in range(1, n + 1)]
    return Volume(arr, (3.0, 1.0, 1.0)), {"nodes": {"items": items}}


def test_the_top_scoring_nodes_get_segments_and_the_rest_share_one() -> None:
    volume, report = _nodes(45)
    top = _top_nodes(report)
    by_score = sorted(report["nodes"]["items"], key=lambda n: -n["score"])
    assert top == [n["id"] for n in by_score[:MAX_NODE_SEGMENTS]]
    arr, segments = _combined(None, volume, volume, top)
    ids = np.asarray(volume.array)
    for k in range(1, 46):
        expected = NODE_BASE + k if k in top else OTHER_NODES
        assert (arr[ids == k] == expected).all()
    assert (arr[ids == 0] == 0).all()
    assert sorted(s["value"] for s in segments) == sorted([OTHER_NODES] + [NODE_BASE + k for k in top])
    assert any(s["name"] == "other lymph node candidates (25)" for s in segments)
    # SR groups only for the nodes with their own segment
    findings = _findings(report, "ct", segments)
    assert sorted(f["segment"] for f in findings) == sorted(f"lymph node {k}" for k in top)


def test_few_nodes_each_get_their_own_segment() -> None:
    volume, report = _nodes(3)
    arr, segments = _combined(None, volume, volume, _top_nodes(report))
    assert sorted(s["value"] for s in segments) == [NODE_BASE + 1, NODE_BASE + 2, NODE_BASE + 3]
    assert np.array_equal(arr, np.where(volume.array > 0, volume.array + NODE_BASE, 0))


def test_node_count_check() -> None:
    assert quality.node_count_check(quality.MAX_PLAUSIBLE_NODES)["ok"]
    bad = quality.node_count_check(quality.MAX_PLAUSIBLE_NODES + 1)
    assert not bad["ok"] and "implausible" in bad["detail"]
