"""Measuring deblurring: PSNR and SSIM on 8-bit RGB, per pair and on average; the defocus
map against the true blur; a set's mean, and its worst image.

PSNR: 10 log10(255^2 / MSE) over all pixels and channels, no border crop.
SSIM: the definition of scikit-image's `structural_similarity(a, b, channel_axis=-1,
data_range=255)` with its defaults (7x7 uniform window, K1 = 0.01, K2 = 0.03, sample
covariance, mean over the map cropped by 3 pixels, then over channels); tests check it
against scikit-image to 1e-6. Computed in float64 with numpy only.

Defocus map: against a set's true radius map (the RMS radius of the PSF each pixel was
rendered with, data/datasets.write_frozen_set), the Spearman rank correlation over the
image's pixels and the mean absolute error in pixels. A set's map figures are the means
over its images; the correlation skips images whose true radius is the same everywhere.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import numpy as np

from .errors import DataError
from .levels import to_levels


class Row(NamedTuple):
    name: str
    psnr_in: float
    ssim_in: float
    psnr_out: float
    ssim_out: float
    map_spearman: float | None = None  # defocus map vs the true radius (None: no map or no truth)
    map_mae: float | None = None  # px


class SetSummary(NamedTuple):
    name: str  # the set
    images: int
    psnr_in: float  # means over the set's images
    psnr_out: float
    ssim_in: float
    ssim_out: float
    worst_gain: float  # the lowest PSNR gain of any image, dB
    worst_image: str
    map_spearman: float | None
    map_mae: float | None


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


def to_uint8(pixels: np.ndarray) -> np.ndarray:
    """Float [0, 1] HxWxC (C = 1 or 3) -> uint8 HxWx3, rounded."""
    rgb = np.repeat(pixels, 3, axis=2) if pixels.shape[2] == 1 else pixels[..., :3]
    return to_levels(rgb)


def map_scores(pred: np.ndarray, true: np.ndarray) -> tuple[float | None, float]:
    """(Spearman rank correlation, mean absolute error in px) of a predicted HxW defocus map
    against the true one; the correlation is None when the truth is constant, 0 when the
    prediction is."""
    from scipy.stats import spearmanr

    if pred.shape != true.shape:
        raise DataError(f"defocus map is {pred.shape}, the true radius map {true.shape}")
    pred, true = pred.astype(np.float64).ravel(), true.astype(np.float64).ravel()
    mae = float(np.abs(pred - true).mean())
    if true.min() == true.max():
        return None, mae
    if pred.min() == pred.max():  # a flat map ranks nothing: no correlation
        return 0.0, mae
    rho = spearmanr(pred, true).statistic
    return (None if np.isnan(rho) else float(rho)), mae


Restorer = Callable[[str, np.ndarray], tuple[np.ndarray, np.ndarray | None]]


def evaluate(pairs: list[tuple[str, np.ndarray, np.ndarray, np.ndarray | None]], restore: Restorer) -> list[Row]:
    """Score input and restored output against the sharp image for each (name, blurry, sharp,
    true radius map or None) of uint8 RGB arrays; `restore(name, blurry)` returns the uint8
    RGB output and its defocus map (or None), which is scored where a true map exists."""
    rows = []
    for name, blurry, sharp, radius in pairs:
        out, defocus = restore(name, blurry)
        if out.shape != sharp.shape or blurry.shape != sharp.shape:
            raise DataError(f"{name}: sizes differ ({blurry.shape}, {out.shape}, {sharp.shape})")
        rho, mae = map_scores(defocus, radius) if defocus is not None and radius is not None else (None, None)
        rows.append(Row(name, psnr(blurry, sharp), ssim(blurry, sharp), psnr(out, sharp), ssim(out, sharp), rho, mae))
    return rows


def _mean(values: list[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return float(np.mean(known)) if known else None


def mean_row(rows: list[Row]) -> Row:
    return Row("mean", *(_mean([getattr(r, f) for r in rows]) for f in Row._fields[1:]))


def summarize(name: str, rows: list[Row]) -> SetSummary:
    """A set's means, its worst image by PSNR gain, and its defocus-map figures."""
    worst = min(rows, key=lambda r: r.psnr_out - r.psnr_in)
    m = mean_row(rows)
    return SetSummary(name, len(rows), m.psnr_in, m.psnr_out, m.ssim_in, m.ssim_out, worst.psnr_out - worst.psnr_in,
                      worst.name, m.map_spearman, m.map_mae)
