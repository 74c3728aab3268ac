"""The `nrkdeblur` command. Thin: parse, call the library, report.

This is the only module that imports click and rich. Library errors (ImageError,
WeightsError, ValueError from bad settings) become one-line messages here; `--debug`
shows the traceback instead.
"""

from __future__ import annotations

import dataclasses
import json
import sys
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


class DefaultGroup(click.Group):
    """A group whose default command is `deblur`: `nrkdeblur photo.jpg` = `nrkdeblur deblur photo.jpg`."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ("--help", "-h", "--version"):
            args = ["deblur", *args]
        return super().parse_args(ctx, args)


@click.group(cls=DefaultGroup, context_settings={"help_option_names": ["-h", "--help"]})
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


# --- deblur ------------------------------------------------------------------------

LINEAR_HELP = ("The pixels are linear light (sensor data, a linear TIFF), not sRGB: they are "
               "sRGB-encoded for the network and its output is decoded back to linear. Not for "
               "camera RAW files, which are developed to sRGB.")


@main.command()
@click.argument("inputs", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("-o", "--output", type=click.Path(path_type=Path),
              help="Output file (one input) or folder (several inputs or a folder). Default: beside the input as NAME_sharp.EXT.")
@click.option("-r", "--recursive", is_flag=True, help="Include subfolders of input folders.")
@click.option("--format", "fmt", type=click.Choice(sorted(EXTENSION_OF_FORMAT)), help="Output format (default: the input's; RAW gives TIFF).")
@click.option("--quality", type=click.IntRange(1, 100), default=95, show_default=True, help="JPEG/WebP quality.")
@click.option("--overwrite", is_flag=True, help="Replace outputs that exist (default: skip them, so a re-run resumes).")
@click.option("--weights", type=click.Path(path_type=Path), help="A .safetensors from `nrkdeblur train` or `convert` (default: the shipped weights).")
@click.option("--device", default="auto", show_default=True, help="auto (CUDA if available, else CPU), cpu, cuda, mps.")
@click.option("--half", is_flag=True, help="Half precision on a GPU (faster, slightly less exact).")
@click.option("--backend", type=click.Choice(["auto", "torch", "onnxruntime"]), default="auto", show_default=True,
              help="What runs the network: auto is ONNX Runtime on the CPU when the onnx extra is installed "
                   "(measured faster; the model is exported once and cached), torch otherwise.")
@click.option("--tile", type=click.IntRange(MIN_TILE), help="Tile side in pixels (default: from the memory available; whole when it fits).")
@click.option("--tile-overlap", type=click.IntRange(0), default=DEFAULT_OVERLAP, show_default=True, help="Pixels shared by neighbouring tiles.")
@click.option("--defocus-map", "defocus_dir", type=click.Path(file_okay=False, path_type=Path),
              help="Write NAME_defocus.png (heatmap) and NAME_defocus.tiff (float, pixels) here.")
@click.option("--coefficients", "coef_dir", type=click.Path(file_okay=False, path_type=Path),
              help="Write the coefficient maps and atoms (NAME_coefficients.safetensors, NAME_atoms.png) here.")
@click.option("--linear", is_flag=True, help=LINEAR_HELP)
@click.option("--strength", type=click.FloatRange(0.0, 1.0), default=1.0, show_default=True,
              help="How much of the network's change to keep: 0 = the input, 1 = the network's output.")
@click.option("-q", "--quiet", is_flag=True, help="No progress or summary; errors only.")
@click.option("--debug", is_flag=True, help="Show tracebacks for errors.")
def deblur(inputs, output, recursive, fmt, quality, overwrite, weights, device, half, backend, tile, tile_overlap,
           defocus_dir, coef_dir, linear, strength, quiet, debug) -> None:
    """Deblur photos: files or folders in, all-in-focus photos out.

    Reads JPEG, PNG, TIFF, WebP, BMP (8 or 16 bit, grey, RGB, RGBA) and camera RAW
    (DNG, CR2, CR3, NEF, ARW, RAF, ORF, RW2). Keeps bit depth, alpha, EXIF and ICC
    profile; applies EXIF orientation. Never writes over an input; every file is written
    to a temporary name first, so an interrupted run leaves no broken image, and re-running
    the same command skips what is done. Exits non-zero if any file failed.

    \b
    Examples:
      nrkdeblur photo.jpg -o sharp.jpg
      nrkdeblur photo.jpg                           writes photo_sharp.jpg
      nrkdeblur shoot/ -o sharp/ -r                 keeps subfolders
      nrkdeblur shoot/*.CR2 -o sharp/ --defocus-map maps/
      nrkdeblur big.tif -o out.tif --tile 1024      bounded memory
    """
    from .pipeline import DeblurOptions, process_batch

    from .runtime import resolve_backend

    if tile is not None and tile_overlap > tile // 2:
        fail(f"--tile-overlap {tile_overlap} is too large for --tile {tile} (at most half the tile)")
    dev = resolve_device(device)
    try:
        resolve_backend(backend, dev)
    except ValueError as e:
        raise click.UsageError(str(e)) from None
    options = DeblurOptions(recursive=recursive, fmt=fmt, quality=quality, overwrite=overwrite, weights=weights,
                            device=str(dev), half=half, backend=backend, tile=tile, overlap=tile_overlap,
                            defocus_dir=defocus_dir, coef_dir=coef_dir, linear=linear, strength=strength,
                            debug=debug)
    with Reporter(quiet) as report:
        try:
            summary = process_batch(list(inputs), output, options, report)
        except WeightsError as e:
            if debug:
                raise
            fail(str(e))
    if not quiet:
        mp_s = summary.megapixels / summary.seconds if summary.seconds > 0 else 0.0
        console.print(f"{summary.done} done, {summary.skipped} skipped, {len(summary.failed)} failed "
                      f"in {summary.seconds:.1f} s ({mp_s:.2f} MP/s)")
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
@click.option("--val", "val_dir", type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Validation pairs: a folder with blur/ and sharp/ (e.g. made by `nrkdeblur render`).")
@click.option("--steps", type=click.IntRange(1), default=100_000, show_default=True, help="Total optimiser steps (sets the schedule).")
@click.option("--batch-size", type=click.IntRange(1), default=8, show_default=True, help="Global batch size.")
@click.option("--crop", type=click.IntRange(1), default=128, show_default=True, help="Training crop size in pixels.")
@click.option("--lr", type=float, default=1e-4, show_default=True, help="Adam learning rate (paper: 1e-4).")
@click.option("--fft-weight", type=float, default=0.1, show_default=True, help="beta: weight of the FFT-L1 term (eq. 13).")
@click.option("--reblur-weight", type=float, default=0.1, show_default=True, help="alpha: weight of the reblurring term (eq. 14).")
@click.option("--log-mse/--mse", "log_mse", default=False, show_default=True,
              help="Squared errors as minus each image's PSNR (ours) instead of plain MSE (paper).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--val-every", type=click.IntRange(1), default=500, show_default=True)
@click.option("--ckpt-every", type=click.IntRange(1), default=100, show_default=True)
@click.option("--workers", type=click.IntRange(0), default=1, show_default=True, help="Data-rendering worker processes.")
@click.option("--stop-after", type=click.IntRange(1), help="Stop after this many steps in all (resume later).")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda, cuda:1, mps ...")
@click.option("--debug", is_flag=True, help="Show tracebacks.")
@click.pass_context
def train(ctx: click.Context, run_dir: Path, preset_name: str, width, atoms, init, photos, dpdd, lfdof, pairs, val_dir, steps,
          batch_size, crop, lr, fft_weight, reblur_weight, log_mse, seed, val_every, ckpt_every, workers, stop_after, device, debug) -> None:
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

    explicit = {k for k in ctx.params if ctx.get_parameter_source(k) == ParameterSource.COMMANDLINE}
    run_file = run_dir / "run.json"
    args = {"preset": preset_name, "width": width, "atoms": atoms, "init": init and str(init), "photos": [str(p) for p in photos], "dpdd": dpdd and str(dpdd),
            "lfdof": lfdof and str(lfdof), "pairs": pairs and [str(p) for p in pairs], "val": val_dir and str(val_dir),
            "steps": steps, "batch_size": batch_size, "crop": crop, "lr": lr, "seed": seed,
            "beta": fft_weight, "alpha": reblur_weight, "log_mse": log_mse,
            "val_every": val_every, "ckpt_every": ckpt_every}
    names = {"preset_name": "preset", "val_dir": "val", "fft_weight": "beta", "reblur_weight": "alpha"}
    saved = None
    if run_file.exists():  # resume: saved settings win; explicit flags must agree, except --steps
        try:
            saved = json.loads(run_file.read_text())
        except (OSError, ValueError) as e:
            fail(f"{run_file}: cannot read the run's settings ({e})")
        for k in explicit - {"steps"}:  # flags not in run.json (--workers, --device ...) are free
            key = names.get(k, k)
            if key in saved and saved[key] != args[key]:
                fail(f"{run_dir} was started with {key}={saved[key]!r}; use another --run-dir to change it")
        args = {**saved, "steps": steps if "steps" in explicit else saved["steps"]}
    rescheduled = saved is not None and args["steps"] != saved["steps"]
    try:
        config = preset(args["preset"])
        config = dataclasses.replace(config, width=args["width"] or config.width,
                                     num_atoms=args["atoms"] or config.num_atoms)
        settings = training.TrainSettings(
            steps=args["steps"], batch_size=args["batch_size"], crop=args["crop"], lr=args["lr"], seed=args["seed"],
            alpha=args.get("alpha", 0.1), beta=args.get("beta", 0.1),  # .get: run.json files from before these
            log_mse=args.get("log_mse", False),
            val_every=args["val_every"], ckpt_every=args["ckpt_every"], workers=workers)
        train_data = training.open_train_data(args, settings)
        val_data = training.open_val_data(args["val"]) if args["val"] else None
        dev = training.init_distributed(resolve_device(device))
        if rescheduled:
            done = training.checkpoint_step(run_dir)
            training.refuse_past_end(done, settings.steps, run_dir)
            before = dataclasses.replace(settings, steps=saved["steps"])
            if training.is_rank0():
                console.print(f"{run_file}: steps {before.steps} -> {settings.steps}; learning rate at step {done}: "
                              f"{before.lr_at(done):.3g} -> {settings.lr_at(done):.3g}", highlight=False)
        if training.is_rank0() and (rescheduled or saved is None):
            run_dir.mkdir(parents=True, exist_ok=True)
            atomic_write(run_file, lambda f: f.write(json.dumps(args, indent=1).encode()))
    except (ValueError, OSError, ImageError) as e:
        if debug:
            raise
        fail(str(e))

    with Progress(TextColumn("[bold]train"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[info]}"),
                  TimeElapsedColumn(), TimeRemainingColumn(), console=console, disable=not training.is_rank0()) as bar:
        task = bar.add_task("train", total=settings.steps, completed=0, info="")

        def on_step(s: training.StepInfo) -> None:
            val = f" val {s.val_psnr:.2f} dB (input {s.val_input_psnr:.2f})" if s.val_psnr is not None else ""
            info = f"loss {s.loss:.4f} {s.seconds_per_step:.2f} s/step{val}"
            bar.update(task, completed=s.step, info=info)
            if not console.is_terminal and (s.step % 50 == 0 or s.step == s.steps):  # logs: a line now and then
                console.print(f"step {s.step}/{s.steps} {info}", highlight=False)

        try:
            result = training.train(config, settings, train_data, val_data, run_dir, dev, stop_after, on_step,
                                    init=args.get("init"))
        except (ValueError, OSError, ImageError, WeightsError) as e:
            if debug:
                raise
            fail(str(e))
    if training.is_rank0():
        console.print(f"stopped at step {result.step}/{settings.steps}; weights: {run_dir / 'last.safetensors'}")


def resolve_device(name: str):
    from .inference import resolve_device as resolve

    try:
        return resolve(name)
    except ValueError as e:
        fail(f"--device {e}")


# --- eval --------------------------------------------------------------------------

@main.command(name="eval")
@click.argument("blur_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("sharp_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--pred", "pred_dir", type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Score existing predictions (matched by name) instead of running a method.")
@click.option("--method", type=click.Choice(["nrknet", "unsharp", "richardson-lucy", "identity"]), default="nrknet",
              show_default=True, help="What restores the blurry images (classical ones need scikit-image).")
@click.option("--weights", type=click.Path(path_type=Path), help="Weights for nrknet (default: the shipped ones).")
@click.option("--linear", is_flag=True, help=LINEAR_HELP + " Applies to every --method (not to --pred).")
@click.option("--device", default="auto", show_default=True)
@click.option("--csv", "csv_path", type=click.Path(dir_okay=False, path_type=Path), help="Also write the table as CSV.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path), help="Also write it as JSON.")
@click.option("--debug", is_flag=True, help="Show tracebacks.")
def evaluate_command(blur_dir, sharp_dir, pred_dir, method, weights, linear, device, csv_path, json_path,
                     debug) -> None:
    """Measure PSNR and SSIM against sharp references, per image and on average.

    Pairs are matched by file name (stem). Scores are on 8-bit RGB, data range 255, no
    border crop; SSIM is scikit-image's structural_similarity (7x7 window, channel_axis).
    The table shows the input's scores beside the output's.

    \b
    Examples:
      nrkdeblur eval benchmarks/kodak24-defocus/blur benchmarks/kodak24-defocus/sharp
      nrkdeblur eval pairs/blur pairs/sharp --method richardson-lucy --csv rl.csv
      nrkdeblur eval blur/ sharp/ --pred my_outputs/ --json scores.json
      nrkdeblur eval pixel4/blur pixel4/sharp --linear    pairs stored without a tone curve
    """
    from .data import match_pairs
    from .evaluate import evaluate, mean_row, to_uint8
    from .imageio import read_photo

    if linear and pred_dir is not None:
        fail("--linear tells a method how to read the inputs; --pred scores finished outputs")

    try:
        load = lambda p: to_uint8(read_photo(p).pixels)  # noqa: E731
        pairs = [(b.relative_to(blur_dir).with_suffix("").as_posix(), load(b), load(s))
                 for b, s in match_pairs(blur_dir, sharp_dir)]
        restore = make_restorer(method, pred_dir, weights, device, linear)
        rows = evaluate(pairs, restore)
        title = f"predictions in {pred_dir}" if pred_dir is not None else method + (" --linear" if linear else "")
        write_table(rows + [mean_row(rows)], title, csv_path, json_path)
    except (ImageError, WeightsError, ValueError, OSError) as e:
        if debug:
            raise
        fail(str(e))


def make_restorer(method: str, pred_dir: Path | None, weights: Path | None, device: str, linear: bool = False):
    """A function (name, blurry uint8) -> restored uint8 for the eval command."""
    from .evaluate import to_uint8
    from .imageio import read_photo

    if pred_dir is not None:
        preds = {p.relative_to(pred_dir).with_suffix("").as_posix(): p for p in list_images(pred_dir, recursive=True)}

        def from_folder(name, blurry):
            if name not in preds:
                raise ValueError(f"{pred_dir}: no prediction named {name}.*")
            return to_uint8(read_photo(preds[name]).pixels)

        return from_folder
    if method == "identity":
        return lambda name, blurry: blurry
    if method in ("unsharp", "richardson-lucy"):
        from . import baselines
        from .srgb import linear_to_srgb, srgb_to_linear

        fn = baselines.unsharp if method == "unsharp" else baselines.richardson_lucy
        if linear:
            return lambda name, blurry: to_uint8(srgb_to_linear(fn(linear_to_srgb(blurry.astype(np.float32) / 255))))
        return lambda name, blurry: to_uint8(fn(blurry.astype(np.float32) / 255))
    from .inference import choose_tile, deblur
    from .pipeline import open_default_weights

    model = open_default_weights(weights, resolve_device(device))
    dev = next(model.parameters()).device

    def run_model(name, blurry):
        x = blurry.astype(np.float32) / 255
        return to_uint8(deblur(model, x, tile=choose_tile(model, *x.shape[:2], dev), linear=linear).image)

    return run_model


def write_table(rows, title: str, csv_path: Path | None, json_path: Path | None) -> None:
    from rich.table import Table

    table = Table(title=f"PSNR (dB) / SSIM: {title}")
    for col in ("image", "PSNR in", "PSNR out", "gain", "SSIM in", "SSIM out", "gain"):
        table.add_column(col, justify="left" if col == "image" else "right")
    for r in rows:
        table.add_row(r.name, f"{r.psnr_in:.2f}", f"{r.psnr_out:.2f}", f"{r.psnr_out - r.psnr_in:+.2f}",
                      f"{r.ssim_in:.4f}", f"{r.ssim_out:.4f}", f"{r.ssim_out - r.ssim_in:+.4f}",
                      style="bold" if r.name == "mean" else None)
    Console().print(table)
    records = [r._asdict() for r in rows]
    if csv_path is not None:
        import csv

        with open(csv_path, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(records[0]))
            writer.writeheader()
            writer.writerows(records)
    if json_path is not None:
        json_path.write_text(json.dumps(records, indent=1))


# --- render ------------------------------------------------------------------------

@main.command()
@click.argument("photos", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option("-o", "--output", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Folder to write blur/ and sharp/ into.")
@click.option("--seed", type=int, default=2026, show_default=True)
def render(photos, output: Path, seed: int) -> None:
    """Render synthetic defocus once from sharp photos: a frozen validation set.

    Writes OUTPUT/blur/NAME.png and OUTPUT/sharp/NAME.png (8-bit). Photo i of the list (the
    folders' photos sorted, then the files given, sorted) is rendered with seed (SEED, i),
    so the set is reproducible.

    \b
    Example (the validation set of the shipped weights):
      nrkdeblur render ../shared/data/Kodak24 -o benchmarks/kodak24-defocus --seed 2026
    """
    from .data import RenderSettings, sharp_photos, write_frozen_set

    try:
        paths = sharp_photos([p for p in photos if p.is_dir()]) + sorted(p for p in photos if p.is_file())
        if not paths:
            fail("no photos found")
        names = write_frozen_set(paths, output, seed, RenderSettings())
    except (ValueError, ImageError, OSError) as e:
        fail(str(e))
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
       shipped and the paper preset, with the threads used: the default backend (auto),
       beside the torch backend and a plain NCHW call of the same model, and the share of
       the machine's measured 3x3 convolution throughput that the network's convolutions reach;
    3. the largest difference between tiled and whole-photo inference (8-bit levels) on
       every backend, and between the backends' outputs;
    4. peak memory and time of tiled inference on 2, 12 and 24 MP photos (fresh processes);
    5. a 12 MP JPEG through the command line, start-up included, with --backend torch and
       the default: wall, user and system CPU seconds, peak memory, and the share of the
       time the conv ceiling allows for the model's MACs.

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
                f"{t['seconds']:.2f} s with {t['backend']} ({t['torch_seconds']:.2f} s with torch, "
                f"{t['plain_nchw_seconds']:.2f} s as a plain NCHW call: {t['plain_nchw_seconds'] / t['seconds']:.2f}x; "
                f"first call {t['first_call_seconds']:.1f} s), "
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
                runs = [b.command_line(photo, k) for k in ("torch", "auto")]
            macs = results["throughput"][0]["gmacs"] * 1e9 * h * w / (1280 * 720)
            for r in runs:
                r["share_of_conv_ceiling"] = macs / ceiling / r["seconds"]
                say(f"command line, {w}x{h} JPEG, --backend {r['backend']}: {r['seconds']:.1f} s "
                    f"(user {r['user_s']:.1f} s, system {r['system_s']:.1f} s), peak {r['peak_rss_mb']:.0f} MB, "
                    f"{r['share_of_conv_ceiling']:.0%} of the conv ceiling's time")
            results["command_line"] = runs
            say(f"command line, default vs --backend torch: {runs[0]['seconds'] / runs[1]['seconds']:.2f}x faster")
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
@click.argument("checkpoint", type=click.Path(path_type=Path))
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
        fail("the output must differ from the checkpoint")
    try:
        convert_official(checkpoint, output, preset("paper"))
    except WeightsError as e:
        fail(str(e))
    console.print(f"wrote {output}")


if __name__ == "__main__":  # pragma: no cover
    main()
