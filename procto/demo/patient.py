"""The demo's patient: one phantom with a sagittal T2 MRI and a contrast CT of the same anatomy, a known T stage and
known metastatic (and benign) lymph nodes, written as DICOM series with a fake identity — what a hospital export
would hand ``procto report``.

The MRI has the grid the demo's RCSegNeXt and staging models were trained on (16 sagittal slices of 4 mm, 84 mm
around the rectum); the CT has CoSAM's training grid (0.7 mm pixels, 1.25 mm slices, 90 mm around the tumour) over
the slices that hold the metastatic nodes.  The truth the report is compared with comes from the phantom itself.
"""

from __future__ import annotations

import math
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from procto.demo.bundles import MRI_GRID
from procto.errors import OutputError
from procto.phantom import MEPLY_GRID, PhantomCase, make_case
from procto.report.measure import measure_tumour, n_category

#: (T stage, metastatic nodes) of the demo patient by ``seed % 3``.
DEMO_STAGES = (("T3", 2), ("T2", 1), ("T3", 4))
#: The patient's phantom seed is this + the demo seed (far from the training cohorts' seeds).
PATIENT_SEED = 1_000_004
#: Benign (hard negative) nodes in the patient.
BENIGN_NODES = 2
#: The CT: CoSAM's in-plane grid, at least this many slices (more when the nodes span more).
CT_MIN_SLICES, CT_MAX_SLICES, CT_MARGIN_MM = 24, 96, 8.0
#: The fake identity in the DICOM headers (none of it may reach the report's JSON or HTML).  The report refuses to
#: write a text holding any part of the source's names, so the name's parts must not be ordinary words of a report
#: ("Demo^Patient" would be refused: the report says "Patient").
IDENTITY = {"PatientName": "Doe^Jane", "PatientID": "PROCTO-DEMO-0001", "PatientBirthDate": "19600101",
            "AccessionNumber": "DEMO0001", "InstitutionName": "Phantom General Hospital"}


@dataclass
class DemoPatient:
    """The demo patient: its MRI and CT phantoms and their truth (:func:`patient_truth`)."""

    seed: int
    mri: PhantomCase
    ct: PhantomCase
    truth: dict[str, Any] = field(default_factory=dict)


def _ct_field(probe: PhantomCase) -> tuple[tuple[float, float, float], int]:
    """Centre (z, y, x) and number of slices of the patient's CT: in-plane centred on the tumour (as CoSAM's
    training phantoms), slices covering the metastatic nodes with a margin."""
    centre = [float(c) for c in probe.options["center"]]
    nodes = [n for n in probe.node_info if n.get("metastatic", True)]
    n_slices = CT_MIN_SLICES
    if nodes:
        lo = min(n["center_zyx_mm"][0] - n["long_axis_mm"] / 2 for n in nodes) - CT_MARGIN_MM
        hi = max(n["center_zyx_mm"][0] + n["long_axis_mm"] / 2 for n in nodes) + CT_MARGIN_MM
        centre[0] = (lo + hi) / 2
        n_slices = int(np.clip(math.ceil((hi - lo) / MEPLY_GRID["spacing"][0]), CT_MIN_SLICES, CT_MAX_SLICES))
    return (centre[0], centre[1], centre[2]), n_slices


def patient_truth(mri: PhantomCase, ct: PhantomCase) -> dict[str, Any]:
    """What the report should find: T stage, metastatic nodes (all, and inside the CT), N category, and the tumour
    measurements of the MRI's true label map (:func:`procto.report.measure_tumour`, the report's own function)."""
    in_ct = sum(1 for n in ct.node_info if n.get("metastatic", True) and n.get("voxels", 0) > 0)
    return {"t_stage": mri.t_stage, "n_category": n_category(ct.n_nodes), "n_metastatic": int(ct.n_nodes),
            "n_metastatic_in_ct": int(in_ct), "n_benign": int(ct.n_benign), "tumour": measure_tumour(mri.label)}


def demo_patient(seed: int = 0) -> DemoPatient:
    """The demo patient of ``seed``: MRI and CT phantoms of one seed with the same T stage and metastatic nodes
    (:data:`DEMO_STAGES`), the CT with :data:`BENIGN_NODES` benign nodes too."""
    t_stage, k = DEMO_STAGES[int(seed) % len(DEMO_STAGES)]
    s = PATIENT_SEED + int(seed)
    common = {"t_stage": t_stage, "n_nodes": k}
    mri = make_case(s, "mri", case_id="demo_patient_mri", **common, **MRI_GRID)
    probe = make_case(s, "ct", shape=(8, 16, 16), spacing=MEPLY_GRID["spacing"], center="tumour",
                      benign_nodes=BENIGN_NODES, **common)
    centre, n_slices = _ct_field(probe)
    ct = make_case(s, "ct", shape=(n_slices, *MEPLY_GRID["shape"][1:]), spacing=MEPLY_GRID["spacing"], center=centre,
                   benign_nodes=BENIGN_NODES, case_id="demo_patient_ct", **common)
    return DemoPatient(int(seed), mri, ct, patient_truth(mri, ct))


def _fresh_series_folder(folder: Path) -> None:
    """Remove an earlier demo's series in ``folder`` (DICOM files only); anything else there is an error."""
    if not folder.exists():
        return
    if not folder.is_dir() or any(not p.is_file() or p.suffix.lower() != ".dcm" for p in folder.iterdir()):
        raise OutputError("exists and holds more than a DICOM series written by the demo; choose another --out",
                          folder)
    shutil.rmtree(folder)


def write_demo_patient(patient: DemoPatient, folder: str | Path) -> dict[str, Path]:
    """Write the patient's MRI (``folder/mri``, MR) and CT (``folder/ct``, CT) as DICOM series with the fake
    :data:`IDENTITY`; UIDs are derived from the seed, so a rerun writes the same study.  Returns ``{"mri", "ct"}``
    → series folder (an earlier demo's series there are replaced)."""
    from pydicom.uid import generate_uid

    from procto.io.dicom import write_dicom_series

    folder = Path(folder)
    out = {}
    for name, case, modality in (("mri", patient.mri, "MR"), ("ct", patient.ct, "CT")):
        target = folder / name
        _fresh_series_folder(target)
        uid = {k: generate_uid(entropy_srcs=["procto-demo", str(patient.seed), name, k])
               for k in ("study", "series", "frame")}
        out[name] = write_dicom_series(case.image, target, modality=modality, patient=IDENTITY,
                                       series_description=f"procto demo {'T2 sagittal' if name == 'mri' else 'CT'}",
                                       study_uid=uid["study"], series_uid=uid["series"],
                                       frame_of_reference_uid=uid["frame"])
    return out


__all__ = ["DemoPatient", "DEMO_STAGES", "IDENTITY", "demo_patient", "patient_truth", "write_demo_patient"]
