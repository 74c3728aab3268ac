"""The network's defocus map refined edge-aware with the photo as guide, and a confidence:
how far the photo lets blur be observed at each pixel.

The map head (map_head.py), or the focus head for weights without one, reads the blur
from what the network sees. Where the photo has no texture (flat sky, a wall) a blurred
and a sharp photo look the same, so the map's value there is a guess. The confidence of a
pixel is the blurry photo's own texture around it (the sharp photo is unknown at inference):

    E = G_2 * |grad Y|^2,    c = (E / (E + median E))^2,    in [0, 1)

with Y the photo's grey (Rec. 709 weights on sRGB values), central differences, G_2 a
Gaussian of sigma 2 px (as docs/map-scores.md judges textured pixels) and the median over
the photo: c is 1/4 at a pixel of median texture and 0 where the photo is flat.

The map M is then filtered by the confidence-weighted guided filter (guided_filter.py; K. He,
J. Sun, X. Tang, "Guided Image Filtering", ECCV 2010, eq. 4-8, each pixel's terms weighted
by c): in every window of radius RADIUS, M ~ a Y + b is fitted to the confident pixels, and
each pixel averages the fits of the windows that hold it. The measurement noise of textured
pixels averages out; flat pixels take the values their textured neighbours' fits give
them; a change of the map may stay sharp where the photo has an edge.

It runs as the fast guided filter (K. He, J. Sun, "Fast Guided Filter", arXiv:1505.00996,
2015): Y, c and M (weighted by c) are averaged over blocks of SUBSAMPLE x SUBSAMPLE pixels,
the windows' averaged coefficients (A, B) are computed there at radius RADIUS / SUBSAMPLE,
upsampled bilinearly and applied to the full-resolution grey, M' = A Y + B (clipped at 0).
Blocks that no confident block reaches within two radii take a window 4x wider, then A = 0
and B = the block's mean of M. Computed on the whole map after tiling, so tiles agree.

RADIUS, EPS and the confidence were chosen without training, by the map scores of the
frozen sets, among the variants of scripts/map-refine-pilot.py (docs/map-scores.md,
"Refinement"), never on the Pixel-4 photos. The gain is small: it smooths the map's noise,
it cannot see blur the network missed.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from scipy.ndimage import gaussian_filter

from .guided_filter import window_models
from .srgb import linear_to_srgb

RADIUS = 8  # px at full resolution: the window the map's noise is averaged over
EPS = 1e-2  # grey levels^2: edges of the photo with a contrast above ~0.1 may bound the map
SUBSAMPLE = 4  # the fast guided filter's block: its windowed sums cost 1/16 of the exact ones
CONFIDENCE_SIGMA = 2.0  # px, the texture's neighbourhood (docs/map-scores.md, textured pixels)
LUMA = np.array([0.2126, 0.7152, 0.0722], np.float32)  # Rec. 709 weights, on sRGB values


class Refined(NamedTuple):
    map: np.ndarray  # (H, W) float32, the refined RMS blur radius, px
    confidence: np.ndarray  # (H, W) float32 in [0, 1): how visible blur is at each pixel


def grey(pixels: np.ndarray, linear: bool = False) -> np.ndarray:
    """(H, W, C) float pixels in [0, 1] -> (H, W) float32 grey of the sRGB values (C = 1:
    the channel itself). linear: the pixels are linear light; their grey is sRGB-encoded."""
    pixels = np.asarray(pixels, dtype=np.float32)
    y = pixels[..., :3] @ LUMA if pixels.shape[2] >= 3 else pixels[..., 0]
    return linear_to_srgb(np.clip(y, 0.0, 1.0)).astype(np.float32) if linear else y


def confidence(y: np.ndarray, sigma: float = CONFIDENCE_SIGMA) -> np.ndarray:
    """(E / (E + median E))^2 of a grey (H, W) image, E its smoothed gradient energy; 0
    where E is (a photo without texture has no confident pixel)."""
    gy, gx = np.gradient(y.astype(np.float32))
    energy = gaussian_filter(gx * gx + gy * gy, sigma)
    total = energy + np.median(energy)
    return np.divide(energy, total, out=np.zeros_like(energy), where=total > 0) ** 2


def block_means(x: np.ndarray, s: int) -> np.ndarray:
    """Means of x (H, W) over s x s blocks, the last row and column of blocks padded with
    x's edge values: (ceil(H / s), ceil(W / s)) float64."""
    H, W = x.shape
    h, w = -(-H // s), -(-W // s)
    padded = np.pad(x, ((0, h * s - H), (0, w * s - W)), mode="edge")
    return padded.reshape(h, s, w, s).mean(axis=(1, 3), dtype=np.float64)


def upsample(x: np.ndarray, s: int, shape: tuple[int, int]) -> np.ndarray:
    """Bilinear interpolation of block values x (h, w), each at its block's centre, to the
    pixels of `shape` (H, W); beyond the outer centres the edge value: float32."""
    def axis_weights(n: int, size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        pos = np.clip((np.arange(size) - (s - 1) / 2) / s, 0, n - 1)
        lo = np.minimum(pos.astype(int), n - 1)
        hi = np.minimum(lo + 1, n - 1)
        return lo, hi, (pos - lo).astype(np.float32)

    x = x.astype(np.float32)
    lo, hi, t = axis_weights(x.shape[0], shape[0])
    rows = x[lo] * (1 - t)[:, None] + x[hi] * t[:, None]  # (H, w)
    lo, hi, t = axis_weights(x.shape[1], shape[1])
    return rows[:, lo] * (1 - t) + rows[:, hi] * t


def refine_map(defocus_map: np.ndarray, pixels: np.ndarray, linear: bool = False, radius: int = RADIUS,
               eps: float = EPS, subsample: int = SUBSAMPLE) -> Refined:
    """Refine an (H, W) defocus map with its photo, (H, W, C) floats in [0, 1] (linear:
    linear light), as the module describes. A photo without texture keeps its map as it is."""
    if defocus_map.shape != pixels.shape[:2]:
        raise ValueError(f"defocus map {defocus_map.shape} and photo {pixels.shape[:2]} differ in size")
    y = grey(pixels, linear)
    c = confidence(y)
    if not c.any():
        return Refined(defocus_map.astype(np.float32), c)
    s = max(1, min(subsample, *defocus_map.shape))
    c_low = block_means(c, s)
    m_low = np.divide(block_means(c * defocus_map, s), c_low, out=block_means(defocus_map, s), where=c_low > 0)
    y_low = block_means(y, s)
    r = max(1, round(radius / s))
    A, B = window_models(y_low, m_low, r, eps, c_low)
    missing = np.isnan(A)
    if missing.any():  # no confident block within 2 r: a wider window, then the map's own mean
        A_wide, B_wide = window_models(y_low, m_low, 4 * r, eps, c_low)
        A, B = np.where(missing, A_wide, A), np.where(missing, B_wide, B)
        missing = np.isnan(A)
        A, B = np.where(missing, 0.0, A), np.where(missing, block_means(defocus_map, s), B)
    refined = upsample(A, s, y.shape) * y + upsample(B, s, y.shape)
    return Refined(np.maximum(refined, 0.0, out=refined), c)
