"""The tumour: a wall thickening over part of the circumference and a length of the rectum (default) or of the
sigmoid colon above it (``site="colon"``).

In the tube frame of the rectum (arc length ``s``, angle ``theta``, distance ``rho`` from the centre line) the tumour
has a *footprint* ``F(s, theta)`` in [0, 1] (a plateau window in ``s`` and ``theta`` with irregular edges).  Where
``F`` exceeds a threshold the wall is replaced by tumour from an inner surface that bulges into the lumen out to a
depth that depends on the stage (as in the T2/T3 staging paper's definition):

* **T2** — the tumour invades the muscularis propria but a rim of it (at least a quarter of its thickness) is kept
  everywhere: no tumour voxel lies outside the muscularis.
* **T3** — at the core of the footprint the tumour goes through the muscularis into the mesorectal fat, by an
  extramural depth of a few mm with a nodular, irregular front (kept inside the mesorectal fascia).

A **colon** tumour (``site="colon"``) sits in the sigmoid colon, :data:`COLON_RANGE` mm of arc length above the
rectosigmoid junction (20–60 mm above it in z), with the same shape and the same stage meaning for the colon's thinner
wall: T2 keeps a rim of the muscularis; T3 grows through it into the pericolic fat (there is no mesorectum there, so
the extramural front is limited only by its drawn depth; the renderer keeps it inside the visceral fat).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from procto.phantom.anatomy import Bowel
from procto.phantom.fields import Periodic2D

#: Where a tumour can sit: the rectum (default) or the sigmoid colon above it.
TUMOUR_SITES = ("rectum", "colon")
#: Arc length range (mm above the rectosigmoid junction) a colon tumour lies in: the sigmoid loop, 20–60 mm above
#: the rectosigmoid junction in z for the anatomy :func:`~procto.phantom.anatomy.sample_anatomy` draws.
COLON_RANGE = (30.0, 130.0)


def _angdiff(a, b):
    return np.angle(np.exp(1j * (np.asarray(a, dtype=float) - b)))


@dataclass
class Tumour:
    """Tumour parameters.

    Attributes:
        t_stage: "T2" | "T3".
        s_center, length: centre and length along the rectum, mm.
        theta_center, half_angle: centre angle (0 anterior, pi posterior) and half the circumferential coverage (rad;
            >= pi: circumferential).
        bulk: maximum thickening into the lumen, mm.
        invasion: T2 only: fraction of the muscularis thickness invaded at the core (<= 0.75).
        extramural_depth: T3 only: maximum depth beyond the muscularis, mm.
        site: "rectum" | "colon" (:data:`TUMOUR_SITES`).
    """

    t_stage: str
    s_center: float
    length: float
    theta_center: float
    half_angle: float
    bulk: float
    invasion: float
    extramural_depth: float
    edge_noise: Periodic2D
    bulk_noise: Periodic2D
    front_noise: Periodic2D
    site: str = "rectum"

    threshold = 0.12

    def footprint(self, s, theta) -> np.ndarray:
        """F(s, theta) in [0, 1] (irregular plateau window; tumour where F > :attr:`threshold`)."""
        us = (np.asarray(s, dtype=np.float32) - self.s_center) / (self.length / 2)
        ws = np.clip(1 - us ** 4, 0, 1)
        if self.half_angle >= np.pi:
            wt = np.ones_like(ws)
        else:
            ut = _angdiff(theta, self.theta_center).astype(np.float32) / self.half_angle
            wt = np.clip(1 - ut ** 4, 0, 1)
        return np.clip(ws * wt + 0.12 * self.edge_noise(s, theta) * (ws * wt > 0), 0, 1).astype(np.float32)

    def on_site(self, bowel: Bowel, k) -> np.ndarray:
        """Whether samples ``k`` belong to the tumour's site: the rectum, or the colon above it."""
        if self.site == "rectum":
            return bowel.is_rectum(k)
        return bowel.s[k] > bowel.rectum_length

    def extent(self, bowel: Bowel, k, theta):
        """(mask, inner radius, outer radius) of the tumour at samples ``k`` and angles ``theta``."""
        s = bowel.s[k]
        f = self.footprint(s, theta)
        mask = (f > self.threshold) & self.on_site(bowel, k)
        r_out = bowel.r_out(k, theta)
        r_mus_in = r_out - bowel.w_mus[k]
        r_in = r_mus_in - bowel.w_muc[k]
        root = np.sqrt(f)
        inner = r_in - self.bulk * root * (1 + 0.25 * self.bulk_noise(s, theta))
        inner = np.maximum(inner, 0.25 * r_in)
        if self.t_stage == "T2":
            outer = r_mus_in + self.invasion * bowel.w_mus[k] * root
        else:
            core = np.clip((f - 0.4) / 0.6, 0, 1) ** 0.7
            depth = self.extramural_depth * core * np.clip(1 + 0.3 * self.front_noise(s, theta), 0.3, None)
            if self.site == "rectum":
                depth = np.minimum(depth, np.maximum(bowel.meso(k, theta) - 2.5, 0))
            outer = r_mus_in + bowel.w_mus[k] * np.minimum(root * 1.6, 1.0) + depth
        return mask, inner, outer

    def info(self) -> dict:
        return {
            "t_stage": self.t_stage, "site": self.site, "s_center_mm": round(self.s_center, 2),
            "length_mm": round(self.length, 2),
            "circumference_deg": round(float(min(2 * np.degrees(self.half_angle), 360.0)), 1),
            "bulk_mm": round(self.bulk, 2),
            "extramural_depth_mm": round(self.extramural_depth, 2) if self.t_stage == "T3" else 0.0,
        }


def sample_tumour(rng: np.random.Generator, bowel: Bowel, t_stage: str, site: str = "rectum") -> Tumour:
    """Draw a tumour of ``t_stage`` ("T2" | "T3") on the rectum (``site="rectum"``) or the sigmoid colon
    (``site="colon"``) of ``bowel``.  Both sites make the same draws (only the level's range differs), so a seed's
    colon tumour has its rectal tumour's length, circumference, invasion and depth, and its bulk relative to the
    lumen."""
    if t_stage not in ("T2", "T3"):
        raise ValueError(f"t_stage must be 'T2' or 'T3', got {t_stage!r}")
    if site not in TUMOUR_SITES:
        raise ValueError(f"site must be one of {TUMOUR_SITES}, got {site!r}")
    L = bowel.rectum_length
    length = float(rng.uniform(22, min(58, L - 50)))
    if site == "rectum":
        s_center = float(rng.uniform(25 + length / 2, L - 18 - length / 2))
    else:
        s_center = float(rng.uniform(L + COLON_RANGE[0] + length / 2, L + COLON_RANGE[1] - length / 2))
    half = float(rng.uniform(np.deg2rad(60), np.deg2rad(200)))
    theta_c = float(rng.uniform(-np.pi, np.pi))
    k = bowel.tube.index_at(s_center)
    lumen_r = float(bowel.radius[k] - bowel.w_mus[k] - bowel.w_muc[k])
    bulk = float(rng.uniform(0.45, 0.85) * lumen_r)
    invasion = float(rng.uniform(0.3, 0.75))
    depth = float(rng.uniform(3.0, 11.0))
    noises = [Periodic2D(rng, n_terms=6, max_theta_freq=m, s_wavelength=w)
              for m, w in ((4, (10, 40)), (3, (15, 50)), (6, (6, 20)))]
    return Tumour(t_stage, s_center, length, theta_c, half, bulk, invasion, depth, *noises, site=site)
