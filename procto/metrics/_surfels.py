"""Surface-element (surfel) measures for the 2×2×2 (3D) and 2×2 (2D) neighbourhood codes.

The surface metrics follow DeepMind's ``surface-distance`` package (Apache-2.0, Copyright 2018 Google Inc.):
every corner point of the voxel grid gets an 8-bit code saying which of the 8 voxels around it are foreground, and
each code owns a piece of the marching-cubes surface.  To give *identical* areas, the 3D table below is the
marching-cubes triangle table of ``surface_distance/lookup_tables.py`` (``_NEIGHBOUR_CODE_TO_NORMALS``), re-encoded
compactly: every triangle normal there has components in {0, ±1/8, ±2/8, ±3/8, ±4/8} and only the absolute values
matter for the area, so each triangle is stored as one letter naming its absolute normal (in eighths):

===  =========  ===  =========
0    (0, 0, 0)  x    (4, 0, 0)
a    (1, 1, 1)  y    (0, 4, 0)
b    (2, 2, 2)  z    (0, 0, 4)
c    (3, 3, 3)  X    (0, 2, 2)
Y    (2, 0, 2)  Z    (2, 2, 0)
===  =========  ===  =========

The area of a triangle with normal ``n`` on a grid with spacing ``(s0, s1, s2)`` is
``|(n0·s1·s2, n1·s0·s2, n2·s0·s1)|``; a code's area is the sum over its triangles, in the same order and with the
same floating-point operations as ``surface-distance``, so the tables agree bit for bit (tested).
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np

_NORMAL_OF = {
    "0": (0, 0, 0),
    "a": (1, 1, 1),
    "b": (2, 2, 2),
    "c": (3, 3, 3),
    "x": (4, 0, 0),
    "y": (0, 4, 0),
    "z": (0, 0, 4),
    "X": (0, 2, 2),
    "Y": (2, 0, 2),
    "Z": (2, 2, 0),
}

# Triangles of codes 0..255 (16 codes per line).  Code bit 7 (value 128) is voxel (-1, -1, -1) relative to the
# corner, bit 0 (value 1) is voxel (0, 0, 0); see ``neighbour_codes``.
_TRIANGLES_3D = (
    "0 a a ZZ a YY aa xba a aa YY xba ZZ xba xba xx "
    "a XX aa yba aa zba aaa abba aa XXa YYa acXY aZZ cXaZ xaba xab "
    "a aa XX yab aa aYY XXa cXaY aa aaa zba bbaa aZZ xbaa XcaZ xba "
    "ZZ yba yab yy ZZa cYaZ ayba yba aZZ ybaa cZaY yba ZZZZ ZZa aZZ ZZ "
    "a aa aa aZZ XX zba XXa cXaZ aa aaa aYY xbaa yba bbaa YcXa xba "
    "YY zba aYY YcZa zba zz aabz abz YYa zbaa YYYY aYY YcZa zba aYY YY "
    "aa aaa aXX yaba XXa zbaa XXXX XXa aaa aaaa zbaa aaa ybaa aaa XXa aa "
    "xba baba cXaY yba cZXa abz aXX XX xbaa aaa YYa aa ZZa aa aa a "
    "a aa aa ZZa aa YYa aaa xbaa XX aXX abz cZXa yba cXaY baba xba "
    "aa XXa aaa ybaa aaa zbaa aaaa aaa XXa XXXX zbaa XXa yaba aXX aaa aa "
    "YY aYY zba YcZa aYY YYYY zbaa YYa abz aabz zz zba YcZa aYY zba YY "
    "xba YcXa bbaa yba xbaa aYY aaa aa cXaZ XXa zba XX aZZ aa aa a "
    "ZZ aZZ ZZa ZZZZ yba cZaY ybaa aZZ yba ayba cYaZ ZZa yy yab yba ZZ "
    "xba XcaZ xbaa aZZ bbaa zba aaa aa cXaY XXa aYY aa yab XX aa a "
    "xab xaba cXaZ aZZ acXY YYa XXa aa abba aaa zba aa yba aa XX a "
    "xx xba xba ZZ xba YY aa a xba aa YY a ZZ a a 0"
).split()
assert len(_TRIANGLES_3D) == 256


@lru_cache(maxsize=64)
def surface_area_table(spacing: tuple[float, float, float]) -> np.ndarray:
    """Area in mm² of the surface piece owned by each of the 256 3D neighbour codes, for ``spacing`` (z, y, x)."""
    s0, s1, s2 = spacing
    area_of = {}
    for letter, (k0, k1, k2) in _NORMAL_OF.items():
        n = np.array([k0 / 8 * s1 * s2, k1 / 8 * s0 * s2, k2 / 8 * s0 * s1])
        area_of[letter] = np.linalg.norm(n)
    table = np.zeros(256)
    for code, triangles in enumerate(_TRIANGLES_3D):
        total = 0
        for letter in triangles:
            total += area_of[letter]
        table[code] = total
    table.flags.writeable = False
    return table


@lru_cache(maxsize=64)
def contour_length_table(spacing: tuple[float, float]) -> np.ndarray:
    """Length in mm of the contour piece owned by each of the 16 2D neighbour codes, for pixel ``spacing`` (y, x).

    Bits: 8 = pixel (-1, -1), 4 = (-1, 0), 2 = (0, -1), 1 = (0, 0) relative to the corner point.  One or three
    foreground pixels cut a corner (half a pixel diagonal); two pixels on one side give a straight edge; two diagonal
    pixels give two corner cuts (a saddle).
    """
    vertical, horizontal = spacing
    diag = 0.5 * math.sqrt(vertical**2 + horizontal**2)
    table = np.zeros(16)
    for code in (1, 2, 4, 8, 7, 11, 13, 14):
        table[code] = diag
    table[0b0011] = table[0b1100] = horizontal
    table[0b0101] = table[0b1010] = vertical
    table[0b0110] = table[0b1001] = 2 * diag
    table.flags.writeable = False
    return table


def neighbour_codes(mask: np.ndarray) -> np.ndarray:
    """Neighbour code of every grid corner of a 2D or 3D boolean ``mask``.

    The result has one more element than ``mask`` along every axis: entry ``p`` describes the corner shared by
    voxels ``p - 1`` and ``p`` along each axis (voxels outside the array count as background).  In 3D the voxel at
    offset ``(d0, d1, d2) ∈ {-1, 0}³`` contributes bit ``7 - (4·(d0+1) + 2·(d1+1) + (d2+1))``; in 2D offset
    ``(d0, d1)`` contributes bit ``3 - (2·(d0+1) + (d1+1))``.
    """
    padded = np.zeros(tuple(n + 2 for n in mask.shape), dtype=np.uint8)
    padded[tuple(slice(1, -1) for _ in mask.shape)] = mask
    code = padded
    # Combine pairs of neighbours axis by axis (last axis first): after the pass over the last k axes every entry
    # holds the 2**k-bit code of its sub-block, most significant bit = lower neighbour.
    for axis in range(mask.ndim - 1, -1, -1):
        packed_axes = mask.ndim - 1 - axis  # each entry already holds 2**packed_axes bits
        lo = [slice(None)] * mask.ndim
        hi = [slice(None)] * mask.ndim
        lo[axis] = slice(None, -1)
        hi[axis] = slice(1, None)
        low = code[tuple(lo)]
        shifted = np.left_shift(low, 1 << packed_axes)
        code = np.bitwise_or(shifted, code[tuple(hi)], out=shifted)
    return code
