"""procto.report.html: the self-contained patient page (no external resources, escaped values, every section,
"not available" for missing data), the patient-plane reformats behind its images (aspect of a sagittal MRI's axial
reformat, an axial CT's axial plane equal to array slicing), and the page in a real headless Chromium."""

from __future__ import annotations

import base64
import html
import io
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from procto.io import Volume
from procto.phantom import make_case
from procto.report import measure_nodes, measure_tumour
from procto.report.figures import LABEL_COLOURS, NODE_COLOURS, centre_of, plane_figure, reformat
from procto.report.html import render_report_html, write_report_html

INJECTED = '<script>alert("x")</script>'
SECTIONS = ("summary", "tumour", "images", "nodes", "quality", "inputs", "models", "steps", "outputs", "methods")


@pytest.fixture(scope="module")
def cases():
    mri = make_case(0, "mri", shape=(24, 96, 96), spacing=(4.0, 1.75, 1.75), center="rectum")
    ct = make_case(0, "ct", shape=(32, 96, 96), spacing=(5.0, 1.5, 1.5), center="rectum", n_nodes=2)
    return mri, ct


def _report(mri, ct) -> dict:
    tumour = measure_tumour(mri.label)
    tumour["clock_face"] = list(tumour["clock_face"])
    items = measure_nodes(ct.metastatic_nodes(), [0.9, 0.3])
    for item in items:
        item["metastatic"] = item["score"] >= 0.5
    return {
        "schema": "procto-report/1", "procto_version": "0.1.0", "created": "2031-02-03T04:05:06+00:00",
        "patient": {"pseudonym": "P-1a2b3c4d5e"},
        "inputs": {"mri": {"format": "nifti", "shape": [24, 96, 96], "spacing_mm": [4.0, 1.75, 1.75],
                           "orientation": "sagittal"},
                   "ct": {"format": "dicom", "shape": [32, 96, 96], "spacing_mm": [5.0, 1.5, 1.5],
                          "orientation": "axial"}},
        "models": [{"task": "rcsegnext", "name": "demo_rcsegnext", "architecture": "rcsegnext_b",
                    "sha256": "0123456789abcdef" * 4, "trained_on": "phantoms"}],
        "tumour": {"available": True, "source": "mri", **tumour, "reason": None,
                   "estimates": ["circumferential_extent_deg", "distance_to_anorectal_junction_mm", "height_class"]},
        "t_stage": {"available": True, "t3_probability": 0.81, "label": "T3", "reason": None},
        "nodes": {"available": True, "score_threshold": 0.5, "items": items, "n_metastatic": 1, "n_category": "N1",
                  "reason": None},
        "quality": {"checks": [{"name": "rectum in field of view", "ok": True, "detail": "whole rectum"},
                               {"name": "slice thickness", "ok": False, "detail": "5 mm CT slices"}],
                    "warnings": ["CT slices are thicker than 3 mm"]},
        "steps": [{"name": "MRI segmentation (RCSegNeXt)", "status": "done", "reason": None, "seconds": 3.2},
                  {"name": "T staging", "status": "skipped", "reason": "no staging model", "seconds": 0.0}],
        "outputs": {"mri_labels": "mri_labels.nii.gz", "ct_nodes": "ct_nodes.nii.gz"},
    }


@pytest.fixture(scope="module")
def written(cases, tmp_path_factory):
    mri, ct = cases
    report = _report(mri, ct)
    out = tmp_path_factory.mktemp("html") / "report.html"
    path = write_report_html(report, out, images={"mri": (mri.image, mri.label), "ct": (ct.image, ct.label)},
                             nodes=(ct.image, ct.metastatic_nodes()))
    return path, path.read_text(encoding="utf-8"), report


def _imgs(page: str) -> list[dict]:
    out = []
    for tag in re.findall(r"<img\b[^>]*>", page):
        attrs = dict(re.findall(r'([\w-]+)="([^"]*)"', tag))
        out.append(attrs)
    return out


def _png(src: str) -> Image.Image:
    assert src.startswith("data:image/png;base64,")
    return Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1]))).convert("RGB")


