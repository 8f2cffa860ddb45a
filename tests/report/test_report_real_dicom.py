"""``procto report`` on real DICOM series (../shared/data/real: a PROSTATEx sagittal T2 MRI and a CC-Tumor-
Heterogeneity pelvic CT) with the demo's smoke bundles (phantom-trained, nothing learned): every output is written
in the inputs' geometry, the DICOM-SEGs reference the source series, no header identifier reaches a text output or
the command's output, and the quality section says that the models were not trained on data like this.  The values
themselves mean nothing (the models learned nothing); the test is about the pipeline on real headers and grids
(320² MRI, 64 × 512² CT).  Idle run time ≈ 1–2 min on 2 cores."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pydicom
import pytest
from typer.testing import CliRunner

from procto.cli import app
from procto.io import read_image, read_label
from procto.io.dicom import read_dicom_datasets
from procto.report.dicom import source_identifiers

MRI = Path("prostatex-t2-mri/ProstateX-0000/3.000000-t2tsesag-87368")
CT = Path("ccth-a01-pelvic-ct/dicom_ct_pelvis")


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_report_on_real_dicom_series(real_data, demo_home, tmp_path, monkeypatch) -> None:
    home, names = demo_home
    monkeypatch.setenv("PROCTO_HOME", str(home))
    mri_dir, ct_dir = real_data / MRI, real_data / CT
    out = tmp_path / "report"
    result = CliRunner().invoke(app, ["report", "--mri", str(mri_dir), "--ct", str(ct_dir), "-o", str(out)])
    assert result.exit_code == 0, result.output
    report = json.loads((out / "report.json").read_text())
    outputs = report["outputs"]
    assert {"mri_labels", "ct_nodes", "mri_dicom_seg", "ct_dicom_seg", "json"} <= set(outputs), outputs
    steps = {s["task"]: s for s in report["steps"]}
    assert [steps[t]["status"] for t in ("rcsegnext", "agcrc", "cosam")] == ["done", "skipped", "done"]
    # staging runs on the rectum crop: done, or skipped because the smoke model found no rectum
    assert steps["staging"]["status"] == "done" or "no rectum" in str(steps["staging"]["reason"])
    assert report["inputs"]["mri"]["orientation"] == "sagittal" and report["inputs"]["ct"]["shape"] == [64, 512, 512]

    # label maps in the inputs' geometry; the SEGs reference the source series' instances
    mri, ct = read_image(mri_dir), read_image(ct_dir)
    assert read_label(out / outputs["mri_labels"]).same_geometry(mri)
    assert read_label(out / outputs["ct_nodes"]).same_geometry(ct)
    for key, source in (("mri_dicom_seg", mri_dir), ("ct_dicom_seg", ct_dir)):
        seg = pydicom.dcmread(out / outputs[key])
        sources = read_dicom_datasets(source)
        assert seg.Modality == "SEG" and seg.StudyInstanceUID == sources[0].StudyInstanceUID
        referenced = {item.ReferencedSOPInstanceUID for s in seg.ReferencedSeriesSequence
                      for item in s.ReferencedInstanceSequence}
        assert referenced <= {d.SOPInstanceUID for d in sources}
        assert len(seg.SegmentSequence) <= 2 + 20 + 1  # rectum, tumour, the top nodes, other candidates

    # the report says its models were not trained on scans like these
    warnings = " ".join(report["quality"]["warnings"])
    assert "phantom" in warnings

    # no identifier of the real headers in the texts or the command's output
    ids = source_identifiers(read_dicom_datasets(mri_dir)) | source_identifiers(read_dicom_datasets(ct_dir))
    assert ids
    texts = [result.output] + [re.sub(r"data:[\w/+.-]+;base64,[A-Za-z0-9+/=]+", "", (out / n).read_text())
                               for n in ("report.json", "report.html") if (out / n).is_file()]
    for text in texts:
        assert not [v for v in ids if v in text]
