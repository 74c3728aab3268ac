"""The `nrkdeblur` command. Thin: parse, call the library, report.

This is the only module that imports click and rich. Library errors (ImageError,
WeightsError, ValueError, OSError) become one-line messages here (`one_line_errors`);
`--debug` shows the traceback instead. Exit status (EXIT_STATUS, shown in `--help`):
0 all done, 1 some files failed or the run failed, 2 usage error (a bad option or
argument, as click reports them), 130 interrupted with Ctrl-C (SIGINT), 143 terminated
with SIGTERM (kill, timeout, a batch scheduler). 130 and 143 are 128 + the signal's
number, what a shell reports for a process the signal ends; SIGTERM is handled like
SIGINT, so an interrupted write leaves no temporary file behind.
"""

from __future__ import annotations

import dataclasses
import json
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import click
import numpy as np
from click.core import ParameterSource
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from . import __version__
from .config import PRESETS, preset
from .batch import EXTENSION_OF_FORMAT
from .inference import DEFAULT_OVERLAP, MIN_TILE
from .imageio import ImageError, atomic_write, list_images
from .weights import WeightsError, convert_official

console = Console(stderr=True, soft_wrap=True)  # one message, one line: never wrapped

EXIT_INTERRUPTED = 128 + signal.SIGINT  # 130
EXIT_TERMINATED = 128 + signal.SIGTERM  # 143
EXIT_STATUS = f"""\b
Exit status:
  0    all done (or nothing left to do)
  1    some files failed (each is named, the others are done) or the run failed
  2    usage error: a bad option, argument or combination of them
  {EXIT_INTERRUPTED:<4} interrupted (Ctrl-C); files finished so far are complete, none half-written
  {EXIT_TERMINATED:<4} terminated by SIGTERM (kill, timeout, a scheduler), cleaned up as for Ctrl-C
"""


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the program is, so that it unwinds as for Ctrl-C."""


def _raise_terminated(signum, frame) -> None:
    raise Terminated()


@contextmanager
def interruptible() -> Iterator[None]:
    """Handle SIGTERM like SIGINT, and end either with one line and exit status 130 / 143.

    While the command runs, SIGTERM raises Terminated (a KeyboardInterrupt) in the main
    thread, so every `finally` and atomic_write's clean-up runs before the exit.
    """
    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    except KeyboardInterrupt as e:
        terminated = isinstance(e, Terminated)
        console.print("terminated (SIGTERM)" if terminated else "interrupted", style="red", highlight=False)
        raise click.exceptions.Exit(EXIT_TERMINATED if terminated else EXIT_INTERRUPTED) from None
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


class DefaultGroup(click.Group):
    """A group whose default command is `deblur`: `nrkdeblur photo.jpg` = `nrkdeblur deblur photo.jpg`.

    Runs every command under `interruptible`: Ctrl-C and SIGTERM exit with 130 and 143.
    """

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ("--help", "-h", "--version"):
            args = ["deblur", *args]
        return super().parse_args(ctx, args)

    def invoke(self, ctx: click.Context):
        with interruptible():
            return super().invoke(ctx)


@click.group(cls=DefaultGroup, context_settings={"help_option_names": ["-h", "--help"]}, epilog=EXIT_STATUS)
@click.version_option(__version__, prog_name="nrkdeblur")
def main() -> None:
    """Turn defocused photos into all-in-focus ones (NRKNet, CVPR 2023).

    \b
    Examples:
      nrkdeblur photo.jpg -o sharp.jpg          deblur one photo
      nrkdeblur shoot/ -o sharp/ -r             a folder, with subfolders
      nrkdeblur IMG_1.CR2 --defocus-map maps/   RAW in, 16-bit TIFF and a defocus heatmap out
      nrkdeblur train --help                    train your own weights
      nrkdeblur eval BLUR/ SHARP/               measure PSNR/SSIM on pairs

    Without a command, `nrkdeblur ARGS` runs `nrkdeblur deblur ARGS`.
    """


def fail(message: str) -> None:
    raise click.ClickException(message)


@contextmanager
def one_line_errors(debug: bool = False) -> Iterator[None]:
    """The library's errors about files and settings as one line and exit status 1
    (the traceback with --debug). Option mistakes are click.UsageError (status 2)."""
    try:
        yield
    except (ImageError, WeightsError, ValueError, OSError) as e:
        if debug:
            raise
        raise click.ClickException(str(e)) from None


def usage_errors(make, *args, **kwargs):
    """make(*args, **kwargs), its ValueError (an option value the library refuses) as a
    usage error: exit status 2, as click gives for the options it checks itself."""
    try:
        return make(*args, **kwargs)
    except ValueError as e:
        raise click.UsageError(str(e)) from None


def rate(megapixels: float, seconds: float) -> str:
    """Throughput with three significant digits ("1.23 MP/s", "0.0112 MP/s"); "" if none."""
    if megapixels <= 0 or seconds <= 0:
        return ""
    return f" ({f'{megapixels / seconds:#.3g}'.rstrip('.')} MP/s)"  # "#": keeps 0.000800's zeros


# --- deblur ------------------------------------------------------------------------

LINEAR_HELP = ("The pixels are linear light (sensor data, a linear TIFF), not sRGB: they are "
               "sRGB-encoded for the network and its output is decoded back to linear. Not for "
               "camera RAW files, which are developed to sRGB.")


@main.command(epilog=EXIT_STATUS)
@click.argument("inputs", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("-o", "--output", type=click.Path(path_type=Path),
              help="Output file (one input) or folder (several inputs or a folder). Default: beside the input as NAME_sharp.EXT.")
@click.option("-r", "--recursive", is_flag=True, help="Include subfolders of input folders.")
@click.option("--format", "fmt", type=click.Choice(sorted(EXTENSION_OF_FORMAT)), help="Output format (default: the input's; RAW gives TIFF).")
@click.option("--quality", type=click.IntRange(1, 100), default=95, show_default=True, help="JPEG/WebP quality.")
@click.option("--overwrite", is_flag=True, help="Replace outputs that exist (default: skip them, so a re-run resumes).")
@click.option("--weights", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="A .safetensors from `nrkdeblur train` or `convert` (default: the shipped weights).")
@click.option("--device", default="auto", show_default=True, help="auto (CUDA if available, else CPU), cpu, cuda, mps.")
@click.option("--half", is_flag=True, help="Half precision on a GPU (faster, slightly less exact).")
@click.option("--backend", type=click.Choice(["auto", "torch", "onnxruntime"]), default="auto", show_default=True,
              help="What runs the network: auto is torch (measured as fast or faster); onnxruntime needs "
                   "the onnx extra (the model is exported once and cached).")
@click.option("--tile", type=click.IntRange(MIN_TILE), help="Tile side in pixels (default: from the memory available; whole when it fits).")
@click.option("--tile-overlap", type=click.IntRange(0), default=DEFAULT_OVERLAP, show_default=True, help="Pixels shared by neighbouring tiles.")
@click.option("--defocus-map", "defocus_dir", type=click.Path(file_okay=False, path_type=Path),
              help="Write NAME_defocus.png (heatmap) and NAME_defocus.tiff (float, pixels) here.")
@click.option("--coefficients", "coef_dir", type=click.Path(file_okay=False, path_type=Path),
              help="Write the coefficient maps and atoms (NAME_coefficients.safetensors, NAME_atoms.png) here.")
@click.option("--linear", is_flag=True, help=LINEAR_HELP)
@click.option("--strength", type=click.FloatRange(0.0, 1.0), default=1.0, show_default=True,
              help="How much of the network's change to keep: 0 = the input, 1 = the network's output.")
@click.option("--engine", type=click.Choice(["local", "ray"]), default="local", show_default=True,
              help="local: this process. ray: a pool of Ray actors on this machine or a cluster (pip install 'nrkdeblur[ray]').")
@click.option("--ray-address", envvar="RAY_ADDRESS", show_envvar=True,
              help="With --engine ray: the cluster to join (default: start a local Ray instance).")
@click.option("--workers", type=click.IntRange(1),
              help="With --engine ray: actors, each loading the model once (default: one per GPU, or per 4 CPUs).")
@click.option("-q", "--quiet", is_flag=True, help="No progress or summary; errors only.")
@click.option("--debug", is_flag=True, help="Show tracebacks for errors.")
def deblur(inputs, output, recursive, fmt, quality, overwrite, weights, device, half, backend, tile, tile_overlap,
           defocus_dir, coef_dir, linear, strength, engine, ray_address, workers, quiet, debug) -> None:
    """Deblur photos: files or folders in, all-in-focus photos out.

    Reads JPEG, PNG, TIFF, WebP, BMP (8 or 16 bit, grey, RGB, RGBA) and camera RAW
    (DNG, CR2, CR3, NEF, ARW, RAF, ORF, RW2). Keeps bit depth, alpha, EXIF and ICC
    profile; applies EXIF orientation. Never writes over an input; every file is written
    to a temporary name first, so an interrupted run leaves no broken image, and re-running
    the same command skips what is done. Outputs that cannot be written (a format
    nothing here writes, such as GIF) are refused before any photo is deblurred.

    \b
    Examples:
      nrkdeblur photo.jpg -o sharp.jpg
      nrkdeblur photo.jpg                           writes photo_sharp.jpg
      nrkdeblur shoot/ -o sharp/ -r                 keeps subfolders
      nrkdeblur shoot/*.CR2 -o sharp/ --defocus-map maps/
      nrkdeblur big.tif -o out.tif --tile 1024      bounded memory
      nrkdeblur shoot/ -o sharp/ -r --engine ray    Ray actors (workers check their own devices)
    """
    from .cluster import ClusterError
    from .pipeline import DeblurOptions, process_batch
    from .runtime import resolve_backend

    if engine == "local":  # the Ray workers check the device and backend on their own machines
        if workers is not None:
            raise click.UsageError("--workers is for --engine ray")
        dev = resolve_device(device)
        usage_errors(resolve_backend, backend, dev)
        device = str(dev)
    options = usage_errors(DeblurOptions, recursive=recursive, fmt=fmt, quality=quality, overwrite=overwrite,
                           weights=weights, device=device,
                           half=half, backend=backend, tile=tile, overlap=tile_overlap, defocus_dir=defocus_dir,
                           coef_dir=coef_dir, linear=linear, strength=strength, debug=debug, engine=engine,
                           ray_address=ray_address, workers=workers)
    with Reporter(quiet) as report, one_line_errors(debug):
        try:
            summary = process_batch(list(inputs), output, options, report)
        except ClusterError as e:
            if debug:
                raise
            fail(str(e))
    if not quiet:
        console.print(f"{summary.done} done, {summary.skipped} skipped, {len(summary.failed)} failed "
                      f"in {summary.seconds:.1f} s{rate(summary.megapixels, summary.seconds)}")
    if summary.failed:
        console.print(f"[red]{len(summary.failed)} failed:[/red]")
        for path, reason in summary.failed:
            console.print(f"  {path}: {reason}", markup=False, highlight=False)
        sys.exit(1)


class Reporter:
    """Rich progress over files and, for tiled photos, over tiles; silent with --quiet."""

    def __init__(self, quiet: bool):
        self.quiet = quiet
        self.bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                            TimeElapsedColumn(), TimeRemainingColumn(), console=console, disable=quiet,
                            transient=False)
        self.files = self.tiles = None

    def __enter__(self) -> "Reporter":
        self.bar.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self.bar.__exit__(*exc)

    def start(self, total: int) -> None:
        self.files = self.bar.add_task("photos", total=total)

    def file_done(self) -> None:
        self.bar.advance(self.files)

    def tile(self, done: int, total: int) -> None:
        if total <= 1:
            return
        if self.tiles is None:
            self.tiles = self.bar.add_task("  tiles", total=total)
        self.bar.update(self.tiles, completed=done, total=total)
        if done == total:
            self.bar.remove_task(self.tiles)
            self.tiles = None

    def note(self, message: str) -> None:
        if not self.quiet:
            console.print(message, markup=False, highlight=False)

    def error(self, path: Path, reason: str) -> None:
        console.print(f"error: {path}: {reason}", markup=False, highlight=False, style="red")


# --- train -------------------------------------------------------------------------

@main.command()
@click.option("--run-dir", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Folder for checkpoints, weights and the validation curve. Re-running with the same folder resumes.")
@click.option("--preset", "preset_name", type=click.Choice(sorted(PRESETS)), default="cpu", show_default=True,
              help="Model size: 'cpu' (the shipped default) or 'paper' (6.1 M parameters, for a GPU).")
@click.option("--width", type=int, help="Override the preset's U-Net width.")
@click.option("--atoms", type=int, help="Override the preset's number of atoms J.")
@click.option("--focus-width", type=click.IntRange(1),
              help="Add a focus head of this many channels: it measures the blur (the defocus map) and holds the "
                   "network's change back where it would do harm; with --init it starts at zero effect.")
@click.option("--focus-only", is_flag=True, help="Train the focus head alone; the rest of the network stays as it is.")
@click.option("--init", "init", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Start from these weights (.safetensors) instead of a fresh model; with a larger --width the "
                   "new channels start at zero effect, so training continues from their quality.")
@click.option("--photos", multiple=True, type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Folder of sharp photos to render synthetic defocus from (repeatable).")
@click.option("--dpdd", type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="DPDD root (train_c/, val_c/, test_c/ with source/ and target/).")
@click.option("--lfdof", type=click.Path(exists=True, file_okay=False, path_type=Path), help="LFDOF root.")
@click.option("--pairs", nargs=2, type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="BLUR_DIR SHARP_DIR: any folders of pairs matched by file name.")
@click.option("--holdout", multiple=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="A file listing photo file names (one per line) that training must not read: the sources of "
                   "frozen evaluation sets, e.g. benchmarks/*/sources.txt (repeatable).")