def _tumour_pixels(rgb: np.ndarray) -> np.ndarray:
    """Pixels of the tumour overlay: pure red blended at 50 % over grey, so red exceeds green and blue by ~127."""
    r, g, b = (rgb[..., i].astype(int) for i in range(3))
    return (r - g > 100) & (r - b > 100)


# ---------------------------------------------------------------------------------------------------- page
def test_page_is_self_contained_and_accessible(written):
    path, page, _ = written
    assert path.name == "report.html" and page.startswith("<!DOCTYPE html>")
    assert re.search(r'<html lang="en"', page)
    assert not re.search(r"""(?:src|href)\s*=\s*["']?\s*(?:https?:|//)""", page, re.I)
    assert "<script" not in page.lower() and "<link" not in page.lower() and "@import" not in page
    assert "url(" not in page  # no CSS resources (fonts, backgrounds) either
    assert "@media print" in page and "break-inside: avoid" in page
    imgs = _imgs(page)
    assert len(imgs) == 3 + 3 + 2  # MRI and CT planes, two node thumbnails
    for img in imgs:
        assert img["alt"].strip()
        pic = _png(img["src"])
        assert pic.size == (int(img["width"]), int(img["height"]))
    assert page.count('<th scope="col">') >= 10
    assert "2031" not in page  # the header shows no date (nor does the page)


def test_every_section_and_value_shown(written):
    _, page, report = written
    for sid in SECTIONS:
        assert f'<section id="{sid}"' in page
    assert "T3 (P(T3) = 0.81) · N1 (1 suspicious node)" in page
    assert "P-1a2b3c4d5e" in page and "0.1.0" in page
    assert "synthetic phantoms" in page and "Quality warnings" in page
    t = report["tumour"]
    assert f"{t['volume_ml']:.1f} mL" in page and f"{t['craniocaudal_length_mm']:.1f} mm" in page
    assert f"≈ {t['circumferential_extent_deg']:.0f}° (estimate)" in page
    assert f"≈ {t['distance_to_anorectal_junction_mm']:.1f} mm (estimate)" in page
    assert f"≈ {t['height_class']} (estimate)" in page
    assert f"{t['max_axial_diameter_mm']:.1f} mm" in page and "(estimate)" not in page.split("Largest axial")[1][:80]
    assert "0123456789ab" in page and "0123456789abc" not in page  # short sha256
    assert "no staging model" in page and "slice thickness" in page and "warning" in page
    node_rows = re.findall(r"<tr><td class=\"num\">(\d+)</td>", page)
    assert node_rows == ["1", "2"]
    text = html.unescape(page)
    assert "RECIST" in text and "12 o'clock anterior" in text and "N2 4 or more" in text


def test_injected_text_is_escaped(cases, tmp_path):
    mri, ct = cases
    report = _report(mri, ct)
    report["patient"]["pseudonym"] = INJECTED
    report["models"][0]["name"] = INJECTED
    report["quality"]["checks"][0]["detail"] = INJECTED
    report["quality"]["warnings"] = [INJECTED]
    report["steps"][1]["reason"] = INJECTED
    report["tumour"]["height_class"] = INJECTED
    report["tumour"][INJECTED] = INJECTED
    report["nodes"]["items"][0]["metastatic"] = INJECTED
    report["t_stage"] = {"available": False, "reason": INJECTED}
    report["outputs"][INJECTED] = INJECTED
    page = write_report_html(report, tmp_path / "r.html").read_text(encoding="utf-8")
    assert "<script" not in page.lower()
    assert page.count("&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;") >= 10
    assert "T unavailable: &lt;script&gt;" in page


def test_missing_and_malformed_data_read_not_available(tmp_path):
    page = write_report_html({"schema": "procto-report/1"}, tmp_path / "r.html").read_text(encoding="utf-8")
    for sid in SECTIONS[1:-1]:
        section = page.split(f'<section id="{sid}"')[1].split("</section>")[0]
        assert "not available" in section, sid
    assert "T unavailable: not available · N unavailable: not available" in page
    bad = {"patient": "P", "tumour": {"available": True, "volume_ml": "big", "clock_face": [1], "estimates": 3},
           "t_stage": {"available": True, "label": "T2", "t3_probability": "high"},
           "nodes": {"available": True, "n_category": "N0", "items": ["x", None, {"id": "a", "centre_mm": 5}]},
           "models": None, "steps": [None, 3], "quality": {"checks": "ok", "warnings": None}, "inputs": [1],
           "outputs": "x"}
    page = render_report_html(bad, images={"mri": (None, None), "ct": "nothing"}, nodes=("a", "b"))
    assert "T2 · N0" in page and "not available" in page


