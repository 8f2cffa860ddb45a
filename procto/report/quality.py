"""The report's quality section: is the input what the models were trained on?

A phantom-trained model run on a real scan can label a quarter of the volume without complaint; these checks make
the report say so.  Each check is ``{"name", "ok", "detail"}``; a failed check also becomes a warning line.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from procto.io import Volume

#: A rectum + tumour segmentation covering more than this fraction of the field of view is implausible.
MAX_LABEL_FRACTION = 0.10
#: More node candidates than this in one CT is implausible (perirectal nodes on CT number a few to ~20).
MAX_PLAUSIBLE_NODES = 30
#: Input spacing further than this factor from the model's training spacing (any axis) is flagged.
SPACING_FACTOR = 2.0


def orientation(volume: Volume) -> str:
    """``axial`` / ``coronal`` / ``sagittal`` after the patient axis the slice axis (array axis 0) runs along, or
    ``oblique`` when no axis is within ~18° of it."""
    normal = np.abs(volume.direction[:, 0])
    k = int(np.argmax(normal))
    if normal[k] < 0.95:
        return "oblique"
    return ("axial", "coronal", "sagittal")[k]


def describe_input(volume: Volume, fmt: str) -> dict[str, Any]:
    """The input's format and geometry for the report (no identifiers)."""
    return {"format": fmt, "shape": list(volume.shape), "spacing_mm": [round(s, 4) for s in volume.spacing],
            "orientation": orientation(volume)}


def _check(name: str, ok: bool, detail: str) -> dict[str, Any]:
    return {"name": name, "ok": bool(ok), "detail": detail}


def field_of_view_check(label: Volume | None, what: str) -> dict[str, Any]:
    """Whether the rectum (+ tumour) label lies inside the field of view: present, and not touching the border
    faces of the volume (a label cut by the border measures too short)."""
    name = f"rectum within the {what} field of view"
    if label is None:
        return _check(name, False, "no rectum segmentation")
    arr = np.asarray(label.array) > 0
    if not arr.any():
        return _check(name, False, "no rectum or tumour found in the volume")
    touching = [axis for axis in range(3) for side in (0, -1) if np.take(arr, side, axis=axis).any()]
    if touching:
        return _check(name, False, "the segmentation reaches the edge of the volume (array axes "
                                   f"{sorted(set(touching))}): the rectum may be cut off and its lengths too short")
    return _check(name, True, "the segmentation lies inside the volume")


def label_fraction_check(label: Volume, what: str) -> dict[str, Any]:
    """A segmentation covering more than :data:`MAX_LABEL_FRACTION` of the volume is implausible."""
    frac = float((np.asarray(label.array) > 0).mean())
    ok = frac <= MAX_LABEL_FRACTION
    detail = f"{100 * frac:.1f} % of the volume labelled"
    if not ok:
        detail += (f" (more than {100 * MAX_LABEL_FRACTION:.0f} %: implausible — the input is probably unlike the "
                   "model's training data)")
    return _check(f"{what} segmentation size plausible", ok, detail)


def node_count_check(n_nodes: int) -> dict[str, Any]:
    """More than :data:`MAX_PLAUSIBLE_NODES` node candidates in one CT is implausible."""
    ok = int(n_nodes) <= MAX_PLAUSIBLE_NODES
    detail = f"{int(n_nodes)} node candidate(s) found"
    if not ok:
        detail += (f" (more than {MAX_PLAUSIBLE_NODES}: implausible — the input is probably unlike the model's "
                   "training data)")
    return _check("CT node count plausible", ok, detail)


def spacing_check(volume: Volume, manifest: dict | None, what: str) -> dict[str, Any] | None:
    """Input spacing vs the model's training spacing (as recorded in its bundle), sorted per axis so that an
    orientation difference alone is not flagged."""
    spacing = (manifest or {}).get("spacing")
    if not spacing or len(spacing) != 3:
        return None
    want = np.sort(np.asarray(spacing, dtype=float))
    have = np.sort(np.asarray(volume.spacing, dtype=float))
    ratio = have / want
    ok = bool(np.all(ratio <= SPACING_FACTOR) and np.all(ratio >= 1 / SPACING_FACTOR))
    detail = (f"input {tuple(round(s, 2) for s in volume.spacing)} mm vs training {tuple(round(s, 2) for s in spacing)}"
              " mm")
    return _check(f"{what} spacing close to the model's", ok, detail if ok else detail + " (resampled by the model; "
                  "results less reliable)")


def intensity_check(volume: Volume, manifest: dict | None, what: str) -> dict[str, Any] | None:
    """The image's intensities vs the training data's foreground statistics (nnU-Net's fingerprint, when the
    model's bundle carries one): the image's median must lie inside the training foreground's 0.5–99.5 percentile
    range."""
    stats = ((manifest or {}).get("training_data") or {}).get("intensity_statistics")
    if not isinstance(stats, dict) or not stats:
        return None
    first = stats.get("0", next(iter(stats.values())))
    lo, hi = first.get("percentile_00_5"), first.get("percentile_99_5")
    if lo is None or hi is None:
        return None
    median = float(np.median(np.asarray(volume.array, dtype=np.float32)))
    ok = lo <= median <= hi
    detail = f"image median {median:.4g} vs training foreground range [{lo:.4g}, {hi:.4g}]"
    return _check(f"{what} intensities like the training data's", ok, detail if ok else detail + " (outside)")


def phantom_check(manifests: list[dict]) -> dict[str, Any] | None:
    """Models trained on procto's phantoms carry no accuracy claim on real scans."""
    phantom = [m.get("name") or m.get("task") for m in manifests
               if (m.get("training_data") or {}).get("source") == "phantoms"]
    if not phantom:
        return None
    return _check("models trained on patient data", False, "trained on synthetic phantoms (no accuracy claim on "
                  f"real scans): {', '.join(str(p) for p in phantom)}")


def summarise(checks: list[dict | None]) -> dict[str, Any]:
    """The quality section: the checks that apply and one warning line per failed check."""
    done = [c for c in checks if c is not None]
    return {"checks": done, "warnings": [f"{c['name']}: {c['detail']}" for c in done if not c["ok"]]}


__all__ = ["orientation", "describe_input", "field_of_view_check", "label_fraction_check", "node_count_check",
           "spacing_check", "intensity_check", "phantom_check", "summarise", "MAX_LABEL_FRACTION",
           "MAX_PLAUSIBLE_NODES", "SPACING_FACTOR"]
