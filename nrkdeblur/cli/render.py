"""`nrkdeblur render`: a frozen evaluation set of synthetic defocus from sharp photos."""

from __future__ import annotations

from pathlib import Path

import click

from .group import main
from .common import command, console


@command(main)
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
    from ..data import RECIPES, sharp_photos, write_frozen_set
    from ..errors import DataError
    from ..atomic import atomic_write

    paths = sharp_photos([p for p in photos if p.is_dir()]) + sorted(p for p in photos if p.is_file())
    if not paths:
        raise DataError("no photos found")
    names = write_frozen_set(paths, output, seed, RECIPES[recipe], scale)
    lines = [f"# nrkdeblur render --recipe {recipe} --scale {scale:g} --seed {seed}: the sources of this set"]
    atomic_write(output / "sources.txt", lambda f: f.write("\n".join(lines + [p.name for p in paths]).encode() + b"\n"))
    console.print(f"wrote {len(names)} pairs to {output}")