@click.option("--val", "val_dir", type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Validation pairs: a folder with blur/ and sharp/ (e.g. made by `nrkdeblur render`).")
@click.option("--steps", type=click.IntRange(1), default=100_000, show_default=True, help="Total optimiser steps (sets the schedule).")
@click.option("--batch-size", type=click.IntRange(1), default=8, show_default=True, help="Global batch size.")
@click.option("--crop", type=click.IntRange(1), default=128, show_default=True, help="Training crop size in pixels.")
@click.option("--lr", type=float, default=1e-4, show_default=True, help="Adam learning rate (paper: 1e-4).")
@click.option("--fft-weight", type=float, default=0.1, show_default=True, help="beta: weight of the FFT-L1 term (eq. 13).")
@click.option("--reblur-weight", type=float, default=0.1, show_default=True, help="alpha: weight of the reblurring term (eq. 14).")
@click.option("--radius-weight", type=click.FloatRange(0), default=0.0, show_default=True,
              help="Weight of the defocus-map term: mean absolute error (px) of the map against the true blur.")
@click.option("--soft-source", type=click.FloatRange(0, 1), default=0.0, show_default=True,
              help="Share of synthetic samples whose sharp target has a naturally soft background.")
@click.option("--radius-power", type=click.FloatRange(0.1), default=1.7, show_default=True,
              help="Renderer: the per-sample blur radius is drawn as u**P of the largest; lower = strong blur more often.")
@click.option("--highlights", type=click.FloatRange(0, 1), default=0.0, show_default=True,
              help="Share of synthetic samples whose highlights clip after the blur, as real bokeh does.")
@click.option("--high-iso", type=click.FloatRange(0, 1), default=0.0, show_default=True,
              help="Share of synthetic samples with a high-ISO phone's noise and a strong JPEG.")
@click.option("--log-mse/--mse", "log_mse", default=False, show_default=True,
              help="Squared errors as minus each image's PSNR (ours) instead of plain MSE (paper).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--val-every", type=click.IntRange(1), default=500, show_default=True)
@click.option("--ckpt-every", type=click.IntRange(1), default=100, show_default=True)
@click.option("--workers", type=click.IntRange(0), default=1, show_default=True, help="Data-rendering worker processes.")
@click.option("--stop-after", type=click.IntRange(1), help="Stop after this many steps in all (resume later).")
@click.option("--time-limit", type=click.FloatRange(0, min_open=True),
              help="Stop cleanly after this many minutes: validate, checkpoint and write the weights (resume later).")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda, cuda:1, mps ...")
@click.option("--debug", is_flag=True, help="Show tracebacks.")
@click.pass_context
def train(ctx: click.Context, run_dir: Path, preset_name: str, width, atoms, focus_width, focus_only, init, photos,
          holdout, dpdd, lfdof, pairs, val_dir, steps, batch_size, crop, lr, fft_weight, reblur_weight, radius_weight,
          soft_source, radius_power, highlights, high_iso, log_mse, seed, val_every, ckpt_every, workers, stop_after,
          time_limit, device, debug) -> None:
    """Train NRKNet; resumes exactly from RUN_DIR's checkpoint.

    Data: synthetic defocus rendered on the fly from sharp photos (--photos), or real
    pairs (--dpdd, --lfdof, --pairs). The run's settings are saved in RUN_DIR/run.json;
    re-running with only --run-dir resumes with them. --steps may be given again to
    lengthen or shorten the run: the learning-rate drops move with it. Under
    `torchrun --nproc_per_node N` it trains data-parallel (gloo on CPU, nccl on CUDA).

    \b
    Examples:
      nrkdeblur train --run-dir runs/cpu --photos photos/ --val val/ --steps 40000
      nrkdeblur train --run-dir runs/cpu                       # resume
      nrkdeblur train --run-dir runs/paper --preset paper --dpdd DPDD/ --device cuda \\
          --batch-size 4 --crop 256 --steps 500000
      torchrun --nproc_per_node 4 -m nrkdeblur train --run-dir runs/paper --preset paper --dpdd DPDD/
    """
    from . import train as training

    names = {"preset_name": "preset", "val_dir": "val", "fft_weight": "beta", "reblur_weight": "alpha"}
    explicit = {names.get(k, k) for k in ctx.params if ctx.get_parameter_source(k) == ParameterSource.COMMANDLINE}
    args = {"preset": preset_name, "width": width, "atoms": atoms, "focus_width": focus_width, "focus_only": focus_only,
            "init": init and str(init),
            "photos": [str(p) for p in photos], "holdout": [str(p) for p in holdout], "dpdd": dpdd and str(dpdd),
            "lfdof": lfdof and str(lfdof), "pairs": pairs and [str(p) for p in pairs], "val": val_dir and str(val_dir),
            "steps": steps, "batch_size": batch_size, "crop": crop, "lr": lr, "seed": seed,
            "beta": fft_weight, "alpha": reblur_weight, "log_mse": log_mse, "radius_weight": radius_weight,
            "soft_source": soft_source, "radius_power": radius_power, "highlights": highlights, "high_iso": high_iso,
            "val_every": val_every, "ckpt_every": ckpt_every}
    with one_line_errors(debug):
        try:
            config, settings, args, message = training.plan_run(run_dir, args, explicit, workers)
        except training.RunSettingsError as e:  # the run folder disagrees with the options given
            raise click.UsageError(str(e)) from None
        dev = training.init_distributed(resolve_device(device))
        if message and training.is_rank0():
            console.print(message, highlight=False)
        train_data = training.open_train_data(args, settings)
        val_data = training.open_val_data(args["val"]) if args["val"] else None

    with Progress(TextColumn("[bold]train"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[info]}"),
                  TimeElapsedColumn(), TimeRemainingColumn(), console=console, disable=not training.is_rank0()) as bar:
        task = bar.add_task("train", total=settings.steps, completed=0, info="")

        def on_step(s: training.StepInfo) -> None:
            val = f" val {s.val_psnr:.2f} dB (input {s.val_input_psnr:.2f})" if s.val_psnr is not None else ""
            info = f"loss {s.loss:.4f} {s.seconds_per_step:.2f} s/step{val}"
            bar.update(task, completed=s.step, info=info)
            if not console.is_terminal and (s.step % 50 == 0 or s.step == s.steps):  # logs: a line now and then
                console.print(f"step {s.step}/{s.steps} {info}", highlight=False)

        with one_line_errors(debug):
            result = training.train(config, settings, train_data, val_data, run_dir, dev, stop_after, on_step,
                                    init=args.get("init"), time_limit=time_limit and time_limit * 60)
    if training.is_rank0():
        console.print(f"stopped at step {result.step}/{settings.steps}; weights: {run_dir / 'last.safetensors'}")


def resolve_device(name: str):
    from .inference import resolve_device as resolve

    try:
        return resolve(name)
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="'--device'") from None


