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
from typing import NamedTuple, Protocol

import numpy as np
import torch
from PIL import Image
from safetensors.torch import save as safetensors_bytes

from .batch import Job, plan
from .imageio import ImageError, atomic_write, read_photo, write_photo
from .inference import choose_tile, deblur
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


def process_batch(inputs: list[Path], output: Path | None, *, recursive: bool, fmt: str | None, quality: int,
                  overwrite: bool, weights: Path | None, device: torch.device, half: bool, tile: int | None,
                  overlap: int, defocus_dir: Path | None, coef_dir: Path | None, report: Report,
                  linear: bool = False, debug: bool = False) -> Summary:
    start = time.perf_counter()
    jobs, problems = plan(inputs, output, recursive, fmt, maps=defocus_dir is not None or coef_dir is not None)
    failed = [(p.path, p.reason) for p in problems]
    for path, reason in failed:
        report.error(path, reason)
    todo = []
    for job in jobs:
        if job.output.exists() and not overwrite:
            report.note(f"skip {job.source}: {job.output} exists (use --overwrite)")
        else:
            todo.append(job)
    skipped = len(jobs) - len(todo)
    model = open_default_weights(weights, device) if todo else None
    report.start(len(todo))
    done, megapixels = 0, 0.0
    for job in todo:
        try:
            megapixels += process_one(model, job, fmt, quality, half, tile, overlap, defocus_dir, coef_dir, report,
                                      linear)
            done += 1
        except ImageError as e:
            if debug:
                raise
            failed.append((job.source, str(e).removeprefix(f"{job.source}: ")))
            report.error(job.source, failed[-1][1])
        except (RuntimeError, ValueError, OSError, MemoryError) as e:
            if debug:
                raise
            memory = isinstance(e, MemoryError) or "memory" in str(e).lower()
            reason = "out of memory; try a smaller --tile" if memory else f"{type(e).__name__}: {e}"
            failed.append((job.source, reason))
            report.error(job.source, reason)
        report.file_done()
    return Summary(done, skipped, failed, time.perf_counter() - start, megapixels)


def process_one(model: NRKNet, job: Job, fmt: str | None, quality: int, half: bool, tile: int | None,
                overlap: int, defocus_dir: Path | None, coef_dir: Path | None, report: Report,
                linear: bool = False) -> float:
    """Deblur one file and write its outputs; returns its megapixels."""
    photo = read_photo(job.source)
    H, W = photo.pixels.shape[:2]
    device = next(model.parameters()).device
    tile = choose_tile(model, H, W, device) if tile is None else (tile, tile)
    if tile is not None:
        overlap = min(overlap, min(tile) // 2)
    result = deblur(model, photo.pixels, tile=tile, overlap=overlap, defocus=defocus_dir is not None,
                    coefficients=coef_dir is not None, half=half, linear=linear, on_tile=report.tile)
    stem = job.relative.with_suffix("")
    if defocus_dir is not None:  # maps first: the photo's output marks the job as done
        write_defocus(defocus_dir / stem.parent, stem.name, result.defocus)
    if coef_dir is not None:
        write_coefficients(coef_dir / stem.parent, stem.name, model, result.gammas)
    # the output replaces the input pixels, which are freed before encoding (peak memory)
    photo = dataclasses.replace(photo, pixels=np.clip(result.image, 0.0, 1.0, out=result.image))
    del result
    write_photo(job.output, photo, quality=quality, format=fmt)
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

