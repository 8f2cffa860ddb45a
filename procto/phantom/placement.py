"""Placing organs, vessels and bones around the rectum by a patient's landmarks: the steps of
:func:`procto.phantom.anatomy.sample_anatomy` that need no bowel geometry.

:class:`Draft` holds the working landmarks (mm, patient frame) that ``sample_anatomy`` fills in step by step (sacrum,
rectum, lumbar levels, pelvis, body); the functions here turn them into the primitives of
:class:`~procto.phantom.anatomy.Anatomy` (``solids``, ``vessels``, ``bones``, ``spine_soft``).  Only
:func:`pelvic_organs` and :func:`hips` draw from the random stream.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from procto.phantom.labels import ORGAN_IDS
from procto.phantom.shapes import Capsule, Cup, Ellipsoid, Slab
from procto.phantom.tissues import Tissue


def uniform(rng, a, b) -> float:
    """One uniform draw in [a, b) as a Python float."""
    return float(rng.uniform(a, b))


@dataclass
class Draft:
    """The working landmarks of :func:`~procto.phantom.anatomy.sample_anatomy` (mm, patient frame), filled in step
    by step (each group of fields by the step of ``sample_anatomy`` named beside it)."""

    y_sac: Callable
    z_tip: float
    height: float
    z_top: float
    # rectum (_rectum)
    r_nom: float = 0.0
    m_post: float = 0.0
    m_ant: float = 0.0
    m_lat: float = 0.0
    w_muc: float = 0.0
    w_mus: float = 0.0
    gap: float = 0.0
    rectum_length: float = 0.0
    flex_amp: float = 0.0
    flex_wl: float = 1.0
    flex_ph: float = 0.0
    z_rs: float = 0.0
    y0: float = 0.0
    # lumbar spine (_spine_levels)
    y_top: float = 0.0
    y_L: list = field(default_factory=list)  # L5..L1 body centres
    yL: float = 0.0
    # pelvis (_pelvis)
    b_semi: np.ndarray = field(default_factory=lambda: np.zeros(3))
    b_center: tuple = (0.0, 0.0, 0.0)
    z_base: float = 0.0
    y_sym: float = 0.0
    x_h: float = 0.0
    r_head: float = 0.0
    y_h: float = 0.0
    z_h: float = 0.0
    z_sym: float = 0.0
    bladder_top: float = 0.0
    # body (_body_and_cavity) and iliac crest (hips)
    y_front: float = 0.0
    y_back: float = 0.0
    wall: float = 0.0
    z_crest: float = 0.0

    def rect_y(self, z):
        """y of the rectal centre line: in front of the sacrum, its mesorectum and its own radius."""
        return self.y_sac(z) - self.gap - self.m_post - self.r_nom

    def rect_x(self, z):
        """x of the rectal centre line (lateral flexures)."""
        return self.flex_amp * (np.sin(2 * np.pi * z / self.flex_wl + self.flex_ph) - np.sin(self.flex_ph))

    def meso_ant_y(self, z):
        """y of the anterior mesorectal surface."""
        return self.rect_y(z) - self.r_nom - self.m_ant


def abdominal_solids(d: Draft) -> list:
    """Psoas muscles, kidneys, liver and stomach (upper abdomen; outside small fields of view)."""
    O = ORGAN_IDS
    z_top, z_h, x_h, y_h, y_L, yL = d.z_top, d.z_h, d.x_h, d.y_h, d.y_L, d.yL
    solids: list = []
    for sign, name in ((1.0, "iliopsoas_left"), (-1.0, "iliopsoas_right")):
        a = (z_top + 170, y_L[2] + 6, sign * 30)
        b = (z_top + 15, y_L[0] - 2, sign * 52)
        c = (z_h + 28, y_h - 28, sign * (x_h - 14))
        e = (z_h - 22, y_h - d.r_head - 10, sign * (x_h + 4))
        for p0, p1, r0, r1 in ((a, b, 11, 21), (b, c, 21, 15), (c, e, 15, 11)):
            solids.append((Tissue.MUSCLE, O[name], Capsule(p0, p1, r0, r1), None))
    for sign, name in ((1.0, "kidney_left"), (-1.0, "kidney_right")):
        solids.append((Tissue.KIDNEY, O[name], Ellipsoid((z_top + 200 + 8 * sign, y_L[4] + 18, sign * 72),
                                                         (55, 24, 30)), None))
    solids.append((Tissue.LIVER, O["liver"], Ellipsoid((z_top + 285, yL - 30, -62), (95, 80, 95)), None))
    st_c = np.array([z_top + 268, yL - 72, 60.0])
    st_axes = np.array([[0.9, 0.0, -0.44], [0.0, 1.0, 0.0], [0.44, 0.0, 0.9]])
    solids.append((Tissue.BOWEL_WALL, O["stomach"], Ellipsoid(st_c, (62, 38, 44), st_axes), None))
    solids.append((Tissue.BOWEL_FLUID, O["stomach"], Ellipsoid(st_c, (58, 34, 40), st_axes), None))
    solids.append((Tissue.GAS, O["stomach"], Ellipsoid(st_c, (58, 34, 40), st_axes), float(st_c[0] + 15)))
    return solids


def pelvic_organs(rng, d: Draft, sex: str) -> list:
    """Prostate or uterus (no TotalSegmentator class for the uterus: organ 0), then the bladder (wall + urine)."""
    O = ORGAN_IDS
    solids: list = []
    if sex == "male":
        p_semi = np.array([uniform(rng, 15, 19), uniform(rng, 12, 16), uniform(rng, 17, 23)])
        p_cz = d.z_base - p_semi[0] + 4
        p_cy = min(float(d.meso_ant_y(p_cz)), float(d.meso_ant_y(p_cz + p_semi[0]))) - uniform(rng, 3, 5) - p_semi[1]
        solids.append((Tissue.GLAND, O["prostate"], Ellipsoid((p_cz, p_cy, 0.0), p_semi), None))
    else:
        u_semi = np.array([uniform(rng, 32, 42), uniform(rng, 18, 24), uniform(rng, 24, 32)])
        u_cz = d.bladder_top + 4
        u_cy = min(float(d.meso_ant_y(u_cz)), float(d.meso_ant_y(u_cz - 20))) - 5 - u_semi[1] * 1.1
        tilt = np.deg2rad(uniform(rng, 35, 60))  # anteverted over the bladder dome
        axes = np.array([[np.cos(tilt), -np.sin(tilt), 0.0], [np.sin(tilt), np.cos(tilt), 0.0], [0.0, 0.0, 1.0]])
        solids.append((Tissue.GLAND, 0, Ellipsoid((u_cz, u_cy, 0.0), u_semi, axes), None))
    b_wall = uniform(rng, 2.5, 4.0)
    solids.append((Tissue.BLADDER_WALL, O["urinary_bladder"], Ellipsoid(d.b_center, d.b_semi), None))
    solids.append((Tissue.URINE, O["urinary_bladder"], Ellipsoid(d.b_center, d.b_semi - b_wall), None))
    return solids


def vessels(d: Draft) -> list:
    """Aorta, inferior vena cava and the iliac arteries and veins: ``(organ id, capsule)``."""
    O = ORGAN_IDS
    z_top, z_h, x_h, y_h, r_head, y_L, yL, y_top = d.z_top, d.z_h, d.x_h, d.y_h, d.r_head, d.y_L, d.yL, d.y_top
    vessels: list = []
    bif = (z_top + 75, y_L[1] - 26, 6.0)
    conf = (z_top + 40, y_L[0] - 20, -12.0)
    vessels.append((O["aorta"], Capsule((z_top + 300, yL - 26, 14), bif, 10.5, 9)))
    vessels.append((O["inferior_vena_cava"], Capsule((z_top + 300, yL - 20, -24), conf, 11.5, 11)))
    for sign, art, vein in ((1.0, "iliac_artery_left", "iliac_vena_left"), (-1.0, "iliac_artery_right", "iliac_vena_right")):
        ci = (z_top - 5, y_top - 16, sign * 42)
        ei1 = (z_h + 32, y_h - 24, sign * (x_h - 26))
        ei2 = (z_h - 15, y_h - r_head - 13, sign * (x_h - 10))
        ii = (z_h + 38, float(d.y_sac(z_h + 38)) - 14, sign * 54)
        for p0, p1, r in ((bif, ci, 6.5), (ci, ei1, 5.0), (ei1, ei2, 4.5), (ci, ii, 3.5)):
            vessels.append((O[art], Capsule(p0, p1, r)))
        cv = (z_top - 10, y_top - 8, sign * 44)
        ev1 = (z_h + 30, y_h - 18, sign * (x_h - 32))
        ev2 = (z_h - 15, y_h - r_head - 5, sign * (x_h - 20))
        iv = (z_h + 38, float(d.y_sac(z_h + 38)) - 7, sign * 58)
        for p0, p1, r in ((conf, cv, 7.5), (cv, ev1, 6.0), (ev1, ev2, 5.5), (cv, iv, 4.5)):
            vessels.append((O[vein], Capsule(p0, p1, r)))
    return vessels


def sacrum_and_spine(d: Draft) -> tuple[list, list]:
    """Sacrum + coccyx, lumbar vertebrae L5..L1 (bones) and discs, spinal and sacral canal (soft, painted after)."""
    O = ORGAN_IDS
    y_sac, z_tip, z_top, height, y_L = d.y_sac, d.z_tip, d.z_top, d.height, d.y_L
    bones: list = []
    spine_soft: list = []
    # sacrum + coccyx: a curved plate behind the sacral anterior surface
    zs = np.arange(z_tip, z_top + 0.5, 1.0)
    u = (zs - z_tip) / height
    ys = y_sac(zs)
    tang = np.stack([np.ones_like(zs), np.gradient(ys, zs), np.zeros_like(zs)], axis=1)
    tang /= np.linalg.norm(tang, axis=1, keepdims=True)
    normal = np.stack([-tang[:, 1], tang[:, 0], np.zeros_like(zs)], axis=1)  # posterior-pointing
    thick = 9 + 30 * u ** 1.4
    half_w = 10 + 46 * u ** 1.3
    centre = np.stack([zs, ys, np.zeros_like(zs)], axis=1) + normal * thick[:, None] / 2
    bones.append((O["sacrum"], Slab(centre, normal, thick, half_w)))
    # lumbar vertebrae L5..L1
    for i, name in enumerate(("vertebrae_L5", "vertebrae_L4", "vertebrae_L3", "vertebrae_L2", "vertebrae_L1")):
        zc = z_top + 22 + 36 * i
        yb = y_L[i]
        oid = O[name]
        bones.append((oid, Ellipsoid((zc, yb, 0.0), (15, 16, 22 + 0.8 * i))))
        for sign in (1.0, -1.0):
            bones.append((oid, Capsule((zc, yb + 12, sign * 11), (zc - 2, yb + 40, sign * 8), 6)))
        bones.append((oid, Capsule((zc - 2, yb + 40, 0.0), (zc - 8, yb + 62, 0.0), 7, 5)))
        bones.append((oid, Capsule((zc, yb + 30, -40 - 2 * i), (zc, yb + 30, 40 + 2 * i), 5)))
        spine_soft.append((Tissue.DISC, Ellipsoid((zc - 18, yb, 0.0), (3.5, 15, 21))))
    spine_soft.append((Tissue.CSF, Capsule((z_top + 10, y_L[0] + 28, 0.0), (z_top + 200, y_L[4] + 28, 0.0), 9)))
    # sacral canal: from the lumbar canal down the back of the sacrum, narrowing
    z_c = [z_top + 10, z_top - 15, z_top - 45, z_top - 75]
    y_c = [y_L[0] + 28] + [float(y_sac(z) + (9 + 30 * ((z - z_tip) / height) ** 1.4) * 0.68) for z in z_c[1:]]
    for i, r in enumerate((8.0, 6.5, 5.0)):
        spine_soft.append((Tissue.CSF, Capsule((z_c[i], y_c[i], 0.0), (z_c[i + 1], y_c[i + 1], 0.0), r, r - 1.5)))
    return bones, spine_soft


def hips(rng, d: Draft) -> list:
    """Hip bones (acetabulum, ilium and its wing, ischium, pubis) and femora (head, neck, trochanter, shaft)."""
    O = ORGAN_IDS
    z_h, y_h, x_h, r_head, z_sym, y_sym = d.z_h, d.y_h, d.x_h, d.r_head, d.z_sym, d.y_sym
    bones: list = []
    si = (d.z_top - 22, float(d.y_sac(d.z_top - 22)) + 22, 44.0)
    d.z_crest = z_crest = d.z_top + uniform(rng, 35, 55)
    for sign, hip, femur in ((1.0, "hip_left", "femur_left"), (-1.0, "hip_right", "femur_right")):
        hc = np.array([z_h, y_h, sign * x_h])
        oh, of = O[hip], O[femur]
        # femur: head, neck, greater trochanter, shaft
        bones.append((of, Capsule(hc, hc, r_head)))
        bones.append((of, Capsule(hc, (z_h - 24, y_h + 8, sign * (x_h + 36)), 14, 13)))
        bones.append((of, Capsule((z_h - 20, y_h + 12, sign * (x_h + 44)), (z_h - 20, y_h + 12, sign * (x_h + 44)), 16)))
        bones.append((of, Capsule((z_h - 28, y_h + 12, sign * (x_h + 40)), (z_h - 420, y_h + 24, sign * (x_h + 14)), 15, 13)))
        # acetabulum, ilium, wing, ischium, pubis
        bones.append((oh, Cup(hc, r_head + 2.0, r_head + 10.0, (-0.35, -0.3, sign * 0.9), cos_open=0.3)))
        sij = np.array([si[0], si[1], sign * si[2]])
        bones.append((oh, Capsule((z_h + 16, y_h + 8, sign * (x_h - 10)), sij + (0, 0, sign * 10), 17, 14)))
        asis = np.array([z_h + 75, y_h - 38, sign * (x_h + 22)])
        crest = np.array([z_crest, (sij[1] + asis[1]) / 2 + 10, sign * (x_h + 8)])
        bones.append((oh, _iliac_wing(rng, sij, asis, crest)))
        bones.append((oh, Capsule((z_h - 10, y_h + 18, sign * (x_h - 12)), (z_h - 55, y_h + 38, sign * (x_h - 34)), 14, 12)))
        bones.append((oh, Capsule((z_h + 2, y_h - 16, sign * (x_h - 18)), (z_sym + 6, y_sym + 6, sign * 12), 11, 10)))
        bones.append((oh, Capsule((z_sym + 12, y_sym, sign * 9), (z_sym - 18, y_sym + 4, sign * 10), 10)))
        bones.append((oh, Capsule((z_sym - 15, y_sym + 5, sign * 12), (z_h - 52, y_h + 32, sign * (x_h - 36)), 8, 9)))
    return bones


def _iliac_wing(rng, sij: np.ndarray, asis: np.ndarray, crest: np.ndarray) -> Ellipsoid:
    """A flat ellipsoid spanning sacro-iliac joint, anterior superior iliac spine and iliac crest."""
    u_ax = asis - sij
    half_u = np.linalg.norm(u_ax) / 2
    u_ax /= np.linalg.norm(u_ax)
    mid = (sij + asis) / 2
    v_ax = crest - mid
    v_ax -= (v_ax @ u_ax) * u_ax
    half_v = np.linalg.norm(v_ax)
    v_ax /= half_v
    w_ax = np.cross(u_ax, v_ax)
    return Ellipsoid(mid + v_ax * half_v * 0.05, (half_u + 8, half_v * 1.0, uniform(rng, 7, 10)),
                     np.array([u_ax, v_ax, w_ax]))
