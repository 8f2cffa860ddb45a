"""Writing a report's files: report.json, report.html, label maps in the inputs' geometry and, for DICOM inputs, a
DICOM-SEG (+ a TID 1500 SR of its measurements).  Everything is written into a temporary folder beside ``out``
and moved in at the end, so a failure leaves no half-written report; report.json and report.html are checked to
hold none of the source headers' identifiers before they are moved (the DICOM objects carry the source identity on
purpose: PACS files them with the study)."""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from procto.errors import OutputError
from procto.io import Volume, write_image, write_text_atomic

#: Label values of the combined CT map written to DICOM-SEG: rectum, tumour, then node ``k`` as ``NODE_BASE + k``.
NODE_BASE = 10
#: Nodes written as their own DICOM-SEG segment with an SR measurement group: the highest-scoring ones.  The other
#: node candidates share one segment, :data:`OTHER_NODES` (a model outside its training domain can return thousands
#: of fragments; one SR group each would take many minutes to write and bury the findings).
MAX_NODE_SEGMENTS = 20
OTHER_NODES = NODE_BASE - 1


def json_dumps(obj: Any, indent: int | None = None) -> str:
    """JSON of report values (numpy numbers, tuples and NaN as null)."""
    import json
    import math

    def clean(v):
        if isinstance(v, dict):
            return {str(k): clean(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [clean(x) for x in v]
        if isinstance(v, np.generic):
            v = v.item()
        if isinstance(v, float) and not math.isfinite(v):
            return None
        if isinstance(v, Path):
            return v.name
        return v

    return json.dumps(clean(obj), indent=indent)


def _top_nodes(report: dict) -> list[int]:
    """Ids of the report's nodes with their own segment: by score, highest first, at most :data:`MAX_NODE_SEGMENTS`."""
    items = (report.get("nodes") or {}).get("items", [])
    ranked = sorted(items, key=lambda n: (-float(n.get("score") or 0.0), int(n["id"])))
    return [int(n["id"]) for n in ranked[:MAX_NODE_SEGMENTS]]


def _combined(label: Volume | None, nodes: Volume | None, like: Volume,
              top: list[int] | None = None) -> tuple[np.ndarray, list[dict]]:
    """One label map of ``like``'s shape for the SEG and its segments: rectum 1, tumour 2, node ``k`` of ``top``
    (default: every node) ``NODE_BASE + k``, other nodes :data:`OTHER_NODES`."""
    arr = np.zeros(like.shape, np.uint16)
    segments = []
    if label is not None:
        src = np.asarray(label.array)
        arr[src == 1], arr[src == 2] = 1, 2
        segments += [{"value": 1, "name": "rectum", "kind": "rectum"}, {"value": 2, "name": "tumour",
                                                                         "kind": "tumour"}]
    if nodes is not None:
        ids = np.asarray(nodes.array).astype(np.int64)
        present = [int(k) for k in np.unique(ids[ids > 0])]
        known = set(present)
        keep = [k for k in (present if top is None else top) if k in known]
        lut = np.full(max(present, default=0) + 1, OTHER_NODES, np.uint16)
        lut[0] = 0
        lut[keep] = [NODE_BASE + k for k in keep]
        inside = ids > 0
        arr[inside] = lut[ids[inside]]
        segments += [{"value": NODE_BASE + k, "name": f"lymph node {k}", "kind": "node"} for k in sorted(keep)]
        if len(keep) < len(present):
            segments.append({"value": OTHER_NODES, "name": f"other lymph node candidates ({len(present) - len(keep)})",
                             "kind": "node"})
    values = set(np.unique(arr).tolist())
    return arr, [s for s in segments if s["value"] in values]


def _findings(report: dict, name: str, segments: list[dict]) -> list[dict]:
    """SR findings (by SEG segment label) for the segments written: the tumour's volume, each node's axes,
    volume and score."""
    names = {s["value"]: s["name"] for s in segments}
    out = []
    tumour = report.get("tumour") or {}
    if 2 in names and tumour.get("source") == name:
        out.append({"segment": names[2], "volume_ml": tumour.get("volume_ml")})
    if name == "ct":
        for node in (report.get("nodes") or {}).get("items", []):
            if NODE_BASE + node["id"] in names:
                out.append({"segment": names[NODE_BASE + node["id"]], "volume_ml": node["volume_ml"],
                            "long_axis_mm": node["long_axis_mm"], "short_axis_mm": node["short_axis_mm"],
                            "probability": node["score"]})
    return out


def _dicom_outputs(tmp: Path, report: dict, state, scans: dict) -> dict[str, str]:
    from procto.report.dicom import write_dicom_seg, write_dicom_sr

    written = {}
    for name, scan in scans.items():
        if not scan.is_dicom:
            continue
        nodes = state.nodes if name == "ct" else None
        arr, segments = _combined(state.labels.get(name), nodes, scan.volume, _top_nodes(report))
        if not segments:
            continue
        seg_path = write_dicom_seg(scan.volume.with_array(arr), scan.datasets, tmp / f"{name}_seg.dcm", segments)
        written[f"{name}_dicom_seg"] = seg_path.name
        findings = _findings(report, name, segments)
        if findings:
            sr = write_dicom_sr(seg_path, scan.datasets, tmp / f"{name}_sr.dcm", findings)
            written[f"{name}_dicom_sr"] = Path(sr).name
    return written


def _check_no_identifiers(paths: list[Path], scans: dict) -> None:
    from procto.report.dicom import source_identifiers

    ids = set()
    for scan in scans.values():
        if scan.is_dicom:
            ids |= source_identifiers(scan.datasets)
    for path in paths:
        # embedded images are pixels, not text: their base64 could match a short value (an age) by chance
        text = re.sub(r"data:[\w/+.-]+;base64,[A-Za-z0-9+/=]+", "", path.read_text(errors="ignore"))
        leaked = sorted(v for v in ids if v in text)
        if leaked:
            raise OutputError(f"refusing to write a report holding {len(leaked)} source header identifier(s)",
                              path.name)


def _move_into(tmp: Path, out: Path) -> None:
    if not out.exists():
        os.replace(tmp, out)
        return
    out.mkdir(parents=True, exist_ok=True)
    for item in sorted(tmp.iterdir()):
        os.replace(item, out / item.name)
    tmp.rmdir()


def write_outputs(out: Path, report: dict, state, scans: dict, *, dicom: bool = True, html: bool = True) -> dict:
    """Write every output of ``report`` into folder ``out`` (see the module doc); fills ``report["outputs"]``."""
    out = Path(out)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    except OSError as exc:
        raise OutputError(f"cannot write here ({exc.strerror or exc})", out) from None
    try:
        outputs: dict[str, str] = {}
        for name, label in state.labels.items():
            write_image(label, tmp / f"{name}_labels.nii.gz")
            outputs[f"{name}_labels"] = f"{name}_labels.nii.gz"
        if state.nodes is not None:
            write_image(state.nodes, tmp / "ct_nodes.nii.gz")
            outputs["ct_nodes"] = "ct_nodes.nii.gz"
        if dicom:
            outputs.update(_dicom_outputs(tmp, report, state, scans))
        texts = [tmp / "report.json"]
        if html:
            from procto.report.html import write_report_html

            outputs["html"] = "report.html"
        report["outputs"] = {**outputs, "json": "report.json"}
        write_text_atomic(tmp / "report.json", json_dumps(report, indent=1) + "\n")
        if html:
            images = {n: (s.volume, state.labels.get(n)) for n, s in scans.items()}
            nodes = (scans["ct"].volume, state.nodes) if state.nodes is not None and "ct" in scans else None
            write_report_html(report, tmp / "report.html", images=images, nodes=nodes)
            texts.append(tmp / "report.html")
        _check_no_identifiers(texts, scans)
        _move_into(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return report["outputs"]


__all__ = ["write_outputs", "json_dumps", "NODE_BASE", "MAX_NODE_SEGMENTS", "OTHER_NODES"]
