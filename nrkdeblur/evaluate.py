"""Measuring deblurring: PSNR and SSIM on 8-bit RGB, per pair and on average.

PSNR: 10 log10(255^2 / MSE) over all pixels and channels, no border crop.
SSIM: the definition of scikit-image's `structural_similarity(a, b, channel_axis=-1,
data_range=255)` with its defaults (7x7 uniform window, K1 = 0.01, K2 = 0.03, sample
covariance, mean over the map cropped by 3 pixels, then over channels); tests check it
against scikit-image to 1e-6. Computed in float64 with numpy only.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import numpy as np


class Row(NamedTuple):
    name: str
    psnr_in: float
    ssim_in: float
    psnr_out: float
    ssim_out: float


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
    return (np.clip(rgb, 0, 1) * 255 + 0.5).astype(np.uint8)


def evaluate(pairs: list[tuple[str, np.ndarray, np.ndarray]],
             restore: Callable[[str, np.ndarray], np.ndarray]) -> list[Row]:
    """Score input and restored output against the sharp image for each (name, blurry, sharp)
    of uint8 RGB arrays; `restore(name, blurry)` returns the uint8 RGB output."""
    rows = []
    for name, blurry, sharp in pairs:
        out = restore(name, blurry)
        if out.shape != sharp.shape or blurry.shape != sharp.shape:
            raise ValueError(f"{name}: sizes differ ({blurry.shape}, {out.shape}, {sharp.shape})")
        rows.append(Row(name, psnr(blurry, sharp), ssim(blurry, sharp), psnr(out, sharp), ssim(out, sharp)))
    return rows


def mean_row(rows: list[Row]) -> Row:
    return Row("mean", *(float(np.mean([getattr(r, f) for r in rows])) for f in Row._fields[1:]))
