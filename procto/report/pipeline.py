"""``procto report``: one patient's scans → masks, measurements, T and N findings, a JSON + HTML report, label maps
in the inputs' geometry and, for DICOM input, a DICOM-SEG.

>>> from procto.report import run_report
>>> report = run_report("out/", mri="t2_series/", ct="ct.nii.gz")          # doctest: +SKIP
>>> report["t_stage"]["label"], report["nodes"]["n_category"]              # doctest: +SKIP

Steps, each skipped (with the reason in the report) when its model or input is absent: MRI → rectum + tumour
(RCSegNeXt) → T2/T3 (staging, on the rectum crop); CT → tumour (AG-CRC, with an organ map given or from
TotalSegmentator when installed) → nodes (CoSAM) → N category.  Models are bundles (:mod:`procto.bundle`): those
named by ``bundles`` (files or installed names), else the installed bundle of each task.  No identifier from the
DICOM headers reaches any output: the report names the patient by a keyed pseudonym of the study.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from procto.errors import InputError
from procto.io import Volume, check_output, read_image
from procto.report import quality
from procto.report.measure import measure_tumour, n_category
from procto.report.write import json_dumps, write_outputs

SCHEMA = "procto-report/1"
#: Steps in order: name, task of its model.
STEPS = (("MRI segmentation (RCSegNeXt)", "rcsegnext"), ("T stage (staging CNN)", "staging"),
         ("CT tumour segmentation (AG-CRC)", "agcrc"), ("lymph nodes (CoSAM)", "cosam"))
#: Measurements that are proxies, marked "estimate" in the report.
ESTIMATES = ("circumferential_extent_deg", "clock_face", "distance_to_anorectal_junction_mm", "height_class")

Progress = Callable[[str, str], None]


@dataclass
class Scan:
    """One input scan: its volume, where it came from, and its DICOM headers (kept in memory only)."""

    name: str  # "mri" | "ct"
    path: Path
    volume: Volume
    datasets: list = field(default_factory=list)

    @property
    def is_dicom(self) -> bool:
        return bool(self.datasets)


def _read_scan(name: str, path: str | Path | None) -> Scan | None:
    if path is None:
        return None
    from procto.io.dicom import read_dicom_datasets

    path = Path(path)
    volume = read_image(path)
    datasets = read_dicom_datasets(path) if path.is_dir() else []
    return Scan(name, path, volume, datasets)


def _pseudonym(scans: Sequence[Scan]) -> str:
    """A keyed pseudonym of the study (DICOM: its StudyInstanceUID; files: their content)."""
    from procto.report.dicom import pseudonym

    for scan in scans:
        uid = str(getattr(scan.datasets[0], "StudyInstanceUID", "")) if scan.is_dicom else ""
        if uid:
            return pseudonym(uid)
    digest = hashlib.sha256()
    for scan in scans:
        if scan.path.is_file():
            with open(scan.path, "rb") as fh:
                for block in iter(lambda: fh.read(1 << 20), b""):
                    digest.update(block)
        else:
            digest.update(np.ascontiguousarray(scan.volume.array).tobytes())
    return pseudonym(digest.hexdigest())


def _find_bundles(bundles: Sequence[str | Path], home: str | Path | None) -> dict[str, Any]:
    """``{task: Bundle}``: the named bundles first, then the newest installed bundle of each remaining task."""
    from procto.bundle import list_bundles, open_bundle

    found: dict[str, Any] = {}
    for item in bundles:
        b = open_bundle(item, home=home)
        if b.task in found:
            raise InputError(f"two bundles for the task {b.task}: give one", str(item))
        found[b.task] = b
    rows = sorted((r for r in list_bundles(home) if r.get("task") and not r.get("problem")),
                  key=lambda r: str(r.get("created") or ""), reverse=True)
    for row in rows:
        if row["task"] not in found and row["task"] in {t for _, t in STEPS}:
            found[row["task"]] = open_bundle(row["name"], row["task"], home)
    return found


def _model_entry(bundle) -> dict[str, Any]:
    m = bundle.manifest
    files = m.get("files") or {}
    digest = hashlib.sha256(json_dumps({k: files[k] for k in sorted(files)}).encode()).hexdigest()
    return {"task": bundle.task, "name": bundle.name, "architecture": bundle.architecture,
            "procto_version": m.get("procto_version"), "sha256": digest,
            "trained_on": (m.get("training_data") or {}).get("source")}


def _label_names(labels: dict) -> tuple[int, int]:
    """(rectum, tumour) values of an nnU-Net ``labels`` map (by name; default 1, 2)."""
    by_name = {str(n).lower(): int(v) for v, n in labels.items()} if labels else {}
    rectum = next((v for n, v in by_name.items() if "rect" in n), 1)
    tumour = next((v for n, v in by_name.items() if "tum" in n or "canc" in n or "neopl" in n), 2)
    return rectum, tumour


@dataclass
class _State:
    """What the steps produce (internal)."""

    labels: dict[str, Volume] = field(default_factory=dict)  # "mri" / "ct": 1 rectum, 2 tumour
    nodes: Volume | None = None
    node_items: list = field(default_factory=list)
    t_stage: dict = field(default_factory=lambda: {"available": False, "reason": "no T2 MRI given"})
    checks: list = field(default_factory=list)


def _step_rcsegnext(state: _State, mri: Scan | None, bundle, seg: Volume | None) -> str | None:
    if mri is None:
        return "no MRI given"
    if seg is not None and seg.same_geometry(mri.volume):
        state.labels["mri"] = seg
        return "labels given (--seg)"
    if bundle is None:
        return "no rcsegnext bundle installed"
    from procto.infer.nnunet import NNUNetPredictor

    predictor = NNUNetPredictor(bundle.model_path)
    rectum, tumour = _label_names(predictor.labels)
    pred = np.asarray(predictor.predict(mri.volume).array)
    out = np.zeros(pred.shape, np.uint8)
    out[pred == rectum], out[pred == tumour] = 1, 2
    state.labels["mri"] = mri.volume.with_array(out)
    return None


def _step_staging(state: _State, mri: Scan | None, bundle, threshold: float) -> str | None:
    if mri is None:
        return "no MRI given"
    if bundle is None:
        state.t_stage = {"available": False, "reason": "no staging bundle installed"}
        return state.t_stage["reason"]
    label = state.labels.get("mri")
    if label is None or not np.asarray(label.array).any():
        state.t_stage = {"available": False, "reason": "no rectum segmentation to crop the MRI around"}
        return state.t_stage["reason"]
    from procto.infer.staging import predict_stage

    result = predict_stage(bundle.model_path, mri.volume, label)
    state.t_stage = {"available": True, "t3_probability": float(result["t3_probability"]), "label": result["label"],
                     "reason": None}
    return None


def _step_agcrc(state: _State, ct: Scan | None, bundle, seg: Volume | None, organs: Path | None) -> str | None:
    if ct is None:
        return "no CT given"
    if seg is not None and seg.same_geometry(ct.volume):
        state.labels["ct"] = seg
        return "labels given (--seg)"
    if bundle is None:
        return "no agcrc bundle installed"
    from procto.infer.agcrc import AGCRCPredictor, check_totalsegmentator

    predictor = AGCRCPredictor(bundle.model_path)
    if organs is None:
        try:
            check_totalsegmentator()
        except InputError:
            return "no organ map: give --organs (a TotalSegmentator map of the CT) or install TotalSegmentator"
        organs = _totalsegmentator_map(ct.volume, v1_order=predictor.scheme == "ts_v1")
    tumour = np.asarray(predictor.predict(ct.volume, organs).array) > 0
    state.labels["ct"] = ct.volume.with_array((tumour * 2).astype(np.uint8))
    return None


def _totalsegmentator_map(ct: Volume, *, v1_order: bool) -> Volume:
    """TotalSegmentator's organ map of ``ct`` (only called when it and its weights are installed)."""
    import tempfile

    from procto.infer.agcrc import run_totalsegmentator
    from procto.io import read_label, write_image

    with tempfile.TemporaryDirectory(prefix="procto_ts_") as tmp:
        write_image(ct, Path(tmp) / "ct.nii.gz")
        run_totalsegmentator(Path(tmp) / "ct.nii.gz", Path(tmp) / "organs.nii.gz", v1_order=v1_order)
        return read_label(Path(tmp) / "organs.nii.gz", reference=ct)


