"""Measuring deblurring: PSNR and SSIM on 8-bit RGB, per pair and on average; the defocus
map against the true blur; a set's mean, and its worst image.

PSNR: 10 log10(255^2 / MSE) over all pixels and channels, no border crop.
SSIM: the definition of scikit-image's `structural_similarity(a, b, channel_axis=-1,
data_range=255)` with its defaults (7x7 uniform window, K1 = 0.01, K2 = 0.03, sample
covariance, mean over the map cropped by 3 pixels, then over channels); tests check it
against scikit-image to 1e-6. Computed in float64 with numpy only.

Defocus map, against a set's true radius map (the RMS radius of the PSF each pixel was
rendered with, data/datasets.write_frozen_set); docs/map-scores.md defines each score:
- Spearman rank correlation with the truth over all of an image's pixels, and over its
  textured pixels (textured(): the sharp image's gradient energy, Gaussian-smoothed with
  sigma TEXTURE_SIGMA, at or above that image's median); a set's figure is the mean over
  its images (images whose truth is constant are skipped);
- mean absolute error in px of the map as it is, and after one scale s per set (fit_set:
  the least-absolute-deviation scale, exact), beside the error of the best constant map
  (the median of the set's true radii): a map that ranks well but has the wrong scale is
  not punished twice, and one no better than a constant shows it.
Strong blur, where a set has true radius maps: PSNR of input and output over the pixels
whose true radius exceeds STRONG_BLUR px only (per image; a set's figure pools the squared
errors of all its strong pixels), to see whether the network helps or harms where the blur
is beyond what it inverts well.
Maps without a metric truth (the Pixel-4 defocus maps, known up to an affine transform):
affine_scores(), the dual-pixel literature's AIWE(1), AIWE(2) and 1 - |Spearman|.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import numpy as np

from .errors import DataError
from .levels import to_levels


TEXTURE_SIGMA = 2.0  # px: textured pixels are judged over about a 5x5 neighbourhood
STRONG_BLUR = 8.0  # px of true RMS radius: the strong-blur PSNR's pixels lie above it


class Row(NamedTuple):
    name: str
    psnr_in: float
    ssim_in: float
    psnr_out: float
    ssim_out: float
    # the defocus map against the true radius (None: no map or no truth); docs/map-scores.md
    map_spearman: float | None = None  # all pixels
    map_spearman_textured: float | None = None
    map_mae: float | None = None  # px, the map as it is
    map_scale: float | None = None  # the set's one scale s
    map_mae_fit: float | None = None  # px, s * map
    map_mae_constant: float | None = None  # px, the set's best constant map
    # PSNR over the pixels whose true radius exceeds STRONG_BLUR (None: none, or no truth)
    strong_pixels: int | None = None
    strong_share: float | None = None  # of the image's pixels
    strong_psnr_in: float | None = None
    strong_psnr_out: float | None = None


class SetSummary(NamedTuple):
    name: str  # the set
    images: int
    psnr_in: float  # means over the set's images
    psnr_out: float
    ssim_in: float
    ssim_out: float
    worst_gain: float  # the lowest PSNR gain of any image, dB
    worst_image: str
    map_spearman: float | None  # the map figures: means over the set's images
    map_spearman_textured: float | None
    map_mae: float | None
    map_scale: float | None
    map_mae_fit: float | None
    map_mae_constant: float | None
    strong_share: float | None  # of an image's pixels, with true radius above STRONG_BLUR (mean)
    strong_psnr_in: float | None  # PSNR pooled over those pixels
    strong_psnr_out: float | None


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR in dB of two uint8 images."""
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else float(10 * np.log10(255.0**2 / mse))


