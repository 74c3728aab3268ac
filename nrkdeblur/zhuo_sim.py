"""A classical defocus map, for comparison with the network's: S. Zhuo and T. Sim, "Defocus
map estimation from a single image", Pattern Recognition 44(9), 2011.

At an edge blurred by a Gaussian of standard deviation sigma, re-blurring with a Gaussian
of known sigma0 lowers the gradient magnitude by the ratio
R = |grad i| / |grad i_reblurred| = sqrt(sigma^2 + sigma0^2) / sigma   (the paper's eq. 5-7),
so sigma = sigma0 / sqrt(R^2 - 1) at every edge pixel (Canny edges). The sparse estimates
are then spread to all pixels edge-aware. Departures from the paper, each for a reason:

- Gradients are derivatives of Gaussians of scale s (GRADIENT_SCALE), the re-blurred one at
  sqrt(s^2 + sigma0^2), so the operator's own blur is known and removed:
  sigma^2 = sigma0^2 / (R^2 - 1) - s^2. Each magnitude is the largest within one pixel of
  the edge pixel, so an edge pixel that Canny's wider smoothing put one pixel off the
  crest still reads the crest.
- sigma0 is SIGMA0 (the paper: 1 px); a larger one still sees a ratio above noise at the
  strong blur of the frozen sets (RMS radii up to 13 px). Estimates are clipped to
  [0, MAX_SIGMA].
- Spreading: instead of the matting Laplacian (a sparse linear solve), the confidence-
  weighted guided filter (guided_filter.py, He et al. 2010, the matting Laplacian's fast
  local counterpart) fits, in windows, a linear model of the grey image to the edge
  estimates; pixels no window reaches take a coarser pass, then the image's median.
  No joint bilateral pre-filter of the sparse map: the windowed fit averages its outliers.

Unit: the network's map (and the frozen sets' truth, data.defocus.psf_rms_radius) is the
radial RMS radius of the PSF, sqrt(E[u^2 + v^2]). A 2-D Gaussian of per-axis sigma has
E[u^2 + v^2] = 2 sigma^2, so the map returned is sqrt(2) sigma. On a Gaussian edge it reads
sigma to within 6 % (tests); on the edge of a disk blur (the renderer's apertures) it reads
high, the more the larger the disk: 1.16x the true RMS radius at a disk radius of 2 px,
1.40x at 4, 1.63x at 6, 1.82x at 10 (docs/map-scores.md).
Parameters were chosen on the Kodak24 validation set (benchmarks/kodak24-defocus) only.
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import gaussian_gradient_magnitude, maximum_filter

from .guided_filter import guided_filter

SIGMA0 = 2.0  # px, the re-blur
GRADIENT_SCALE = 1.0  # px, the derivative-of-Gaussian scale of both gradients
MAX_SIGMA = 10.0  # px, the largest per-axis sigma read at an edge
CANNY_SIGMA = 3.0  # px, Canny's smoothing: wide enough to find blurred edges
CANNY_THRESHOLDS = (0.003, 0.008)  # low, high: gradient magnitude per px on [0, 1] grey
SPREAD_RADIUS = 16  # px, the guided filter's window radius (then 4x, 16x where it is empty)
SPREAD_EPS = 1e-2  # the guided filter's regularisation, grey levels squared
LUMA = np.array([0.2126, 0.7152, 0.0722])  # Rec. 709 weights, on the sRGB values


def grey(pixels: np.ndarray) -> np.ndarray:
    """HxW or HxWxC float pixels in [0, 1] -> HxW grey, float64."""
    pixels = np.asarray(pixels, dtype=np.float64)
    if pixels.ndim == 2:
        return pixels
    if pixels.shape[2] >= 3:
        return pixels[..., :3] @ LUMA
    return pixels[..., 0]


def edges(image: np.ndarray) -> np.ndarray:
    """Canny edges (scikit-image) of a grey HxW image in [0, 1]: HxW bool."""
    try:
        from skimage.feature import canny
    except ImportError:
        raise ValueError("the classical defocus map needs scikit-image: pip install scikit-image") from None
    # scikit-image thresholds its Sobel magnitude: 8x the gradient per px ([1 2 1] x [-1 0 1])
    low, high = (8.0 * t for t in CANNY_THRESHOLDS)
    return canny(image, sigma=CANNY_SIGMA, low_threshold=low, high_threshold=high)


def edge_sigma(image: np.ndarray, sigma0: float = SIGMA0, scale: float = GRADIENT_SCALE) -> np.ndarray:
    """Per-axis Gaussian sigma (px) of the blur read at every pixel of a grey HxW image from
    the gradient ratio (NaN where the ratio is not above 1); meaningful at edges."""
    g = maximum_filter(gaussian_gradient_magnitude(image, scale), size=3)
    g_reblur = maximum_filter(gaussian_gradient_magnitude(image, np.hypot(scale, sigma0)), size=3)
    ratio = np.divide(g, g_reblur, out=np.zeros_like(g), where=g_reblur > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        var = np.where(ratio > 1, sigma0**2 / (ratio**2 - 1) - scale**2, np.nan)
    return np.sqrt(np.clip(var, 0.0, MAX_SIGMA**2))


def spread(image: np.ndarray, sparse: np.ndarray, known: np.ndarray) -> np.ndarray:
    """Fill an HxW map known at `known` pixels to every pixel, edge-aware with the grey image
    as guide: the weighted guided filter at SPREAD_RADIUS, then 4x and 16x wider where the
    narrower one reached nothing, then the median of the known values."""
    if not known.any():
        return np.zeros(image.shape, np.float64)
    out = np.full(image.shape, np.nan)
    for radius in (SPREAD_RADIUS, 4 * SPREAD_RADIUS, 16 * SPREAD_RADIUS):
        missing = np.isnan(out)
        if not missing.any():
            break
        out[missing] = guided_filter(image, sparse, radius, SPREAD_EPS, confidence=known.astype(np.float64))[missing]
    out[np.isnan(out)] = np.median(sparse[known])
    return np.clip(out, 0.0, MAX_SIGMA)


def defocus_map(pixels: np.ndarray) -> np.ndarray:
    """The blur's RMS radius in px at every pixel of an HxW(xC) float image in [0, 1], from
    its edges alone: HxW float32 (all 0 when the image has no edge)."""
    image = grey(pixels)
    sigma = edge_sigma(image, SIGMA0, GRADIENT_SCALE)
    known = edges(image) & np.isfinite(sigma)
    sigma = spread(image, np.nan_to_num(sigma), known)
    return (np.sqrt(2.0) * sigma).astype(np.float32)