# --- eval --------------------------------------------------------------------------

@main.command(name="eval")
@click.argument("folders", nargs=-1, required=True, type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--pred", "pred_dir", type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Score existing predictions (matched by name) instead of running a method (one set only).")
@click.option("--method", type=click.Choice(["nrknet", "unsharp", "richardson-lucy", "identity"]), default="nrknet",
              show_default=True, help="What restores the blurry images (classical ones need scikit-image).")
@click.option("--weights", type=click.Path(path_type=Path), help="Weights for nrknet (default: the shipped ones).")
@click.option("--strength", type=click.FloatRange(0.0, 1.0), default=1.0, show_default=True,
              help="For nrknet: how much of the network's change to keep (as for deblurring).")
@click.option("--linear", is_flag=True, help=LINEAR_HELP + " Applies to every --method (not to --pred).")
@click.option("--map-method", type=click.Choice(["network", "classical"]), default="network", show_default=True,
              help="Which defocus map is scored: nrknet's, or the classical Zhuo & Sim estimate from the "
                   "blurry image's edges (with any --method; needs scikit-image).")
@click.option("--device", default="auto", show_default=True, help="auto (CUDA if available, else CPU), cpu, cuda, mps.")
@click.option("--per-image/--summary-only", default=True, show_default=True, help="Print each image's scores too.")
@click.option("--csv", "csv_path", type=click.Path(dir_okay=False, path_type=Path), help="Also write the rows as CSV.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path), help="Also write the rows as JSON.")
@click.option("--debug", is_flag=True, help="Show tracebacks.")
def evaluate_command(folders, pred_dir, method, weights, strength, linear, map_method, device, per_image, csv_path,
                     json_path, debug) -> None:
    """Measure PSNR and SSIM against sharp references, and the defocus map against the true blur.

    FOLDERS are evaluation sets, each a folder with blur/ and sharp/ (and radius/, the true
    blur radius maps written by `nrkdeblur render`), or one BLUR_DIR SHARP_DIR pair.
    Pairs are matched by file name (stem). Scores are on 8-bit RGB, data range 255, no
    border crop; SSIM is scikit-image's structural_similarity (7x7 window, channel_axis).
    Per set: mean PSNR and SSIM of input and output, the worst image's PSNR gain, and,
    with nrknet on a set that has radius/, the defocus map's Spearman rank correlation
    with the true radius on all and on textured pixels, its mean absolute error in pixels
    as it is and after one scale fitted per set, and the error of the best constant map
    (docs/map-scores.md). --map-method classical scores the Zhuo & Sim map instead.

    \b
    Examples:
      nrkdeblur eval benchmarks/kodak24-defocus benchmarks/out-of-recipe benchmarks/natural-dof
      nrkdeblur eval pairs/blur pairs/sharp --method richardson-lucy --csv rl.csv
      nrkdeblur eval blur/ sharp/ --pred my_outputs/ --json scores.json
      nrkdeblur eval pixel4/blur pixel4/sharp --linear    pairs stored without a tone curve
      nrkdeblur eval benchmarks/natural-dof --method identity --map-method classical
    """
    from .evaluate import evaluate, mean_row, summarize, with_map

    if linear and pred_dir is not None:
        raise click.UsageError("--linear tells a method how to read the inputs; --pred scores finished outputs")
    sets = eval_sets(folders)
    if pred_dir is not None and len(sets) > 1:
        raise click.UsageError("--pred scores one set at a time")
    with one_line_errors(debug):
        restore = make_restorer(method, pred_dir, weights, device, linear, strength)
        if map_method == "classical":
            from .zhuo_sim import defocus_map

            restore = with_map(restore, defocus_map)
        title = describe_method(method, pred_dir, linear, strength) + (", classical map" if map_method == "classical" else "")
        records, summaries = [], []
        for name, pairs in sets:
            rows = evaluate(pairs, restore)
            summaries.append(summarize(name, rows))
            rows.append(mean_row(rows))
            records.extend({**r._asdict(), "set": name} for r in rows)
            if per_image:
                write_rows(rows, f"{name}: {title}")
        write_summaries(summaries, title)
        write_records(records, csv_path, json_path)


def describe_method(method: str, pred_dir: Path | None, linear: bool, strength: float) -> str:
    if pred_dir is not None:
        return f"predictions in {pred_dir}"
    return method + (" --linear" if linear else "") + (f" --strength {strength:g}" if strength != 1 else "")


def eval_sets(folders: tuple[Path, ...]) -> list[tuple[str, list]]:
    """(set name, [(name, blurry, sharp, true radius or None)]) for each evaluation set."""
    from .data import match_pairs, read_radius_map
    from .evaluate import to_uint8
    from .imageio import read_photo

    if all((f / "blur").is_dir() and (f / "sharp").is_dir() for f in folders):
        layout = [(f.name, f / "blur", f / "sharp", f / "radius") for f in folders]
    elif len(folders) == 2:
        blur_dir = folders[0].resolve()
        name = blur_dir.parent.name if blur_dir.name == "blur" else blur_dir.name  # PAIRS/blur: "PAIRS"
        layout = [(name, folders[0], folders[1], None)]
    else:
        raise click.UsageError("give evaluation sets (folders with blur/ and sharp/) or one BLUR_DIR SHARP_DIR pair")
    sets = []
    with one_line_errors():
        for name, blur_dir, sharp_dir, radius_dir in layout:
            load = lambda p: to_uint8(read_photo(p).pixels)  # noqa: E731
            pairs = []
            for b, s in match_pairs(blur_dir, sharp_dir):
                key = b.relative_to(blur_dir).with_suffix("").as_posix()
                truth = radius_dir / f"{key}.tiff" if radius_dir is not None else None
                radius = read_radius_map(truth) if truth is not None and truth.is_file() else None
                pairs.append((key, load(b), load(s), radius))
            sets.append((name, pairs))
    return sets


def make_restorer(method: str, pred_dir: Path | None, weights: Path | None, device: str, linear: bool = False,
                  strength: float = 1.0):
    """A function (name, blurry uint8) -> (restored uint8, defocus map or None) for the eval command."""
    from .evaluate import to_uint8
    from .imageio import read_photo

    if pred_dir is not None:
        preds = {p.relative_to(pred_dir).with_suffix("").as_posix(): p for p in list_images(pred_dir, recursive=True)}

        def from_folder(name, blurry):
            if name not in preds:
                raise ValueError(f"{pred_dir}: no prediction named {name}.*")
            return to_uint8(read_photo(preds[name]).pixels), None

        return from_folder
    if method == "identity":
        return lambda name, blurry: (blurry, None)
    if method in ("unsharp", "richardson-lucy"):
        from . import baselines
        from .srgb import linear_to_srgb, srgb_to_linear

        fn = baselines.unsharp if method == "unsharp" else baselines.richardson_lucy
        if linear:
            return lambda name, blurry: (to_uint8(srgb_to_linear(fn(linear_to_srgb(blurry.astype(np.float32) / 255)))), None)
        return lambda name, blurry: (to_uint8(fn(blurry.astype(np.float32) / 255)), None)
    from .pipeline import DeblurOptions, open_default_weights, run_model

    model = open_default_weights(weights, resolve_device(device))
    options = DeblurOptions(linear=linear, strength=strength, backend="torch")  # tiles as for deblurring

    def restore(name, blurry):
        out = run_model(model, blurry.astype(np.float32) / 255, options, defocus=True)
        return to_uint8(out.image), out.defocus

    return restore


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


# the defocus map's scores (docs/map-scores.md): Spearman on all / textured pixels, MAE px
# as it is, the set's scale s, MAE of s * map, MAE of the best constant map
MAP_COLUMNS = ["map rho", "rho tex", "MAE px", "scale", "fit MAE", "const MAE"]


def map_cells(r) -> list[str]:
    """A row's or a set summary's defocus-map scores, formatted for MAP_COLUMNS."""
    return [_fmt(r.map_spearman, ".3f"), _fmt(r.map_spearman_textured, ".3f"), _fmt(r.map_mae, ".2f"),
            _fmt(r.map_scale, ".2f"), _fmt(r.map_mae_fit, ".2f"), _fmt(r.map_mae_constant, ".2f")]


def write_rows(rows, title: str) -> None:
    from rich.table import Table

    maps = any(r.map_spearman is not None or r.map_mae is not None for r in rows)
    table = Table(title=f"PSNR (dB) / SSIM: {title}")
    columns = ["image", "PSNR in", "PSNR out", "gain", "SSIM in", "SSIM out", "gain"] + (MAP_COLUMNS if maps else [])
    for col in columns:
        table.add_column(col, justify="left" if col == "image" else "right")
    for r in rows:
        cells = [r.name, f"{r.psnr_in:.2f}", f"{r.psnr_out:.2f}", f"{r.psnr_out - r.psnr_in:+.2f}",
                 f"{r.ssim_in:.4f}", f"{r.ssim_out:.4f}", f"{r.ssim_out - r.ssim_in:+.4f}"]
        if maps:
            cells += map_cells(r)
        table.add_row(*cells, style="bold" if r.name == "mean" else None)
    table_console().print(table)


def table_console() -> Console:
    """stdout, as wide as a terminal, or wide enough for the tables when piped to a file."""
    out = Console()
    return out if out.is_terminal else Console(width=160)


def write_summaries(summaries, title: str) -> None:
    from rich.table import Table

    table = Table(title=f"Per set: {title}")
    for col in ("set", "images", "PSNR in", "PSNR out", "gain", "worst gain", "worst image", "SSIM gain", *MAP_COLUMNS):
        table.add_column(col, justify="left" if col in ("set", "worst image") else "right")
    for m in summaries:
        table.add_row(m.name, str(m.images), f"{m.psnr_in:.2f}", f"{m.psnr_out:.2f}", f"{m.psnr_out - m.psnr_in:+.2f}",
                      f"{m.worst_gain:+.2f}", m.worst_image, f"{m.ssim_out - m.ssim_in:+.4f}", *map_cells(m))
    table_console().print(table)


def write_records(records: list[dict], csv_path: Path | None, json_path: Path | None) -> None:
    if csv_path is not None:
        import csv
        import io

        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=list(records[0]))
        writer.writeheader()
        writer.writerows(records)
        atomic_write(csv_path, lambda f: f.write(buffer.getvalue().encode()))
    if json_path is not None:
        atomic_write(json_path, lambda f: f.write(json.dumps(records, indent=1).encode()))


