"""`nrkdeblur bench`: speed and memory on this machine, side by side in one run (bench.py)."""

from __future__ import annotations

from pathlib import Path

import click

from ..atomic import atomic_write
from .group import main
from .common import command, console


@command(main)
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
    5. a 12 MP JPEG through the command line, start-up and allocator included, each shipped
       model with --backend torch (the default) and the default model with onnxruntime:
       wall, user and system CPU seconds, peak memory, the MACs of the pixels the tiles
       process (overlap included) and the share of the conv ceiling they reach.

    The full run takes about 15 minutes on 2 cores (the per-pixel operator alone ~3).

    \b
    Examples:
      nrkdeblur bench --quick
      nrkdeblur bench --json bench.json --plot bench.png
    """
    import json

    from .. import bench as b

    results = b.run_all(quick, memory, end_to_end, say=lambda text: console.print(text, highlight=False))
    if json_path is not None:
        atomic_write(json_path, lambda f: f.write(json.dumps(results, indent=1).encode()))
    if plot_path is not None:
        picture = b.plot(results)
        atomic_write(plot_path, lambda f: picture.save(f, format="PNG"))
