"""`nrkdeblur export`: weights to an ONNX graph."""

from __future__ import annotations

from pathlib import Path

import click

from .group import main
from .common import command, console


@command(main, name="export")
@click.argument("weights", required=False, type=click.Path(dir_okay=False, path_type=Path))
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="Where to write the .onnx file.")
@click.option("--defocus-map", is_flag=True,
              help="Add the `defocus_map` output: the blur's RMS radius in input pixels, [N, 1, H, W].")
@click.option("--coefficients", is_flag=True,
              help="Add the `coefficients` output: every scale's coefficients, upsampled, [N, S*J, H, W].")
@click.option("--half", is_flag=True, help="Float16 weights, input and outputs (for GPU runtimes).")
@click.option("--opset", type=click.IntRange(17), default=18, show_default=True, help="ONNX opset version.")
def export_command(weights: Path | None, output: Path, defocus_map: bool, coefficients: bool, half: bool, opset: int) -> None:
    """Export weights (default: the shipped ones) to ONNX, for ONNX Runtime, TensorRT and others.

    The graph takes `input` [N, 3, H, W] (RGB in [0, 1], sRGB-encoded) of any height and width
    of at least 32 px, pads to the model's multiple inside, and returns `image` (and, when
    asked, `defocus_map` and `coefficients`) at the input's size. The model's config is in the
    file's metadata (`nrkdeblur.config`), as in the weights file. The file passes onnx.checker.

    \b
    Examples:
      nrkdeblur export -o nrkdeblur.onnx
      nrkdeblur export my.safetensors -o my.onnx --defocus-map --coefficients
    """
    import torch

    from ..export import ExportOptions, export_onnx
    from ..pipeline import open_default_weights

    if weights is not None and output.resolve() == weights.resolve():
        raise click.UsageError("the output must differ from the weights file")
    model = open_default_weights(weights, torch.device("cpu"))
    export_onnx(model, output, ExportOptions(defocus_map=defocus_map, coefficients=coefficients, half=half, opset=opset))
    console.print(f"wrote {output}")
