"""`procto demo` is the whole pipeline: the demo's bundles (trained once, cached under ``$PROCTO_HOME``), one phantom
patient as DICOM, ``procto report`` on it, and the findings printed beside the phantom's truth.

The end-to-end tests use the session's ``demo_home`` (tests/conftest.py: the "smoke" schedule's bundles — valid,
nothing learned), selected on the command line by the hidden ``--schedule smoke``; the trainers are replaced by a
function that fails, so a test also proves that a cached bundle is not trained again.  The default schedule's
quality and run time are measured by hand (see procto/demo/__init__.py), not here.  No wall-time assertion."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from procto.cli import app
from procto.demo import bundles as demo_bundles

runner = CliRunner()


def _no_training(monkeypatch) -> None:
    """Every demo trainer fails: the bundles must come from the cache."""

    def boom(*_a, **_k):
        raise AssertionError("a cached demo bundle was trained again")

    monkeypatch.setattr(demo_bundles, "TRAINERS", {task: boom for task in demo_bundles.TASKS})


def _table(text: str) -> list[list[str]]:
    """The rows of the printed table, its header first (cells of the lines drawn with ┃ and │)."""
    rows = [[c.strip() for c in line[1:-1].split(line[0])] for line in text.splitlines()
            if line[:1] in ("┃", "│")]
    assert rows, text
    return rows


def _reversed_slices(volume):
    """The same image with its slice axis (array axis 0) reversed: same voxels in space, another array order."""
    from procto.io import Volume

    n = volume.shape[0]
    direction = volume.direction.copy()
    origin = np.asarray(volume.origin) + direction[:, 0] * volume.spacing[0] * (n - 1)
    direction[:, 0] *= -1
    return Volume(np.asarray(volume.array)[::-1], volume.spacing, tuple(origin), direction)


def _identity_values() -> list[str]:
    from procto.demo.patient import IDENTITY

    values = [str(v) for v in IDENTITY.values()]
    return values + [p for p in IDENTITY["PatientName"].split("^") if p]


# ------------------------------------------------------------------------------------------------ fast
def test_bundle_names_schedules_and_help() -> None:
    from procto.demo import SCHEDULES, bundle_names
    from procto.errors import InputError

    assert bundle_names() == {"rcsegnext": "demo-rcsegnext", "staging": "demo-staging", "cosam": "demo-cosam"}
    assert bundle_names("full")["staging"] == "demo-staging-full"
    assert bundle_names("smoke")["cosam"] == "demo-cosam-smoke"
    assert {"smoke", "default", "full"} <= set(SCHEDULES)
    default, full = SCHEDULES["default"], SCHEDULES["full"]
    assert full.seg_epochs * full.seg_iters > default.seg_epochs * default.seg_iters  # --full trains longer
    assert full.cosam_det_steps > default.cosam_det_steps and full.stage_cases > default.stage_cases
    with pytest.raises(InputError, match="schedule"):
        bundle_names("weekend")
    result = runner.invoke(app, ["demo", "--help"])
    assert result.exit_code == 0
    assert "--full" in result.output and "--retrain" in result.output and "--seed" in result.output
    assert "--schedule" not in result.output  # hidden: for tests


def test_demo_patient_has_one_truth_in_both_scans(tmp_path: Path) -> None:
    import pydicom

    from procto.demo.patient import IDENTITY, demo_patient, write_demo_patient
    from procto.io import read_image
    from procto.report import measure_tumour

    patient = demo_patient(0)
    mri, ct, truth = patient.mri, patient.ct, patient.truth
    assert mri.t_stage == ct.t_stage == truth["t_stage"] == "T3"
    assert mri.n_nodes == ct.n_nodes == truth["n_metastatic"] == truth["n_metastatic_in_ct"] == 2
    assert truth["n_category"] == "N1" and ct.n_benign == truth["n_benign"] == 2
    assert truth["tumour"] == measure_tumour(mri.label) and truth["tumour"]["volume_ml"] > 1
    assert mri.image.shape == (16, 48, 48) and ct.image.shape[1:] == (128, 128)  # the training grids

    series = write_demo_patient(patient, tmp_path / "patient")
    for name, case in (("mri", mri), ("ct", ct)):
        back = read_image(series[name])
        image = case.image if back.same_geometry(case.image) else _reversed_slices(case.image)  # a left-handed
        assert back.same_geometry(image)  # grid (the sagittal MRI) comes back in DICOM's slice order
        arr = np.asarray(image.array, dtype=np.float64)
        tolerance = 0.5 if name == "ct" else np.ptp(arr) / 65535  # HU rounded to integers; MR scaled onto uint16
        assert np.abs(np.asarray(back.array) - arr).max() <= tolerance * 1.001
        first = pydicom.dcmread(sorted(series[name].glob("*.dcm"))[0])
        assert str(first.PatientName) == IDENTITY["PatientName"] and first.Modality == ("MR" if name == "mri" else "CT")
    uid = pydicom.dcmread(sorted(series["ct"].glob("*.dcm"))[0]).StudyInstanceUID
    again = write_demo_patient(demo_patient(0), tmp_path / "patient")  # a rerun replaces the series: same study
    assert pydicom.dcmread(sorted(again["ct"].glob("*.dcm"))[0]).StudyInstanceUID == uid


def test_demo_output_errors_are_one_line_before_any_work(tmp_path: Path, monkeypatch) -> None:
    _no_training(monkeypatch)
    monkeypatch.setenv("PROCTO_HOME", str(tmp_path / "home"))
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    for args, where in ((["--out", str(blocker)], blocker), (["--out", str(tmp_path / "o"), "--schedule", "nope"],
                                                             "schedule")):
        result = runner.invoke(app, ["demo", *args])
        assert result.exit_code == 2, result.output
        lines = [ln for ln in result.output.splitlines() if ln.strip()]
        assert len(lines) == 1 and lines[0].startswith("error:") and str(where) in lines[0], result.output
    assert not (tmp_path / "home").exists() and not (tmp_path / "o").exists()


# ------------------------------------------------------------------------------------------------ bundles
@pytest.mark.slow
@pytest.mark.timeout(600)
def test_demo_bundles_are_installed_phantom_trained_and_cached(demo_home, monkeypatch) -> None:
    from procto.bundle import list_bundles, open_bundle
    from procto.demo import train_demo_bundles

    home, names = demo_home
    assert names == {"rcsegnext": "demo-rcsegnext-smoke", "staging": "demo-staging-smoke",
                     "cosam": "demo-cosam-smoke"}
    assert sorted(r["name"] for r in list_bundles(home)) == sorted(names.values())
    # no training folders left behind (a report run on this shared home may have added its pseudonym key file)
    assert sorted(p.name for p in Path(home).iterdir() if p.name != "pseudonym.key") == ["bundles"]
    for task, name in names.items():
        bundle = open_bundle(name, task, home)
        assert bundle.manifest["training_data"]["source"] == "phantoms"
    _no_training(monkeypatch)
    assert train_demo_bundles(home, schedule="smoke") == names  # cached: nothing trained
    with pytest.raises(AssertionError, match="trained again"):
        train_demo_bundles(home, schedule="smoke", retrain=True)  # --retrain trains
    assert sorted(r["name"] for r in list_bundles(home)) == sorted(names.values())  # and keeps the old ones


# ------------------------------------------------------------------------------------------------ end to end
@pytest.mark.slow
@pytest.mark.timeout(900)
def test_demo_runs_the_whole_pipeline_and_a_rerun_prints_the_same_table(demo_home, tmp_path: Path,
                                                                        monkeypatch) -> None:
    import importlib.util

    import pydicom
    from rich.console import Console

    from procto.demo import run_demo
    from procto.io import read_image, read_label

    home, names = demo_home
    _no_training(monkeypatch)
    monkeypatch.setenv("PROCTO_HOME", str(home))
    out = tmp_path / "demo"
    result = runner.invoke(app, ["demo", "--out", str(out), "--schedule", "smoke", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    text = result.stdout
    assert "cached" in text and all(n in text for n in names.values())

    # the table: procto's findings beside the phantom's truth (T3, N1, 2 metastatic nodes)
    rows = {r[0]: r[1:] for r in _table(text)}
    assert rows["finding"] == ["procto", "phantom truth"]
    assert rows["T stage"][1] == "T3" and rows["N category"][1] == "N1" and rows["metastatic nodes"][1] == "2"
    for label in ("P(T3)", "tumour volume (mL)", "craniocaudal length (mm)", "circumferential extent (°)",
                  "distance to ARJ, proxy (mm)"):
        assert label in rows
    assert "AG-CRC" in text and "phantom" in text

    # every output of the report, in the patient's geometry
    report_dir = out / "report"
    report = json.loads((report_dir / "report.json").read_text())
    outputs = report["outputs"]
    html = importlib.util.find_spec("procto.report.html") is not None
    if html:
        assert outputs.get("html") == "report.html" and str(report_dir / "report.html") in text.replace("\n", "")
    mri, ct = read_image(out / "patient" / "mri"), read_image(out / "patient" / "ct")
    assert read_label(report_dir / outputs["mri_labels"]).same_geometry(mri)
    assert read_label(report_dir / outputs["ct_nodes"]).same_geometry(ct)
    for key in ("mri_dicom_seg", "ct_dicom_seg"):
        assert key in outputs, outputs
        assert pydicom.dcmread(report_dir / outputs[key]).Modality == "SEG"
    steps = {s["task"]: s["status"] for s in report["steps"]}
    assert steps == {"rcsegnext": "done", "staging": "done", "agcrc": "skipped", "cosam": "done"}
    assert report["t_stage"]["available"] and report["nodes"]["available"]
    assert any("phantom" in w for w in report["quality"]["warnings"])

    # no identifier of the DICOM headers in the report's texts
    for name in ("report.json", "report.html"):
        if (report_dir / name).is_file():
            # embedded images' base64 is not text (it holds any three letters somewhere)
            body = re.sub(r"data:[\w/+.-]+;base64,[A-Za-z0-9+/=]+", "", (report_dir / name).read_text())
            leaked = [v for v in _identity_values() if v in body]
            assert not leaked, (name, leaked)

    # a rerun into the same folder (the API this time) reuses the bundles and prints the same table
    buffer = io.StringIO()
    again = run_demo(out, schedule="smoke", device="cpu", home=home, console=Console(file=buffer, width=80))
    assert again.trained == [] and again.bundles == names
    assert _table(buffer.getvalue()) == _table(text)
    assert [list(r) for r in again.rows] == _table(text)[1:]
    assert again.truth["t_stage"] == "T3" and np.isfinite(again.truth["tumour"]["volume_ml"])
    assert again.paths["json"] == report_dir / "report.json" and again.report["t_stage"] == report["t_stage"]
