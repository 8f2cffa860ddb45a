"""Lymph nodes in the mesorectal fat: metastatic ones (small ovoids, short axis 3–15 mm) and, as an option, benign
ones (short axis 3–6 mm, round).

Nodes are placed in the rectum's tube frame: a level ``s`` (metastatic nodes preferably near the tumour, benign nodes
anywhere along the rectum), an angle (metastatic nodes preferably posterior / lateral, where the mesorectum is thick;
benign nodes all round: a wrapped normal of sd π) and a distance from the centre line such that the whole ovoid lies
between the muscularis and the mesorectal fascia, clear of the tumour and of the other nodes.  Each node's long axis
follows the rectum; its short axis is the radial one.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from procto.phantom.anatomy import Bowel
from procto.phantom.shapes import Ellipsoid
from procto.phantom.tumour import Tumour

MIN_SHORT_AXIS_MM = 3.0
MAX_SHORT_AXIS_MM = 15.0
#: Benign nodes: short axis drawn uniformly in this range (mm); the other semi-axes at most 15 % longer (round).
BENIGN_SHORT_AXIS_MM = (3.0, 6.0)
BENIGN_ELONGATION = 1.15
#: Most benign nodes a case may ask for.
MAX_BENIGN_NODES = 8


@dataclass
class Node:
    """One lymph node.

    Attributes:
        center: physical (z, y, x) centre, mm.
        axes: 3×3, rows = unit (long, radial, circumferential) axes in physical (z, y, x).
        semi: semi-axes (long, radial, circumferential), mm; the short axis is ``2 * semi[1]``.
        s, theta: level along the rectum (mm) and angle (rad, 0 anterior).
        metastatic: False for a benign node.
    """

    center: np.ndarray
    axes: np.ndarray
    semi: np.ndarray
    s: float
    theta: float
    metastatic: bool = True

    @property
    def short_axis_mm(self) -> float:
        return float(2 * self.semi.min())

    @property
    def long_axis_mm(self) -> float:
        return float(2 * self.semi.max())

    def solid(self) -> Ellipsoid:
        return Ellipsoid(self.center, self.semi, self.axes)

    def info(self, index: int) -> dict:
        return {
            "id": index, "center_zyx_mm": [round(float(c), 2) for c in self.center],
            "short_axis_mm": round(self.short_axis_mm, 2), "long_axis_mm": round(self.long_axis_mm, 2),
            "s_mm": round(self.s, 2), "theta_deg": round(float(np.degrees(self.theta)), 1),
            "metastatic": bool(self.metastatic),
        }


def _fits(bowel: Bowel, tumour: Tumour | None, k: int, theta: float, rho: float, semi: np.ndarray) -> bool:
    a_l, a_r, a_c = semi
    ks = np.clip(np.array([k - a_l, k, k + a_l]).round().astype(int), 0, len(bowel.s) - 1)
    dth = a_c / max(rho, 1.0)
    kk, tt = np.meshgrid(ks, [theta - dth, theta, theta + dth], indexing="ij")
    kk, tt = kk.ravel(), tt.ravel()
    if not np.all(bowel.is_rectum(kk)):
        return False
    r_out = bowel.r_out(kk, tt)
    outer = r_out + bowel.meso(kk, tt)
    if rho - a_r < r_out.max() + 1.5 or rho + a_r > outer.min() - 1.5:
        return False
    if tumour is not None:
        mask, _, t_outer = tumour.extent(bowel, kk, tt)
        if np.any(mask & (t_outer + 2.5 > rho - a_r)):
            return False
    return True


def _place(rng: np.random.Generator, bowel: Bowel, tumour: Tumour | None, semi: np.ndarray, s_pref: float,
           theta_mean: float, theta_sd: float, placed: list[Node], clearance) -> Node | None:
    """Draw a level around ``s_pref``, an angle and a radial position for an ovoid of semi-axes ``semi``; the node,
    or None when it does not fit the mesorectum or comes closer to a ``placed`` node than ``clearance(node, other)``
    allows (centre distance)."""
    tube = bowel.tube
    L = bowel.rectum_length
    s = float(np.clip(s_pref + rng.normal(0, 30), 20, L - 12))
    theta = float(np.angle(np.exp(1j * (theta_mean + rng.normal(0, theta_sd)))))
    k = tube.index_at(s)
    a_r = semi[1]
    r_out = float(bowel.r_out(np.array([k]), np.array([theta]))[0])
    meso = float(bowel.meso(np.array([k]), np.array([theta]))[0])
    lo, hi = r_out + 1.6 + a_r, r_out + meso - 1.6 - a_r
    if hi <= lo:
        return None
    rho = float(rng.uniform(lo, hi))
    if not _fits(bowel, tumour, k, theta, rho, semi):
        return None
    center = tube.point(k, rho, theta)
    if any(np.linalg.norm(center - o.center) < clearance(semi, o) for o in placed):
        return None
    radial = np.cos(theta) * tube.normal[k] + np.sin(theta) * tube.binormal[k]
    axes = np.array([tube.tangent[k], radial, np.cross(tube.tangent[k], radial)])
    return Node(center=center, axes=axes, semi=semi, s=s, theta=theta)


def sample_nodes(rng: np.random.Generator, bowel: Bowel, tumour: Tumour | None, n: int,
                 max_attempts: int = 600) -> list[Node]:
    """Place ``n`` metastatic nodes in the mesorectum of ``bowel`` (clear of ``tumour``), preferably near a rectal
    tumour's level (the middle of the rectum for a colon tumour: the phantom has no mesocolon).

    Raises:
        RuntimeError: when fewer than ``n`` nodes fit after ``max_attempts`` tries (does not happen for the anatomy
            :func:`~procto.phantom.anatomy.sample_anatomy` draws with n <= 6).
    """
    nodes: list[Node] = []
    L = bowel.rectum_length
    s_pref = tumour.s_center if tumour is not None and tumour.site == "rectum" else L / 2
    for attempt in range(max_attempts):
        if len(nodes) == n:
            break
        shrink = 1.0 - 0.6 * attempt / max_attempts
        # metastatic nodes: median short axis about 7.5 mm, range 3-15 mm; smaller when space runs out
        short = float(np.clip(np.exp(rng.normal(np.log(7.5), 0.35)) * shrink, MIN_SHORT_AXIS_MM, MAX_SHORT_AXIS_MM))
        a_r = short / 2
        semi = np.array([a_r * rng.uniform(1.15, 1.7), a_r, a_r * rng.uniform(1.0, 1.25)])
        node = _place(rng, bowel, tumour, semi, s_pref, np.pi, 1.0, nodes,
                      lambda semi_, o: semi_[0] + o.semi[0] + 1.5)
        if node is not None:
            nodes.append(node)
    if len(nodes) < n:
        raise RuntimeError(f"could only place {len(nodes)} of {n} lymph nodes in the mesorectum")
    return nodes


def sample_benign_nodes(rng: np.random.Generator, bowel: Bowel, tumour: Tumour | None, n: int,
                        placed: list[Node], max_attempts: int = 2000) -> list[Node]:
    """Place ``n`` benign nodes in the mesorectum (anywhere along the rectum, all round it), clear of ``tumour``, of
    the ``placed`` (metastatic) nodes and of each other by 1.5 mm between their bounding spheres.  Short axis uniform
    in :data:`BENIGN_SHORT_AXIS_MM`, the other two semi-axes 0–15 % longer.

    Raises:
        RuntimeError: when fewer than ``n`` fit after ``max_attempts`` tries.
    """
    nodes: list[Node] = []
    L = bowel.rectum_length
    for _ in range(max_attempts):
        if len(nodes) == n:
            break
        a_r = float(rng.uniform(*BENIGN_SHORT_AXIS_MM)) / 2
        semi = np.array([a_r * rng.uniform(1.0, BENIGN_ELONGATION), a_r, a_r * rng.uniform(1.0, BENIGN_ELONGATION)])
        s_pref = float(rng.uniform(20, L - 12))
        node = _place(rng, bowel, tumour, semi, s_pref, np.pi, np.pi, placed + nodes,
                      lambda semi_, o: semi_.max() + o.semi.max() + 1.5)
        if node is not None:
            node.metastatic = False
            nodes.append(node)
    if len(nodes) < n:
        raise RuntimeError(f"could only place {len(nodes)} of {n} benign lymph nodes in the mesorectum")
    return nodes
