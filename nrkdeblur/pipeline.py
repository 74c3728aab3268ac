"""A batch of photos from disk to disk: plan, load the model once, deblur, write, report.

I/O lives here (imageio.py reads and writes), computation in inference.py, and the command
line in cli.py. A failing file is reported and the batch goes on; nothing is written over
an input, and every file is written atomically.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from dataclasses import dataclass
from typing import NamedTuple, Protocol

import numpy as np
import torch
from PIL import Image
from safetensors.torch import save as safetensors_bytes

from .batch import Job, plan
from .imageio import ImageError, atomic_write, read_photo, write_photo
from .inference import DEFAULT_OVERLAP, choose_tile, deblur, resolve_device
from .maps import atom_sheet, heatmap
from .model import NRKNet
from .weights import CONFIG_KEY, WeightsError, default_weights, load_model


class Report(Protocol):
    def start(self, total: int) -> None: ...
    def file_done(self) -> None: ...
    def tile(self, done: int, total: int) -> None: ...
    def note(self, message: str) -> None: ...
    def error(self, path: Path, reason: str) -> None: ...


class Summary(NamedTuple):
    done: int
    skipped: int
    failed: list[tuple[Path, str]]
    seconds: float
    megapixels: float


def open_default_weights(path: Path | None, device: torch.device) -> NRKNet:
    if path is None:
        path = default_weights()
        if not path.is_file():
            raise WeightsError(f"{path}: the shipped weights are missing; reinstall or pass --weights")
    return load_model(path, device)


@dataclass(frozen=True)
class DeblurOptions:
    """How to deblur photos: what the deblur command's options say, in one value.

    The local batch, the Ray engine and the Python API all pass one of these down to
    process_one, so every way of running nrkdeblur deblurs a photo the same way.

    Args:
        recursive: include subfolders of input folders.
        fmt: output format (jpeg, png, tiff, webp, bmp); None keeps the input's.
        quality: JPEG / WebP quality.
        overwrite: replace outputs that exist (otherwise they are skipped: resume).
        weights: a weights file; None for the shipped weights.
        device: "auto", "cpu", "cuda", "cuda:1", "mps" ...
        half: float16 on a GPU.
        backend: "auto", "torch" or "onnxruntime": what runs the network (runtime.py).
        tile: tile side in pixels; None to choose from the memory available.
        overlap: pixels shared by neighbouring tiles.
        defocus_dir: where to write NAME_defocus.png / .tiff (None: no maps).
        coef_dir: where to write the coefficient maps and atoms (None: none).
        linear: the pixels are linear light, not sRGB (inference.deblur).
        strength: 0 returns the input, 1 the network's output; in between blends them.
        debug: let exceptions through instead of reporting them per file.
    """

    recursive: bool = False
    fmt: str | None = None
    quality: int = 95
    overwrite: bool = False
    weights: Path | None = None
    device: str = "auto"
    half: bool = False
    backend: str = "auto"
    tile: int | None = None
    overlap: int = DEFAULT_OVERLAP
    defocus_dir: Path | None = None
    coef_dir: Path | None = None
    linear: bool = False
    strength: float = 1.0
    debug: bool = False

    @property
    def maps(self) -> bool:
        return self.defocus_dir is not None or self.coef_dir is not None


def process_batch(inputs: list[Path], output: Path | None, options: DeblurOptions, report: Report) -> Summary:
    """Plan, skip what exists, load the model once, deblur and write every photo."""
    start = time.perf_counter()
    jobs, problems = plan(inputs, output, options.recursive, options.fmt, maps=options.maps)
    failed = [(p.path, p.reason) for p in problems]
    for path, reason in failed:
        report.error(path, reason)
    todo = []
    for job in jobs:
        if job.output.exists() and not options.overwrite:
            report.note(f"skip {job.source}: {job.output} exists (use --overwrite)")
        else:
            todo.append(job)
    skipped = len(jobs) - len(todo)
    model = open_default_weights(options.weights, resolve_device(options.device)) if todo else None
    report.start(len(todo))
    done, megapixels = 0, 0.0
    for job in todo:
        try:
            megapixels += process_one(model, job, options, report)
            done += 1
        except ImageError as e:
            if options.debug:
                raise
            failed.append((job.source, str(e).removeprefix(f"{job.source}: ")))
            report.error(job.source, failed[-1][1])
        except (RuntimeError, ValueError, OSError, MemoryError) as e:
            if options.debug:
                raise
            memory = isinstance(e, MemoryError) or "memory" in str(e).lower()
            reason = "out of memory; try a smaller --tile" if memory else f"{type(e).__name__}: {e}"
            failed.append((job.source, reason))
            report.error(job.source, reason)
        report.file_done()
    return Summary(done, skipped, failed, time.perf_counter() - start, megapixels)


def process_one(model: NRKNet, job: Job, options: DeblurOptions, report: Report) -> float:
    """Deblur one file and write its outputs; returns its megapixels."""
    photo = read_photo(job.source)
    H, W = photo.pixels.shape[:2]
    device = next(model.parameters()).device
    overlap = options.overlap
    tile = choose_tile(model, H, W, device, overlap=overlap) if options.tile is None else (options.tile, options.tile)
    if tile is not None:
        overlap = min(overlap, min(tile) // 2)
    result = deblur(model, photo.pixels, tile=tile, overlap=overlap, defocus=options.defocus_dir is not None,
                    coefficients=options.coef_dir is not None, half=options.half, linear=options.linear,
                    strength=options.strength, on_tile=report.tile, backend=options.backend)
    stem = job.relative.with_suffix("")
    if options.defocus_dir is not None:  # maps first: the photo's output marks the job as done
        write_defocus(options.defocus_dir / stem.parent, stem.name, result.defocus)
    if options.coef_dir is not None:
        write_coefficients(options.coef_dir / stem.parent, stem.name, model, result.gammas)
    # the output replaces the input pixels, which are freed before encoding (peak memory)
    photo = dataclasses.replace(photo, pixels=np.clip(result.image, 0.0, 1.0, out=result.image))
    del result
    write_photo(job.output, photo, quality=options.quality, format=options.fmt)
    return H * W / 1e6


def write_defocus(folder: Path, stem: str, radius: np.ndarray) -> None:
    """NAME_defocus.png (heatmap with a colour bar in pixels), NAME_defocus.tiff (float32)."""
    folder.mkdir(parents=True, exist_ok=True)
    png = heatmap(radius)
    atomic_write(folder / f"{stem}_defocus.png", lambda f: png.save(f, format="PNG"))
    tif = Image.fromarray(radius.astype(np.float32), mode="F")
    atomic_write(folder / f"{stem}_defocus.tiff", lambda f: tif.save(f, format="TIFF"))


def write_coefficients(folder: Path, stem: str, model: NRKNet, gammas: list[np.ndarray]) -> None:
    """NAME_coefficients.safetensors (gamma per scale, atoms) and NAME_atoms.png."""
    folder.mkdir(parents=True, exist_ok=True)
    S = len(gammas)
    with torch.no_grad():
        atoms = model.rkr.atoms_per_channel().float().cpu().contiguous()
    tensors = {f"gamma_scale{S - t}": torch.from_numpy(g) for t, g in enumerate(gammas)}
    tensors["atoms"] = atoms
    meta = {CONFIG_KEY: model.config.to_json(),
            "layout": json.dumps({"gamma_scaleN": "[J, H/2^(N-1), W/2^(N-1)], scale1 = full resolution",
                                  "atoms": "[colour groups, J, 2J-1, 2J-1], centred"})}
    path = folder / f"{stem}_coefficients.safetensors"
    atomic_write(path, lambda f: f.write(safetensors_bytes(tensors, metadata=meta)))
    sheet = atom_sheet(atoms.mean(0).numpy())
    atomic_write(folder / f"{stem}_atoms.png", lambda f: sheet.save(f, format="PNG"))

