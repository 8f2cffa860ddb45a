"""The patient report as one self-contained HTML page (:func:`write_report_html`).

The page needs nothing but itself: inline CSS, images as base64 PNG ``data:`` URIs, no scripts, fonts or links
(a Content-Security-Policy forbids loading anything else), and a print stylesheet (white, no page breaks inside a
figure or table).  It shows the pseudonym only — no name, ID or date — and every value of the report is
HTML-escaped; a missing section or key reads "not available".

>>> from procto.report.html import render_report_html
>>> page = render_report_html({"schema": "procto-report/1", "patient": {"pseudonym": "<b>P-1</b>"}})
>>> "&lt;b&gt;P-1&lt;/b&gt;" in page and "<b>P-1" not in page
True
"""

from __future__ import annotations

import base64
import html
import math
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np

from procto.errors import InputError
from procto.io import Volume, atomic_output
from procto.report.figures import (CT_WINDOW, LABEL_COLOURS, MRI_PERCENTILES, NODE_COLOURS, PLANES, THUMB_MM,
                                   Figure, centre_of, node_figure, plane_figure, window)

NA = "not available"
#: Most node thumbnails on one page.
MAX_THUMBNAILS = 24
#: Errors a malformed report value or volume may raise while one section is drawn: that section then reads
#: "not available" and the rest of the page is still written.
SECTION_ERRORS = (TypeError, ValueError, KeyError, AttributeError, IndexError, OverflowError, InputError)
#: The tumour measurements: key → (row label, unit, decimals).
TUMOUR_ROWS: dict[str, tuple[str, str, int]] = {
    "source": ("Measured on", "", 0),
    "volume_ml": ("Tumour volume", "mL", 1),
    "craniocaudal_length_mm": ("Craniocaudal length", "mm", 1),
    "max_axial_diameter_mm": ("Largest axial diameter", "mm", 1),
    "circumferential_extent_deg": ("Circumferential extent", "°", 0),
    "clock_face": ("Clock face (clockwise, 12 o'clock anterior)", "o'clock", 1),
    "distance_to_anorectal_junction_mm": ("Distance to the anorectal junction (proxy)", "mm", 1),
    "height_class": ("Height class", "", 0),
    "tumour_voxels": ("Tumour voxels", "", 0),
}
_SKIP_TUMOUR_KEYS = {"available", "reason", "estimates"}
_UNITS = (("_mm3", "mm³"), ("_mm", "mm"), ("_ml", "mL"), ("_deg", "°"), ("_s", "s"))

CSS = """
:root { color-scheme: light; }
body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, Arial, sans-serif; color: #111;
  background: #f3f4f6; margin: 0; }
main { max-width: 1100px; margin: 0 auto; padding: 1.2rem 1.5rem 3rem; background: #fff; }
h1 { font-size: 1.6rem; margin: 0 0 .3rem; } h2 { font-size: 1.2rem; margin: 1.8rem 0 .6rem;
  border-bottom: 2px solid #d1d5db; padding-bottom: .2rem; }
.meta { color: #374151; margin: 0; } .meta dt { display: inline; font-weight: 600; }
.meta dd { display: inline; margin: 0 1.2rem 0 .3rem; }
.notice { border: 2px solid #b45309; background: #fffbeb; padding: .6rem .9rem; margin: .8rem 0;
  font-weight: 600; }
.notice.phantom { border-color: #b91c1c; background: #fef2f2; }
.summary { font-size: 1.35rem; font-weight: 700; margin: .4rem 0; }
table { border-collapse: collapse; margin: .4rem 0 1rem; min-width: 50%; }
caption { text-align: left; font-weight: 600; padding-bottom: .3rem; }
th, td { border: 1px solid #d1d5db; padding: .3rem .6rem; text-align: left; vertical-align: top; }
th { background: #f3f4f6; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
figure { margin: .6rem 0 1.2rem; } figcaption { color: #374151; font-size: .9rem; margin-top: .3rem; }
.planes { display: flex; flex-wrap: wrap; gap: .6rem; align-items: flex-start; }
.plane { margin: 0; } .plane img, .node img { display: block; max-width: 100%; height: auto;
  image-rendering: auto; background: #000; }
.nodes { display: flex; flex-wrap: wrap; gap: .8rem; }
.node { margin: 0; width: 170px; }
.swatch { display: inline-block; width: .9em; height: .9em; border: 1px solid #333; vertical-align: -.1em;
  margin: 0 .25em 0 .8em; -webkit-print-color-adjust: exact; print-color-adjust: exact; }
.ok { color: #166534; font-weight: 600; } .warn { color: #b45309; font-weight: 600; }
.na { color: #6b7280; font-style: italic; }
.methods p { margin: .4rem 0; max-width: 60rem; }
footer { margin-top: 2rem; color: #6b7280; font-size: .85rem; }
@media print {
  body { background: #fff; color: #000; font-size: 11pt; }
  main { max-width: none; padding: 0; }
  figure, table, tr, .node, .notice, .summary { break-inside: avoid; page-break-inside: avoid; }
  h2 { break-after: avoid; page-break-after: avoid; }
  .notice, .notice.phantom { background: #fff; }
  th { background: #fff; }
}
"""

