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
from typing import Callable, Iterator, NamedTuple, Protocol

import numpy as np
import torch
from PIL import Image
from safetensors.torch import save as safetensors_bytes

from .batch import EXTENSION_OF_FORMAT, Job, plan
from .atomic import atomic_write, remove_stale_temp_files
from .errors import ImageError
from .imageio import read_photo, write_photo
from .errors import SettingsError
from .inference import InferenceOptions, deblur, resolve_device
from .maps import atom_sheet, heatmap
from .model import NRKNet
from .restraint import read_mask, size_mismatch
from .settings import override
from .weights import CONFIG_KEY, WeightsError, default_weights, load_model


class Report(Protocol):
    def start(self, total: int) -> None: ...
    def file_done(self) -> None: ...
    def tile(self, done: int, total: int) -> None: ...
    def note(self, message: str) -> None: ...
    def error(self, path: Path, reason: str) -> None: ...


class SilentReport:
    """A Report that reports nothing: for the Python API, which raises errors to its caller,
    and for Ray actors, whose outcomes the driver reports."""

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
    # the jobs with an output, in the plan's order: "done" (by this run) or "skipped" (it existed)
    finished: tuple[tuple[Job, str], ...] = ()


def open_default_weights(path: Path | None, device: torch.device) -> NRKNet:
    if path is None:
        path = default_weights()
        if not path.is_file():
            raise WeightsError(f"{path}: the shipped weights are missing; reinstall or pass --weights")
    return load_model(path, device)


@dataclass(frozen=True)
class OutputOptions:
    """Which files a batch writes, and how.

    Args:
        recursive: include subfolders of input folders (their relative paths are kept).
        format: output format (jpeg, png, tiff, webp, bmp); None keeps the input's.
        quality: JPEG / WebP quality.
        overwrite: replace outputs that exist (otherwise they are skipped: resume).
        defocus_map_dir: where to write NAME_defocus.png / .tiff (None: no maps).
        coefficients_dir: where to write the coefficient maps and atoms (None: none).
        report_page: the batch's report page; each photo's previews go into the folder
            beside it (report_data.py), the page itself is written after the batch (None: none).
    """

    recursive: bool = False
    format: str | None = None
    quality: int = 95
    overwrite: bool = False
    defocus_map_dir: Path | None = None
    coefficients_dir: Path | None = None
    report_page: Path | None = None

    def __post_init__(self) -> None:
        if self.format is not None and self.format not in EXTENSION_OF_FORMAT:
            raise SettingsError(f"format must be one of {', '.join(sorted(EXTENSION_OF_FORMAT))}, not {self.format!r}")
        if not 1 <= self.quality <= 100:
            raise SettingsError(f"quality must be between 1 and 100, not {self.quality}")

    @property
    def maps(self) -> bool:
        return self.defocus_map_dir is not None or self.coefficients_dir is not None

    @property
    def map_dirs(self) -> tuple[Path, ...]:
        """The folders maps are written to (none: no maps)."""
        return tuple(d for d in (self.defocus_map_dir, self.coefficients_dir) if d is not None)


@dataclass(frozen=True)
class EngineOptions:
    """Where and how a batch runs.

    Args:
        engine: "local" (this process) or "ray" (actors on a Ray cluster, cluster.py).
        ray_address: the Ray cluster to join (None: $RAY_ADDRESS, else a local instance).
        workers: Ray actors, each loading the model once (None: one per GPU, or one per
            four CPUs when the cluster has no GPU).
        debug: let exceptions through instead of reporting them per file.
    """

    engine: str = "local"
    ray_address: str | None = None
    workers: int | None = None
    debug: bool = False


@dataclass(frozen=True)
class DeblurOptions:
    """Everything a batch of photos is deblurred with, in one value, by concern.

    The local batch, the Ray engine and the Python API all pass one of these down to
    process_one, so every way of running nrkdeblur deblurs a photo the same way. Its fields
    are named alone across the three sections (settings.override): DeblurOptions.of(
    strength=0.5, format="png").
    """

    inference: InferenceOptions = InferenceOptions()
    output: OutputOptions = OutputOptions()
    engine: EngineOptions = EngineOptions()

    @staticmethod
    def of(**fields) -> "DeblurOptions":
        """Options from fields named alone: inference, output and engine settings alike."""
        return override(DeblurOptions(), **fields)


def process_batch(inputs: list[Path], output: Path | None, options: DeblurOptions, report: Report,
                  engine: "Engine | None" = None) -> Summary:
    """Plan, skip what exists, then deblur and write every photo with `engine`
    (default: local_engine, this process, the model loaded once; cluster.ray_engine runs
    the same on Ray)."""
    return process_jobs(inputs, output, options, report, engine or local_engine)


class Outcome(NamedTuple):
    """What became of one job: its megapixels when done, else why it failed."""

    megapixels: float
    reason: str | None = None


# An engine turns the jobs left to do into (job, outcome) pairs as they finish. It gets
# ready (loads the model, starts workers) before it returns: the progress bar starts after.
Engine = Callable[[list[Job], DeblurOptions, Report], Iterator[tuple[Job, Outcome]]]