def _box7(x: np.ndarray) -> np.ndarray:
    """Mean over every 7x7 window that fits inside x (HxW), via summed-area tables."""
    s = np.pad(x, ((1, 0), (1, 0))).cumsum(0).cumsum(1)
    return (s[7:, 7:] - s[:-7, 7:] - s[7:, :-7] + s[:-7, :-7]) / 49.0


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    """Mean SSIM of two uint8 images (HxW or HxWxC), as scikit-image computes it."""
    a = a.astype(np.float64)
    b = b.astype(np.float64)
    if a.ndim == 2:
        a, b = a[..., None], b[..., None]
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    norm = 49 / 48  # sample covariance
    values = []
    for ch in range(a.shape[2]):
        x, y = a[..., ch], b[..., ch]
        ux, uy = _box7(x), _box7(y)
        vx = norm * (_box7(x * x) - ux * ux)
        vy = norm * (_box7(y * y) - uy * uy)
        vxy = norm * (_box7(x * y) - ux * uy)
        s = (2 * ux * uy + c1) * (2 * vxy + c2) / ((ux**2 + uy**2 + c1) * (vx + vy + c2))
        values.append(s.mean())
    return float(np.mean(values))


def strong_psnr(blurry: np.ndarray, out: np.ndarray, sharp: np.ndarray,
                radius: np.ndarray) -> tuple[int, float, float | None, float | None]:
    """(pixel count, share of the image, PSNR in, PSNR out) over the pixels whose true
    radius exceeds STRONG_BLUR."""
    strong = radius > STRONG_BLUR
    n = int(strong.sum())
    if n == 0:
        return 0, 0.0, None, None
    return n, n / strong.size, psnr(blurry[strong], sharp[strong]), psnr(out[strong], sharp[strong])


def pooled_psnr(counts: list[int], values: list[float]) -> float:
    """PSNR of the union of pixel sets, from each set's count and PSNR (8-bit peak)."""
    mse = [n * 255.0**2 * 10 ** (-v / 10) for n, v in zip(counts, values)]
    return float(10 * np.log10(255.0**2 * sum(counts) / sum(mse)))


def to_uint8(pixels: np.ndarray) -> np.ndarray:
    """Float [0, 1] HxWxC (C = 1 or 3) -> uint8 HxWx3, rounded."""
    rgb = np.repeat(pixels, 3, axis=2) if pixels.shape[2] == 1 else pixels[..., :3]
    return to_levels(rgb)


def textured(sharp: np.ndarray, sigma: float = TEXTURE_SIGMA) -> np.ndarray:
    """HxW bool: the pixels whose gradient energy |grad Y|^2 (Y: the grey of the uint8 RGB
    sharp image on [0, 1], central differences), smoothed by a Gaussian of `sigma` px, is at
    or above the image's median: about the textured half of the image."""
    from scipy.ndimage import gaussian_filter

    y = sharp.astype(np.float64) / 255
    y = y[..., :3] @ np.array([0.2126, 0.7152, 0.0722]) if y.ndim == 3 else y
    gy, gx = np.gradient(y)
    energy = gaussian_filter(gx**2 + gy**2, sigma)
    return energy >= np.median(energy)


def spearman(pred: np.ndarray, true: np.ndarray) -> float | None:
    """Spearman rank correlation of two same-size arrays (ties: mean ranks); None when the
    truth is constant, 0 when the prediction is (a flat map ranks nothing)."""
    from scipy.stats import spearmanr

    pred, true = pred.ravel(), true.ravel()
    if true.size < 2 or true.min() == true.max():
        return None
    if pred.min() == pred.max():
        return 0.0
    rho = spearmanr(pred, true).statistic
    return None if np.isnan(rho) else float(rho)


def map_scores(pred: np.ndarray, true: np.ndarray,
               sharp: np.ndarray | None = None) -> tuple[float | None, float | None, float]:
    """(Spearman over all pixels, Spearman over the textured pixels of the sharp image or
    None without one, mean absolute error in px) of a predicted HxW defocus map against the
    true one."""
    if pred.shape != true.shape:
        raise DataError(f"defocus map is {pred.shape}, the true radius map {true.shape}")
    pred, true = pred.astype(np.float64), true.astype(np.float64)
    rho_textured = None
    if sharp is not None:
        mask = textured(sharp)
        rho_textured = spearman(pred[mask], true[mask])
    return spearman(pred, true), rho_textured, float(np.abs(pred - true).mean())