# --- render ------------------------------------------------------------------------

@main.command()
@click.argument("photos", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option("-o", "--output", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Folder to write blur/, sharp/ and radius/ into.")
@click.option("--seed", type=int, default=2026, show_default=True)
@click.option("--recipe", type=click.Choice(["training", "out-of-recipe"]), default="training", show_default=True,
              help="Renderer settings: the training recipe, or settings no training run uses.")
@click.option("--scale", type=click.FloatRange(0, 1, min_open=True), default=1.0, show_default=True,
              help="Shrink each photo by this factor first (0.5: half size).")
def render(photos, output: Path, seed: int, recipe: str, scale: float) -> None:
    """Render synthetic defocus once from sharp photos: a frozen evaluation set.

    Writes OUTPUT/blur/NAME.png and OUTPUT/sharp/NAME.png (8-bit), OUTPUT/radius/NAME.tiff
    (the RMS radius of the blur each pixel got, px, float32: the truth for the defocus map)
    and OUTPUT/sources.txt (the photos used, so training can leave them out with
    `nrkdeblur train --holdout`). Photo i of the list (the folders' photos sorted, then
    the files given, sorted) is rendered with seed (SEED, i), so the set is reproducible.

    \b
    Example (the validation set of the shipped weights):
      nrkdeblur render Kodak24/ -o benchmarks/kodak24-defocus --seed 2026
    """
    from .data import RECIPES, sharp_photos, write_frozen_set

    with one_line_errors():
        paths = sharp_photos([p for p in photos if p.is_dir()]) + sorted(p for p in photos if p.is_file())
        if not paths:
            fail("no photos found")
        names = write_frozen_set(paths, output, seed, RECIPES[recipe], scale)
        lines = [f"# nrkdeblur render --recipe {recipe} --scale {scale:g} --seed {seed}: the sources of this set"]
        atomic_write(output / "sources.txt", lambda f: f.write("\n".join(lines + [p.name for p in paths]).encode() + b"\n"))
    console.print(f"wrote {len(names)} pairs to {output}")


# --- bench -------------------------------------------------------------------------

@main.command()
@click.option("--quick", is_flag=True, help="Only the RKR operator ratio, on a 512x512 image (seconds, not minutes).")
@click.option("--memory/--no-memory", default=True, show_default=True, help="Measure tiled peak memory at 2, 12, 24 MP.")
@click.option("--end-to-end/--no-end-to-end", "end_to_end", default=True, show_default=True,
              help="Time a 12 MP photo through the command line with each backend (fresh processes).")
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path), help="Also write the results as JSON.")
@click.option("--plot", "plot_path", type=click.Path(dir_okay=False, path_type=Path), help="Also draw the results as a PNG.")
def bench(quick: bool, memory: bool, end_to_end: bool, json_path: Path | None, plot_path: Path | None) -> None:
    """Measure speed and memory on this machine, side by side in one run.

    1. the recursive RKR operator (eq. 5, O(6NJ)) against the explicit per-pixel-kernel
       operator (O(N S^2)), J = 20 (S = 39), on a 1 MP image, as a ratio;
    2. seconds and megapixels per second of whole-photo inference at 1280x720 for the
       shipped and the paper preset, with the threads used: the default backend (auto, which
       is torch), beside ONNX Runtime and a plain NCHW call of the same model, and the share
       of the machine's measured 3x3 convolution throughput that the network's convolutions reach;
    3. the largest difference between tiled and whole-photo inference (8-bit levels) on
       every backend, and between the backends' outputs;
    4. peak memory and time of tiled inference on 2, 12 and 24 MP photos (fresh processes);
    5. a 12 MP JPEG through the command line, start-up included, with --backend torch (the
       default) and onnxruntime: wall, user and system CPU seconds, peak memory, and the
       share of the time the conv ceiling allows for the model's MACs.

    The full run takes about 15 minutes on 2 cores (the per-pixel operator alone ~3).

    \b
    Examples:
      nrkdeblur bench --quick
      nrkdeblur bench --json bench.json --plot bench.png
    """
    from . import bench as b
    from .weights import default_weights

    say = lambda text: console.print(text, highlight=False)  # noqa: E731
    shipped = str(default_weights())
    results: dict = {"machine": b.machine()}
    say(f"machine: {results['machine']}")
    op = b.rkr_vs_explicit(20, 512 if quick else 1024)
    results["rkr"] = op
    say(f"RKR operator, J={op['J']} (S={op['S']}), {op['megapixels']:.2f} MP: recursive {op['recursive_s']:.3f} s, "
        f"per-pixel kernels {op['explicit_s']:.1f} s: {op['ratio']:.0f}x faster")
    if not quick:
        ceiling = b.conv_ceiling()
        results["conv_ceiling_gmac_per_s"] = ceiling / 1e9
        results["throughput"] = []
        for name, weights in (("cpu", shipped), ("paper", None)):
            t = b.throughput(name, weights=weights)
            t["share_of_conv_ceiling"] = t["mac_per_s"] / ceiling
            results["throughput"].append(t)
            say(f"{name} preset (width {t['width']}, {t['parameters']:,} parameters), {t['size']}: "
                f"{t['seconds']:.2f} s with {t['backend']} (the default; "
                + (f"{t['onnxruntime_seconds']:.2f} s with onnxruntime, first call {t['first_call_seconds']:.1f} s; "
                   if "onnxruntime_seconds" in t else "")
                + f"{t['plain_nchw_seconds']:.2f} s as a plain NCHW call: {t['plain_nchw_seconds'] / t['seconds']:.2f}x), "
                f"{t['megapixels_per_s']:.3f} MP/s, {t['gmacs']:.1f} GMAC, {t['share_of_conv_ceiling']:.0%} of "
                f"the {ceiling / 1e9:.1f} GMAC/s 3x3-conv ceiling, {t['threads']} threads")
        from .runtime import onnxruntime_available

        backends = ["torch", "onnxruntime"] if onnxruntime_available() else ["torch"]
        results["tiled_vs_whole_levels"] = {k: b.tiled_vs_whole(shipped, backend=k) for k in backends}
        for k, v in results["tiled_vs_whole_levels"].items():
            say(f"tiled vs whole, 1 MP, tile 512, {k}: max difference {v:.4f} of an 8-bit level")
        if "onnxruntime" in backends:
            results["onnxruntime_vs_torch"] = b.backends_agree(shipped)
            say(f"onnxruntime vs torch, 457x301, image and defocus map: max difference "
                f"{results['onnxruntime_vs_torch']:.1e}")
        if memory:
            results["memory"] = []
            for mp in (2, 12, 24):
                m = b.tiled_peak_memory(mp)
                results["memory"].append(m)
                say(f"tiled {m['megapixels']:.1f} MP (tile {m['tile']}): {m['seconds']:.1f} s, peak {m['peak_rss_mb']:.0f} MB")
            ratio = results["memory"][2]["peak_rss_mb"] / results["memory"][1]["peak_rss_mb"]
            say(f"peak memory, 24 MP / 12 MP: {ratio:.2f}")
        if end_to_end:
            import tempfile

            with tempfile.TemporaryDirectory() as folder:
                photo = Path(folder) / "photo12mp.jpg"
                h, w = b.synthetic_photo(photo, 12)
                runs = [b.command_line(photo, k) for k in backends]
            macs = results["throughput"][0]["gmacs"] * 1e9 * h * w / (1280 * 720)
            for r in runs:
                r["share_of_conv_ceiling"] = macs / ceiling / r["seconds"]
                say(f"command line, {w}x{h} JPEG, --backend {r['backend']}: {r['seconds']:.1f} s "
                    f"(user {r['user_s']:.1f} s, system {r['system_s']:.1f} s), peak {r['peak_rss_mb']:.0f} MB, "
                    f"{r['share_of_conv_ceiling']:.0%} of the conv ceiling's time")
            results["command_line"] = runs
            if len(runs) == 2:
                say(f"command line, --backend onnxruntime vs torch (the default): "
                    f"{runs[0]['seconds'] / runs[1]['seconds']:.2f}x faster")
    if json_path is not None:
        atomic_write(json_path, lambda f: f.write(json.dumps(results, indent=1).encode()))
    if plot_path is not None:
        picture = b.plot(results)
        atomic_write(plot_path, lambda f: picture.save(f, format="PNG"))


