"""The guided filter (He, Sun, Tang, "Guided Image Filtering", ECCV 2010, eq. 4-8), with
optional per-pixel confidence weights so that it can also spread sparse measurements.

In every (2r+1) x (2r+1) window w_k the output is a linear function of a grey guide I,
q = a_k I + b_k (eq. 4). With confidences c (1 everywhere for the paper's filter), a_k and
b_k minimise  sum_{i in w_k} c_i ((a_k I_i + b_k - p_i)^2 + eps a_k^2)  (eq. 5, weighted):

    a_k = cov_c(I, p) / (var_c(I) + eps),   b_k = mean_c(p) - a_k mean_c(I)     (eq. 6-7)

where mean_c, var_c and cov_c are c-weighted over the window. Each pixel then averages the
models of the windows that contain it, each window weighted by its mean confidence cbar_k:
q_i = sum_k cbar_k (a_k I_i + b_k) / sum_k cbar_k (eq. 8 when c = 1). Windows are cut at
the image border, as in the paper (box means over the pixels inside). A pixel with no
confident pixel within 2r of it has no estimate: NaN. Pure numpy, O(N) in the pixels.
"""

from __future__ import annotations

import numpy as np


def box_sum(x: np.ndarray, r: int) -> np.ndarray:
    """Sum of x (HxW) over the (2r+1)^2 window at each pixel, cut at the border."""
    H, W = x.shape
    s = np.zeros((H + 1, W + 1), np.float64)
    np.cumsum(np.cumsum(x, axis=0, dtype=np.float64), axis=1, out=s[1:, 1:])
    y0 = np.clip(np.arange(H) - r, 0, H)
    y1 = np.clip(np.arange(H) + r + 1, 0, H)
    x0 = np.clip(np.arange(W) - r, 0, W)
    x1 = np.clip(np.arange(W) + r + 1, 0, W)
    return s[y1][:, x1] - s[y0][:, x1] - s[y1][:, x0] + s[y0][:, x0]


def box_mean(x: np.ndarray, r: int) -> np.ndarray:
    """Mean of x over the window at each pixel (windows cut at the border)."""
    return box_sum(x, r) / box_sum(np.ones_like(x, dtype=np.float64), r)


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """num / den, 0 where den is 0."""
    return np.divide(num, den, out=np.zeros_like(num), where=den > 0)


def window_models(guide: np.ndarray, src: np.ndarray, radius: int, eps: float,
                  confidence: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(A, B), HxW float64: each pixel's average of the linear models (a_k, b_k) of the
    windows that contain it, weighted by their mean confidence, so the filter's output is
    A I + B (eq. 8); NaN where no confident window reaches. Arguments as guided_filter's.
    The fast guided filter (He and Sun, arXiv:1505.00996) computes them on a subsampled
    guide and applies them, upsampled, to the full-resolution one."""
    if guide.shape != src.shape or (confidence is not None and confidence.shape != src.shape):
        raise ValueError(f"guide {guide.shape}, source {src.shape} and confidence must be the same size")
    if eps <= 0:
        raise ValueError(f"eps must be positive, not {eps}")
    I = guide.astype(np.float64)
    p = src.astype(np.float64)
    c = np.ones_like(p) if confidence is None else confidence.astype(np.float64)
    p = np.where(c > 0, p, 0.0)  # unconfident values (NaN included) never enter a sum
    weight = box_sum(c, radius)
    mean_i = _ratio(box_sum(c * I, radius), weight)
    mean_p = _ratio(box_sum(c * p, radius), weight)
    cov_ip = _ratio(box_sum(c * I * p, radius), weight) - mean_i * mean_p
    var_i = _ratio(box_sum(c * I * I, radius), weight) - mean_i**2
    a = cov_ip / (np.maximum(var_i, 0.0) + eps)
    b = mean_p - a * mean_i
    cbar = box_mean(c, radius)  # each window's mean confidence
    total = box_sum(cbar, radius)
    total = np.where(total > 0, total, np.nan)
    return box_sum(cbar * a, radius) / total, box_sum(cbar * b, radius) / total


def guided_filter(guide: np.ndarray, src: np.ndarray, radius: int, eps: float,
                  confidence: np.ndarray | None = None) -> np.ndarray:
    """Filter src (HxW) edge-aware with the grey guide (HxW), windows of (2 radius + 1)^2
    pixels, regularisation eps (in the guide's units squared: larger, smoother). With a
    confidence map (HxW, >= 0) only confident pixels inform the windows' linear models;
    pixels no confident window reaches are NaN. Returns float64 HxW."""
    A, B = window_models(guide, src, radius, eps, confidence)
    return A * guide.astype(np.float64) + B