def weighted_median(values: np.ndarray, weights: np.ndarray) -> float:
    """The smallest value v with at least half the total weight on values <= v: a minimiser
    of sum_i w_i |values_i - v| (weights >= 0, not all 0)."""
    order = np.argsort(values, kind="stable")
    cumulative = np.cumsum(weights[order], dtype=np.float64)
    return float(values[order][np.searchsorted(cumulative, cumulative[-1] / 2)])


def fit_set(maps: list[np.ndarray], truths: list[np.ndarray]) -> tuple[float, float]:
    """(scale s, constant c) for a set's predicted and true maps: s minimises the mean over
    the images of mean |s map - truth| (a weighted median of truth / map, each pixel weighted
    by |map| / its image's pixel count; 0 when every map is 0), c minimises the mean of
    mean |c - truth| (the median of the truths, pixels weighted by 1 / their image's count).
    Both exact."""
    m = np.concatenate([a.ravel() for a in maps]).astype(np.float64)
    t = np.concatenate([a.ravel() for a in truths]).astype(np.float64)
    per_pixel = np.concatenate([np.full(a.size, 1.0 / a.size) for a in maps])
    constant = weighted_median(t, per_pixel)
    used = m != 0
    if not used.any():
        return 0.0, constant
    return weighted_median(t[used] / m[used], np.abs(m[used]) * per_pixel[used]), constant


def affine_scores(pred: np.ndarray, truth: np.ndarray, confident: np.ndarray) -> tuple[float, float, float]:
    """(AIWE(1), AIWE(2), 1 - |Spearman|) of a predicted HxW map against a truth known up to
    an affine transform, over the `confident` pixels (HxW bool), as in Garg et al., ICCV
    2019, and Xin et al., ICCV 2021: AIWE(p) = min_{a,b} (mean |truth - (a pred +
    b)|^p)^(1/p), in the truth's units; the weights are 0 or 1 here, so weighted means are
    means over the confident pixels."""
    if not pred.shape == truth.shape == confident.shape:
        raise ValueError(f"map {pred.shape}, truth {truth.shape} and confidence {confident.shape} differ in size")
    if confident.sum() < 2:
        raise ValueError("fewer than two confident pixels")
    x = pred[confident].astype(np.float64)
    y = truth[confident].astype(np.float64)
    a, b = _fit_l2(x, y)
    aiwe2 = float(np.sqrt(np.mean((y - a * x - b) ** 2)))
    a, b = _fit_l1(x, y)
    aiwe1 = float(np.mean(np.abs(y - a * x - b)))
    rho = spearman(x, y)
    return aiwe1, aiwe2, 1.0 - abs(rho or 0.0)


