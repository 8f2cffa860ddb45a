"""Synthetic patients: :func:`make_case` (one seeded case) and :func:`make_cohort` (a balanced series).

A case is drawn from independent random streams spawned from its seed — anatomy, stage, tumour, nodes, field of
view, rasterisation, intensities — so forcing an option (say ``t_stage="T3"``) changes only what depends on it:
the same seed gives the same patient (anatomy, tumour, nodes) in CT and MRI, at any resolution, with or without a
forced stage (only the default rectal-lumen content, gas or fluid/gel, has modality-specific odds).
Same seed and options → bit-identical arrays.

>>> from procto.phantom import make_case
>>> case = make_case(7, "mri", shape=(32, 96, 96))
>>> case.image.array.shape, case.t_stage in ("T2", "T3")
((32, 96, 96), True)
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from procto.errors import InputError
from procto.io.volume import Volume
from procto.phantom.anatomy import sample_anatomy
from procto.phantom.ct import render_ct
from procto.phantom.grid import Grid, default_grid
from procto.phantom.labels import LABELS, LAYERS, MAX_NODES, N_CATEGORIES, T_STAGES, n_category
from procto.phantom.mri import render_mri
from procto.phantom.nodes import MAX_BENIGN_NODES, sample_benign_nodes, sample_nodes
from procto.phantom.render import render
from procto.phantom.tumour import TUMOUR_SITES, sample_tumour

MODALITIES = ("ct", "mri")
#: Independent random streams of a case (children of ``SeedSequence(seed)`` in this order; a child depends on its index
#: only, so the benign-node stream added last left the others, and every case without benign nodes, unchanged).
_STREAMS = ("anatomy", "stage", "tumour", "nodes", "grid", "render", "intensity", "benign")


@dataclass
class PhantomCase:
    """One synthetic patient.

    Attributes:
        case_id: identifier (file-name safe).
        seed: the seed it was generated from.
        modality: "ct" | "mri".
        image: CT (int16 HU, axial) or T2w MRI (float32, sagittal) volume.
        label: uint8 segmentation: 0 background, 1 rectum (normal wall + lumen), 2 tumour.
        nodes: uint8 lymph-node instances: metastatic nodes 1..n_nodes, then the benign ones n_nodes+1..n_nodes+n_benign
            (:meth:`metastatic_nodes` keeps the first only).
        organs: uint8 multi-organ map with TotalSegmentator v2 ``total`` ids (colon 20 includes rectum and tumour).
        layers: uint8 host rectal wall without the tumour: 1 mucosa/submucosa, 2 muscularis propria, 3 mesorectal fat.
        tissue: uint8 tissue classes (:class:`procto.phantom.tissues.Tissue`) the image was rendered from.
        t_stage: "T2" | "T3".
        n_category: "N0" | "N1" | "N2".
        n_nodes: number of metastatic nodes (the N category counts these only).
        node_info: per node (metastatic ones first, then benign ones): id, centre (z, y, x) mm, short / long axis mm,
            level ``s_mm`` along the rectum, angle, ``metastatic`` (True / False), ``voxels`` in the ``nodes`` map (0
            when the node lies outside the field of view; a node smaller than a voxel keeps its nearest mesorectal
            voxel).
        tumour_info: length, circumference, bulk, extramural depth (mm), voxel counts.
        options: the options the case was made with (enough to remake it).
        seconds: generation time.
        n_benign: number of benign nodes (0 unless ``make_case(..., benign_nodes=...)``).
    """

    case_id: str
    seed: int
    modality: str
    image: Volume
    label: Volume
    nodes: Volume
    organs: Volume
    layers: Volume
    tissue: Volume
    t_stage: str
    n_category: str
    n_nodes: int
    node_info: list = field(default_factory=list)
    tumour_info: dict = field(default_factory=dict)
    options: dict = field(default_factory=dict)
    seconds: float = 0.0
    n_benign: int = 0

    def metastatic_nodes(self) -> Volume:
        """The ``nodes`` map with the metastatic nodes only (ids 1..n_nodes; benign nodes set to 0)."""
        arr = self.nodes.array
        return self.nodes.with_array(np.where(arr <= self.n_nodes, arr, 0).astype(arr.dtype))

    def maps(self) -> dict[str, Volume]:
        """The label volumes by name: label, nodes, organs, layers."""
        return {"label": self.label, "nodes": self.nodes, "organs": self.organs, "layers": self.layers}

    def summary(self) -> dict[str, Any]:
        """One row for ``stages.csv`` (node columns: metastatic nodes; ``n_benign_nodes`` when benign ones were asked
        for)."""
        metastatic = [n for n in self.node_info if n.get("metastatic", True)]
        row = {
            "case_id": self.case_id, "modality": self.modality, "seed": self.seed, "t_stage": self.t_stage,
            "n_category": self.n_category, "n_nodes": self.n_nodes,
            "tumour_length_mm": self.tumour_info.get("length_mm", 0.0),
            "circumference_deg": self.tumour_info.get("circumference_deg", 0.0),
            "extramural_depth_mm": self.tumour_info.get("extramural_depth_mm", 0.0),
            "max_node_short_axis_mm": max((n["short_axis_mm"] for n in metastatic), default=0.0),
        }
        if "benign_nodes" in self.options:
            row["n_benign_nodes"] = self.n_benign
        return row

    def __repr__(self) -> str:
        return (f"PhantomCase({self.case_id!r}, {self.modality}, shape={self.image.shape}, "
                f"spacing={self.image.spacing}, {self.t_stage}{self.n_category}, n_nodes={self.n_nodes})")


def _check_choice(name: str, value, allowed) -> None:
    if value is not None and value not in allowed:
        raise InputError(f"{name} must be one of {', '.join(map(str, allowed))} or None, got {value!r}")


def _tumour_top(anat, tumour) -> float:
    """Highest level (z, mm) of a colon tumour's stretch of bowel, with a margin; -inf for a rectal tumour (the
    automatic CT field of view keeps the rectum anyway)."""
    if tumour.site == "rectum":
        return -np.inf
    bowel = anat.bowel
    near = np.abs(bowel.s - tumour.s_center) <= tumour.length / 2
    return float((bowel.tube.points[near, 0] + bowel.radius[near]).max()) + 10.0


def _fov_center(modality: str, grid_shape, spacing, anat, rng: np.random.Generator,
                top: float = -np.inf) -> tuple[float, float, float]:
    lm = anat.landmarks
    jit = rng.uniform(-1, 1, size=3)
    if modality == "ct":
        fov_z = grid_shape[0] * spacing[0]
        top_needed = max(lm["z_rs"] + 22.0, top)
        bottom_pref = -45.0
        if fov_z >= top_needed - bottom_pref:
            bottom = bottom_pref - 8.0 * abs(jit[0])
        else:
            bottom = top_needed - fov_z
        return (bottom + fov_z / 2, anat.body["y_c"] + 8 * jit[1], 6 * jit[2])
    return (lm["z_rs"] / 2 - 5 + 8 * jit[0], (lm["rectum_y_mid"] + anat.body["y_c"]) / 2 + 6 * jit[1], 4 * jit[2])


def make_case(seed: int, modality: str = "ct", *, shape=None, spacing=None, fov_mm: float | None = None,
              center=None, t_stage: str | None = None, n_nodes: int | None = None, noise: float = 1.0,
              blur: bool = True, bias: bool = True, sex: str | None = None, lumen: str | None = None,
              case_id: str | None = None, tumour_site: str = "rectum", benign_nodes=None) -> PhantomCase:
    """Generate one synthetic patient.

    Args:
        seed: non-negative integer; same seed and options → bit-identical case.
        modality: "ct" (axial, Hounsfield units) or "mri" (sagittal T2-weighted).
        shape: array shape; default CT (64, 256, 256), MRI (24, 256, 256).  Array axis 0 is the slice axis (CT:
            inferior→superior; MRI: right→left, thick).
        spacing: voxel size along the array axes (mm); default: slice spacing CT 5.0 / MRI 4.0 mm and an in-plane
            pixel size giving a ``fov_mm`` field of view.
        fov_mm: in-plane field of view when ``spacing`` is None (default CT 400 mm, MRI 224 mm).
        center: physical (z, y, x) centre of the field of view (mm, patient frame: z = 0 at the anorectal junction),
            or "tumour" / "rectum" to centre a (small, fine) field of view on the tumour / the middle of the rectum;
            default: CT the whole body width from just below the anal canal up (keeping the whole rectum when the
            field is short), MRI centred on the rectum.
        t_stage: "T2" | "T3" | None (random, 50/50).
        n_nodes: 0–6 metastatic lymph nodes, or None (random: N0 / N1 / N2 equally likely).
        noise: noise level multiplier (0 = noise-free).
        blur: scanner PSF / partial-volume blur.
        bias: MRI bias field.
        sex: "male" | "female" | None (random).
        lumen: rectal lumen "gas" | "fluid" | None (random).
        case_id: identifier; default ``phantom_{modality}_{seed}``.
        tumour_site: "rectum" (default) or "colon" (CT only): a tumour of the same size and stage in the sigmoid
            colon 20–60 mm above the rectosigmoid junction, still label 2 (``label`` 1 stays the rectum) and organ
            colon 20; the automatic field of view is raised to include it when the field is short (with
            ``shape=(32, 96, 96)`` at 5 mm the rectum's lower part is then cut off).  Same seed → same patient.
        benign_nodes: None (default: no benign nodes; every case is then exactly what it was before the option
            existed), a count 0–8, or a pair ``(lo, hi)`` to draw the count uniformly in lo..hi (own random stream).
            Benign nodes are small (short axis 3–6 mm), round (axes within 15 %), homogeneous (CT 30 HU, MRI 0.42 ×
            fat, no texture: tissue :attr:`Tissue.BENIGN_NODE`), anywhere in the mesorectal fat, clear of the tumour
            and of every other node; they take the ids after the metastatic nodes in ``nodes`` and are flagged
            ``metastatic: False`` in ``node_info``.  ``n_nodes`` and the N category count metastatic nodes only, so
            an N0 patient may have benign nodes.

    Returns:
        a :class:`PhantomCase`.

    Raises:
        InputError: bad option values.

    Tip:
        For training small networks, a rectum-centred crop keeps the whole rectum at a useful resolution:
        ``make_case(s, "ct", shape=(32, 96, 96), spacing=(5.0, 1.5, 1.5), center="rectum")`` or
        ``make_case(s, "mri", shape=(32, 96, 96), spacing=(4.0, 1.75, 1.75), center="rectum")`` (about 6–8 k rectum
        and 1–2 k tumour voxels); with ``shape`` alone the field of view covers the whole body section.
    """
    t0 = time.perf_counter()
    modality = str(modality).lower()
    _check_options(seed, modality, t_stage, n_nodes, noise, sex, lumen, tumour_site)
    benign_range = check_benign_nodes(benign_nodes)
    children = np.random.SeedSequence(int(seed)).spawn(len(_STREAMS))
    streams = dict(zip(_STREAMS, (np.random.default_rng(s) for s in children)))

    anat = sample_anatomy(streams["anatomy"], sex=sex, lumen=lumen, modality=modality)
    t_stage, n_nodes = _draw_stage(streams["stage"], t_stage, n_nodes)
    tumour = sample_tumour(streams["tumour"], anat.bowel, t_stage, tumour_site)
    nodes = sample_nodes(streams["nodes"], anat.bowel, tumour, n_nodes)
    n_benign = 0
    if benign_range is not None:
        n_benign = int(streams["benign"].integers(benign_range[0], benign_range[1] + 1))
        nodes = nodes + sample_benign_nodes(streams["benign"], anat.bowel, tumour, n_benign, nodes)
    grid, center = _field_of_view(modality, shape, spacing, fov_mm, center, anat, tumour, streams["grid"])
    maps = render(anat, tumour, nodes, grid, streams["render"])
    if modality == "ct":
        img = render_ct(maps.tissue, grid, streams["intensity"], noise=noise, blur=blur)
    else:
        img = render_mri(maps.tissue, grid, streams["intensity"], noise=noise, blur=blur, bias=bias)
    options = {"shape": list(grid.shape), "spacing": list(grid.spacing), "center": [float(c) for c in center],
               "t_stage": t_stage, "n_nodes": n_nodes, "noise": noise, "blur": blur, "bias": bias,
               "sex": anat.sex, "lumen": anat.lumen, "tumour_site": tumour_site}
    if benign_range is not None:
        fixed = isinstance(benign_nodes, (int, np.integer))
        options["benign_nodes"] = int(benign_nodes) if fixed else list(benign_range)
    case = _assemble(case_id or f"phantom_{modality}_{int(seed)}", int(seed), modality, grid, img, maps, anat,
                     tumour, nodes, options)
    case.n_benign = n_benign
    case.seconds = time.perf_counter() - t0
    return case


def _check_options(seed, modality: str, t_stage, n_nodes, noise: float, sex, lumen, tumour_site) -> None:
    """Raise :class:`InputError` on a bad option of :func:`make_case` (``center`` is checked with the grid)."""
    if tumour_site not in TUMOUR_SITES:
        raise InputError(f"tumour_site must be one of {', '.join(TUMOUR_SITES)}, got {tumour_site!r}")
    if tumour_site == "colon" and modality == "mri":
        raise InputError("tumour_site 'colon' is for CT only (the MRI field of view holds the rectum)")
    _check_choice("modality", modality, MODALITIES)
    _check_choice("t_stage", t_stage, T_STAGES)
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise InputError(f"seed must be a non-negative integer, got {seed!r}")
    if n_nodes is not None and not (0 <= int(n_nodes) <= MAX_NODES):
        raise InputError(f"n_nodes must be between 0 and {MAX_NODES}, got {n_nodes}")
    if noise < 0:
        raise InputError(f"noise must be >= 0, got {noise}")
    _check_choice("sex", sex, ("male", "female"))
    _check_choice("lumen", lumen, ("gas", "fluid"))


def check_benign_nodes(benign_nodes) -> tuple[int, int] | None:
    """``benign_nodes`` as an inclusive count range (None: no benign nodes); :class:`InputError` when out of range."""
    if benign_nodes is None:
        return None
    if isinstance(benign_nodes, (bool, np.bool_)):
        raise InputError(f"benign_nodes must be a count or a (lo, hi) pair, got {benign_nodes!r}")
    if isinstance(benign_nodes, (int, np.integer)):
        lo = hi = int(benign_nodes)
    else:
        try:
            lo, hi = (int(v) for v in benign_nodes)
        except (TypeError, ValueError):
            raise InputError(f"benign_nodes must be a count or a (lo, hi) pair, got {benign_nodes!r}") from None
    if not 0 <= lo <= hi <= MAX_BENIGN_NODES:
        raise InputError(f"benign_nodes must lie between 0 and {MAX_BENIGN_NODES} (lo <= hi), got {benign_nodes!r}")
    return lo, hi


def _draw_stage(rs: np.random.Generator, t_stage: str | None, n_nodes: int | None) -> tuple[str, int]:
    """T stage and number of metastatic nodes: the forced ones, else drawn (the draws are made either way, so forcing
    one does not change the other)."""
    t_rand = T_STAGES[int(rs.uniform() < 0.5)]
    cat = int(rs.integers(0, 3))
    n_rand = (0, int(rs.integers(1, 4)), int(rs.integers(4, MAX_NODES + 1)))[cat]
    return t_stage or t_rand, (n_rand if n_nodes is None else int(n_nodes))


def _field_of_view(modality: str, shape, spacing, fov_mm, center, anat, tumour,
                   rng: np.random.Generator) -> tuple[Grid, Any]:
    """The image grid and its physical centre: ``shape``/``spacing``/``fov_mm`` (or the modality's defaults) centred
    on ``center`` (None: the automatic field of view; "tumour" / "rectum"; or a physical (z, y, x) point)."""
    probe = default_grid(modality, shape, spacing, fov_mm, center=(0.0, 0.0, 0.0))
    auto_center = _fov_center(modality, probe.shape, probe.spacing, anat, rng, _tumour_top(anat, tumour))
    if center is None:
        center = auto_center
    elif isinstance(center, str):
        if center not in ("tumour", "rectum"):
            raise InputError(f"center must be (z, y, x) mm, 'tumour', 'rectum' or None, got {center!r}")
        s_mid = tumour.s_center if center == "tumour" else anat.bowel.rectum_length / 2
        center = anat.bowel.tube.points[anat.bowel.tube.index_at(s_mid)]
    elif np.asarray(center, dtype=float).shape != (3,):
        raise InputError(f"center must hold 3 values (z, y, x), got {center!r}")
    return Grid.centred(probe.shape, probe.spacing, center, probe.direction), center


def _assemble(case_id: str, seed: int, modality: str, grid: Grid, img: np.ndarray, maps, anat, tumour, nodes,
              options: dict) -> PhantomCase:
    """The :class:`PhantomCase`: the image and label volumes on ``grid``, node and tumour measurements."""
    base = {"case_id": case_id, "description": "procto synthetic phantom"}
    node_info = [n.info(i) for i, n in enumerate(nodes, start=1)]
    for info, n_vox in zip(node_info, maps.info.get("node_voxels", [])):
        info["voxels"] = n_vox
    tumour_info = {**tumour.info(), "voxels": maps.info.get("tumour_voxels", 0),
                   "extramural_voxels": maps.info.get("extramural_voxels", 0),
                   "rectum_length_mm": round(anat.bowel.rectum_length, 2)}
    t_stage, n_nodes = options["t_stage"], options["n_nodes"]
    return PhantomCase(
        case_id=case_id, seed=seed, modality=modality,
        image=grid.volume(img, modality="CT" if modality == "ct" else "MR", **base),
        label=grid.volume(maps.label, labels=dict(LABELS), **base),
        nodes=grid.volume(maps.nodes, **base),
        organs=grid.volume(maps.organs, label_scheme="TotalSegmentator v2 total", **base),
        layers=grid.volume(maps.layers, labels=dict(LAYERS), **base),
        tissue=grid.volume(maps.tissue, **base),
        t_stage=t_stage, n_category=n_category(n_nodes), n_nodes=n_nodes, node_info=node_info,
        tumour_info=tumour_info, options=options,
    )


@dataclass(frozen=True)
class CohortEntry:
    """What :func:`make_cohort` will generate for one case."""

    index: int
    case_id: str
    seed: int
    t_stage: str
    n_nodes: int

    @property
    def n_category(self) -> str:
        return n_category(self.n_nodes)


def cohort_plan(n: int, modality: str = "ct", seed: int = 0, *, t_stage: str | None = None,
                n_nodes: int | None = None, start: int = 0, prefix: str | None = None) -> list[CohortEntry]:
    """The cases of a cohort: balanced T2/T3 (alternating) and N0/N1/N2 (cycling over pairs), each with its own
    seed derived from ``seed`` and its index.

    Args:
        n: number of cases.
        modality: "ct" | "mri" (only used in the case ids).
        seed: cohort seed.
        t_stage, n_nodes: force for every case.
        start: index of the first case (to extend a cohort, e.g. a test split after a training split).
        prefix: case-id prefix; default ``phantom_{modality}``.
    """
    if n < 0:
        raise InputError(f"n must be >= 0, got {n}")
    _check_choice("t_stage", t_stage, T_STAGES)
    prefix = prefix or f"phantom_{str(modality).lower()}"
    entries = []
    for i in range(start, start + n):
        ss = np.random.SeedSequence(int(seed), spawn_key=(i,))
        case_seed = int(ss.generate_state(1)[0])
        rng = np.random.default_rng(ss.spawn(1)[0])
        t = t_stage or T_STAGES[i % 2]
        cat = N_CATEGORIES[(i // 2) % 3]
        k = (0, int(rng.integers(1, 4)), int(rng.integers(4, MAX_NODES + 1)))[N_CATEGORIES.index(cat)]
        entries.append(CohortEntry(i, f"{prefix}_{i:04d}", case_seed, t, k if n_nodes is None else int(n_nodes)))
    return entries


def make_cohort(n: int, modality: str = "ct", seed: int = 0, *, t_stage: str | None = None,
                n_nodes: int | None = None, start: int = 0, prefix: str | None = None,
                **options) -> Iterator[PhantomCase]:
    """Generate ``n`` cases lazily (an iterator; ``list(make_cohort(...))`` for a list).

    T stages alternate T2, T3 and N categories cycle N0, N1, N2 over pairs of cases, so every block of six cases holds
    each (T, N) combination once.  ``options`` go to :func:`make_case` (shape, spacing, noise, ...).

    Yields:
        :class:`PhantomCase` objects, in order.
    """
    for entry in cohort_plan(n, modality, seed, t_stage=t_stage, n_nodes=n_nodes, start=start, prefix=prefix):
        yield make_case(entry.seed, modality, t_stage=entry.t_stage, n_nodes=entry.n_nodes, case_id=entry.case_id,
                        **options)