# ---------------------------------------------------------------------------------------------------- planes
def test_axial_reformat_of_sagittal_mri(cases, written):
    mri, _ = cases
    vol, label = mri.image, mri.label
    assert vol.direction[0, 1] == -1 and vol.direction[2, 0] == 1  # sagittal: array axis 1 runs superior→inferior
    centre = centre_of(label, label.array == 2)
    plane, step = reformat(label, centre, "axial")
    # the patient-axial plane is array row i1 of every sagittal slice: rows = array axis 2 (anterior→posterior),
    # columns = array axis 0 (right→left)
    i1 = int(np.rint(np.linalg.solve(vol.direction * np.asarray(vol.spacing), centre - np.asarray(vol.origin))[1]))
    assert np.array_equal(plane, label.array[:, i1, :].T)
    assert step == (1.75, 4.0)
    # physical edge-to-edge extent of the volume along x (right→left) and y (anterior→posterior)
    corners = np.array([vol.index_to_physical(c) for c in np.array(list(np.ndindex(2, 2, 2))) * (np.asarray(vol.shape) - 1)])
    extent = np.ptp(corners, axis=0) + np.abs(vol.direction * np.asarray(vol.spacing)).sum(axis=1)
    expected = extent[2] / extent[1]
    fig = plane_figure(vol, label, centre, "axial", "mri")
    assert fig.width / fig.height == pytest.approx(expected, rel=0.02)
    img = next(i for i in _imgs(written[1]) if i.get("data-modality") == "mri" and i.get("data-plane") == "axial")
    pic = _png(img["src"])
    assert pic.width / pic.height == pytest.approx(expected, rel=0.03)
    assert _tumour_pixels(np.asarray(pic)).sum() > 100
    sagittal, _ = reformat(label, centre, "sagittal")  # the acquired plane: an array slice as it is
    assert any(np.array_equal(sagittal, label.array[i]) for i in range(vol.shape[0]))


def test_axial_ct_plane_equals_array_slicing(cases):
    _, ct = cases
    label = ct.label
    centre = centre_of(label, label.array == 2)
    k, j, i = (int(v) for v in np.rint((centre - np.asarray(label.origin)) / np.asarray(label.spacing)))
    axial, step = reformat(label, centre, "axial")
    assert np.array_equal(axial, label.array[k]) and step == (1.5, 1.5)
    sagittal, step = reformat(label, centre, "sagittal")  # superior up, anterior left
    assert np.array_equal(sagittal, label.array[::-1, :, i]) and step == (5.0, 1.5)
    coronal, _ = reformat(label, centre, "coronal")
    assert np.array_equal(coronal, label.array[::-1, j, :])
    # the rendered overlay: tumour-coloured pixels are exactly the nearest-neighbour resize of the slice's tumour
    fig = plane_figure(ct.image, label, centre, "axial", "ct")
    rgb = np.asarray(Image.open(io.BytesIO(fig.png)).convert("RGB"))
    expected = Image.fromarray((label.array[k] == 2).astype(np.uint8) * 255).resize(
        (fig.width, fig.height), Image.Resampling.NEAREST)
    assert np.array_equal(_tumour_pixels(rgb), np.asarray(expected) > 0)
    assert LABEL_COLOURS[2][1] == (255, 0, 0)