def _step_cosam(state: _State, ct: Scan | None, bundle, threshold: float) -> str | None:
    if ct is None:
        return "no CT given"
    if bundle is None:
        return "no cosam bundle installed"
    from procto.infer.cosam import CoSAMPredictor

    result = CoSAMPredictor(bundle.model_path, score_threshold=threshold).predict_volume(ct.volume)
    state.nodes = result.instances
    state.node_items = result.nodes
    return None


def _tumour_section(state: _State) -> dict[str, Any]:
    for source in ("mri", "ct"):
        label = state.labels.get(source)
        if label is not None and (np.asarray(label.array) == 2).any():
            m = measure_tumour(label)
            return {"available": True, "source": source, **m, "estimates": list(ESTIMATES), "reason": None}
    why = "no tumour found" if state.labels else "no segmentation (no MRI/CT model or labels)"
    return {"available": False, "reason": why}


def _nodes_section(state: _State, threshold: float, why: str | None) -> dict[str, Any]:
    if state.nodes is None:
        return {"available": False, "reason": why or "no CT nodes model run"}
    items = [{k: n[k] for k in ("id", "centre_mm", "short_axis_mm", "long_axis_mm", "volume_ml", "score",
                                "metastatic")} for n in state.node_items]
    n_meta = sum(bool(n["metastatic"]) for n in items)
    return {"available": True, "score_threshold": threshold, "items": items, "n_metastatic": n_meta,
            "n_category": n_category(n_meta), "reason": None}


