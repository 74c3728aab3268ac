"""`nrkdeblur convert`: the authors' NRKNet checkpoint to an nrkdeblur weights file."""

from __future__ import annotations

from pathlib import Path

import click

from .group import main
from .common import command, console


@command(main)
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
    from ..config import preset
    from ..weights import convert_official

    if output.resolve() == checkpoint.resolve():
        raise click.UsageError("the output must differ from the checkpoint")
    convert_official(checkpoint, output, preset("paper"))
    console.print(f"wrote {output}")