def test_oblique_volume_planes_are_patient_planes():
    """An oblique volume holding a physical ellipsoid (semi-axes 8 mm left-right, 12 mm front-back, 16 mm
    head-feet): each patient plane through its centre shows the right ellipse, whatever the array's tilt."""
    c, s = np.cos(np.radians(25.0)), np.sin(np.radians(25.0))
    direction = np.array([[c, 0.0, -s], [0.0, 1.0, 0.0], [s, 0.0, c]]) @ np.array([[1, 0, 0], [0, c, -s], [0, s, c]])
    vol = Volume(np.zeros((40, 60, 60)), spacing=(1.0, 0.8, 0.8), origin=(-20.0, -24.0, -24.0), direction=direction)
    idx = np.stack(np.meshgrid(*[np.arange(n) for n in vol.shape], indexing="ij"), axis=-1).reshape(-1, 3)
    pts = np.asarray(vol.origin) + (idx * np.asarray(vol.spacing)) @ direction.T
    centre = vol.index_to_physical((20, 30, 30))
    inside = (((pts - centre) / np.array([16.0, 12.0, 8.0])) ** 2).sum(axis=1) <= 1
    label = vol.with_array(inside.reshape(vol.shape).astype(np.uint8) * 2)
    for plane, (a, b) in {"axial": (12.0, 8.0), "sagittal": (16.0, 12.0), "coronal": (16.0, 8.0)}.items():
        section, step = reformat(label, centre, plane)
        area = (section == 2).sum() * step[0] * step[1]
        assert area == pytest.approx(np.pi * a * b, rel=0.12), plane
        rows, cols = np.nonzero(section == 2)
        height, width = np.ptp(rows) * step[0], np.ptp(cols) * step[1]
        expected = {"axial": (2 * 12.0, 2 * 8.0), "sagittal": (32.0, 24.0), "coronal": (32.0, 16.0)}[plane]
        assert (height, width) == pytest.approx(expected, abs=2.0), plane
        fig = plane_figure(label.with_array(np.zeros(vol.shape)), label, centre, plane, "mri")
        assert fig.width > 0 and fig.height > 0


def test_node_thumbnails_coloured_by_status(written):
    imgs = [i for i in _imgs(written[1]) if i.get("class") == "thumb"]
    assert [i["data-node"] for i in imgs] == ["1", "2"]
    for img, metastatic in zip(imgs, (True, False)):
        rgb = np.asarray(_png(img["src"])).reshape(-1, 3)
        colour = NODE_COLOURS[metastatic]
        assert np.any(np.all(rgb == colour, axis=1)), metastatic
        assert not np.any(np.all(rgb == NODE_COLOURS[not metastatic], axis=1))
    assert "Node 1 · short" in written[1] and "score 0.90" in written[1]


# ---------------------------------------------------------------------------------------------------- browser
def _browser():
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        sync_playwright = None
    if chromium is None or sync_playwright is None:
        missing = " and ".join(n for n, v in (("a chromium binary", chromium), ("playwright", sync_playwright))
                               if v is None)
        pytest.skip(f"headless browser check needs {missing} (CI installs both: apt chromium, pip .[test])")
    return chromium, sync_playwright


@pytest.mark.timeout(60)
def test_page_in_headless_chromium(written):
    chromium, sync_playwright = _browser()
    path = written[0]
    args = ["--no-sandbox"] if hasattr(os, "geteuid") and os.geteuid() == 0 else []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, args=args, headless=True)
        try:
            page = browser.new_context(viewport={"width": 1200, "height": 900}, device_scale_factor=1).new_page()
            page.set_default_timeout(15_000)
            page.goto(path.resolve().as_uri(), wait_until="load")
            natural = page.evaluate("Array.from(document.images).map(i => [i.complete, i.naturalWidth])")
            box = page.evaluate("""() => { const r = document.querySelector(
                'img[data-modality="mri"][data-plane="axial"]').getBoundingClientRect();
                return [r.left + window.scrollX, r.top + window.scrollY, r.width, r.height]; }""")
            shot = page.screenshot(full_page=True)
        finally:
            browser.close()
    assert len(natural) == 8 and all(ok and width > 0 for ok, width in natural)
    rgb = np.asarray(Image.open(io.BytesIO(shot)).convert("RGB"))
    assert rgb.shape[0] > 900 and rgb.std() > 20 and len(np.unique(rgb.reshape(-1, 3)[::7], axis=0)) > 50
    x, y, w, h = (int(round(v)) for v in box)
    assert w > 50 and h > 50
    region = rgb[y:y + h, x:x + w]
    assert _tumour_pixels(region).sum() > 100  # the tumour overlay, drawn where the image is
    assert _tumour_pixels(rgb).sum() < rgb.shape[0] * rgb.shape[1] * 0.1
