"""Rasterising a patient onto a grid: the tissue map and the label maps (``label``, ``organs``, ``layers``,
``nodes``), all computed from the same geometry so they agree voxel for voxel.

Structures are painted in a fixed order (later ones win): CT couch, body (muscle + subcutaneous fat), visceral-fat
cavity, small bowel, soft organs, vessels, bones (union of primitives by maximum depth, cortex + marrow), spinal
canal / discs, rectum + colon with the mesorectum, lymph nodes (metastatic, then benign ones: ids continue), tumour.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from procto.phantom.anatomy import Anatomy, SmallBowel
from procto.phantom.fields import smooth_noise
from procto.phantom.grid import Grid
from procto.phantom.labels import MESORECTUM, MUCOSA, MUSCULARIS, ORGAN_IDS, RECTUM, TUMOUR
from procto.phantom.nodes import Node
from procto.phantom.tissues import Tissue
from procto.phantom.tumour import Tumour

CORTEX_MM = 2.2


@dataclass
class Maps:
    """The rasterised phantom (uint8 arrays on the grid) and what the rasteriser measured."""

    tissue: np.ndarray
    label: np.ndarray
    organs: np.ndarray
    layers: np.ndarray
    nodes: np.ndarray
    info: dict = field(default_factory=dict)


class _Canvas:
    def __init__(self, grid: Grid):
        self.grid = grid
        self.tissue = np.zeros(grid.shape, np.uint8)
        self.organs = np.zeros(grid.shape, np.uint8)

    def paint_solid(self, solid, tissue: int, organ: int, z_above: float | None = None) -> None:
        box = self.grid.box(*solid.bounds())
        if box is None:
            return
        z, y, x = self.grid.coords(box)
        inside = solid.depth(z, y, x) > 0
        if z_above is not None:
            inside &= np.broadcast_to(z > z_above, inside.shape)
        self.tissue[box][inside] = tissue
        self.organs[box][inside] = organ

    def paint_flat(self, flat: np.ndarray, tissue, organ) -> None:
        self.tissue.reshape(-1)[flat] = tissue
        self.organs.reshape(-1)[flat] = organ


def _paint_body(c: _Canvas, anat: Anatomy) -> None:
    g = c.grid
    z, y, x = g.coords()
    ax, yc, ay = anat.body_axes(z)
    ax = ax.astype(np.float32)
    dy = y - np.float32(yc)
    q = np.sqrt((x / ax) ** 2 + (dy / np.float32(ay)) ** 2)
    body = q <= 1.0
    depth = np.sqrt(x * x + dy * dy) * (1.0 / np.maximum(q, 1e-3) - 1.0)
    b = anat.body
    t = b["t_sc"] + (b["t_sc_post"] - b["t_sc"]) * np.clip(dy / ay, 0, 1)
    c.tissue[body] = Tissue.MUSCLE
    c.tissue[body & (depth < t)] = Tissue.SUBCUT_FAT
    # visceral-fat cavity: a rounded box whose section changes with z
    cax, ya, yp = (a.astype(np.float32) for a in anat.cavity_at(z))
    cyc, cay = (ya + yp) / 2, np.maximum((yp - ya) / 2, 1.0)
    p = 2.6
    cav = (np.abs(x) / cax) ** p + (np.abs(y - cyc) / cay) ** p <= 1.0
    cav &= body & (depth > b["t_sc"] + 3)
    c.tissue[cav] = Tissue.VISCERAL_FAT


def _paint_table(c: _Canvas, anat: Anatomy) -> None:
    g = c.grid
    y0 = anat.landmarks["y_back"] + 14.0
    box = g.box((-1e4, y0 - 60, -240), (1e4, y0 + 8, 240))
    if box is None:
        return
    z, y, x = g.coords(box)
    yt = y0 - 0.0008 * x * x
    table = (y >= yt) & (y <= yt + 7) & (np.abs(x) <= 230)
    c.tissue[box][np.broadcast_to(table, c.tissue[box].shape)] = Tissue.TABLE


def _paint_small_bowel(c: _Canvas, sb: SmallBowel | None, field: np.ndarray) -> None:
    if sb is None:
        return
    flat, k, rho, _ = sb.tube.query(c.grid, sb.radius + 0.5)
    if flat.size == 0:
        return
    r = sb.radius[k]
    inside = rho < r
    wall = inside & (rho >= r - sb.wall)
    content = inside & ~wall
    gas = content & (field.reshape(-1)[flat] > 1.3)
    c.paint_flat(flat[wall], Tissue.BOWEL_WALL, sb.organ)
    c.paint_flat(flat[content & ~gas], Tissue.BOWEL_FLUID, sb.organ)
    c.paint_flat(flat[gas], Tissue.GAS, sb.organ)


def _paint_bones(c: _Canvas, anat: Anatomy) -> None:
    g = c.grid
    depth = np.full(g.shape, -np.inf, np.float32)
    organ = np.zeros(g.shape, np.uint8)
    for oid, solid in anat.bones:
        box = g.box(*solid.bounds())
        if box is None:
            continue
        d = solid.depth(*g.coords(box))
        dsub, osub = depth[box], organ[box]
        upd = d > dsub
        dsub[upd] = d[upd]
        osub[upd] = oid
    bone = depth > 0
    c.tissue[bone] = Tissue.MARROW
    c.tissue[bone & (depth < CORTEX_MM)] = Tissue.CORTEX
    c.organs[bone] = organ[bone]
    for tissue, solid in anat.spine_soft:
        c.paint_solid(solid, tissue, 0)


def render(anat: Anatomy, tumour: Tumour | None, nodes: list[Node], grid: Grid,
           rng: np.random.Generator) -> Maps:
    """Rasterise ``anat`` with its ``tumour`` and ``nodes`` on ``grid``.

    Args:
        rng: random stream for the lumen contents (gas / stool pattern).
    """
    c = _Canvas(grid)
    field = smooth_noise(grid, rng, corr_mm=9.0)
    _paint_table(c, anat)
    _paint_body(c, anat)
    _paint_small_bowel(c, anat.small_bowel, field)
    _paint_small_bowel(c, anat.duodenum, field)
    for tissue, organ, solid, z_above in anat.solids:
        c.paint_solid(solid, tissue, organ, z_above)
    for organ, solid in anat.vessels:
        c.paint_solid(solid, Tissue.VESSEL, organ)
    _paint_bones(c, anat)

    label = np.zeros(grid.shape, np.uint8)
    layers = np.zeros(grid.shape, np.uint8)
    node_map = np.zeros(grid.shape, np.uint8)
    info: dict = {}
    hit = _paint_bowel(c, anat, field, label, layers)
    if hit is not None:
        info["node_voxels"] = [_paint_node(c, node, i, layers, node_map) for i, node in enumerate(nodes, start=1)]
        if tumour is not None:
            info.update(_paint_tumour(c, anat.bowel, tumour, hit, label, node_map))
    return Maps(tissue=c.tissue, label=label, organs=c.organs, layers=layers, nodes=node_map, info=info)


@dataclass
class _BowelHit:
    """The voxels near the rectum + colon tube: flat indices, nearest sample ``k``, distance ``rho`` and angle
    ``theta`` around the centre line, and which of them are mesorectal fat."""

    flat: np.ndarray
    k: np.ndarray
    rho: np.ndarray
    theta: np.ndarray
    meso: np.ndarray


def _paint_bowel(c: _Canvas, anat: Anatomy, field: np.ndarray, label: np.ndarray,
                 layers: np.ndarray) -> _BowelHit | None:
    """Rectum + colon with the mesorectum: wall layers, lumen contents, the rectum label and the wall-layer map.
    None when the tube misses the grid."""
    bowel = anat.bowel
    flat, k, rho, theta = bowel.tube.query(c.grid, bowel.reach())
    if not flat.size:
        return None
    r_o = bowel.r_out(k, theta)
    r_mi = r_o - bowel.w_mus[k]
    r_in = r_mi - bowel.w_muc[k]
    m = bowel.meso(k, theta)
    s = bowel.s[k]
    rect = bowel.is_rectum(k)
    has_meso = m > 0.3
    fascia = has_meso & (rho >= r_o + m) & (rho < r_o + m + 1.0)
    meso = has_meso & (rho >= r_o) & (rho < r_o + m)
    musc = (rho >= r_mi) & (rho < r_o)
    muc = (rho >= r_in) & (rho < r_mi)
    lumen = rho < r_in
    colon_org = np.where(s >= 0, ORGAN_IDS["colon"], 0).astype(np.uint8)
    c.paint_flat(flat[fascia], Tissue.FASCIA, 0)
    c.paint_flat(flat[meso], Tissue.MESO_FAT, 0)
    c.paint_flat(flat[musc], Tissue.MUSCULARIS, colon_org[musc])
    c.paint_flat(flat[muc], Tissue.MUCOSA, colon_org[muc])
    tex = field.reshape(-1)[flat]
    rect_lumen = lumen & (s <= bowel.rectum_length + 10)
    if anat.lumen == "gas":
        c.paint_flat(flat[rect_lumen], Tissue.GAS, colon_org[rect_lumen])
    else:
        c.paint_flat(flat[rect_lumen], Tissue.LUMEN_FLUID, colon_org[rect_lumen])
    col_lumen = lumen & ~rect_lumen
    gas = col_lumen & (tex > 0.2)
    c.paint_flat(flat[col_lumen & ~gas], Tissue.FAECES, colon_org[col_lumen & ~gas])
    c.paint_flat(flat[gas], Tissue.GAS, colon_org[gas])
    lab = label.reshape(-1)
    lay = layers.reshape(-1)
    lab[flat[rect & (rho < r_o)]] = RECTUM
    lay[flat[rect & muc]] = MUCOSA
    lay[flat[rect & musc]] = MUSCULARIS
    lay[flat[meso]] = MESORECTUM
    return _BowelHit(flat, k, rho, theta, meso)


def _paint_node(c: _Canvas, node: Node, i: int, layers: np.ndarray, node_map: np.ndarray) -> int:
    """Paint lymph node ``i`` inside the mesorectal fat only (a benign node also only where no other node is); its
    number of voxels (a node smaller than a voxel keeps the free mesorectal voxel nearest its centre, when that centre
    is in the grid)."""
    grid = c.grid
    solid = node.solid()
    box = grid.box(*solid.bounds())
    tissue = Tissue.NODE if node.metastatic else Tissue.BENIGN_NODE
    n_vox = 0
    if box is not None:
        d = solid.depth(*grid.coords(box))
        ok = (d > 0) & (layers[box] == MESORECTUM)
        if not node.metastatic:
            ok &= node_map[box] == 0
        node_map[box][ok] = i
        c.tissue[box][ok] = tissue
        c.organs[box][ok] = 0
        n_vox = int(ok.sum())
    inside = np.all((grid.index_of(node.center) > -0.5) & (grid.index_of(node.center) < np.asarray(grid.shape) - 0.5))
    if n_vox == 0 and inside:
        pick = _nearest_free_mesorectal_voxel(grid, node, solid, layers, node_map)
        if pick is not None:
            node_map[pick] = i
            c.tissue[pick] = tissue
            c.organs[pick] = 0
            n_vox = 1
    return n_vox


def _nearest_free_mesorectal_voxel(grid: Grid, node: Node, solid, layers: np.ndarray,
                                   node_map: np.ndarray) -> tuple[int, ...] | None:
    """Index of the mesorectal voxel without a node nearest ``node``'s centre, within one voxel of its box."""
    lo, hi = solid.bounds()
    near = grid.box(lo, hi, margin=float(max(grid.spacing)))
    if near is None:
        return None
    cand = (layers[near] == MESORECTUM) & (node_map[near] == 0)
    if not cand.any():
        return None
    z, y, x = grid.coords(near)
    cz, cy, cx = node.center.astype(np.float32)
    dist = np.where(cand, (z - cz) ** 2 + (y - cy) ** 2 + (x - cx) ** 2, np.inf)
    pick = np.unravel_index(int(np.argmin(dist)), dist.shape)
    return tuple(sl.start + p for sl, p in zip(near, pick))


