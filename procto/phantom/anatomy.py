"""Sampling a synthetic patient's anatomy (no tumour, no nodes): pure geometry in the patient frame.

Everything is placed relative to a few random landmarks so that the organs keep their relations in every case:

* the **sacrum** (coccyx tip ``z_tip``, top of S1 ``z_top``, a concave anterior surface ``y_sac(z)``);
* the **rectum** follows the sacral curve in front of it (``rectum centre = sacral surface − gap − posterior
  mesorectum − radius``), with lateral flexures, from the anorectal junction (``z = 0``) up to the rectosigmoid
  junction (arc length ``rectum_length``); below it the anal canal, above it the sigmoid, descending, transverse and
  ascending colon down to the caecum — one :class:`Bowel` tube with a layered wall and, along the rectum only, a
  mesorectum that is thick posteriorly and thin anteriorly;
* the **bladder** sits in front of the mesorectum, the **pubic symphysis** in front of the bladder, the **femoral
  heads** lateral to both; the body outline is fitted around pubis, sacrum and hips.

Anatomy draws use their own random stream, so the same seed gives the same patient whatever the modality, grid or
tumour options.  :func:`sample_anatomy` runs named steps in a fixed order (the order of the draws): sacrum, rectum,
lumbar levels, pelvis, colon, bowel profiles, body outline, then the organs, vessels and bones placed by the
landmarks (:mod:`procto.phantom.placement`), the small bowel and the duodenum.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from procto.phantom.fields import Periodic2D, smooth_profile
from procto.phantom.labels import ORGAN_IDS
from procto.phantom.placement import Draft, abdominal_solids, hips, pelvic_organs, sacrum_and_spine, vessels
from procto.phantom.placement import uniform as _u
from procto.phantom.shapes import Tube, spline_curve


def _smoothstep(x):
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3 - 2 * x)


@dataclass
class Bowel:
    """The rectum + colon tube: centre line, wall layers and mesorectum, as profiles over the samples ``k``.

    Arc length ``s`` is 0 at the anorectal junction, negative along the anal canal, and the rectum spans
    ``0 <= s <= rectum_length``.

    Attributes:
        tube: the centre line.
        rectum_length: arc length of the rectum, mm.
        radius: outer radius of the muscularis per sample, mm (before ellipticity / haustra).
        ecc: ellipticity (radius × (1 − ecc·cos 2θ): flattened antero-posteriorly).
        w_muc, w_mus: mucosa/submucosa and muscularis propria thickness per sample, mm.
        m_ant, m_lat, m_post: mesorectal fat thickness anterior / lateral / posterior per sample (0 outside the
            mesorectum), mm.
        haustra: haustral indentation (fraction of the radius) per sample.
    """

    tube: Tube
    rectum_length: float
    radius: np.ndarray
    ecc: np.ndarray
    w_muc: np.ndarray
    w_mus: np.ndarray
    m_ant: np.ndarray
    m_lat: np.ndarray
    m_post: np.ndarray
    haustra: np.ndarray
    haustra_wavelength: float
    meso_irregularity: Periodic2D

    @property
    def s(self) -> np.ndarray:
        return self.tube.s

    def r_out(self, k, theta):
        """Outer radius of the muscularis at samples ``k`` and angles ``theta``, mm."""
        r = self.radius[k] * (1.0 - self.ecc[k] * np.cos(2.0 * theta))
        h = self.haustra[k]
        return r * (1.0 - h * (0.5 + 0.5 * np.cos(2 * np.pi * self.s[k] / self.haustra_wavelength)))

    def meso(self, k, theta):
        """Mesorectal fat thickness outside the muscularis at samples ``k``, angles ``theta``, mm (0 = none)."""
        c = np.cos(theta)
        c2 = c * c
        m = self.m_lat[k] * (1 - c2) + np.where(c > 0, self.m_ant[k], self.m_post[k]) * c2
        m = m + np.where(m > 0, 1.2 * self.meso_irregularity(self.s[k], theta), 0.0)
        return np.clip(m, 0.0, None) * (self.m_lat[k] > 0)

    def reach(self) -> np.ndarray:
        """Per-sample search radius covering wall, mesorectum and fascia, mm."""
        return self.radius * (1 + self.ecc) + np.maximum(np.maximum(self.m_post, self.m_lat), self.m_ant) + 4.0

    def is_rectum(self, k) -> np.ndarray:
        s = self.s[k]
        return (s >= 0) & (s <= self.rectum_length)


@dataclass
class SmallBowel:
    """Small-bowel (or duodenal) loops: one :class:`Tube` of concatenated loops with a radius per sample."""

    tube: Tube
    radius: np.ndarray
    wall: float
    organ: int


@dataclass
class Anatomy:
    """A sampled patient (geometry only).

    Attributes:
        sex: "male" | "female".
        lumen: rectal lumen content, "gas" | "fluid".
        landmarks: named positions / levels (mm): ``z_tip``, ``z_top``, ``z_h`` (femoral heads), ``z_sym``,
            ``y_sym``, ``x_h``, ``y_h``, ``r_head``, ``y_L`` (lumbar bodies), ``bladder_top``...
        sacrum: (z_mid, half_height, y0, curvature, tilt) of the anterior sacral surface ``y_sac(z)``.
        body: body-outline parameters (see :meth:`body_axes`).
        cavity: z breakpoints and (x half-width, y anterior, y posterior) of the visceral-fat cavity.
        bowel: rectum + colon.
        small_bowel, duodenum: small-bowel loops.
        solids: ordered soft-tissue solids ``(tissue, organ id, primitive, z_above)``; ``z_above`` (or None) keeps
            only the part above that level.
        vessels: ``(organ id, capsule)``.
        bones: ``(organ id, primitive)``; a bone is the union (max depth) of its primitives.
        spine_soft: ``(tissue, primitive)`` painted after the bones (spinal canal, discs).
    """

    sex: str
    lumen: str
    landmarks: dict
    sacrum: tuple
    body: dict
    cavity: dict
    bowel: Bowel
    small_bowel: SmallBowel | None
    duodenum: SmallBowel
    solids: list = field(default_factory=list)
    vessels: list = field(default_factory=list)
    bones: list = field(default_factory=list)
    spine_soft: list = field(default_factory=list)

    def y_sac(self, z):
        """y of the anterior sacral surface at level ``z`` (extrapolated smoothly outside the sacrum)."""
        z_mid, half, y0, curv, tilt = self.sacrum
        t = np.clip((np.asarray(z, dtype=float) - z_mid) / half, -1.5, 1.25)
        return y0 + curv * (1 - t * t) + tilt * t

    def body_axes(self, z):
        """(x half-width, y centre, y half-depth) of the body outline at level(s) ``z``."""
        b = self.body
        ax = np.interp(z, b["z_pts"], b["ax_pts"])
        return ax, b["y_c"], b["a_y"]

    def cavity_at(self, z):
        """(x half-width, y anterior, y posterior) of the visceral-fat cavity at level(s) ``z``."""
        c = self.cavity
        return (np.interp(z, c["z"], c["ax"]), np.interp(z, c["z"], c["y_ant"]), np.interp(z, c["z"], c["y_post"]))


def sample_anatomy(rng: np.random.Generator, sex: str | None = None, lumen: str | None = None,
                   modality: str = "ct") -> Anatomy:
    """Draw a patient.

    Args:
        rng: the anatomy random stream.
        sex: "male" (prostate) | "female" (uterus) | None (random).
        lumen: rectal lumen content "gas" | "fluid" | None (random: CT mostly gas, MRI often gel-filled).
        modality: only used for the default lumen odds (the draws are the same for every modality).
    """
    sex, lumen = _sex_and_lumen(rng, sex, lumen, modality)
    anat, d = _sacrum(rng, sex, lumen)
    cps, anchor = _rectum(rng, d)
    _spine_levels(rng, d)
    _pelvis(rng, d)
    cps += _colon_control_points(rng, d)
    anat.bowel = _bowel(rng, d, cps, anchor)
    anat.body, anat.cavity = _body_and_cavity(rng, d)
    anat.solids = abdominal_solids(d) + pelvic_organs(rng, d, sex)
    anat.vessels = vessels(d)
    anat.bones, anat.spine_soft = sacrum_and_spine(d)
    anat.bones += hips(rng, d)
    anat.small_bowel = _small_bowel(rng, anat, anat.bowel, d.y_front + d.wall, d.yL, d.bladder_top, d.z_top,
                                    (d.b_center, d.b_semi))
    anat.duodenum = _duodenum(rng, d)
    anat.landmarks = {
        "z_tip": d.z_tip, "z_top": d.z_top, "z_h": d.z_h, "z_sym": d.z_sym, "y_sym": d.y_sym, "x_h": d.x_h,
        "y_h": d.y_h, "r_head": d.r_head, "y_L": d.yL, "bladder_top": d.bladder_top, "z_rs": d.z_rs,
        "y_front": d.y_front, "y_back": d.y_back, "rectum_y_mid": float(d.rect_y(d.z_rs / 2)), "z_crest": d.z_crest,
    }
    return anat


def _sex_and_lumen(rng, sex: str | None, lumen: str | None, modality: str) -> tuple[str, str]:
    """Sex and rectal lumen content: the given ones, else drawn (two draws are made either way)."""
    u_sex, u_lumen = rng.uniform(), rng.uniform()
    sex = sex or ("male" if u_sex < 0.5 else "female")
    if lumen is None:
        lumen = "gas" if u_lumen < (0.65 if modality == "ct" else 0.45) else "fluid"
    if sex not in ("male", "female"):
        raise ValueError(f"sex must be 'male' or 'female', got {sex!r}")
    if lumen not in ("gas", "fluid"):
        raise ValueError(f"lumen must be 'gas' or 'fluid', got {lumen!r}")
    return sex, lumen


def _sacrum(rng, sex: str, lumen: str) -> tuple[Anatomy, Draft]:
    """The sacrum (coccyx tip, height, anterior surface): the anatomy every later step is placed by."""
    z_tip = _u(rng, 15, 28)
    height = _u(rng, 100, 120)
    z_top = z_tip + height
    sacrum = (z_tip + height / 2, height / 2, _u(rng, 62, 74), _u(rng, 12, 22), _u(rng, -8, 3))
    anat = Anatomy(sex=sex, lumen=lumen, landmarks={}, sacrum=sacrum, body={}, cavity={}, bowel=None,  # type: ignore[arg-type]
                   small_bowel=None, duodenum=None)  # type: ignore[arg-type]
    return anat, Draft(y_sac=anat.y_sac, z_tip=z_tip, height=height, z_top=z_top)


def _rectum(rng, d: Draft) -> tuple[list, int]:
    """Rectal wall, mesorectum and course in front of the sacrum; the control points of the anal canal and rectum
    ``((z, y, x), radius)`` and the index of the anorectal-junction point."""
    d.r_nom = _u(rng, 14, 19)
    d.w_muc, d.w_mus = _u(rng, 1.6, 2.4), _u(rng, 2.0, 3.0)
    d.m_post, d.m_ant, d.m_lat = _u(rng, 15, 24), _u(rng, 4.5, 8), _u(rng, 10, 15)
    d.gap = _u(rng, 5, 9)
    d.rectum_length = _u(rng, 120, 145)
    d.flex_amp, d.flex_wl, d.flex_ph = _u(rng, 4, 10), _u(rng, 70, 110), _u(rng, 0, 2 * np.pi)
    d.z_rs = z_rs = min(d.rectum_length / 1.12, d.z_top - 8)
    d.y0 = y0 = float(d.rect_y(0.0))
    r_nom = d.r_nom
    cps: list[tuple[tuple[float, float, float], float]] = []  # ((z, y, x), radius)
    r_canal, r_arj = _u(rng, 8, 10), _u(rng, 11, 14)
    cps.append(((-38.0, y0 + 14, 0.0), r_canal))
    cps.append(((-18.0, y0 + 6, 0.0), r_canal))
    anchor = len(cps)
    n_rect = 6
    for i in range(n_rect):
        z = z_rs * i / (n_rect - 1)
        frac = i / (n_rect - 1)
        r = r_arj + (r_nom - r_arj) * min(frac / 0.35, 1.0) if frac <= 0.35 else r_nom * (1 - 0.15 * (frac - 0.35) / 0.65)
        cps.append(((z, float(d.rect_y(z)), float(d.rect_x(z))), r))
    return cps, anchor


def _spine_levels(rng, d: Draft) -> None:
    """Lumbar body centres L5..L1 (for the colon and the vessels)."""
    d.y_top = y_top = float(d.y_sac(d.z_top))
    d.y_L = [y_top + 18 - dy + _u(rng, -3, 3) for dy in (8, 14, 16, 12, 6)]
    d.yL = float(np.mean(d.y_L))


def _pelvis(rng, d: Draft) -> None:
    """Bladder in front of the mesorectum, pubic symphysis in front of the bladder, femoral heads lateral to both."""
    b_semi = np.array([_u(rng, 24, 42), _u(rng, 24, 38), _u(rng, 30, 50)])  # z, y, x
    z_base = _u(rng, 28, 40)
    b_semi[0] = min(b_semi[0], (d.z_rs + 2 - z_base) / 2)
    b_cz = z_base + b_semi[0]
    b_cy = float(min(d.meso_ant_y(b_cz), d.meso_ant_y(b_cz - 0.6 * b_semi[0]), d.meso_ant_y(b_cz + 0.6 * b_semi[0]))
                 - _u(rng, 4, 8) - b_semi[1])
    b_cx = _u(rng, -8, 8)
    d.b_semi, d.b_center, d.z_base = b_semi, (b_cz, b_cy, b_cx), z_base
    d.y_sym = b_cy - b_semi[1] - _u(rng, 8, 14)
    d.x_h, d.r_head = _u(rng, 82, 95), _u(rng, 21, 25)
    d.y_h = d.y_sym + _u(rng, 48, 60)
    d.z_h = d.z_tip + _u(rng, 28, 42)
    d.z_sym = d.z_h - _u(rng, 8, 15)
    d.bladder_top = b_cz + b_semi[0]


def _colon_control_points(rng, d: Draft) -> list:
    """Sigmoid, descending, transverse and ascending colon down to the caecum: ``((z, y, x), radius)`` points."""
    zr, yr = d.z_rs, float(d.rect_y(d.z_rs))
    z_top, yL, y_h = d.z_top, d.yL, d.y_h
    r_sig, r_desc, r_trans, r_caec = _u(rng, 12, 16), _u(rng, 13, 17), _u(rng, 16, 22), _u(rng, 22, 28)
    side = 1.0 if rng.uniform() < 0.5 else -1.0
    colon_pts = [
        ((zr + 22, yr - 14, 8 * side), r_sig),
        ((zr + 38, yr - 42, 2.0), r_sig),
        ((zr + 46, yr - 62, 28), r_sig),
        ((zr + 34, yr - 58, 55), r_sig),
        ((zr + 30, y_h - 25, 68), r_desc),
        ((z_top + 60, yL - 2, 82), r_desc),
        ((z_top + 140, yL + 8, 92), r_desc),
        ((z_top + 205, yL - 5, 86), r_desc),
        ((z_top + 185, yL - 75, 48), r_trans),
        ((z_top + 168, yL - 92, -5), r_trans),
        ((z_top + 185, yL - 75, -55), r_trans),
        ((z_top + 200, yL - 15, -86), r_trans),
        ((z_top + 130, yL - 8, -88), r_trans),
        ((z_top + 70, yL - 25, -80), r_trans),
        ((z_top + 35, y_h - 35, -62), r_caec),
        ((z_top + 18, y_h - 45, -52), r_caec),
    ]
    cps = []
    for (p, r) in colon_pts:
        jitter = rng.normal(0, 5, size=3)
        cps.append(((p[0] + jitter[0], p[1] + jitter[1], p[2] + jitter[2]), r))
    return cps


def _bowel(rng, d: Draft, cps: list, anchor: int) -> Bowel:
    """The rectum + colon tube through the control points, with its wall, mesorectum and haustra profiles."""
    rectum_length = d.rectum_length
    ctrl = np.array([p for p, _ in cps])
    radii_cp = np.array([r for _, r in cps])
    pts, s = spline_curve(ctrl, ds=1.0)
    # arc length 0 at the anorectal junction (control point `anchor`)
    k_anchor = int(np.argmin(np.linalg.norm(pts - ctrl[anchor], axis=1)))
    s = s - s[k_anchor]
    tube = Tube(pts, s)
    s_cp = np.array([s[int(np.argmin(np.linalg.norm(pts - c, axis=1)))] for c in ctrl])
    order = np.argsort(s_cp)
    radius = np.interp(s, s_cp[order], radii_cp[order])
    radius = radius * (1 + 0.07 * smooth_profile(rng, s, wavelength=(25, 80)))
    rect = (s >= 0) & (s <= rectum_length)
    colon = s > rectum_length
    to_colon = _smoothstep((s - rectum_length) / 20.0)
    w_muc_k = d.w_muc + (_u(rng, 1.0, 1.4) - d.w_muc) * to_colon
    w_mus_k = d.w_mus + (_u(rng, 1.0, 1.4) - d.w_mus) * to_colon
    canal = s < 0
    w_mus_k = np.where(canal, d.w_mus + 1.0, w_mus_k)
    w_muc_k = np.where(canal, np.maximum(radius - w_mus_k, 0.5), w_muc_k)
    ecc = np.where(rect, _u(rng, 0.0, 0.12), 0.0) * _smoothstep((s + 10) / 20.0)
    taper = _smoothstep((s + 5) / 30.0) * (1 - _smoothstep((s - (rectum_length - 20)) / 30.0))
    taper = np.where(s < -5, 0.0, taper)
    haustra = np.where(colon, _u(rng, 0.08, 0.16), 0.0) * _smoothstep((s - rectum_length - 30) / 30.0)
    return Bowel(tube=tube, rectum_length=rectum_length, radius=radius, ecc=ecc, w_muc=w_muc_k, w_mus=w_mus_k,
                 m_ant=d.m_ant * taper, m_lat=d.m_lat * taper, m_post=d.m_post * taper, haustra=haustra,
                 haustra_wavelength=_u(rng, 22, 32),
                 meso_irregularity=Periodic2D(rng, n_terms=5, max_theta_freq=5, s_wavelength=(12, 40)))


def _body_and_cavity(rng, d: Draft) -> tuple[dict, dict]:
    """Body outline (fitted around pubis, sacrum and hips) and the visceral-fat cavity inside it."""
    y_sac, y0, yL, z_sym, z_h, z_top = d.y_sac, d.y0, d.yL, d.z_sym, d.z_h, d.z_top
    sac_thick_mid = 9 + 30 * 0.5 ** 1.4
    d.y_front = y_front = d.y_sym - _u(rng, 30, 55)
    d.y_back = y_back = float(y_sac(d.z_tip + d.height / 2)) + sac_thick_mid + _u(rng, 30, 55)
    ax_p = d.x_h + _u(rng, 65, 92)
    ax_a = ax_p * _u(rng, 0.8, 0.94)
    t_sc = _u(rng, 10, 30)
    body = {
        "y_c": (y_front + y_back) / 2, "a_y": (y_back - y_front) / 2,
        "z_pts": [-80.0, z_h, z_top + 30, z_top + 120], "ax_pts": [ax_p * 0.9, ax_p, ax_p * 0.97, ax_a],
        "t_sc": t_sc, "t_sc_post": t_sc * _u(rng, 1.2, 1.8), "t_wall": _u(rng, 8, 14),
    }
    d.wall = wall = t_sc + body["t_wall"]
    z_pts = [-60.0, 0.0, z_sym - 25, z_sym, z_h, z_sym + 35, z_top - 10, z_top + 40, z_top + 400]
    ax_pts = [34, 34, 40, 48, 52, 58, 64, ax_a - wall - 8, ax_a - wall - 8]
    yant_pts = [y0 - 30, y0 - 30, d.y_sym + 16, d.y_sym + 12, d.y_sym + 14, y_front + wall + 6, y_front + wall + 4,
                y_front + wall + 4, y_front + wall + 4]
    ypost_pts = [y0 + 36, y0 + 38, float(y_sac(z_sym - 25)) - 1, float(y_sac(z_sym)) - 1, float(y_sac(z_h)) - 1,
                 float(y_sac(z_sym + 35)) - 1, float(y_sac(z_top - 10)) - 1, yL - 10, yL - 10]
    cavity = {"z": np.array(z_pts), "ax": np.array(ax_pts, float), "y_ant": np.array(yant_pts, float),
              "y_post": np.array(ypost_pts, float)}
    return body, cavity


def _duodenum(rng, d: Draft) -> SmallBowel:
    """The duodenal C-loop around the pancreatic head level (upper abdomen)."""
    z_top, yL = d.z_top, d.yL
    duo_ctrl = np.array([(z_top + 215, yL - 62, 22), (z_top + 205, yL - 42, -34), (z_top + 180, yL - 28, -46),
                         (z_top + 160, yL - 26, -22), (z_top + 157, yL - 30, 14), (z_top + 176, yL - 36, 32)], float)
    d_pts, d_s = spline_curve(duo_ctrl, ds=1.0)
    return SmallBowel(Tube(d_pts, d_s), np.full(len(d_s), _u(rng, 10, 13)), 2.0, ORGAN_IDS["duodenum"])


def _small_bowel(rng, anat: Anatomy, bowel: Bowel, y_wall: float, yL: float, bladder_top: float, z_top: float,
                 bladder) -> SmallBowel | None:
    """Random small-bowel loops in the lower abdomen / upper pelvis, kept clear of colon, bladder and spine."""
    z_lo = max(bladder_top + 8, z_top - 15)
    center = np.array([(z_lo + z_top + 190) / 2, (y_wall + yL - 35) / 2, -5.0])
    semi = np.array([(z_top + 190 - z_lo) / 2, (yL - 35 - y_wall) / 2, 92.0])
    n_loops = int(rng.integers(9, 15))
    radius_nom = _u(rng, 9, 12.5)
    all_pts, all_r = [], []
    for _ in range(n_loops):
        start = center + rng.uniform(-0.7, 0.7, size=3) * semi
        t = np.arange(0.0, _u(rng, 80, 180), 0.5)
        pts = np.repeat(start[None, :], len(t), axis=0)
        for _ in range(3):
            amp = rng.normal(0, 1, size=3) * np.array([22.0, 14.0, 26.0])
            w = 2 * np.pi / _u(rng, 50, 130)
            ph = _u(rng, 0, 2 * np.pi)
            pts = pts + amp[None, :] * (np.sin(w * t + ph) - np.sin(ph))[:, None]
        arc = np.r_[0.0, np.cumsum(np.linalg.norm(np.diff(pts, axis=0), axis=1))]
        s = np.arange(0.0, arc[-1], 1.0)
        pts = np.stack([np.interp(s, arc, pts[:, j]) for j in range(3)], axis=1)
        all_pts.append(pts)
        all_r.append(np.full(len(s), radius_nom * _u(rng, 0.85, 1.15)))
    pts = np.concatenate(all_pts)
    radius = np.concatenate(all_r)
    q = (((pts - center) / semi) ** 2).sum(1)
    keep = q <= 1.0
    keep &= bowel.tube.distance(pts) > bowel.radius.max() + radius + 4
    bc, bs = bladder
    keep &= (((pts - np.asarray(bc)) / (np.asarray(bs) + radius[:, None] + 5)) ** 2).sum(1) > 1.0
    if keep.sum() < 10:
        return None
    pts, radius = pts[keep], radius[keep]
    return SmallBowel(Tube(pts, np.arange(len(pts), dtype=float)), radius, 2.0, ORGAN_IDS["small_bowel"])
