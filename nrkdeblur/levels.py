"""Float pixels and integer sample levels: the one conversion between them.

Pixels in the library are float32 in [0, 1]; files and callers hold 8-bit (0..255) or
16-bit (0..65535) samples. Float to levels: scale by the top level, round to the nearest
level (halves to even, as numpy's rint), clip to [0, top]; NaN becomes 0. Levels to float:
divide by the top level, so a round trip returns every level exactly.
"""

from __future__ import annotations

import numpy as np

_TOP = {8: 255.0, 16: 65535.0}
_DTYPE = {8: np.uint8, 16: np.uint16}


def to_levels(pixels: np.ndarray, bits: int = 8) -> np.ndarray:
    """Float pixels in [0, 1] (any shape) -> uint8 (bits=8) or uint16 (bits=16) levels.

    Works in bands of about 16 MB of float32, so a large photo needs no full-size float copy.
    """
    if bits not in _TOP:
        raise ValueError(f"bits must be 8 or 16, got {bits}")
    top = np.float32(_TOP[bits])
    pixels = np.asarray(pixels)
    out = np.empty(pixels.shape, _DTYPE[bits])
    per_row = max(1, pixels[:1].size)
    rows = max(1, (1 << 22) // per_row)  # bands along the first axis (no copy of a strided view)
    for y in range(0, pixels.shape[0], rows):
        scaled = np.multiply(pixels[y:y + rows], top, dtype=np.float32)
        np.nan_to_num(scaled, copy=False, nan=0.0)
        np.rint(scaled, out=scaled)
        np.clip(scaled, 0, top, out=scaled)
        out[y:y + rows] = scaled
    return out


def from_levels(samples: np.ndarray) -> np.ndarray:
    """uint8 or uint16 samples -> float32 pixels in [0, 1]."""
    if samples.dtype == np.uint8:
        top = _TOP[8]
    elif samples.dtype == np.uint16:
        top = _TOP[16]
    else:
        raise ValueError(f"samples must be uint8 or uint16, got {samples.dtype}")
    pixels = samples.astype(np.float32)
    pixels /= np.float32(top)
    return pixels


def bits_of(samples: np.ndarray) -> int:
    """8 for uint8 samples, 16 for uint16 ones."""
    return {np.dtype(np.uint8): 8, np.dtype(np.uint16): 16}[samples.dtype]