def _paint_tumour(c: _Canvas, bowel, tumour: Tumour, hit: _BowelHit, label: np.ndarray,
                  node_map: np.ndarray) -> dict:
    """Paint the tumour over wall, mesorectum and nodes; a T3 front thinner than a voxel is deepened (``tumour``'s
    extramural depth ×1.4 per try, six tries at most) until it reaches a mesorectal voxel (a colon tumour's: a voxel
    of pericolic fat; its extramural part is kept to that fat).  Returns its voxel counts."""
    flat, meso = hit.flat, hit.meso
    if tumour.site == "colon":  # no mesorectum: the front grows into the pericolic (visceral) fat only
        fat = c.tissue.reshape(-1)[flat] == Tissue.VISCERAL_FAT
        meso = fat & (hit.rho >= bowel.r_out(hit.k, hit.theta))
    for _ in range(6):
        mask, inner, outer = tumour.extent(bowel, hit.k, hit.theta)
        tum = mask & (hit.rho >= inner) & (hit.rho < outer)
        if tumour.site == "colon":
            tum &= (hit.rho < bowel.r_out(hit.k, hit.theta)) | meso
        extramural = int((tum & meso).sum())
        if tumour.t_stage == "T2" or extramural > 0 or not tum.any():
            break
        tumour.extramural_depth *= 1.4  # T3 front thinner than a voxel here: deepen it
    c.paint_flat(flat[tum], Tissue.TUMOUR, ORGAN_IDS["colon"])
    label.reshape(-1)[flat[tum]] = TUMOUR
    node_map.reshape(-1)[flat[tum]] = 0
    return {"tumour_voxels": int(tum.sum()), "extramural_voxels": extramural}