METHODS = (
    "Lengths are measured in the patient's own planes through the image geometry, whatever the acquisition "
    "orientation. The largest axial diameter and the nodes' long and short axes follow RECIST 1.1 in the "
    "patient's axial plane: the long axis is the largest edge-to-edge diameter on the axial slab where the "
    "structure is largest, the short axis the diameter perpendicular to it on the same slab.",
    "The craniocaudal length is the distance along the superior-inferior axis between the centres of the "
    "tumour's lowest and highest voxels. The tumour volume is its voxel count times the voxel volume.",
    "The circumferential extent is the arc of the rectal circumference the tumour covers, measured about the "
    "centre of the rectum on the axial slab where the arc is largest; the clock face reads the arc clockwise as "
    "seen from the feet, with 12 o'clock anterior and 3 o'clock the patient's left.",
    "The distance to the anorectal junction is measured from the lowest voxel of the rectum label (a proxy for "
    "the junction, which the label does not mark) to the tumour's lowest voxel; the height class (low up to "
    "50 mm, mid up to 100 mm, high above) follows from it. Values marked as estimates rest on such proxies.",
    "The N category counts the nodes whose score is at least the threshold: N0 none, N1 1 to 3, N2 4 or more. "
    "The T category is the model's T2/T3 decision with its probability of T3.",
    "Models trained on synthetic phantoms carry no claim of accuracy on patients; every result needs review by "
    "a radiologist.",
)


# ---------------------------------------------------------------------------------------------------- values
def esc(value: Any) -> str:
    """HTML-escaped text of ``value`` (quotes included)."""
    return html.escape(str(value), quote=True)


def _dict(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _list(value: Any) -> list:
    return list(value) if isinstance(value, (list, tuple)) else []


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))


def fmt(value: Any, digits: int = 1, unit: str = "") -> str:
    """Escaped display text of a value: numbers with ``digits`` decimals and ``unit``, lists joined,
    ``None`` → "not available"."""
    if value is None:
        return f'<span class="na">{NA}</span>'
    if _is_number(value):
        number = float(value)
        if not math.isfinite(number):
            return f'<span class="na">{NA}</span>'
        text = f"{number:.{digits}f}"
        return esc(f"{text}°") if unit == "°" else esc(f"{text} {unit}".strip())
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (list, tuple)):
        return ", ".join(fmt(v, digits) for v in value) + (f" {esc(unit)}" if unit else "")
    return esc(f"{value} {unit}".strip())


def _na(reason: Any = None) -> str:
    return f'<p class="na">{NA}{": " + esc(reason) if reason else ""}</p>'


def table(headers: Sequence[str], rows: Iterable[Sequence[str]], caption: str | None = None,
          numeric: Sequence[int] = ()) -> str:
    """An HTML table; ``headers`` and ``caption`` are escaped, cells are HTML already."""
    head = "".join(f'<th scope="col">{esc(h)}</th>' for h in headers)
    body = []
    for row in rows:
        cells = "".join(f'<td class="num">{c}</td>' if i in numeric else f"<td>{c}</td>" for i, c in enumerate(row))
        body.append(f"<tr>{cells}</tr>")
    cap = f"<caption>{esc(caption)}</caption>" if caption else ""
    return f"<table>{cap}<thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _img(fig: Figure, cls: str, **data: str) -> str:
    attrs = "".join(f' data-{k}="{esc(v)}"' for k, v in data.items())
    uri = "data:image/png;base64," + base64.b64encode(fig.png).decode("ascii")
    return (f'<img class="{cls}"{attrs} src="{uri}" width="{fig.width}" height="{fig.height}" '
            f'alt="{esc(fig.alt)}">')


