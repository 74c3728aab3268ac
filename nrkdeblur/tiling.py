"""Tiled processing of images too big to process in one piece.

The image is cut into overlapping tiles of at most `tile` x `tile` pixels; every tile is
processed on its own and the results are blended with feathering windows:

- Along each axis the tiles are spaced evenly, the first flush with the top/left border
  and the last flush with the bottom/right border (shifted back, never shrunk), so that
  neighbours share at least `overlap` pixels. With `align`, starts are multiples of it and
  the last tile may be up to align - 1 pixels longer.
- A tile's window is 1 in its interior and at the image border, and fades out towards
  an inner tile edge across `overlap` pixels: it is 0 on the outermost quarter of the
  overlap, rises along a raised cosine across the middle half and is 1 beyond. The pixels
  nearest a tile edge, where a network sees the least context, are thus never used, and
  for any fn whose output at a pixel depends only on inputs within overlap // 4 pixels
  (a convolution with a kernel of up to 2 * (overlap // 4) + 1 pixels, say) the tiled
  result equals the untiled one up to float rounding.
- The windows are separable and the tiles form a grid, so the windows are normalised
  per axis to sum to exactly 1 at every pixel: the output is a plain weighted sum, and
  memory is the output plus the work of one tile.
"""

from __future__ import annotations

import math
from collections.abc import Callable
import torch
from torch import Tensor


def _check_sizes(tile: int, overlap: int) -> None:
    if tile < 1 or overlap < 0 or overlap >= tile:
        raise ValueError(f"need tile >= 1 and 0 <= overlap < tile, got tile={tile}, overlap={overlap}")


def tile_spans(size: int, tile: int, overlap: int, align: int = 1) -> list[tuple[int, int]]:
    """(start, stop) of tiles covering 0..size, evenly spaced, the last one ending at size;
    the tiles of an image are every pair of a row span and a column span (run_tiled).

    Neighbours overlap by at least `overlap` px; a single tile when size <= tile. Every
    start is a multiple of `align`, so a multi-scale network samples each tile on the same
    pixel grid as the whole image. When `tile` is a multiple of `align` too, the tiles are
    planned over the size rounded up to the grid, so the last tile ends where the whole
    image's padding to the grid ends: it is up to align - 1 px shorter than `tile`, and padded
    to the grid as the network pads the whole image, it has the same shape as every other
    tile (one shape per photo: a runtime's memory arena is reused). Otherwise the last tile
    reaches back to an aligned start and may be up to align - 1 px longer than `tile`.
    """
    _check_sizes(tile, overlap + align - 1)
    if size <= tile:
        return [(0, size)]
    end = -(-size // align) * align if tile % align == 0 else size
    if end <= tile:
        return [(0, size)]
    n = math.ceil((end - tile) / (tile - overlap - (align - 1))) + 1
    starts = [i * (end - tile) // (n - 1) // align * align for i in range(n)]
    if end != size:
        starts[-1] = end - tile
    return [(s, s + tile) for s in starts[:-1]] + [(starts[-1], size)]


def _ramp(overlap: int) -> Tensor:
    """Rising half of a feathering window: `overlap` weights from ~0 up to ~1 (float32).

    0 on the first overlap // 4 px, a raised cosine across the middle, 1 on the last
    overlap // 4 px. Symmetric: ramp[i] + ramp[overlap - 1 - i] == 1.
    """
    margin = overlap // 4
    n = overlap - 2 * margin
    t = (torch.arange(n, dtype=torch.float64) + 0.5) / n
    rise = (0.5 - 0.5 * torch.cos(math.pi * t)).float()
    return torch.cat([torch.zeros(margin), rise, torch.ones(margin)])


def _window_1d(length: int, overlap: int, at_start: bool, at_end: bool) -> Tensor:
    """Feathering window along one axis: 1 inside and at image borders, ramps at inner edges."""
    w = torch.ones(length)
    n = min(overlap, length)
    if not at_start:
        w[:n] = torch.minimum(w[:n], _ramp(overlap)[:n])
    if not at_end:
        w[length - n:] = torch.minimum(w[length - n:], _ramp(overlap).flip(0)[overlap - n:])
    return w


def axis_weights(size: int, tile: int, overlap: int, align: int = 1) -> list[tuple[int, int, Tensor]]:
    """(start, stop, weights) of the tiles along one axis; the weights sum to 1 at every pixel."""
    spans = tile_spans(size, tile, overlap, align)
    windows = [_window_1d(b - a, overlap, a == 0, b == size) for a, b in spans]
    total = torch.zeros(size)
    for (a, b), w in zip(spans, windows):
        total[a:b] += w
    return [(a, b, w / total[a:b]) for (a, b), w in zip(spans, windows)]


def tile_size(tile: int | tuple[int, int]) -> tuple[int, int]:
    """(height, width) of a tile given as a side or as (height, width)."""
    return (tile, tile) if isinstance(tile, int) else tile


def run_tiled(
    fn: Callable[[Tensor], Tensor], x: Tensor, tile: int | tuple[int, int], overlap: int,
    on_tile: Callable[[int, int], None] | None = None, align: int = 1,
) -> Tensor:
    """Apply fn to x tile by tile and blend the results; tile: side or (height, width).

    x: [1, C, H, W] on any device. fn maps a tile [1, C, h, w] (a view of x, on x's
    device) to [1, K, h, w] for any K. Returns [1, K, H, W] float32 on the CPU: each
    tile's output is moved to the CPU and added in with its normalised window, so memory
    is the output plus one tile's work. on_tile(done, total) is called after every tile.
    align: tile starts are multiples of it.
    The result is detached from autograd: this is for inference. Errors in fn propagate.
    """
    if x.dim() != 4 or x.shape[0] != 1:
        raise ValueError(f"x must be [1, C, H, W], got {list(x.shape)}")
    height, width = x.shape[-2:]
    tile_h, tile_w = tile_size(tile)
    rows = axis_weights(height, tile_h, overlap, align)
    cols = axis_weights(width, tile_w, overlap, align)
    total = len(rows) * len(cols)
    out: Tensor | None = None
    done = 0
    for y0, y1, wy in rows:
        for x0, x1, wx in cols:
            y = fn(x[:, :, y0:y1, x0:x1])
            if y.dim() != 4 or y.shape[0] != 1 or tuple(y.shape[-2:]) != (y1 - y0, x1 - x0):
                raise ValueError(f"fn must return [1, K, {y1 - y0}, {x1 - x0}], got {list(y.shape)}")
            y = y.detach().to("cpu", torch.float32)
            if out is None:  # in the tiles' memory layout (channels-last from inference.py)
                fmt = torch.contiguous_format if y.is_contiguous() else torch.channels_last
                out = torch.zeros(1, y.shape[1], height, width).contiguous(memory_format=fmt)
            elif y.shape[1] != out.shape[1]:
                raise ValueError(f"fn returned {y.shape[1]} channels, earlier tiles had {out.shape[1]}")
            out[:, :, y0:y1, x0:x1].addcmul_(y, wy[:, None] * wx[None, :])
            done += 1
            if on_tile is not None:
                on_tile(done, total)
    assert out is not None
    return out
