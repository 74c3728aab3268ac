"""Deblurring one photo: model, tiling and maps together. Arrays in, arrays out, no files.

The model runs on the device its weights are on. Big photos are cut into overlapping tiles
(tiling.py) whose size follows the memory available; each tile returns the deblurred
pixels and, on request, the defocus-scale map and the coefficient maps, all blended the
same way, so maps work with tiling too. `--mask` and `--protect` keep part of the network's
change per pixel (restraint.py), tile by tile.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, NamedTuple

import numpy as np
import torch
from torch import Tensor

from .allocator import active as active_allocator
from .errors import SettingsError
from .model import NRKNet, padded_size
from .restraint import change_weight, check_protect, mask_tensor
from .runtime import resolve_backend, runner_for
from .srgb import linear_to_srgb, srgb_to_linear
from .tiling import run_tiled, tile_size, tile_spans

# Defocus kernels reach ~39 px and the U-Net sees ~16x further at the coarsest scale, so
# tiles share a wide border. Measured with the step-6,750 weights on kodim05, tiles of 2 x
# overlap: max difference to the whole photo 1.18 8-bit levels at overlap 128, 0.52 at 160,
# 0.24 at 192 (tests/test_tiling_model.py keeps it under one level).
DEFAULT_OVERLAP = 192
MIN_TILE = 2 * DEFAULT_OVERLAP


@dataclass(frozen=True)
class InferenceOptions:
    """How the network runs on a photo.

    Args:
        weights: a weights file; None for the shipped weights (read when the model is loaded).
        device: "auto", "cpu", "cuda", "cuda:1", "mps" ... (where the model is loaded).
        half: float16 on a GPU.
        backend: "auto", "torch" or "onnxruntime": what runs the network (runtime.py).
        tile: tile side in pixels; None to choose from the memory available (choose_tile).
        overlap: pixels shared by neighbouring tiles.
        linear: the pixels are linear light, not sRGB (see deblur).
        strength: 0 returns the input, 1 the network's output; in between blends them.
        protect: leave regions whose measured blur exceeds this many px as they are, with a
            smooth step below it (restraint.py); None deblurs every region.
        protect_keep: the share of the network's change kept above protect's radius (0: none,
            the region as it is; 0.5: half the change).
        mask: a grey mask file, white where to deblur, black where to keep the input (read
            by pipeline.process_one; arrays go to deblur's `mask`); None: everywhere.
    """

    weights: Path | None = None
    device: str = "auto"
    half: bool = False
    backend: str = "auto"
    tile: int | None = None
    overlap: int = DEFAULT_OVERLAP
    linear: bool = False
    strength: float = 1.0
    protect: float | None = None
    protect_keep: float = 0.0
    mask: Path | None = None

    def __post_init__(self) -> None:
        check_protect(self.protect, self.protect_keep)
        if self.mask is not None and not isinstance(self.mask, Path):
            if not isinstance(self.mask, (str, os.PathLike)):
                raise SettingsError("mask must be a file path here; Deblurrer.deblur also takes an array")
            object.__setattr__(self, "mask", Path(self.mask))
        if not 0.0 <= self.strength <= 1.0:
            raise SettingsError(f"strength must be between 0 and 1, not {self.strength}")
        if self.overlap < 0:
            raise SettingsError(f"the tile overlap must be 0 or more, not {self.overlap}")
        if self.tile is not None and not 2 * self.overlap <= self.tile:
            raise SettingsError(f"a tile overlap of {self.overlap} is too large for tiles of {self.tile} "
                                "(at most half the tile)")


class Deblurred(NamedTuple):
    image: np.ndarray  # (H, W, C) float32, the deblurred photo, not clipped (may be a strided view)
    defocus_map: np.ndarray | None  # (H, W) float32, the blur's RMS radius in input pixels
    gammas: list[np.ndarray] | None  # coarse to fine, (J, H/2^(S-1-t), W/2^(S-1-t)) float32
    # (H, W) float32 in [0, 1), with the map: how far the photo shows blur at each pixel
    # (map_refine.confidence; 0 on flat sky and walls, where the map is its neighbours')
    confidence: np.ndarray | None = None


def resolve_device(name: str | torch.device) -> torch.device:
    """"auto" (CUDA if available, else CPU) or a torch device name, checked to exist here."""
    if isinstance(name, torch.device):
        return name
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise SettingsError(f"unknown device {name!r} (use auto, cpu, cuda, mps)") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise SettingsError(f"{name}: no CUDA GPU is available here")
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise SettingsError(f"{name}: Apple's Metal backend is not available here")
    return dev


ONNXRUNTIME_MEMORY = 1.4  # ONNX Runtime's working memory per pixel against torch's (measured)
# tiles' pixels against glibc's for the same peak when the command's allocator keeps freed
# pages (allocator.py): 12 MP, 2026-12-04, shipped weights: 1.0 -> 2.57 GB against glibc's
# 1.85 GB; 1.2 -> 1.89 GB, at 65 s against glibc's 90 s and 1.0's 61 s (one run each, in turn)
KEEPING_ALLOCATOR_MEMORY = 1.2


def bytes_per_pixel(model: NRKNet, backend: str = "torch") -> float:
    """Peak working memory of one forward pass per input pixel (measured on CPU for the
    presets, float32; see `nrkdeblur bench`): U-Net activations dominate. ONNX Runtime
    keeps more intermediates alive: for the shipped weights on a 912 x 1168 tile, 1520 B/px
    against torch's 1100 (estimate here 1504), so its tiles are smaller for the same peak."""
    c = model.config
    # the focus head adds nothing: it runs after the U-Net's peak (shipped weights, one 1104 x 1360
    # tile: 1088 B/px with the head, 1140 without)
    torch_bytes = 4.0 * (8 * c.width + 4 * c.num_atoms + 40)
    return torch_bytes * (ONNXRUNTIME_MEMORY if backend == "onnxruntime" else 1.0)


def available_memory(device: torch.device) -> int:
    """Bytes free for the model's working memory on `device`."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free)
    try:
        with open("/proc/meminfo") as f:
            info = {line.split(":")[0]: int(line.split()[1]) * 1024 for line in f}
        return info["MemAvailable"]
    except (OSError, KeyError, ValueError):
        pass
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES")
    except (ValueError, AttributeError, OSError):  # macOS, Windows: assume a modest machine
        return 3 << 30


def choose_tile(model: NRKNet, height: int, width: int, device: torch.device,
                budget: int | None = None, overlap: int = DEFAULT_OVERLAP,
                backend: str = "torch") -> tuple[int, int] | None:
    """Tile (height, width) for this photo, or None to process it whole; backend: the one
    that will run it ("torch" or "onnxruntime", runtime.resolve_backend).

    budget: bytes the forward pass may use; default a third of what is free, at most
    1.5 GiB on the CPU, so a 24 MP photo stays in about the same memory as a 2 MP one.
    Of the grids of tiles that fit the budget, the one that processes the fewest pixels
    in all wins: with a budget that fits a square of 1264, a 4000 x 3000 photo gets 2 x 5
    tiles of 976 x 1616 (15.8 MP processed) rather than 4 x 3 squares of 1264 (19.2 MP).
    """
    if budget is None:
        budget = available_memory(device) // 3
        if device.type == "cpu":
            budget = min(budget, 3 << 29)
    per_pixel = bytes_per_pixel(model, backend)
    if device.type == "cpu" and backend == "torch" and active_allocator() == "mimalloc":
        per_pixel *= KEEPING_ALLOCATOR_MEMORY  # it holds freed blocks the next tile may not reuse
    max_pixels = budget / per_pixel
    if height * width <= max_pixels:
        return None
    m = model.config.multiple

    def lengths(size: int) -> list[tuple[int, int]]:
        """(tiles, shortest tile length) along an axis, for 1, 2, ... tiles."""
        out = [(1, size)]
        for n in range(2, size // MIN_TILE + 2):
            length = -(-(size + (n - 1) * (overlap + m - 1)) // n)
            out.append((n, max(-(-length // m) * m, MIN_TILE)))
        return out

    grids = [(ny * th * nx * tw, (th, tw)) for ny, th in lengths(height) for nx, tw in lengths(width)
             if th * tw <= max_pixels]
    if not grids:
        return (MIN_TILE, MIN_TILE)
    return min(grids)[1]


def tiles_for(model: NRKNet, height: int, width: int, options: InferenceOptions) -> tuple[tuple[int, int] | None, int]:
    """(tile, overlap) for a photo: the options' tile, or one chosen from the memory free for
    the backend that will run it (None: whole); the overlap at most half a tile."""
    device = next(model.parameters()).device
    overlap = options.overlap
    if options.tile is not None:
        tile = (options.tile, options.tile)
    else:
        backend = resolve_backend(options.backend, device)  # its memory per pixel sets the tile
        tile = choose_tile(model, height, width, device, overlap=overlap, backend=backend)
    if tile is not None:
        overlap = min(overlap, min(tile) // 2)
    return tile, overlap


def grid_tiles(model: NRKNet, height: int, width: int, options: InferenceOptions) -> tuple[tuple[int, int] | None, int]:
    """(tile, overlap) as deblur runs them: tiles_for's tile on the model's grid (a multiple
    of its multiple, at least twice it), so tiles start where the whole photo's grid does;
    None when one tile holds the whole photo."""
    tile, overlap = tiles_for(model, height, width, options)
    th, tw = (height, width) if tile is None else tile_size(tile)
    if height <= th and width <= tw:
        return None, overlap
    m = model.config.multiple
    return (max(th // m * m, 2 * m), max(tw // m * m, 2 * m)), overlap


def processed_pixels(model: NRKNet, height: int, width: int, options: InferenceOptions = InferenceOptions()) -> int:
    """Pixels the network processes for a photo of that size, as deblur tiles it: every
    tile's, overlaps included, each padded to the model's multiple as the network pads it
    (the pixels its convolutions run over: bench.py's end-to-end MACs)."""
    m = model.config.multiple
    tile, overlap = grid_tiles(model, height, width, options)
    if tile is None:
        return padded_size(height, m) * padded_size(width, m)
    rows = sum(padded_size(b - a, m) for a, b in tile_spans(height, tile[0], overlap, m))
    cols = sum(padded_size(b - a, m) for a, b in tile_spans(width, tile[1], overlap, m))
    return rows * cols


@torch.inference_mode()
def deblur(model: NRKNet, pixels: np.ndarray, options: InferenceOptions = InferenceOptions(),
           defocus_map: bool = False, coefficients: bool = False,
           on_tile: Callable[[int, int], None] | None = None, mask: np.ndarray | None = None) -> Deblurred:
    """Deblur an (H, W, C) float image in [0, 1], C = 1 or 3, on the model's device.

    options (InferenceOptions): tiles, overlap, backend, half, linear, strength, protect and
    protect_keep.
    Tiles: options.tile, or chosen from the memory free (tiles_for). half: float16 on CUDA
    (ignored elsewhere). linear: the pixels are linear light, not sRGB; each tile is
    sRGB-encoded for the network, which was trained on sRGB photos, and its output decoded
    back (then clipped to [0, 1]). strength, protect and mask: how much of the network's
    change to keep, out = x + k * strength * (net(x) - x) (restraint.py), blended in the
    file's own space (linear when `linear`); mask: (H, W) float32 in [0, 1]
    (restraint.read_mask, mask_from_array), cut into tiles with the photo as a fourth
    channel (a copy of the photo); protect takes k from each tile's own defocus map.
    backend: "torch", "onnxruntime" or "auto" (runtime.py); the torch backend converts the
    model's weights to channels-last layout in place (same numbers, faster convolutions:
    README, "Speed and memory"). defocus_map, coefficients: also return those maps, tiled
    and blended like the image.
    """
    if options.mask is not None and mask is None:
        raise ValueError("options.mask names a file: read it (restraint.read_mask) and pass it as mask")
    H, W, C = pixels.shape
    x = torch.from_numpy(np.ascontiguousarray(pixels, dtype=np.float32)).permute(2, 0, 1)[None]
    if C == 1:
        x = x.expand(1, 3, H, W)
    if mask is not None:  # the mask is cut with the tiles: channel 3
        x = torch.cat([x, mask_tensor(mask, H, W)], dim=1)

    linear, strength, protect = options.linear, options.strength, options.protect
    with_map = defocus_map or protect is not None  # protect reads the map of the same forward pass
    tile, overlap = grid_tiles(model, H, W, options)
    forward = runner_for(model, options.backend, with_map, coefficients, options.half)  # one call per tile

    def fn(t: Tensor) -> Tensor:
        tile_mask = t[:, 3:] if mask is not None else None
        source = t[:, :3].float()
        t = source
        if linear:
            t = torch.from_numpy(linear_to_srgb(t.numpy()))
        y = forward(t)
        if linear:
            y[:, :3] = torch.from_numpy(srgb_to_linear(y[:, :3].numpy()))
        weight = change_weight(strength, tile_mask, y[:, 3:4] if protect is not None else None, protect,
                               options.protect_keep)
        if not (isinstance(weight, float) and weight == 1.0):
            y[:, :3].sub_(source).mul_(weight).add_(source)
        return y

    if tile is None:
        y = fn(x)
        if on_tile is not None:
            on_tile(1, 1)
    else:  # tiles start on the model's grid (multiples of m); border tiles pad as the whole would
        y = run_tiled(fn, x, tile, overlap, on_tile, align=model.config.multiple)
    result = _split(y, model, C, with_map, defocus_map, coefficients)
    if defocus_map:  # refined with the photo as guide, on the whole map so that tiles agree
        from .map_refine import refine_map

        refined = refine_map(result.defocus_map, pixels, options.linear)
        result = result._replace(defocus_map=refined.map, confidence=refined.confidence)
    return result


def _split(y: Tensor, model: NRKNet, channels: int, with_map: bool, defocus_map: bool,
           coefficients: bool) -> Deblurred:
    """deblur's result from the blended outputs y [1, 3 (+1 map) (+S*J), H, W]: the image
    with the input's channels and the maps asked for (with_map: y holds the map)."""
    image = y[0, :3].permute(1, 2, 0).numpy()
    if channels == 1:
        image = image.mean(axis=2, keepdims=True)
    k = 3 + with_map
    radius = y[0, 3].numpy() if defocus_map else None
    gammas = None
    if coefficients:
        J, S = model.config.num_atoms, model.config.num_scales
        gammas = []
        for t in range(S):
            f = 2 ** (S - 1 - t)
            gammas.append(np.ascontiguousarray(y[0, k + t * J : k + (t + 1) * J, ::f, ::f].numpy()))
    return Deblurred(image, radius, gammas)  # a view of y: no copy of a big photo
