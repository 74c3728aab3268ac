"""The sRGB transfer curve (IEC 61966-2-1): linear light <-> the encoded values photos store.

The renderer blurs in linear light, as a lens does, and stores sRGB; the network therefore
knows sRGB-encoded photos, and `nrkdeblur --linear` encodes linear inputs (sensor data, a
linear TIFF) before the network and decodes its output after.
"""

from __future__ import annotations

import numpy as np


def srgb_to_linear(x: np.ndarray) -> np.ndarray:
    """sRGB in [0, 1] to linear light, float32 (inputs are clipped to [0, 1] first)."""
    x = np.clip(x, 0.0, 1.0).astype(np.float32, copy=False)
    return np.where(x <= 0.04045, x / 12.92, ((x + 0.055) / 1.055) ** 2.4).astype(np.float32)


def linear_to_srgb(x: np.ndarray) -> np.ndarray:
    """Linear light in [0, 1] to sRGB, float32 (inputs are clipped to [0, 1] first)."""
    x = np.clip(x, 0.0, 1.0).astype(np.float32, copy=False)
    return np.where(x <= 0.0031308, x * 12.92, 1.055 * x ** (1 / 2.4) - 0.055).astype(np.float32)