def process_jobs(inputs: list[Path], output: Path | None, options: DeblurOptions, report: Report,
                 engine: Engine) -> Summary:
    """The batch around an engine: plan, report problems, skip what exists, count and time."""
    start = time.perf_counter()
    out = options.output
    jobs, problems = plan(inputs, output, out.recursive, out.format, out.map_dirs, out.overwrite)
    failed = [(p.path, p.reason) for p in problems]
    for path, reason in failed:
        report.error(path, reason)
    todo, finished = [], {}
    for job in jobs:
        if job.output.exists() and not out.overwrite:
            report.note(f"skip {job.source}: {job.output} exists (use --overwrite)")
            finished[job] = "skipped"
        else:
            todo.append(job)
    skipped = len(jobs) - len(todo)
    for folder in sorted(output_folders(jobs, options)):
        for path in remove_stale_temp_files(folder):
            report.note(f"removed {path}, left by an earlier run that was killed")
    if options.inference.mask is not None and todo:  # a mask that cannot be read: refused before any work
        read_mask(options.inference.mask)
    outcomes = engine(todo, options, report) if todo else iter(())
    report.start(len(todo))
    done, megapixels = 0, 0.0
    for job, outcome in outcomes:
        if outcome.reason is None:
            megapixels += outcome.megapixels
            done += 1
            finished[job] = "done"
        else:
            failed.append((job.source, outcome.reason))
            report.error(job.source, outcome.reason)
        report.file_done()
    return Summary(done, skipped, failed, time.perf_counter() - start, megapixels,
                   tuple((job, finished[job]) for job in jobs if job in finished))


def local_engine(todo: list[Job], options: DeblurOptions, report: Report) -> Iterator[tuple[Job, Outcome]]:
    """One photo after another in this process."""
    model = open_default_weights(options.inference.weights, resolve_device(options.inference.device))
    return ((job, attempt(model, job, options, report)) for job in todo)


def attempt(model: NRKNet, job: Job, options: DeblurOptions, report: Report) -> Outcome:
    """process_one, with the errors a bad file or a full machine raises turned into a reason."""
    try:
        return Outcome(process_one(model, job, options, report))
    except (ImageError, RuntimeError, ValueError, OSError, MemoryError) as e:
        if options.engine.debug:
            raise
        return Outcome(0.0, failure_reason(job, e))


def failure_reason(job: Job, e: Exception) -> str:
    """One line on why a job failed, without the file's name (the report adds it)."""
    if isinstance(e, ImageError):
        return str(e).removeprefix(f"{job.source}: ")
    if isinstance(e, MemoryError) or "memory" in str(e).lower():
        return "out of memory; try a smaller --tile"
    return f"{type(e).__name__}: {e}"


def process_one(model: NRKNet, job: Job, options: DeblurOptions, report: Report) -> float:
    """Deblur one file and write its outputs; returns its megapixels."""
    start = time.perf_counter()
    photo = read_photo(job.source)
    H, W = photo.pixels.shape[:2]
    mask = photo_mask(job, options.inference.mask, H, W)
    out = options.output
    defocus_map = out.defocus_map_dir is not None or out.report_page is not None
    result = deblur(model, photo.pixels, options.inference, defocus_map=defocus_map,
                    coefficients=out.coefficients_dir is not None, on_tile=report.tile, mask=mask)
    stem = job.relative.with_suffix("")
    if out.defocus_map_dir is not None:  # maps first: the photo's output marks the job as done
        write_defocus_map(out.defocus_map_dir / stem.parent, stem.name, result.defocus_map, result.confidence)
    if out.coefficients_dir is not None:
        write_coefficients(out.coefficients_dir / stem.parent, stem.name, model, result.gammas)
    np.clip(result.image, 0.0, 1.0, out=result.image)
    if out.report_page is not None:  # the page's previews, before the output marks the job done
        from .report_data import photo_record, save_record, shown_options

        record = photo_record(out.report_page, job, photo, result.image, result.defocus_map,
                              options.inference.linear, shown_options(options))
    # the output replaces the input pixels, which are freed before encoding (peak memory)
    photo = dataclasses.replace(photo, pixels=result.image)
    del result
    write_photo(job.output, photo, quality=out.quality, format=out.format)
    if out.report_page is not None:
        save_record(out.report_page, job, record, time.perf_counter() - start)
    return H * W / 1e6


def photo_mask(job: Job, path: Path | None, height: int, width: int) -> np.ndarray | None:
    """--mask read for one photo (the same file for every photo of a batch), or an ImageError
    naming the photo when the sizes differ, before any deblurring."""
    if path is None:
        return None
    mask = read_mask(path)
    reason = size_mismatch(mask, height, width, f"the mask {path.name}")
    if reason is not None:
        raise ImageError(f"{job.source}: {reason}")
    return mask


def output_folders(jobs: list[Job], options: DeblurOptions) -> set[Path]:
    """Every folder the jobs write into: their outputs' and their maps' folders."""
    folders = {job.output.parent for job in jobs}
    for root in (options.output.defocus_map_dir, options.output.coefficients_dir):
        if root is not None:
            folders |= {root / job.relative.parent for job in jobs}
    if options.output.report_page is not None:
        from .report_html import assets_folder

        folders.add(assets_folder(options.output.report_page))
    return folders


def write_defocus_map(folder: Path, stem: str, radius: np.ndarray, confidence: np.ndarray | None = None) -> None:
    """NAME_defocus.png (heatmap with a colour bar in pixels), NAME_defocus.tiff (float32),
    and NAME_confidence.png, the confidence as 8-bit grey (255: blur fully visible)."""
    folder.mkdir(parents=True, exist_ok=True)
    if confidence is not None:
        grey = Image.fromarray(np.rint(np.clip(confidence, 0, 1) * 255).astype(np.uint8), mode="L")
        atomic_write(folder / f"{stem}_confidence.png", lambda f: grey.save(f, format="PNG"))
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

