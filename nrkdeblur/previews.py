"""What a batch report shows of one photo: bounded 8-bit sRGB previews, a full-resolution
crop where the output changed most, and the defocus map coloured as by maps.heatmap.

The defocus map is NRKNet's defocus scale in input pixels (maps.py; Quan, Wu, Ji, CVPR
2023, eq. 1-5 give the kernels it is measured from). Here it, the input and the output only
become small pictures: pure numpy and Pillow, arrays in, images and numbers out. Large
photos are read in bands, so no full-size copy is made beyond the arrays given.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from PIL import Image

from .levels import to_levels
from .maps import colorize, nice_max
from .srgb import linear_to_srgb

FIT_SIDE = 1280  # longest side of the whole-photo previews: a screen's width, ~150 kB as WebP
DETAIL = (1024, 768)  # the full-resolution crop (w, h) a large photo's 1:1 view shows sharp
FOCUS = 256  # side of the window whose change decides where the view opens
BLOCK = 16  # change is measured per block of BLOCK x BLOCK pixels
BAND = 256  # rows read at a time


class Previews(NamedTuple):
    """A photo's pictures for the report; geometry in the photo's pixels.

    before, after: the whole photo, longest side at most FIT_SIDE (full size if it fits).
    before_detail, after_detail: the crop `detail` (x, y, w, h) at full resolution, or None
        when the whole-photo previews are already full size.
    focus: (x, y), the centre of the FOCUS-pixel window that changed most.
    defocus: the defocus map coloured from 0 to vmax px, at the previews' size, or None.
    """

    before: Image.Image
    after: Image.Image
    before_detail: Image.Image | None
    after_detail: Image.Image | None
    detail: tuple[int, int, int, int] | None
    focus: tuple[int, int]
    defocus: Image.Image | None
    vmax: float | None


def fit_size(width: int, height: int, side: int = FIT_SIDE) -> tuple[int, int]:
    """(w, h) of a whole-photo preview: the photo's, scaled down to `side` at most."""
    s = min(1.0, side / max(width, height))
    return max(1, round(width * s)), max(1, round(height * s))


def block_means(a: np.ndarray, k: int) -> np.ndarray:
    """Means of k x k blocks of an (H, W[, C]) array, float32; a ragged last row or column
    of blocks averages the pixels it has. Reads `a` in bands."""
    H, W = a.shape[:2]
    starts = np.arange(0, W, k)
    widths = np.diff(np.append(starts, W)).astype(np.float32)
    rows = []
    for y in range(0, H, k):
        band = np.add.reduceat(a[y:y + k].sum(axis=0, dtype=np.float32), starts, axis=0)
        n = widths * min(k, H - y)
        rows.append(band / (n[:, None] if band.ndim == 2 else n))
    return np.stack(rows).astype(np.float32, copy=False)


