"""The camera after the blur: sensor noise, mosaic and demosaic, tone curve, sharpening, 8 bits
and JPEG.

Noise is Poisson-Gaussian (variance = shot * x + read^2, Foi et al., "Practical
Poissonian-Gaussian noise modeling and fitting for single-image raw-data", IEEE TIP 2008),
either on the finished linear RGB image (`add_camera_noise`) or, as a phone's sensor makes
it, on the raw Bayer mosaic at a given ISO before demosaicking, where it becomes spatially
correlated (`develop`). The mosaic is RGGB and the demosaic bilinear (Malvar, He, Cutler,
ICASSP 2004, describe it as their baseline). The tone curve is the sRGB curve
(IEC 61966-2-1) followed by a contrast S-curve; sharpening is an unsharp mask.
"""

from __future__ import annotations

import io
import math
from typing import NamedTuple

import numpy as np
from PIL import Image
from scipy import ndimage

from ..levels import to_levels
from ..srgb import linear_to_srgb
from .settings import RenderSettings


def add_camera_noise(linear: np.ndarray, rng: np.random.Generator, settings: RenderSettings) -> np.ndarray:
    """Poisson-Gaussian noise in linear light (variance = shot * x + read**2), random level."""
    if rng.random() >= settings.p_noise:
        return linear
    shot = log_uniform(rng, settings.shot_noise_range)
    read = log_uniform(rng, settings.read_noise_range)
    std = np.sqrt(shot * np.maximum(linear, 0.0) + read * read)
    return linear + std * rng.standard_normal(linear.shape, dtype=np.float32)


def log_uniform(rng: np.random.Generator, bounds: tuple[float, float]) -> float:
    """A number drawn uniformly in log space between the two bounds."""
    lo, hi = math.log(bounds[0]), math.log(bounds[1])
    return math.exp(rng.uniform(lo, hi))


def encode_8bit(srgb: np.ndarray, rng: np.random.Generator, settings: RenderSettings) -> np.ndarray:
    """8-bit rounding and, at random, a JPEG round trip (in memory)."""
    if rng.random() < settings.p_jpeg:
        lo, hi = settings.jpeg_quality_range
        quality = int(rng.integers(lo, hi + 1))
        image = Image.fromarray(to_levels(srgb))
        buffer = io.BytesIO()
        image.save(buffer, format="JPEG", quality=quality)
        buffer.seek(0)
        return np.asarray(Image.open(buffer).convert("RGB"), dtype=np.float32) / 255.0
    if settings.quantize:
        return to_levels(srgb).astype(np.float32) / 255.0
    return np.clip(srgb, 0, 1).astype(np.float32)




# ----------------------------------------------------------------------------
# a phone's pipeline


class CameraLook(NamedTuple):
    """What one sample's camera does after the blur; all zero is the plain sRGB camera."""

    mosaic: bool = False  # Bayer mosaic and bilinear demosaic
    iso: int = 0  # raw sensor noise at this ISO (0: none)
    tone: float = 0.0  # S-curve strength (0: plain sRGB)
    sharpen_amount: float = 0.0  # unsharp-mask gain (0: no sharpening)
    sharpen_sigma: float = 0.0  # its Gaussian std, px


def random_look(rng: np.random.Generator, settings: RenderSettings) -> CameraLook:
    """Draw a sample's camera pipeline; a share of 0 draws nothing."""
    def drawn(p: float) -> bool:
        return p > 0 and rng.random() < p

    mosaic = drawn(settings.p_mosaic)
    iso = int(settings.raw_isos[int(rng.integers(0, len(settings.raw_isos)))]) if drawn(settings.p_raw_noise) else 0
    tone = rng.uniform(*settings.tone_strength) if drawn(settings.p_tone_curve) else 0.0
    amount, sigma = 0.0, 0.0
    if drawn(settings.p_sharpen):
        amount, sigma = rng.uniform(*settings.sharpen_amount), rng.uniform(*settings.sharpen_sigma)
    return CameraLook(mosaic, iso, tone, amount, sigma)