# --- export ------------------------------------------------------------------------

@main.command(name="export")
@click.argument("weights", required=False, type=click.Path(path_type=Path))
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="Where to write the .onnx file.")
@click.option("--defocus", is_flag=True, help="Add the `defocus` output: the defocus scale in input pixels, [N, 1, H, W].")
@click.option("--coefficients", is_flag=True,
              help="Add the `coefficients` output: every scale's coefficients, upsampled, [N, S*J, H, W].")
@click.option("--half", is_flag=True, help="Float16 weights, input and outputs (for GPU runtimes).")
@click.option("--opset", type=click.IntRange(17), default=18, show_default=True, help="ONNX opset version.")
def export_command(weights: Path | None, output: Path, defocus: bool, coefficients: bool, half: bool, opset: int) -> None:
    """Export weights (default: the shipped ones) to ONNX, for ONNX Runtime, TensorRT and others.

    The graph takes `input` [N, 3, H, W] (RGB in [0, 1], sRGB-encoded) of any height and width
    of at least 32 px, pads to the model's multiple inside, and returns `image` (and, when
    asked, `defocus` and `coefficients`) at the input's size. The model's config is in the
    file's metadata (`nrkdeblur.config`), as in the weights file. The file passes onnx.checker.

    \b
    Examples:
      nrkdeblur export -o nrkdeblur.onnx
      nrkdeblur export my.safetensors -o my.onnx --defocus --coefficients
    """
    import torch

    from .export import ExportError, ExportOptions, export_onnx
    from .pipeline import open_default_weights

    if weights is not None and output.resolve() == weights.resolve():
        fail("the output must differ from the weights file")
    try:
        model = open_default_weights(weights, torch.device("cpu"))
        export_onnx(model, output, ExportOptions(defocus=defocus, coefficients=coefficients, half=half, opset=opset))
    except (WeightsError, ExportError, ImageError) as e:
        fail(str(e))
    console.print(f"wrote {output}")


# --- convert -----------------------------------------------------------------------

@main.command()
@click.argument("checkpoint", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="Where to write the .safetensors file.")
def convert(checkpoint: Path, output: Path) -> None:
    """Convert the authors' NRKNet checkpoint (.pth) to an nrkdeblur weights file.

    The .pth is read with torch.load(weights_only=True): it is never unpickled as code.
    The result is the `paper` preset and loads with `nrkdeblur --weights OUTPUT`.

    \b
    Example:
      nrkdeblur convert NRKNet_epoch3846.pth -o nrknet-dpdd.safetensors
    """
    if output.resolve() == checkpoint.resolve():
        raise click.UsageError("the output must differ from the checkpoint")
    with one_line_errors():
        convert_official(checkpoint, output, preset("paper"))
    console.print(f"wrote {output}")


if __name__ == "__main__":  # pragma: no cover
    main()