def change_grid(before: np.ndarray, after: np.ndarray, block: int = BLOCK) -> np.ndarray:
    """Mean absolute difference over channels per block x block block: (ceil(H/b), ceil(W/b))."""
    H = before.shape[0]
    step = max(block, BAND // block * block)
    parts = [block_means(np.abs(after[y:y + step] - before[y:y + step]).mean(axis=2), block)
             for y in range(0, H, step)]
    return np.concatenate(parts)


def best_window(grid: np.ndarray, size: tuple[int, int], bounds: tuple[int, int, int, int],
                block: int = BLOCK) -> tuple[int, int]:
    """Top-left (x, y), in pixels, of the size (w, h) window inside bounds (x, y, w, h) whose
    blocks changed most; the window's middle on a tie (a photo with no change at all)."""
    bx, by, bw, bh = bounds
    w, h = min(size[0], bw), min(size[1], bh)
    ox, oy = bx // block * block, by // block * block  # the grid's origin inside the bounds
    g = grid[oy // block:-(-(by + bh) // block), ox // block:-(-(bx + bw) // block)]
    nw, nh = max(1, min(g.shape[1], w // block)), max(1, min(g.shape[0], h // block))
    s = np.pad(g.astype(np.float64).cumsum(0).cumsum(1), ((1, 0), (1, 0)))
    sums = s[nh:, nw:] - s[:-nh, nw:] - s[nh:, :-nw] + s[:-nh, :-nw]
    if sums.max() - sums.min() <= 1e-12:
        return bx + (bw - w) // 2, by + (bh - h) // 2
    j, i = np.unravel_index(int(np.argmax(sums)), sums.shape)
    x = min(max(ox + i * block + (nw * block - w) // 2, bx), bx + bw - w)
    y = min(max(oy + j * block + (nh * block - h) // 2, by), by + bh - h)
    return int(x), int(y)


def centre_of_change(grid: np.ndarray, window: tuple[int, int, int, int], block: int = BLOCK) -> tuple[int, int]:
    """(x, y), in pixels, of the change-weighted centre of the blocks inside window (x, y, w, h);
    the window's middle where nothing changed."""
    x, y, w, h = window
    g = grid[y // block:-(-(y + h) // block), x // block:-(-(x + w) // block)].astype(np.float64)
    total = g.sum()
    if total <= 0:
        return x + w // 2, y + h // 2
    xs = (x // block + np.arange(g.shape[1])) * block + block / 2  # the blocks' middles
    ys = (y // block + np.arange(g.shape[0])) * block + block / 2
    cx, cy = float(g.sum(0) @ xs / total), float(g.sum(1) @ ys / total)
    return int(min(max(round(cx), x), x + w - 1)), int(min(max(round(cy), y), y + h - 1))


def to_display(pixels: np.ndarray, linear: bool) -> np.ndarray:
    """Float pixels (H, W, C) -> 8-bit sRGB levels (H, W) for grey, (H, W, 3) for colour."""
    if linear:
        pixels = linear_to_srgb(pixels)
    levels = to_levels(pixels, 8)
    return levels[..., 0] if levels.shape[2] == 1 else levels


def alpha_levels(alpha: np.ndarray) -> np.ndarray:
    """An alpha channel as 8-bit levels (16-bit ones rounded)."""
    if alpha.dtype == np.uint16:
        return ((alpha.astype(np.uint32) + 128) // 257).astype(np.uint8)
    return alpha.astype(np.uint8, copy=False)


def picture(pixels: np.ndarray, alpha: np.ndarray | None, linear: bool, size: tuple[int, int] | None = None) -> Image.Image:
    """An 8-bit image of float pixels (and alpha), resized to size (w, h) if given: averaged
    in k x k blocks first (in the file's light), k as large as keeps it at least that size."""
    if size is not None:
        k = max(1, min(pixels.shape[1] // size[0], pixels.shape[0] // size[1]))
        if k > 1:
            pixels = block_means(pixels, k)
            alpha = None if alpha is None else np.rint(block_means(alpha, k)).astype(alpha.dtype)
    im = Image.fromarray(to_display(pixels, linear))
    if alpha is not None:
        im.putalpha(Image.fromarray(alpha_levels(alpha)))
    if size is not None and im.size != size:
        im = im.resize(size, Image.LANCZOS)
    return im


def defocus_picture(radius: np.ndarray, size: tuple[int, int]) -> tuple[Image.Image, float]:
    """The defocus map coloured from 0 to nice_max(radius) px (maps.heatmap's colours), at size."""
    vmax = nice_max(radius)
    k = max(1, min(radius.shape[1] // size[0], radius.shape[0] // size[1]))
    small = block_means(radius, k) if k > 1 else radius
    im = Image.fromarray(colorize(small, vmax))
    return (im.resize(size, Image.BILINEAR) if im.size != size else im), vmax


def make_previews(before: np.ndarray, after: np.ndarray, alpha: np.ndarray | None = None,
                  radius: np.ndarray | None = None, linear: bool = False) -> Previews:
    """The report's pictures of one photo: before and after are (H, W, C) float pixels in
    [0, 1] (linear light with `linear`), alpha (H, W) uint8/uint16 or None, radius the
    defocus map (H, W) in pixels or None."""
    if before.shape != after.shape:
        raise ValueError(f"the input is {before.shape[1]} x {before.shape[0]} px but the output "
                         f"{after.shape[1]} x {after.shape[0]} px")
    H, W = before.shape[:2]
    grid = change_grid(before, after)
    size = fit_size(W, H)
    detail = None
    bounds = (0, 0, W, H)
    if size != (W, H):
        x, y = best_window(grid, DETAIL, bounds)
        detail = (x, y, min(DETAIL[0], W), min(DETAIL[1], H))
        bounds = detail
    fx, fy = best_window(grid, (FOCUS, FOCUS), bounds)
    focus = centre_of_change(grid, (fx, fy, min(FOCUS, bounds[2]), min(FOCUS, bounds[3])))
    crops: list[Image.Image | None] = [None, None]
    if detail is not None:
        x, y, w, h = detail
        crops = [picture(p[y:y + h, x:x + w], None if alpha is None else alpha[y:y + h, x:x + w], linear)
                 for p in (before, after)]
    heat, vmax = defocus_picture(radius, size) if radius is not None else (None, None)
    return Previews(picture(before, alpha, linear, size), picture(after, alpha, linear, size), crops[0], crops[1],
                    detail, focus, heat, vmax)