def develop(
    linear: np.ndarray, rng: np.random.Generator, look: CameraLook, settings: RenderSettings
) -> np.ndarray:
    """The blurred HxWx3 linear image as the camera `look` stores it, sRGB before 8 bits.

    Raw noise (with `look.iso`) replaces the noise of `add_camera_noise`; without it the
    latter is drawn as before, on the demosaicked image."""
    if look.mosaic or look.iso:
        raw = bayer_mosaic(linear)
        if look.iso:
            gain = look.iso / 100
            std = np.sqrt(settings.raw_shot_noise * gain * np.maximum(raw, 0.0) + (settings.raw_read_noise * gain) ** 2)
            raw = raw + std * rng.standard_normal(raw.shape, dtype=np.float32)
        linear = demosaic(raw)
    if not look.iso:
        linear = add_camera_noise(linear, rng, settings)
    srgb = linear_to_srgb(linear)
    if look.tone:
        srgb = tone_curve(srgb, look.tone)
    if look.sharpen_amount:
        srgb = sharpen(srgb, look.sharpen_amount, look.sharpen_sigma)
    return srgb


def bayer_masks(h: int, w: int) -> np.ndarray:
    """HxWx3 float32 0/1 masks of the RGGB Bayer pattern (R at (0, 0), B at (1, 1))."""
    masks = np.zeros((h, w, 3), dtype=np.float32)
    masks[0::2, 0::2, 0] = 1.0
    masks[0::2, 1::2, 1] = 1.0
    masks[1::2, 0::2, 1] = 1.0
    masks[1::2, 1::2, 2] = 1.0
    return masks


def bayer_mosaic(rgb: np.ndarray) -> np.ndarray:
    """The HxW raw image an RGGB sensor records of an HxWx3 linear image."""
    return (rgb * bayer_masks(*rgb.shape[:2])).sum(axis=2, dtype=np.float32)


_GREEN = np.array([[0, 1, 0], [1, 4, 1], [0, 1, 0]], dtype=np.float32) / 4
_RED_BLUE = np.array([[1, 2, 1], [2, 4, 2], [1, 2, 1]], dtype=np.float32) / 4


def demosaic(raw: np.ndarray) -> np.ndarray:
    """Bilinear demosaic of an HxW RGGB raw image to HxWx3: each missing value is the mean of
    its nearest same-colour neighbours. Mirrored borders keep the pattern's phase, so a flat
    colour comes back exactly."""
    masks = bayer_masks(*raw.shape)
    out = np.empty(masks.shape, dtype=np.float32)
    for ch, kernel in enumerate((_RED_BLUE, _GREEN, _RED_BLUE)):
        out[..., ch] = ndimage.convolve(raw * masks[..., ch], kernel, mode="mirror")
    return out


def tone_curve(srgb: np.ndarray, strength: float) -> np.ndarray:
    """A contrast S-curve on sRGB values: y + strength * y (1 - y) (2y - 1). It keeps 0, 1/2 and
    1, darkens shadows and lifts highlights, and is monotonic for strength < 1."""
    y = np.clip(srgb, 0.0, 1.0)
    return (y + strength * y * (1.0 - y) * (2.0 * y - 1.0)).astype(np.float32)


def sharpen(srgb: np.ndarray, amount: float, sigma: float) -> np.ndarray:
    """Unsharp mask: y + amount * (y - Gaussian(y, sigma)), clipped to [0, 1]. It overshoots on
    both sides of an edge (halos), as a camera's sharpening does."""
    soft = ndimage.gaussian_filter(srgb, sigma=(sigma, sigma, 0), mode="reflect")
    return np.clip(srgb + amount * (srgb - soft), 0.0, 1.0).astype(np.float32)