# ---------------------------------------------------------------------------------------------------- sections
def _notices(report: Mapping[str, Any]) -> str:
    out = []
    phantom = [m for m in _list(report.get("models")) if "phantom" in str(_dict(m).get("trained_on", "")).lower()]
    if phantom:
        names = ", ".join(str(_dict(m).get("name", "?")) for m in phantom)
        out.append('<p class="notice phantom" role="note">Research use only: the models used here '
                   f"({esc(names)}) were trained on synthetic phantoms, not on patients. The results below carry "
                   "no claim of accuracy.</p>")
    quality = _dict(report.get("quality"))
    warnings = [w for w in _list(quality.get("warnings")) if w]
    failed = [c for c in _list(quality.get("checks")) if _dict(c).get("ok") is False]
    if warnings or failed:
        n = len(warnings) or len(failed)
        out.append(f'<p class="notice" role="note">Quality warnings ({n}): read the quality section before '
                   "using these results.</p>")
    return "".join(out)


def _header(report: Mapping[str, Any]) -> str:
    pseudonym = _dict(report.get("patient")).get("pseudonym")
    version = report.get("procto_version")
    return ("<header><h1>Rectal cancer imaging report</h1>"
            f'<dl class="meta"><dt>Patient (pseudonym)</dt><dd>{fmt(pseudonym)}</dd>'
            f"<dt>procto version</dt><dd>{fmt(version)}</dd></dl>{_notices(report)}</header>")


def _t_text(t: Mapping[str, Any]) -> str:
    if not t.get("available") or not t.get("label"):
        return f"T unavailable: {esc(t.get('reason') or NA)}"
    p = t.get("t3_probability")
    prob = f" (P(T3) = {float(p):.2f})" if _is_number(p) and math.isfinite(float(p)) else ""
    return f"{esc(t['label'])}{prob}"


def _n_suspicious(nodes: Mapping[str, Any]) -> int | None:
    n = nodes.get("n_metastatic")
    if _is_number(n):
        return int(n)
    items = [_dict(i) for i in _list(nodes.get("items"))]
    return sum(1 for i in items if i.get("metastatic") is True) if items else None


def _n_text(nodes: Mapping[str, Any]) -> str:
    if not nodes.get("available") or not nodes.get("n_category"):
        return f"N unavailable: {esc(nodes.get('reason') or NA)}"
    n = _n_suspicious(nodes)
    count = "" if n is None else f" ({n} suspicious node{'' if n == 1 else 's'})"
    return f"{esc(nodes['n_category'])}{count}"


def summary_text(report: Mapping[str, Any]) -> str:
    """The T/N line, escaped: e.g. ``T3 (P(T3) = 0.81) · N1 (2 suspicious nodes)``."""
    return f"{_t_text(_dict(report.get('t_stage')))} · {_n_text(_dict(report.get('nodes')))}"


def _summary(report: Mapping[str, Any]) -> str:
    return f'<p class="summary">{summary_text(report)}</p>'


def _unit_of(key: str) -> str:
    return next((unit for suffix, unit in _UNITS if key.endswith(suffix)), "")


def _tumour_value(key: str, value: Any, estimates: set) -> str:
    label, unit, digits = TUMOUR_ROWS.get(key, (key, _unit_of(key), 1))
    if key == "clock_face" and isinstance(value, (list, tuple)) and len(value) == 2:
        text = f"{fmt(value[0], 1)} to {fmt(value[1], 1)} o'clock"
    elif key == "source" and isinstance(value, str):
        text = esc(value.upper())
    else:
        text = fmt(value, digits, unit)
    if key in estimates and value is not None:
        text = f"≈ {text} (estimate)"
    return text


def _tumour(report: Mapping[str, Any]) -> str:
    tumour = _dict(report.get("tumour"))
    if not tumour or tumour.get("available") is False:
        return _na(tumour.get("reason"))
    estimates = {str(e) for e in _list(tumour.get("estimates"))}
    keys = [k for k in TUMOUR_ROWS if k in tumour]
    keys += [k for k in tumour if k not in TUMOUR_ROWS and k not in _SKIP_TUMOUR_KEYS]
    rows = [(esc(TUMOUR_ROWS.get(k, (k,))[0]), _tumour_value(k, tumour[k], estimates)) for k in keys]
    return table(["Measurement", "Value"], rows, "Tumour measurements") if rows else _na()