def _fit_l2(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Least-squares a, b of y ~ a x + b (a = 0 when x is constant)."""
    dx = x - x.mean()
    var = float(np.mean(dx * dx))
    a = float(np.mean(dx * (y - y.mean())) / var) if var > 0 else 0.0
    return a, float(y.mean() - a * x.mean())


def _fit_l1(x: np.ndarray, y: np.ndarray, steps: int = 80) -> tuple[float, float]:
    """Least-absolute-deviation a, b of y ~ a x + b. For a given a the best b is the median
    of y - a x; the resulting error is convex in a, so a golden-section search finds it
    once a bracket around the least-squares slope holds the minimum."""
    def error(a: float) -> float:
        r = y - a * x
        return float(np.mean(np.abs(r - np.median(r))))

    a0, _ = _fit_l2(x, y)
    h = max(abs(a0), float(np.std(y)) / max(float(np.std(x)), 1e-12), 1e-12)
    f0 = error(a0)
    lo, hi = a0 - h, a0 + h
    while error(lo) < f0:
        lo -= 2 * (a0 - lo)
    while error(hi) < f0:
        hi += 2 * (hi - a0)
    g = (np.sqrt(5) - 1) / 2
    c, d = hi - g * (hi - lo), lo + g * (hi - lo)
    fc, fd = error(c), error(d)
    for _ in range(steps):  # golden section: the bracket shrinks by g per step
        if fc <= fd:
            hi, d, fd = d, c, fc
            c = hi - g * (hi - lo)
            fc = error(c)
        else:
            lo, c, fc = c, d, fd
            d = lo + g * (hi - lo)
            fd = error(d)
    a = (lo + hi) / 2
    return a, float(np.median(y - a * x))


Restorer = Callable[[str, np.ndarray], tuple[np.ndarray, np.ndarray | None]]


def evaluate(pairs: list[tuple[str, np.ndarray, np.ndarray, np.ndarray | None]], restore: Restorer) -> list[Row]:
    """Score input and restored output against the sharp image for each (name, blurry, sharp,
    true radius map or None) of uint8 RGB arrays; `restore(name, blurry)` returns the uint8
    RGB output and its defocus map (or None), which is scored where a true map exists, with
    one scale and one constant fitted over all the pairs (fit_set)."""
    rows, maps = [], {}
    for name, blurry, sharp, radius in pairs:
        out, defocus = restore(name, blurry)
        if out.shape != sharp.shape or blurry.shape != sharp.shape:
            raise DataError(f"{name}: sizes differ ({blurry.shape}, {out.shape}, {sharp.shape})")
        row = Row(name, psnr(blurry, sharp), ssim(blurry, sharp), psnr(out, sharp), ssim(out, sharp))
        if radius is not None:
            n, share, strong_in, strong_out = strong_psnr(blurry, out, sharp, radius)
            row = row._replace(strong_pixels=n, strong_share=share, strong_psnr_in=strong_in, strong_psnr_out=strong_out)
        if defocus is not None and radius is not None:
            rho, rho_textured, mae = map_scores(defocus, radius, sharp)
            row = row._replace(map_spearman=rho, map_spearman_textured=rho_textured, map_mae=mae)
            maps[len(rows)] = (defocus.astype(np.float32), radius)
        rows.append(row)
    if maps:
        scale, constant = fit_set(*zip(*maps.values()))
        for i, (pred, true) in maps.items():
            rows[i] = rows[i]._replace(map_scale=scale, map_mae_fit=float(np.abs(scale * pred - true).mean()),
                                       map_mae_constant=float(np.abs(constant - true).mean()))
    return rows


def _mean(values: list[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return float(np.mean(known)) if known else None


def mean_row(rows: list[Row]) -> Row:
    return Row("mean", *(_mean([getattr(r, f) for r in rows]) for f in Row._fields[1:]))


def summarize(name: str, rows: list[Row]) -> SetSummary:
    """A set's means, its worst image by PSNR gain, its defocus-map figures and its strong-blur
    PSNR, pooled over the strong pixels of all its images."""
    worst = min(rows, key=lambda r: r.psnr_out - r.psnr_in)
    m = mean_row(rows)
    strong = [r for r in rows if r.strong_pixels]
    strong_in = strong_out = None
    if strong:
        counts = [r.strong_pixels for r in strong]
        strong_in = pooled_psnr(counts, [r.strong_psnr_in for r in strong])
        strong_out = pooled_psnr(counts, [r.strong_psnr_out for r in strong])
    map_figures = {f: getattr(m, f) for f in SetSummary._fields if f.startswith("map_")}
    return SetSummary(name, len(rows), m.psnr_in, m.psnr_out, m.ssim_in, m.ssim_out, worst.psnr_out - worst.psnr_in,
                      worst.name, **map_figures, strong_share=m.strong_share, strong_psnr_in=strong_in,
                      strong_psnr_out=strong_out)


def with_map(restore: Restorer, estimate: Callable[[np.ndarray], np.ndarray]) -> Restorer:
    """`restore` with its defocus map replaced by estimate(blurry as float pixels in [0, 1])."""
    def restore_with_map(name: str, blurry: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        out, _ = restore(name, blurry)
        return out, estimate(blurry.astype(np.float32) / 255)

    return restore_with_map
