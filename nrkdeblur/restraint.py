"""Where the network's change is kept: the user's grey mask (`--mask`) and the weight that
leaves strongly blurred regions alone (`--protect R`), or keeps only part of their change
(`--protect-keep K`).

Every pixel's output is out = x + k * strength * (net(x) - x), with x the input, net(x) the
network's output (the restoration of NRKNet, Quan et al., CVPR 2023, eq. 10-11) and
k = mask * protect_weight(D), both in [0, 1]:

- mask: the grey value of the mask file at that pixel, 0 (black: the input) to 1 (white:
  deblurred); levels are read as they are stored (8-bit 128 keeps 128/255 of the change),
  an RGB mask by its luma (Pillow's "L": 0.299 R + 0.587 G + 0.114 B); alpha is ignored.
- protect_weight(D): D is the defocus map the network measures in the same forward pass
  (the blur's RMS radius in input pixels, model.NRKNet.defocus_map). 1 where D <= R - w,
  K where D >= R (K = 0, the default: a region measured blurrier than R px is left exactly
  as it is), and a smooth step between: k = K + (1 - K) u^2 (3 - 2u) with u = (R - D) / w.
  PROTECT_WIDTH = w.

The mask travels with the photo through the tiles (inference.deblur appends it as a
channel) and each tile takes the protect weight from its own map, so both work with tiles
as the image and the maps do.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from .errors import ImageError, SettingsError
from .levels import from_levels

# px: the step from "deblur" to "leave as it is" spans 2 px of measured blur below R. Wide
# enough that no hard seam follows the map's contour lines (the shipped map's error after a
# scale fit is about 1 px, README "Quality"); narrow enough that regions 2 px below R are
# deblurred in full.
PROTECT_WIDTH = 2.0

_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)  # Pillow's RGB -> L weights


def protect_weight(radius: Tensor, limit: float, keep: float = 0.0, *, width: float = PROTECT_WIDTH) -> Tensor:
    """The share of the network's change kept where the measured blur is `radius` px
    (any shape): 1 up to limit - width, `keep` from limit on, a smooth step between."""
    u = ((limit - radius) / width).clamp(0.0, 1.0)
    return keep + (1.0 - keep) * (u * u * (3.0 - 2.0 * u))


def change_weight(strength: float, mask: Tensor | None, radius: Tensor | None,
                  protect: float | None, keep: float = 0.0) -> Tensor | float:
    """k * strength of the module docstring for one tile: mask [1, 1, h, w] or None, the
    tile's defocus map radius [1, 1, h, w] (needed with protect), the share `keep` of the
    change kept above protect -> [1, 1, h, w] or a float."""
    weight: Tensor | float = strength
    if mask is not None:
        weight = mask * strength
    if protect is not None:
        weight = protect_weight(radius, protect, keep) * weight
    return weight


def check_protect(protect: float | None, keep: float = 0.0) -> None:
    if protect is not None and not (np.isfinite(protect) and protect > 0):
        raise SettingsError(f"protect must be a blur radius above 0 px, not {protect}")
    if not (np.isfinite(keep) and 0.0 <= keep < 1.0):
        raise SettingsError(f"protect_keep must be a share from 0 up to (not including) 1, not {keep}")
    if keep and protect is None:
        raise SettingsError("protect_keep is the share of change kept above protect's radius: give protect too")


def mask_from_array(a: np.ndarray) -> np.ndarray:
    """A mask given as an array -> HxW float32 in [0, 1]: HxW or HxWxC (C = 1 grey, 2 grey +
    alpha, 3 RGB, 4 RGBA; alpha ignored, RGB by its luma), bool, uint8, uint16 or float
    (0..1, clipped)."""
    a = np.asarray(a)
    if a.ndim == 3 and a.shape[2] in (1, 2, 3, 4):
        a = a[..., :3] if a.shape[2] >= 3 else a[..., :1]
    elif a.ndim != 2:
        raise SettingsError(f"a mask must be HxW or HxWxC with C = 1 to 4, not of shape {a.shape}")
    if a.dtype == bool:
        grey = a.astype(np.float32)
    elif a.dtype in (np.uint8, np.uint16):
        grey = from_levels(a)
    elif np.issubdtype(a.dtype, np.floating):
        grey = np.clip(a.astype(np.float32), 0.0, 1.0)
    else:
        raise SettingsError(f"a mask must be bool, uint8, uint16 or float (0..1), not {a.dtype}")
    if grey.ndim == 3:
        grey = grey[..., 0] if grey.shape[2] == 1 else grey @ _LUMA
    return np.ascontiguousarray(grey, dtype=np.float32)


def read_mask(path: str | os.PathLike) -> np.ndarray:
    """A mask file (any format nrkdeblur reads, 8 or 16 bit, upright by its own EXIF
    orientation) -> HxW float32 in [0, 1]; a file that cannot be read is a SettingsError
    naming it."""
    from .imageio import read_photo

    try:
        pixels = read_photo(Path(path)).pixels
    except ImageError as e:
        raise SettingsError(f"mask {e}") from None
    return pixels[..., 0] if pixels.shape[2] == 1 else np.ascontiguousarray(pixels @ _LUMA)


def size_mismatch(mask: np.ndarray, height: int, width: int, name: str = "the mask") -> str | None:
    """Why a mask of this shape cannot go with a photo of height x width, or None if it can."""
    if mask.shape[:2] == (height, width):
        return None
    h, w = mask.shape[:2]
    return f"{name} is {w} x {h} px, the photo {width} x {height} (after EXIF orientation): they must match"


def mask_tensor(mask: np.ndarray, height: int, width: int) -> Tensor:
    """The mask as a [1, 1, H, W] float32 tensor for a photo of height x width (checked)."""
    reason = size_mismatch(mask, height, width)
    if reason is not None:
        raise SettingsError(reason)
    return torch.from_numpy(np.ascontiguousarray(mask, dtype=np.float32))[None, None]