def _legend(items: Iterable[tuple[str, tuple[int, int, int], float]]) -> str:
    spans = []
    for name, colour, _alpha in items:
        rgb = f"rgb({colour[0]}, {colour[1]}, {colour[2]})"
        spans.append(f'<span class="swatch" style="background: {rgb}" aria-hidden="true"></span>{esc(name)}')
    return "Legend:" + "".join(spans)


def _modality_figure(modality: str, image: Volume, label: Volume | None) -> str:
    if not isinstance(image, Volume):
        return f"<h3>{esc(modality.upper())}</h3>{_na('no image')}"
    label = label if isinstance(label, Volume) else None
    arr = None if label is None else np.asarray(label.array)
    if arr is not None and (arr == 2).any():
        centre, through = centre_of(label, arr == 2), "the tumour centre"
    elif arr is not None and (arr == 1).any():
        centre, through = centre_of(label, arr == 1), "the rectum's centre (no tumour label)"
    else:
        centre, through = centre_of(image), "the volume's centre (no label)"
    win = window(image, modality)
    cells = []
    for plane in PLANES:
        fig = plane_figure(image, label, centre, plane, modality, win=win, through=through)
        cells.append(f'<figure class="plane">{_img(fig, "overlay", modality=modality, plane=plane)}'
                     f"<figcaption>{esc(plane.capitalize())}</figcaption></figure>")
    if modality.lower() == "ct":
        wl = f"window W {CT_WINDOW[0]:.0f} / L {CT_WINDOW[1]:.0f} HU"
    else:
        wl = f"window {MRI_PERCENTILES[0]:.0f}st–{MRI_PERCENTILES[1]:.0f}th percentile ({win[0]:.0f}–{win[1]:.0f})"
    legend = _legend(LABEL_COLOURS.values()) if label is not None else "no label overlay"
    caption = (f"{esc(modality.upper())} through {esc(through)}; {esc(wl)}. Axial planes are seen from the feet "
               f"(R = patient's right), sagittal with anterior on the left. {legend}")
    return f'<figure class="modality"><div class="planes">{"".join(cells)}</div><figcaption>{caption}</figcaption></figure>'


def _images(report: Mapping[str, Any], images: Mapping[str, Any] | None) -> str:
    if not images:
        return _na("no images were given")
    parts = []
    for modality in sorted(images, key=lambda m: (m != "mri", m != "ct", str(m))):
        entry = images[modality]
        image, label = (tuple(entry) + (None, None))[:2] if isinstance(entry, (list, tuple)) else (entry, None)
        try:
            parts.append(_modality_figure(str(modality), image, label))
        except SECTION_ERRORS as exc:
            parts.append(f"<h3>{esc(str(modality).upper())}</h3>{_na(f'the images could not be drawn ({exc})')}")
    return "".join(parts)


