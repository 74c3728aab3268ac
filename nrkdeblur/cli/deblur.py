"""`nrkdeblur deblur` (the default command): files or folders in, all-in-focus photos out."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from ..batch import EXTENSION_OF_FORMAT
from ..inference import DEFAULT_OVERLAP, MIN_TILE, InferenceOptions
from ..report_data import summary_line
from .group import main
from .common import (EXIT_STATUS, LINEAR_HELP, check_protect_options, command, console, device_option,
                     protect_option, resolve_device, shipped_models, weights_option)
from .progress import Reporter


@command(main, epilog=shipped_models() + EXIT_STATUS)
@click.argument("inputs", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("-o", "--output", type=click.Path(path_type=Path),
              help="Output file (one input) or folder (several inputs or a folder). Default: beside the input as NAME_sharp.EXT.")
@click.option("-r", "--recursive", is_flag=True, help="Include subfolders of input folders.")
@click.option("--format", type=click.Choice(sorted(EXTENSION_OF_FORMAT)), help="Output format (default: the input's; RAW gives TIFF).")
@click.option("--quality", type=click.IntRange(1, 100), default=95, show_default=True, help="JPEG/WebP quality.")
@click.option("--overwrite", is_flag=True, help="Replace outputs that exist (default: skip them, so a re-run resumes).")
@weights_option
@device_option()
@click.option("--half", is_flag=True, help="Half precision on a GPU (faster, slightly less exact).")
@click.option("--backend", type=click.Choice(["auto", "torch", "onnxruntime"]), default="auto", show_default=True,
              help="What runs the network: auto is torch (measured as fast or faster); onnxruntime needs "
                   "the onnx extra (the model is exported once and cached).")
@click.option("--tile", type=click.IntRange(MIN_TILE), help="Tile side in pixels (default: from the memory available; whole when it fits).")
@click.option("--tile-overlap", "overlap", type=click.IntRange(0), default=DEFAULT_OVERLAP, show_default=True,
              help="Pixels shared by neighbouring tiles.")
@click.option("--defocus-map", "defocus_map_dir", type=click.Path(file_okay=False, path_type=Path),
              help="Write NAME_defocus.png (heatmap), NAME_defocus.tiff (float, pixels) and "
                   "NAME_confidence.png (black where the photo is too flat to show blur) here.")
@click.option("--coefficients", "coefficients_dir", type=click.Path(file_okay=False, path_type=Path),
              help="Write the coefficient maps and atoms (NAME_coefficients.safetensors, NAME_atoms.png) here.")
@click.option("--linear", is_flag=True, help=LINEAR_HELP)
@click.option("--strength", type=click.FloatRange(0.0, 1.0), default=1.0, show_default=True,
              help="How much of the network's change to keep: 0 = the input, 1 = the network's output.")
@protect_option
@click.option("--mask", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Deblur only where this grey image is white (grey blends, black keeps the input); the "
                   "photo's size after EXIF orientation, 8 or 16 bit, RGB read as grey. One mask for every photo.")
@click.option("--report", "report_page", type=click.Path(dir_okay=False, path_type=Path),
              help="Write a before/after page of the batch here, to open in a browser, and its previews "
                   "beside it (sharp/report.html: sharp/report_files/); a re-run includes the photos done before.")
@click.option("--engine", type=click.Choice(["local", "ray"]), default="local", show_default=True,
              help="local: this process. ray: a pool of Ray actors on this machine or a cluster (pip install 'nrkdeblur[ray]').")
@click.option("--ray-address", envvar="RAY_ADDRESS", show_envvar=True,
              help="With --engine ray: the cluster to join (default: start a local Ray instance).")
@click.option("--workers", type=click.IntRange(1),
              help="With --engine ray: actors, each loading the model once (default: one per GPU, or per 4 CPUs).")
@click.option("-q", "--quiet", is_flag=True, help="No progress or summary; errors only.")
def deblur(inputs, output, quiet, debug, **fields) -> None:
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
      nrkdeblur portrait.jpg --protect 8            keeps a soft background soft
      nrkdeblur photo.jpg --mask subject.png        deblurs only the white of the mask
      nrkdeblur shoot/ -o sharp/ -r --engine ray    Ray actors (workers check their own devices)
      nrkdeblur shoot/ -o sharp/ --report sharp/report.html   before/after in a browser
    """
    from ..pipeline import DeblurOptions, process_batch
    from ..runtime import resolve_backend

    check_protect_options(fields["protect"], fields["protect_keep"])
    engine = None
    if fields["engine"] == "ray":  # the Ray workers check the device and backend on their own machines
        from ..cluster import ray_engine as engine
    else:
        if fields["workers"] is not None:
            raise click.UsageError("--workers is for --engine ray")
        fields["device"] = str(resolve_device(fields["device"]))
        resolve_backend(fields["backend"], resolve_device(fields["device"]))
    options = DeblurOptions.of(debug=debug, **fields)
    with Reporter(quiet) as report:
        summary = process_batch(list(inputs), output, options, report, engine)
    if not quiet:
        console.print(summary_line(summary))
    if options.output.report_page is not None:
        from ..report_data import write_report

        write_report(options.output.report_page, summary, options.output.defocus_map_dir, options.inference.linear)
        report.note(f"wrote {options.output.report_page}")
    if summary.failed:
        console.print(f"[red]{len(summary.failed)} failed:[/red]")
        for path, reason in summary.failed:
            console.print(f"  {path}: {reason}", markup=False, highlight=False)
        sys.exit(1)
