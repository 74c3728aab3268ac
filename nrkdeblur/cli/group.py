"""The `nrkdeblur` group: `deblur` is its default command; every command runs under
`interruptible` (Ctrl-C, SIGTERM and SIGHUP end with exit status 130, 143 and 129)."""

from __future__ import annotations

import click

from ..version import __version__
from .common import EXIT_STATUS, interruptible, shipped_models


class DefaultGroup(click.Group):
    """A group whose default command is `deblur`: `nrkdeblur photo.jpg` = `nrkdeblur deblur photo.jpg`.

    Runs every command under `interruptible`: Ctrl-C, SIGTERM and SIGHUP exit with 130, 143 and 129.
    """

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ("--help", "-h", "--version"):
            args = ["deblur", *args]
        return super().parse_args(ctx, args)

    def invoke(self, ctx: click.Context):
        with interruptible():
            return super().invoke(ctx)


@click.group(cls=DefaultGroup, context_settings={"help_option_names": ["-h", "--help"]},
             epilog=shipped_models() + EXIT_STATUS)
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