def _quality(state: _State, scans: dict[str, Scan], bundles: dict[str, Any]) -> dict[str, Any]:
    checks = []
    for name, scan in scans.items():
        what = "MRI" if name == "mri" else "CT"
        label = state.labels.get(name)
        if label is not None:
            rectum = label.with_array(np.asarray(label.array) > 0)
            checks += [quality.field_of_view_check(rectum, what), quality.label_fraction_check(rectum, what)]
        for task in (("rcsegnext", "staging") if name == "mri" else ("agcrc", "cosam")):
            if task in bundles:
                checks += [quality.spacing_check(scan.volume, bundles[task].manifest, f"{what} ({task})"),
                           quality.intensity_check(scan.volume, bundles[task].manifest, f"{what} ({task})")]
    if state.nodes is not None:
        checks.append(quality.node_count_check(len(state.node_items)))
    checks.append(quality.phantom_check([b.manifest for b in bundles.values()]))
    return quality.summarise(checks)


def _run_steps(state: _State, scans: dict[str, Scan], bundles: dict[str, Any], seg: Volume | None,
               organs: Path | None, threshold: float, progress: Progress | None) -> list[dict]:
    mri, ct = scans.get("mri"), scans.get("ct")
    runners = {
        "rcsegnext": lambda b: _step_rcsegnext(state, mri, b, seg),
        "staging": lambda b: _step_staging(state, mri, b, threshold),
        "agcrc": lambda b: _step_agcrc(state, ct, b, seg, organs),
        "cosam": lambda b: _step_cosam(state, ct, b, threshold),
    }
    steps = []
    for name, task in STEPS:
        if progress is not None:
            progress(name, "start")
        t = time.perf_counter()
        status, reason = "done", None
        try:
            reason = runners[task](bundles.get(task))
        except InputError as exc:
            status, reason = "failed", str(exc)
        if reason is not None and status == "done" and not reason.startswith("labels given"):
            status = "skipped"
        steps.append({"name": name, "task": task, "status": status, "reason": reason,
                      "seconds": round(time.perf_counter() - t, 2)})
        if progress is not None:
            progress(name, status)
    return steps


