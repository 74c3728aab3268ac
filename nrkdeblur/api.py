"""nrkdeblur from Python: load the model once, then deblur arrays, PIL images and files.

    import nrkdeblur

    deblurrer = nrkdeblur.load()                          # shipped weights; CUDA if there is one
    sharp = deblurrer.deblur(image)                       # numpy array or PIL image: same kind back
    sharp, defocus = deblurrer.deblur(image, defocus_map=True)
    nrkdeblur.deblur_file("in.jpg", "out.jpg")            # what `nrkdeblur in.jpg -o out.jpg` does
    nrkdeblur.report("shoot/", "sharp/", "sharp/report.html")  # a batch and its before/after page

Arrays and files take the same road as the command line: pipeline.DeblurOptions holds the
settings (by concern: inference, output, engine), inference.deblur tiles and runs the
network, pipeline.process_one reads and writes files. Nothing here imports click or rich.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import numpy as np
from PIL import Image

from .batch import plan
from .atomic import remove_stale_temp_files
from .errors import ImageError
from .imageio import pil_samples
from .inference import MIN_TILE, deblur, resolve_device
from .levels import bits_of, from_levels, to_levels
from .model import NRKNet
from .pipeline import (DeblurOptions, SilentReport, Summary, open_default_weights, output_folders, process_batch,
                       process_one)
from .restraint import mask_from_array, read_mask
from .settings import override
from .weights import model_weights

_KEEP_INFO = ("icc_profile", "exif", "dpi")  # what a PIL image gets back of its metadata


class Deblurrer:
    """A loaded NRKNet with its settings; make one with `nrkdeblur.load()`.

    model: the network, on its device. options: the settings every call starts from
    (weights, device and half are those it was loaded with).
    """

    def __init__(self, model: NRKNet, options: DeblurOptions):
        self.model = model
        self.options = options

    def deblur(self, image, strength: float = 1.0, tile: int | None = None, defocus_map: bool = False,
               linear: bool = False, protect: float | None = None, mask=None, protect_keep: float = 0.0):
        """Deblur a photo given as a numpy array or a PIL image.

        image: numpy array HxW, HxWx1 (grey), HxWx3 (RGB), HxWx2 or HxWx4 (the last channel
            is alpha, passed through unchanged), uint8, uint16 or float (finite, in 0..1:
            other values raise ValueError); or a PIL image (modes L, LA, RGB, RGBA, I;16 are
            kept; P, 1, CMYK... come back as RGB(A) or L). Anything else raises TypeError.
            The result has the input's kind, shape, dtype and (PIL) mode.
        strength: how much of the network's change to keep: 0 = the input, 1 = the output.
        tile: tile side in pixels, at least MIN_TILE (384); None chooses from the memory free.
        defocus_map: also return the defocus scale, an HxW float32 array in pixels.
        linear: the pixels are linear light rather than sRGB (pipeline.DeblurOptions).
        protect: leave regions whose measured blur exceeds this many px as they are (--protect).
        mask: where to deblur, white to black (--mask): a file path, a PIL image or an array
            HxW or HxWxC (bool, uint8, uint16 or float 0..1; RGB read as grey), the image's size.
        protect_keep: the share of the change kept above protect instead (--protect-keep).
        Returns the deblurred image, or (image, defocus map) with defocus_map.
        """
        if not isinstance(image, (np.ndarray, Image.Image)):
            kind = type(image)
            name = kind.__qualname__ if kind.__module__ == "builtins" else f"{kind.__module__}.{kind.__qualname__}"
            raise TypeError(f"image must be a numpy array or a PIL image, not {name}")
        if tile is not None and tile < MIN_TILE:
            raise ValueError(f"tile must be at least {MIN_TILE} pixels, not {tile}")
        options = dataclasses.replace(self.options.inference, strength=strength, tile=tile, linear=linear,
                                      protect=protect, protect_keep=protect_keep, mask=None)
        if isinstance(image, Image.Image):
            color, alpha, bits = pil_samples(image)
            pixels = from_levels(color)
        else:
            pixels, alpha, bits, restore_shape = _split_array(image)
        if pixels.size == 0:
            raise ValueError(f"image is empty ({pixels.shape[1]} x {pixels.shape[0]} pixels)")
        result = deblur(self.model, pixels, options, defocus_map=defocus_map, mask=_mask(mask))
        out = np.clip(result.image, 0.0, 1.0)
        if isinstance(image, Image.Image):
            restored = _to_pil(to_levels(out, bits), alpha, image)
        else:
            out = out.astype(image.dtype) if bits is None else to_levels(out, bits)
            if alpha is not None:
                out = np.concatenate([out, alpha[..., None]], axis=2)
            restored = out.reshape(restore_shape)
        return (restored, result.defocus_map) if defocus_map else restored

    def deblur_file(self, src: str | os.PathLike, dst: str | os.PathLike | None = None, **options) -> Path:
        """Deblur one file as the command line does and return the output's path.

        dst: a file, a folder, or None for SRC's folder as NAME_sharp.EXT (batch.plan's
        rules). options: fields of pipeline.DeblurOptions named alone (strength, tile,
        format, quality, overwrite, defocus_map_dir, coefficients_dir, linear, protect, protect_keep,
        mask: a file path ...). Raises
        ImageError for a file that cannot be read or written, FileExistsError if the output
        exists and not overwrite.
        """
        opts = override(self.options, **options)
        jobs, problems = plan([Path(src)], None if dst is None else Path(dst), format=opts.output.format,
                              map_dirs=opts.output.map_dirs)
        if problems:
            raise ImageError(f"{problems[0].path}: {problems[0].reason}")
        job = jobs[0]
        if job.output.exists() and not opts.output.overwrite:
            raise FileExistsError(f"{job.output}: exists (pass overwrite=True to replace it)")
        for folder in output_folders(jobs, opts):
            remove_stale_temp_files(folder)
        process_one(self.model, job, opts, SilentReport())
        return job.output


def load(weights: str | os.PathLike | None = None, device: str = "auto", half: bool = False,
         model: str | os.PathLike | None = None) -> Deblurrer:
    """Load NRKNet once for many photos.

    model (or weights, the same): a shipped model's name (weights.SHIPPED) or a
    .safetensors file from `nrkdeblur train` or `convert`; None for the default model.
    device: "auto" (CUDA if available, else CPU), "cpu", "cuda", "cuda:1", "mps".
    half: float16 on a GPU.
    """
    dev = resolve_device(str(device))
    options = DeblurOptions.of(weights=_weights(weights, model), device=str(dev), half=half)
    return Deblurrer(open_default_weights(options.inference.weights, dev), options)


def deblur_file(src: str | os.PathLike, dst: str | os.PathLike | None = None, **options) -> Path:
    """Load the model and deblur one file (Deblurrer.deblur_file); options: fields of
    pipeline.DeblurOptions, weights (or model, as for load), device and half included. For
    many files, load() once and call its deblur_file."""
    opts = DeblurOptions.of(**_model_options(options))
    deblurrer = load(opts.inference.weights, opts.inference.device, opts.inference.half)
    deblurrer.options = override(opts, device=deblurrer.options.inference.device)
    return deblurrer.deblur_file(src, dst)


def report(inputs: str | os.PathLike | list[str | os.PathLike], output: str | os.PathLike | None,
           page: str | os.PathLike, **options) -> Summary:
    """Deblur a batch as `nrkdeblur INPUTS -o OUTPUT --report PAGE` does and write its page.

    inputs: a file or folder, or a list of them. output: a folder (or a file, for one
    input), None to write beside the inputs (batch.plan's rules). page: the report's HTML
    file; its previews go into the folder beside it (report.html: report_files/).
    options: fields of pipeline.DeblurOptions (recursive, strength, tile, engine="ray" ...).
    As on the command line, outputs that exist are skipped and still shown on the page,
    and a photo that fails is listed there: failures are in the returned pipeline.Summary,
    not raised. Raises WeightsError for a missing or bad weights file.
    """
    from .report_data import write_report

    sources = [inputs] if isinstance(inputs, (str, os.PathLike)) else list(inputs)
    opts = DeblurOptions.of(**_model_options(options), report_page=Path(page))
    engine = None
    if opts.engine.engine == "ray":
        from .cluster import ray_engine as engine
    summary = process_batch([Path(p) for p in sources], None if output is None else Path(output), opts, SilentReport(),
                            engine)
    write_report(opts.output.report_page, summary, opts.output.defocus_map_dir, opts.inference.linear)
    return summary


def _weights(weights: str | os.PathLike | None, model: str | os.PathLike | None) -> Path | None:
    """The weights file that `weights` or `model` (one of them, or neither) names."""
    if weights is not None and model is not None:
        raise ValueError("pass model or weights, not both")
    return model_weights(model if model is not None else weights)


def _model_options(options: dict) -> dict:
    """Options with `model` / `weights` (a shipped model's name or a file) as a weights path."""
    options = dict(options)
    options["weights"] = _weights(options.pop("weights", None), options.pop("model", None))
    return options


def _mask(mask) -> np.ndarray | None:
    """Deblurrer.deblur's mask as restraint.py's HxW float32: from a path, a PIL image or an array."""
    if mask is None:
        return None
    if isinstance(mask, (str, os.PathLike)):
        return read_mask(mask)
    if isinstance(mask, Image.Image):
        color, _, _ = pil_samples(mask)
        return mask_from_array(color)
    return mask_from_array(mask)


def _split_array(a: np.ndarray) -> tuple[np.ndarray, np.ndarray | None, int | None, tuple[int, ...]]:
    """(float pixels HxWxC (C = 1 or 3), alpha or None, bits (None for floats), shape) of an array."""
    shape = a.shape
    if a.ndim == 2:
        a = a[..., None]
    if a.ndim != 3 or a.shape[2] not in (1, 2, 3, 4):
        raise ValueError(f"image must be HxW, HxWx1, HxWx2, HxWx3 or HxWx4, got shape {shape}")
    alpha = a[..., -1] if a.shape[2] in (2, 4) else None
    color = a[..., :-1] if alpha is not None else a
    if a.dtype in (np.uint8, np.uint16):
        return from_levels(color), alpha, bits_of(a), shape
    if np.issubdtype(a.dtype, np.floating):
        if color.size and not np.isfinite(color).all():
            raise ValueError("image holds NaN or infinite values")
        if color.size and (color.min() < 0 or color.max() > 1):
            raise ValueError(f"a float image must be in [0, 1], this one spans {color.min():g} to {color.max():g} "
                             "(divide 8-bit levels by 255)")
        return np.ascontiguousarray(color, dtype=np.float32), alpha, None, shape
    raise ValueError(f"image must be uint8, uint16 or float (0..1), got {a.dtype}")


def _to_pil(samples: np.ndarray, alpha: np.ndarray | None, like: Image.Image) -> Image.Image:
    """A PIL image of uint8/uint16 samples HxWxC and alpha, with `like`'s metadata."""
    if samples.dtype == np.uint16:  # 16-bit grey, the only 16-bit mode PIL has
        im = Image.fromarray(samples[..., 0])
        if im.mode != "I;16":
            im = im.convert("I;16")
    else:
        channels = samples if alpha is None else np.dstack([samples, alpha])  # L, LA, RGB or RGBA
        im = Image.fromarray(channels[..., 0] if channels.shape[2] == 1 else channels)
    im.info.update({k: like.info[k] for k in _KEEP_INFO if k in like.info})
    return im