def _node_items(nodes_report: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    return [_dict(i) for i in _list(nodes_report.get("items")) if _dict(i)]


def _thumbnails(items: list[Mapping[str, Any]], nodes: Any) -> str:
    if not (isinstance(nodes, (list, tuple)) and len(nodes) == 2 and all(isinstance(v, Volume) for v in nodes)):
        return ""
    ct, instances = nodes
    by_id = {int(i["id"]): i for i in items if _is_number(i.get("id"))}
    # highest scores first: with many candidates the thumbnails show the ones that count
    ids = sorted(by_id, key=lambda k: float(by_id[k]["score"]) if _is_number(by_id[k].get("score")) else 0.0,
                 reverse=True)
    ids = ids or [int(v) for v in np.unique(np.asarray(instances.array)) if v > 0]
    win, cells = window(ct, "ct"), []
    for node_id in ids[:MAX_THUMBNAILS]:
        item = by_id.get(node_id, {})
        meta = item.get("metastatic") if isinstance(item.get("metastatic"), bool) else None
        centre = item.get("centre_mm") if len(_list(item.get("centre_mm"))) == 3 else None
        fig = node_figure(ct, instances, node_id, centre, meta, win=win)
        status = {True: "suspicious", False: "not suspicious"}.get(meta, "status unknown")
        caption = (f"Node {node_id} · short {fmt(item.get('short_axis_mm'), 1, 'mm')} · long "
                   f"{fmt(item.get('long_axis_mm'), 1, 'mm')} · score {fmt(item.get('score'), 2)} · {esc(status)}")
        cells.append(f'<figure class="node">{_img(fig, "thumb", node=str(node_id))}'
                     f"<figcaption>{caption}</figcaption></figure>")
    more = f"<p>{len(ids) - MAX_THUMBNAILS} more nodes are listed in the table only.</p>" if len(ids) > MAX_THUMBNAILS else ""
    legend = _legend([("suspicious", NODE_COLOURS[True], 1.0), ("not suspicious", NODE_COLOURS[False], 1.0)])
    return (f'<div class="nodes">{"".join(cells)}</div>{more}<p class="legend">Axial CT patches of '
            f"{THUMB_MM:.0f} mm, window W {CT_WINDOW[0]:.0f} / L {CT_WINDOW[1]:.0f} HU. {legend}</p>")


def _nodes(report: Mapping[str, Any], nodes: Any) -> str:
    info = _dict(report.get("nodes"))
    if not info or info.get("available") is False:
        return _na(info.get("reason"))
    items = _node_items(info)
    head = (f"<p>N category: <strong>{fmt(info.get('n_category'))}</strong> · suspicious nodes: "
            f"{fmt(_n_suspicious(info), 0)} of {len(items)} · score threshold {fmt(info.get('score_threshold'), 2)}</p>")
    rows = []
    for i in items:
        meta = i.get("metastatic")
        rows.append((fmt(i.get("id"), 0), fmt(i.get("centre_mm"), 1), fmt(i.get("short_axis_mm"), 1),
                     fmt(i.get("long_axis_mm"), 1), fmt(i.get("volume_ml"), 2), fmt(i.get("score"), 2),
                     "yes" if meta is True else "no" if meta is False else fmt(meta)))
    headers = ["Node", "Centre (z, y, x) mm", "Short axis (mm)", "Long axis (mm)", "Volume (mL)", "Score",
               "Suspicious"]
    body = table(headers, rows, "Lymph nodes", numeric=(0, 2, 3, 4, 5)) if rows else _na("no nodes were found")
    return head + _thumbnails(items, nodes) + body


def _quality(report: Mapping[str, Any]) -> str:
    quality = _dict(report.get("quality"))
    checks = [_dict(c) for c in _list(quality.get("checks"))]
    warnings = [w for w in _list(quality.get("warnings")) if w]
    if not checks and not warnings:
        return _na()
    items = []
    for c in checks:
        ok = c.get("ok")
        mark = '<span class="ok">ok</span>' if ok is True else '<span class="warn">warning</span>'
        detail = f" — {esc(c['detail'])}" if c.get("detail") else ""
        items.append(f"<li>{mark} {fmt(c.get('name'))}{detail}</li>")
    out = f'<ul class="checks">{"".join(items)}</ul>' if items else ""
    if warnings:
        out += "<p><strong>Warnings</strong></p><ul>" + "".join(f"<li>{esc(w)}</li>" for w in warnings) + "</ul>"
    return out


def _inputs(report: Mapping[str, Any]) -> str:
    inputs = _dict(report.get("inputs"))
    rows = [(esc(str(m).upper()), fmt(_dict(v).get("format")), fmt(_dict(v).get("shape"), 0),
             fmt(_dict(v).get("spacing_mm"), 2), fmt(_dict(v).get("orientation"))) for m, v in inputs.items()]
    headers = ["Image", "Format", "Shape (z, y, x)", "Spacing (mm)", "Orientation"]
    return table(headers, rows, "Input images") if rows else _na()


def _models(report: Mapping[str, Any]) -> str:
    rows = []
    for m in (_dict(m) for m in _list(report.get("models"))):
        sha = m.get("sha256")
        rows.append((fmt(m.get("task")), fmt(m.get("name")), fmt(m.get("architecture")),
                     f"<code>{esc(str(sha)[:12])}</code>" if sha else fmt(None), fmt(m.get("trained_on"))))
    headers = ["Task", "Model", "Architecture", "SHA-256 (first 12)", "Trained on"]
    return table(headers, rows, "Models") if rows else _na()


def _steps(report: Mapping[str, Any]) -> str:
    rows = []
    for s in (_dict(s) for s in _list(report.get("steps"))):
        status = str(s.get("status") or NA)
        cls = "ok" if status == "done" else "warn"
        rows.append((fmt(s.get("name")), f'<span class="{cls}">{esc(status)}</span>',
                     fmt(s.get("reason")) if s.get("reason") else "", fmt(s.get("seconds"), 1, "s")))
    return table(["Step", "Status", "Reason", "Time"], rows, "Steps", numeric=(3,)) if rows else _na()


def _outputs(report: Mapping[str, Any]) -> str:
    outputs = _dict(report.get("outputs"))
    rows = [(esc(k), f"<code>{esc(v)}</code>") for k, v in outputs.items() if v]
    return table(["Output", "File"], rows, "Files written next to this report") if rows else _na()


def _methods(report: Mapping[str, Any]) -> str:
    return '<div class="methods">' + "".join(f"<p>{esc(p)}</p>" for p in METHODS) + "</div>"


SECTIONS: tuple[tuple[str, str, Callable[..., str]], ...] = (
    ("summary", "Summary", _summary),
    ("tumour", "Tumour", _tumour),
    ("images", "Images", _images),
    ("nodes", "Lymph nodes", _nodes),
    ("quality", "Quality", _quality),
    ("inputs", "Inputs", _inputs),
    ("models", "Models", _models),
    ("steps", "Steps", _steps),
    ("outputs", "Files", _outputs),
    ("methods", "Methods", _methods),
)


def _section(sid: str, title: str, render: Callable[..., str], *args: Any) -> str:
    try:
        body = render(*args)
    except SECTION_ERRORS as exc:
        body = _na(f"this section could not be shown ({type(exc).__name__}: {exc})")
    return f'<section id="{sid}" aria-labelledby="h-{sid}"><h2 id="h-{sid}">{esc(title)}</h2>{body}</section>'


def render_report_html(report: Mapping[str, Any], *, images: Mapping[str, Any] | None = None,
                       nodes: tuple[Volume, Volume] | None = None) -> str:
    """The report page as a string (see :func:`write_report_html`)."""
    if not isinstance(report, Mapping):
        raise InputError(f"the report must be a dict (report.json), got {type(report).__name__}")
    sections = []
    for sid, title, render in SECTIONS:
        args = {"images": (report, images), "nodes": (report, nodes)}.get(sid, (report,))
        sections.append(_section(sid, title, render, *args))
    try:
        header = _header(report)
    except SECTION_ERRORS:
        header = f"<header><h1>Rectal cancer imaging report</h1>{_na()}</header>"
    pseudonym = _dict(report.get("patient")).get("pseudonym")
    title = f"procto report — {pseudonym}" if pseudonym else "procto report"
    csp = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"
    return ("<!DOCTYPE html>\n"
            f'<html lang="en"><head><meta charset="utf-8">'
            f'<meta http-equiv="Content-Security-Policy" content="{csp}">'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{esc(title)}</title><style>{CSS}</style></head>"
            f"<body><main>{header}{''.join(sections)}"
            "<footer>Written by procto, research software; not a medical device. Every result needs review by "
            "a radiologist.</footer></main></body></html>\n")


def write_report_html(report: Mapping[str, Any], out: str | Path, *,
                      images: Mapping[str, tuple[Volume, Volume | None]] | None = None,
                      nodes: tuple[Volume, Volume] | None = None) -> Path:
    """Write the report as one self-contained, printable HTML page.

    Args:
        report: the report.json dict (``procto-report/1``); every key is optional — a missing one reads
            "not available".
        out: the page's path (written atomically, UTF-8).
        images: ``{"mri"|"ct": (image, label or None)}``; the label map holds 1 = rectum, 2 = tumour. Each
            modality gets its axial, sagittal and coronal planes through the tumour centre with the label overlaid.
        nodes: ``(ct, node instance map with ids 1..n)`` for the node thumbnails (axial patches around each node).

    Returns:
        ``out`` as a :class:`~pathlib.Path`.
    """
    page = render_report_html(report, images=images, nodes=nodes)
    out = Path(out)
    with atomic_output(out) as tmp:
        tmp.write_text(page, encoding="utf-8")
    return out


__all__ = ["write_report_html", "render_report_html", "summary_text", "esc", "fmt", "table", "NA", "METHODS"]