def _read_seg(seg: str | Path | None, scans: dict[str, Scan]) -> Volume | None:
    if seg is None:
        return None
    from procto.io import read_label

    label = read_label(seg)
    if scans and not any(label.same_geometry(s.volume) for s in scans.values()):
        raise InputError("the label map's geometry matches neither the MRI nor the CT", seg)
    return label.with_array(np.asarray(label.array).astype(np.uint8))


def build_report(state: _State, scans: dict[str, Scan], bundles: dict[str, Any], steps: list[dict],
                 threshold: float, patient: str) -> dict[str, Any]:
    """The report.json dict (schema :data:`SCHEMA`, units in the keys)."""
    import datetime

    from procto import __version__

    cosam_reason = next((s["reason"] for s in steps if s["task"] == "cosam"), None)
    return {
        "schema": SCHEMA, "procto_version": __version__,
        "created": datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0).isoformat(),
        "patient": {"pseudonym": patient},
        "inputs": {name: quality.describe_input(s.volume, "dicom" if s.is_dicom else "nifti" if
                                                 s.path.name.endswith((".nii", ".nii.gz")) else s.path.suffix.lstrip("."))
                   for name, s in scans.items()},
        "models": [_model_entry(b) for _, b in sorted(bundles.items())],
        "tumour": _tumour_section(state),
        "t_stage": state.t_stage,
        "nodes": _nodes_section(state, threshold, cosam_reason),
        "quality": _quality(state, scans, bundles),
        "steps": steps,
        "outputs": {},
    }


def run_report(out: str | Path, *, mri: str | Path | None = None, ct: str | Path | None = None,
               seg: str | Path | None = None, organs: str | Path | None = None,
               bundles: Sequence[str | Path] = (), home: str | Path | None = None, score_threshold: float = 0.5,
               dicom: bool = True, html: bool = True, progress: Progress | None = None) -> dict[str, Any]:
    """Run the report on one patient and write it into folder ``out``; return the report dict.

    ``mri`` / ``ct``: NIfTI/NRRD/MHA files or DICOM series folders (either or both); ``seg``: a label map (1 rectum,
    2 tumour) in the geometry of one of them — segmentation is then skipped for that scan (alone: only measured);
    ``organs``: the CT's TotalSegmentator organ map for AG-CRC; ``bundles``: model bundles (files or installed
    names; default: the installed bundle of each task under ``home`` / ``$PROCTO_HOME``); ``score_threshold``: a
    node counts as metastatic when its CoSAM score reaches it; ``dicom``: also a DICOM-SEG per DICOM input.
    Everything is checked before work starts and written atomically (the files appear together at the end).
    """
    if mri is None and ct is None and seg is None:
        raise InputError("nothing to report on: give an MRI, a CT or a label map (--mri, --ct, --seg)")
    out = check_output(out, kind="folder")
    scans = {s.name: s for s in (_read_scan("mri", mri), _read_scan("ct", ct)) if s is not None}
    label = _read_seg(seg, scans)
    organs_path = Path(organs) if organs is not None else None
    if organs_path is not None and not organs_path.exists():
        raise InputError("no such organ map", organs_path)
    found = _find_bundles(bundles, home)
    state = _State()
    if not scans and label is not None:
        state.labels["seg"] = label
    steps = _run_steps(state, scans, found, label, organs_path, float(score_threshold), progress)
    patient = _pseudonym(list(scans.values())) if scans else "P-labels-only"
    report = build_report(state, scans, found, steps, float(score_threshold), patient)
    write_outputs(out, report, state, scans, dicom=dicom, html=html)
    return report


__all__ = ["run_report", "build_report", "SCHEMA", "STEPS", "Scan"]
